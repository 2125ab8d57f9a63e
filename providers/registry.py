"""Build the adapter a site or DNS target names, importing its SDK only then (tooz's `get_coordinator` idea).

`google.cloud.compute_v1` alone takes ~1.7 s to import, and an AWS-only deployment need not have the Azure SDK
working at all, so each adapter module is named here as a string and imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from orchestrator.core.errors import ConfigError
from orchestrator.core.model import DnsTarget, Site
from providers.base import Capability, CloudProvider
from providers.traffic import TrafficRouter

PROVIDERS: dict[str, str] = {
    "aws": "providers.aws:AwsProvider",
    "gcp": "providers.gcp:GcpProvider",
    "azure": "providers.azure:AzureProvider",
    "memory": "providers.memory:MemoryProvider",
    "local": "providers.local:LocalProvider",
}

ROUTERS: dict[str, str] = {
    "aws": "providers.aws:Route53Router",
    "memory": "providers.memory:MemoryRouter",
    "local": "providers.local:LocalRouter",
}


def register_provider(kind: str, target: str) -> None:
    """Add or replace an adapter: `target` is `"package.module:ClassName"`, imported when first built."""
    PROVIDERS[kind] = target


def register_router(kind: str, target: str) -> None:
    ROUTERS[kind] = target


def _load(table: dict[str, str], kind: str, what: str) -> Any:
    if kind not in table:
        raise ConfigError(f"{what}: unknown provider {kind!r}; known: {', '.join(sorted(table))}")
    module_name, _, attr = table[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what}: the {kind} adapter cannot be loaded ({exc}); is its SDK installed?") from exc
    return getattr(module, attr)


def build_provider(site: Site, **kwargs: Any) -> CloudProvider:
    """The adapter for `site.provider`, built with `kwargs` (see `CloudProvider` and each adapter)."""
    cls = _load(PROVIDERS, site.provider, f"site {site.name}")
    provider: CloudProvider = cls(site, **kwargs)
    return provider


def build_router(dns: DnsTarget, **kwargs: Any) -> TrafficRouter:
    """The traffic router for `dns.provider` (Route 53 for `aws`)."""
    cls = _load(ROUTERS, dns.provider, f"dns record {dns.record}")
    router: TrafficRouter = cls(endpoint_url=dns.endpoint_url, **kwargs) if dns.endpoint_url else cls(**kwargs)
    return router


def check_capabilities(provider: CloudProvider, needed: set[Capability]) -> None:
    """`ConfigError` naming the site and what its provider lacks; call at start-up, before anything can fail."""
    missing = set(needed) - provider.capabilities
    if missing:
        offered = ", ".join(sorted(provider.capabilities)) or "nothing"
        raise ConfigError(
            f"site {provider.site.name}: provider {provider.kind} lacks {', '.join(sorted(missing))} "
            f"(it offers {offered})"
        )
