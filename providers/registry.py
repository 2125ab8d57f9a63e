"""Build the adapter a site or DNS target names, importing its SDK only then (tooz's `get_coordinator` idea).

The catalog (providers/catalog.py) says which adapters exist and validates their options without importing them;
only here is an adapter's class imported, when a site of its provider is built: `google.cloud.compute_v1` alone
takes ~1.7 s to import, and an AWS-only deployment need not have the Azure SDK working at all.

Every adapter is constructed the same way: `cls(site, options=<its options model>, **kwargs)` for a cloud,
`cls(options=<its options model>, [endpoint_url=...], **kwargs)` for a DNS router.
"""

from __future__ import annotations

import importlib
from typing import Any

from orchestrator.core.errors import ConfigError
from orchestrator.core.model import DnsTarget, Site
from providers.base import Capability, CloudProvider
from providers.catalog import PROVIDERS, ROUTERS, Catalog, register_provider, register_router
from providers.options import AdapterSpec
from providers.traffic import TrafficRouter

__all__ = ["build_provider", "build_router", "check_capabilities", "register_provider", "register_router"]


def _spec(catalog: Catalog, kind: str, what: str) -> AdapterSpec:
    try:
        return catalog.find(kind)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from exc.__cause__


def _load(spec: AdapterSpec, kind: str, what: str) -> Any:
    module_name, _, attr = spec.adapter.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what}: the {kind} adapter cannot be loaded ({exc}); is its SDK installed?") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{what}: the {kind} adapter {spec.adapter} does not exist") from None


def build_provider(site: Site, **kwargs: Any) -> CloudProvider:
    """The adapter for `site.provider`, its options validated, built with `kwargs` (see `CloudProvider`)."""
    what = f"site {site.name}"
    spec = _spec(PROVIDERS, site.provider, what)
    options = spec.options.parse(site.options, what)
    cls = _load(spec, site.provider, what)
    provider: CloudProvider = cls(site, options=options, **kwargs)
    return provider


def build_router(dns: DnsTarget, **kwargs: Any) -> TrafficRouter:
    """The traffic router for `dns.provider` (Route 53 for `aws`)."""
    what = f"dns record {dns.record}"
    spec = _spec(ROUTERS, dns.provider, what)
    options = spec.options.parse(dns.options, what)
    cls = _load(spec, dns.provider, what)
    if dns.endpoint_url:
        kwargs = {"endpoint_url": dns.endpoint_url, **kwargs}
    router: TrafficRouter = cls(options=options, **kwargs)
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
