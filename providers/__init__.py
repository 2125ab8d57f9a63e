"""Cloud provider adapters behind one interface, and DNS traffic routers.

Importing this package imports nothing but this file: each name below is imported on first use (PEP 562), so that
configuration validation can read `providers.catalog` and `providers.options` without the adapters' bookkeeping
(tenacity, logging) and, above all, without any cloud SDK. `build_provider` / `build_router` import an adapter (and
its SDK) only when a site or DNS target of that provider is built. Adapters depend on `orchestrator.core` and their
own SDK only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from providers.base import Capability, CloudProvider, InstanceHealth, InstanceState, aggregate_zones
    from providers.calls import Deadline, PlannedCall, plan_recorder
    from providers.options import AdapterSpec, OptionsModel
    from providers.registry import (
        build_provider,
        build_router,
        check_capabilities,
        register_provider,
        register_router,
    )
    from providers.traffic import TrafficRouter

_WHERE = {
    "AdapterSpec": "providers.options",
    "Capability": "providers.base",
    "CloudProvider": "providers.base",
    "Deadline": "providers.calls",
    "InstanceHealth": "providers.base",
    "InstanceState": "providers.base",
    "OptionsModel": "providers.options",
    "PlannedCall": "providers.calls",
    "TrafficRouter": "providers.traffic",
    "aggregate_zones": "providers.base",
    "build_provider": "providers.registry",
    "build_router": "providers.registry",
    "check_capabilities": "providers.registry",
    "plan_recorder": "providers.calls",
    "register_provider": "providers.catalog",
    "register_router": "providers.catalog",
}

__all__ = [
    "AdapterSpec",
    "Capability",
    "CloudProvider",
    "Deadline",
    "InstanceHealth",
    "InstanceState",
    "OptionsModel",
    "PlannedCall",
    "TrafficRouter",
    "aggregate_zones",
    "build_provider",
    "build_router",
    "check_capabilities",
    "plan_recorder",
    "register_provider",
    "register_router",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'providers' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
