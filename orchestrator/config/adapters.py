"""Each site's cloud adapter and each DNS target's router, asked through the catalogs (providers/catalog.py).

The shared code lists no provider and no provider's option (tooz's way): a site keeps its shape for users,
`{provider: gcp, region: ..., project: ...}`, and every key beyond the common ones (`SiteConfig`'s, `DnsConfig`'s)
is validated by the options model the adapter registered. Asking the catalog imports the adapters' light options
modules only, never an adapter class or a cloud SDK, so validation stays fast.

Checked on the raw data, beside the models rather than inside them, so that these problems are reported together
with every other, even when the rest of the file does not validate.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from orchestrator.config.models import DnsConfig, SiteConfig
from orchestrator.config.problems import Problem
from orchestrator.config.validation import Path, pydantic_problems
from orchestrator.errors import ConfigError
from providers.catalog import PROVIDERS, ROUTERS, Catalog

COMMON_SITE_KEYS = frozenset(SiteConfig.model_fields)
COMMON_DNS_KEYS = frozenset(DnsConfig.model_fields)


def adapter_problems(data: Mapping[Any, Any]) -> Iterator[Problem]:
    """An unknown provider or router (with the names known), and every problem with each one's options."""
    sites = data.get("sites")
    if isinstance(sites, dict):
        for name, site in sites.items():
            if isinstance(site, dict):
                yield from _options(("sites", name), site, COMMON_SITE_KEYS, PROVIDERS)
    engines = data.get("engines")
    if isinstance(engines, dict):
        for name, engine in engines.items():
            dns = engine.get("dns") if isinstance(engine, dict) else None
            if isinstance(dns, dict):
                yield from _options(("engines", name, "dns"), dns, COMMON_DNS_KEYS, ROUTERS)


def _options(at: Path, raw: Mapping[Any, Any], common: frozenset[str], catalog: Catalog) -> Iterator[Problem]:
    kind = raw.get("provider")
    if not isinstance(kind, str) or not kind:
        return  # missing, empty or not a string: the models say so
    try:
        spec = catalog.find(kind)
    except ConfigError as exc:
        yield Problem((*at, "provider"), str(exc))
        return
    extras = {key: value for key, value in raw.items() if isinstance(key, str) and key not in common}
    try:
        spec.options.model_validate(extras)
    except ValidationError as error:
        yield from pydantic_problems(error, root=spec.options, at=at, also=common, owner=f"{catalog.noun} {kind}")


def with_adapter_options(schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of the file, with each registered adapter's options under its `provider` value (an `if` /
    `then` per adapter) and other keys refused (`unevaluatedProperties`), so that an editor knows them too."""
    definitions = schema.get("$defs", {})
    for name, catalog in (("SiteConfig", PROVIDERS), ("DnsConfig", ROUTERS)):
        definition = definitions.get(name)
        if definition is None:
            continue
        branches = []
        for kind in catalog.names():
            try:
                options = catalog.find(kind).options.model_json_schema()
            except ConfigError:
                continue  # a plugin that cannot load: `config validate` says why
            definitions.update(options.pop("$defs", {}))  # an options model's nested models, for its $refs
            branches.append({"if": {"properties": {"provider": {"const": kind}}, "required": ["provider"]},
                             "then": {"properties": options.get("properties", {}),
                                      "required": options.get("required", [])}})
        definition.pop("additionalProperties", None)
        definition["allOf"] = branches
        definition["unevaluatedProperties"] = False
    return schema
