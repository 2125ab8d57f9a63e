"""Cloud provider adapters behind one interface, and DNS traffic routers.

Importing this package imports no cloud SDK: `build_provider` / `build_router` import an adapter (and its SDK) only
when a site or DNS target of that provider is built. Adapters depend on `orchestrator.core` and their own SDK only.
"""

from providers.base import Capability, CloudProvider, InstanceHealth, InstanceState, aggregate_zones
from providers.calls import Deadline, PlannedCall, plan_recorder
from providers.registry import (
    build_provider,
    build_router,
    check_capabilities,
    register_provider,
    register_router,
)
from providers.traffic import TrafficRouter

__all__ = [
    "Capability",
    "CloudProvider",
    "Deadline",
    "InstanceHealth",
    "InstanceState",
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
