"""Our exceptions, re-exported from the core so that every layer imports them from one place."""

from orchestrator.core.errors import (
    EXIT_ACTED,
    EXIT_BAD_INPUT,
    EXIT_CALL_FAILED,
    EXIT_OK,
    EXIT_UNSAFE,
    ConfigError,
    EngineError,
    FailoverError,
    IllegalTransition,
    LeaseLost,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    StaleEpoch,
    StoreError,
    UnsafeError,
)

__all__ = [
    "EXIT_ACTED",
    "EXIT_BAD_INPUT",
    "EXIT_CALL_FAILED",
    "EXIT_OK",
    "EXIT_UNSAFE",
    "ConfigError",
    "EngineError",
    "FailoverError",
    "IllegalTransition",
    "LeaseLost",
    "ProviderAuthError",
    "ProviderError",
    "ProviderNotFound",
    "StaleEpoch",
    "StoreError",
    "UnsafeError",
]
