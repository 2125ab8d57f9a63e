"""One root error and a few categories, each mapped to one exit code (docs/design.md §8).

Every error that can reach a user is one of these; the CLI catches `FailoverError` in exactly one place, prints
`str(error)` as one line on stderr and exits with `error.exit_code`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ACTED = 1  # `check` acted or found something degraded; `simulate` had a failed expectation
EXIT_BAD_INPUT = 2
EXIT_UNSAFE = 3
EXIT_CALL_FAILED = 4


class FailoverError(Exception):
    """Root of every error this tool raises on purpose."""

    exit_code: int = EXIT_CALL_FAILED


class ConfigError(FailoverError):
    """Bad input: a configuration, scenario or argument that cannot be used. Nothing was changed."""

    exit_code = EXIT_BAD_INPUT


class UnsafeError(FailoverError):
    """Proceeding could make things worse; a human must decide. Nothing was changed."""

    exit_code = EXIT_UNSAFE


class IllegalTransition(UnsafeError):
    """A state machine (trading phase, runbook step) was asked for a move its table does not allow."""


class StoreError(FailoverError):
    """The state store failed or refused (lost lease, stale fencing token, corrupt audit chain)."""

    exit_code = EXIT_CALL_FAILED


class LeaseLost(StoreError):
    """Another holder owns the lease, or ours expired: stop acting at once."""

    exit_code = EXIT_UNSAFE


class ProviderError(FailoverError):
    """A cloud provider call failed for good (after retries). The cause is kept as `__cause__`."""

    exit_code = EXIT_CALL_FAILED


class ProviderAuthError(ProviderError):
    """The provider's credential chain gave no usable identity, or it lacks a permission."""


class ProviderNotFound(ProviderError):
    """An instance, zone or record named in the configuration does not exist at the provider."""


class EngineError(FailoverError):
    """An engine replica's control API failed for good, or answered something we cannot use."""

    exit_code = EXIT_CALL_FAILED


class StaleEpoch(EngineError):
    """A replica refused our epoch (409): someone with a newer epoch has acted. Never retry blindly."""

    exit_code = EXIT_UNSAFE
