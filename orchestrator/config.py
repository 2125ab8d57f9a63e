"""YAML configuration → validated, typed configuration → the core's `Topology` (DESIGN §2).

Every problem is reported at once, each as `FILE:LINE: field.path: what was expected`, because an SRE fixing a
config at 3 a.m. should not have to run the validator ten times. pydantic checks shapes and types; the cross-field
rules live in `_cross_checks`; pyyaml's node marks give the line of each field.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema, model_validator

from orchestrator.core.durations import parse_duration
from orchestrator.core.model import (
    Approval,
    DnsTarget,
    Engine,
    Policy,
    ProbeSettings,
    ProtectionSettings,
    Replica,
    Site,
    Topology,
)
from orchestrator.core.phases import parse_timezone
from orchestrator.errors import ConfigError

CONFIG_ENV = "FAILOVER_CONFIG"
DEFAULT_CONFIG = "failover.yaml"
ORCHESTRATOR_VANTAGE = "orchestrator"

# Keys that hold credentials. Credentials come from each cloud's standard chain, never from this file.
SECRET_KEY = re.compile(
    r"(secret|password|passwd|private_key|access_key|api_key|token(?!_file)|credential|client_secret|sas_key|"
    r"connection_string)",
    re.IGNORECASE,
)


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("expected a duration string with a unit, e.g. 500ms, 1s, 20m, 1h")


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$", "examples": ["500ms", "20m"]}),
]
Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Url = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]
ProviderName = Literal["aws", "gcp", "azure", "local"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SiteConfig(_Strict):
    """One failure domain. Credentials: AWS profile/env, Google ADC, Azure DefaultAzureCredential."""

    provider: ProviderName
    region: Annotated[str, Field(min_length=1)]
    zones: list[Annotated[str, Field(min_length=1)]] = []
    endpoint_url: Url | None = None
    profile: str | None = None
    project: str | None = None
    subscription: str | None = None
    resource_group: str | None = None


class ProbesConfig(_Strict):
    interval: Duration = 1.0
    timeout: Duration = 0.5
    vantage_points: list[str] = []
    provider_interval: Duration = 30.0  # how often each cloud's API is asked (control-plane health)


class PolicyConfig(_Strict):
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    quorum: Annotated[int, Field(ge=1, le=10)] = 2
    flap_count: Annotated[int, Field(ge=2, le=100)] = 3
    flap_window: Duration = 1800.0
    max_lag_on_failover: Annotated[int, Field(ge=0)] = 0
    min_failover_interval: Duration = 3600.0
    approval: Literal["auto", "manual"] = "auto"
    prefer_other_provider: bool = True
    step_deadline: Duration = 60.0


class ProtectionConfig(_Strict):
    duration: Duration = 1200.0
    allow: list[Literal["cancel", "post_only", "add_margin"]] = ["cancel", "post_only", "add_margin"]


class ReplicaConfig(_Strict):
    site: Name
    instance: Annotated[str, Field(min_length=1)]
    control_url: Url


class DnsConfig(_Strict):
    provider: ProviderName
    zone_id: Annotated[str, Field(min_length=1)]
    record: Annotated[str, Field(min_length=1)]
    ttl: Annotated[int, Field(ge=1, le=86400)] = 30
    endpoint_url: Url | None = None


class EngineConfig(_Strict):
    primary: Name
    replicas: Annotated[dict[Name, ReplicaConfig], Field(min_length=2)]
    dns: DnsConfig | None = None


class WebhookConfig(_Strict):
    """`url`, or `url_file` naming a file that holds it: a Slack incoming-webhook URL is itself a credential."""

    url: Url | None = None
    url_file: str | None = None
    timeout: Duration = 5.0

    @model_validator(mode="after")
    def _one_source(self) -> WebhookConfig:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give exactly one of url and url_file")
        return self


class NotificationsConfig(_Strict):
    stdout: bool = True
    webhooks: list[WebhookConfig] = []
    pre_failover: list[str] = []  # commands; a non-zero exit aborts the failover
    post_failover: list[str] = []


class DaemonConfig(_Strict):
    listen: str = "127.0.0.1:9464"  # read-only /metrics, /healthz, /status
    cycle_interval: Duration | None = None  # default: probes.interval
    lease_ttl: Duration = 10.0
    observation_retention: Duration = 86400.0


class FailoverConfig(_Strict):
    """The whole file. Unknown keys are errors, so a typo never silently keeps a default."""

    version: Literal[1]
    display_timezone: str = "UTC"
    store: str = "sqlite:///failover-state.db"
    require_multi_cloud: bool = True
    control_token_file: str | None = None
    sites: Annotated[dict[Name, SiteConfig], Field(min_length=1)]
    probes: ProbesConfig = ProbesConfig()
    policy: PolicyConfig = PolicyConfig()
    protection_window: ProtectionConfig = ProtectionConfig()
    engines: Annotated[dict[Name, EngineConfig], Field(min_length=1)]
    notifications: NotificationsConfig = NotificationsConfig()
    daemon: DaemonConfig = DaemonConfig()


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration and where it came from."""

    path: Path
    config: FailoverConfig
    topology: Topology

    @property
    def store_url(self) -> str:
        """The store URL; a relative SQLite path is taken relative to the config file, so cron's cwd is moot."""
        url = os.environ.get("FAILOVER_STORE") or self.config.store
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str((self.path.parent / url[len(prefix) :]).resolve())
        return url


@dataclass(frozen=True)
class Problem:
    path: tuple[str | int, ...]
    message: str


def resolve_config_path(path: str | Path | None) -> Path:
    """`--config`, else `$FAILOVER_CONFIG`, else `./failover.yaml` (DESIGN §8)."""
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: str | Path | None = None) -> LoadedConfig:
    """Read, validate and convert; raises one ConfigError listing every problem, one line each."""
    file = resolve_config_path(path)
    text = read_text(file, what="config")
    data, lines = parse_yaml(file, text)
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1: the file must be a mapping of settings (version, sites, engines, ...)")
    problems = list(_secret_keys(data, ()))
    config: FailoverConfig | None = None
    try:
        config = FailoverConfig.model_validate(data)
    except ValidationError as error:
        problems.extend(_pydantic_problems(error))
    if config is not None:
        problems.extend(_cross_checks(config))
    if problems:
        raise ConfigError("\n".join(locate(file, lines, problem.path, problem.message) for problem in problems))
    assert config is not None
    return LoadedConfig(file, config, to_topology(config))


def read_text(file: Path, *, what: str) -> str:
    try:
        if file.is_dir():
            raise ConfigError(f"{file}: is a directory, expected a {what} file")
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such {what} file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"{file}: cannot read: {error.strerror}") from None


def parse_yaml(file: Path, text: str) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    """The data and a map from each field path to its 1-based line; duplicate keys are errors."""
    if not text.strip():
        raise ConfigError(f"{file}:1: the file is empty")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{file}{line}: invalid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: invalid YAML: {error}") from None
    lines: dict[tuple[str | int, ...], int] = {}
    duplicates: list[str] = []
    if node is not None:
        _index(node, (), lines, duplicates)
    if duplicates:
        raise ConfigError("\n".join(f"{file}:{d}" for d in duplicates))
    return data, lines


def _index(
    node: yaml.Node, path: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int], duplicates: list[str]
) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                dotted = ".".join(map(str, (*path, key)))
                duplicates.append(f"{key_node.start_mark.line + 1}: {dotted}: duplicate key")
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _index(value_node, (*path, key), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _index(item, (*path, position), lines, duplicates)


def _is_named_map(path: tuple[str | int, ...]) -> bool:
    """Maps whose keys are names the user chose (sites, engines, replicas), not settings."""
    return path in (("sites",), ("engines",)) or (len(path) == 3 and path[0] == "engines" and path[2] == "replicas")


def _secret_keys(data: Any, path: tuple[str | int, ...]) -> Iterator[Problem]:
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and not _is_named_map(path) and SECRET_KEY.search(key):
                yield Problem(
                    (*path, key),
                    "secrets do not belong in the configuration; use the provider's standard credential chain "
                    "(AWS profile or environment, Google ADC, Azure DefaultAzureCredential) or control_token_file",
                )
            else:
                yield from _secret_keys(value, (*path, key))
    elif isinstance(data, list):
        for position, item in enumerate(data):
            yield from _secret_keys(item, (*path, position))


def _pydantic_problems(error: ValidationError) -> Iterator[Problem]:
    for item in error.errors():
        path = tuple(part for part in item["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        kind = item["type"]
        if kind == "extra_forbidden":
            if any(SECRET_KEY.search(str(part)) for part in path):
                continue  # already reported as a secret, with better advice
            message = "unknown key" + _did_you_mean(path)
        elif kind == "string_pattern_mismatch":
            url = "url" in str(path[-1])
            message = "expected an http:// or https:// URL" if url else "expected a name of letters, digits, - _ ."
            message += f" (got {item['input']!r})"
        elif kind == "too_short" and path and path[-1] == "replicas":
            message = "an engine needs at least 2 replicas to fail over between"
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            message = message[0].lower() + message[1:] if message else kind
            if "input" in item and not isinstance(item["input"], dict | list):
                message += f" (got {item['input']!r})"
        yield Problem(path, message)


def _model_at(path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class whose fields live at `path` (names in user-named maps are skipped)."""
    model: type[BaseModel] = FailoverConfig
    walked: tuple[str | int, ...] = ()
    for part in path:
        if _is_named_map(walked) or isinstance(part, int):
            walked += (part,)
            continue
        field_info = model.model_fields.get(str(part))
        if field_info is None:
            return None
        inner = _inner_model(field_info.annotation)
        if inner is None:
            return None
        model, walked = inner, (*walked, part)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or getattr(annotation, "__metadata__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    return _inner_model(origin) if origin is not None and origin is not annotation else None


def _did_you_mean(path: tuple[str | int, ...]) -> str:
    model = _model_at(path[:-1])
    if model is None:
        return ""
    fields = sorted(model.model_fields)
    close = difflib.get_close_matches(str(path[-1]), fields, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(fields)})"


def _cross_checks(config: FailoverConfig) -> Iterator[Problem]:
    try:
        parse_timezone(config.display_timezone)
    except ValueError as error:
        yield Problem(("display_timezone",), str(error))
    yield from _site_checks(config)
    yield from _engine_checks(config)
    yield from _timing_checks(config)


def _site_checks(config: FailoverConfig) -> Iterator[Problem]:
    needs = {"gcp": ("project",), "azure": ("subscription", "resource_group")}
    for name, site in config.sites.items():
        for field_name in needs.get(site.provider, ()):
            if getattr(site, field_name) is None:
                yield Problem(("sites", name, field_name), f"required for provider {site.provider}")
    for position, vantage in enumerate(config.probes.vantage_points):
        if vantage != ORCHESTRATOR_VANTAGE and vantage not in config.sites:
            yield Problem(("probes", "vantage_points", position), f"unknown site {vantage!r}")
    providers = {site.provider for site in config.sites.values()}
    if config.require_multi_cloud and len(providers) < 2:
        yield Problem(
            ("sites",), f"require_multi_cloud is true but every site is on {', '.join(sorted(providers))}"
        )
    sources = 1 + len(set(config.probes.vantage_points) | {ORCHESTRATOR_VANTAGE})
    if config.policy.quorum > sources:
        yield Problem(("policy", "quorum"), f"{config.policy.quorum} exceeds the {sources} independent sources")


def _engine_checks(config: FailoverConfig) -> Iterator[Problem]:
    owners: dict[str, str] = {}
    for engine_name, engine in config.engines.items():
        base = ("engines", engine_name)
        if engine.primary not in engine.replicas:
            yield Problem((*base, "primary"), f"{engine.primary!r} is not one of its replicas")
        used: dict[str, str] = {}
        for replica_name, replica in engine.replicas.items():
            where = (*base, "replicas", replica_name)
            if replica_name in owners or replica_name in config.sites:
                other = owners.get(replica_name, "a site")
                yield Problem(where, f"replica name {replica_name!r} is already used by {other}")
            owners[replica_name] = f"engine {engine_name}"
            if replica.site not in config.sites:
                yield Problem((*where, "site"), f"unknown site {replica.site!r}")
            elif replica.site in used:
                yield Problem((*where, "site"), f"site {replica.site!r} already holds replica {used[replica.site]!r}")
            used[replica.site] = replica_name
        clouds = {config.sites[r.site].provider for r in engine.replicas.values() if r.site in config.sites}
        if config.require_multi_cloud and len(clouds) < 2:
            yield Problem((*base, "replicas"), "require_multi_cloud is true but all replicas are on one provider")


def _timing_checks(config: FailoverConfig) -> Iterator[Problem]:
    probes, policy = config.probes, config.policy
    if probes.timeout >= probes.interval:
        yield Problem(("probes", "timeout"), "must be shorter than probes.interval")
    detection = probes.interval * policy.failure_threshold
    if detection * 10 > config.protection_window.duration + 1e-9:
        yield Problem(
            ("probes", "interval"),
            f"interval x failure_threshold = {detection:g}s must be well below (<= 1/10 of) the "
            f"protection window of {config.protection_window.duration:g}s",
        )
    if policy.flap_window < detection * policy.flap_count:
        yield Problem(("policy", "flap_window"), "too short to ever see flap_count downs at this probe interval")


def locate(file: Path, lines: Mapping[tuple[str | int, ...], int], path: tuple[str | int, ...], message: str) -> str:
    """`FILE:LINE: field.path: message`, the line of the deepest part of `path` the YAML marks know."""
    line = None
    for cut in range(len(path), -1, -1):
        line = lines.get(path[:cut])
        if line is not None:
            break
    where = f"{file}:{line}" if line is not None else str(file)
    dotted = ".".join(map(str, path)) or "(top level)"
    return f"{where}: {dotted}: {message}"


def to_topology(config: FailoverConfig) -> Topology:
    """The core's immutable view of a validated configuration."""
    sites = {
        name: Site(
            name=name,
            provider=site.provider,
            region=site.region,
            zones=tuple(site.zones),
            endpoint_url=site.endpoint_url,
            profile=site.profile,
            project=site.project,
            subscription=site.subscription,
            resource_group=site.resource_group,
        )
        for name, site in config.sites.items()
    }
    engines = {name: _engine(name, engine) for name, engine in config.engines.items()}
    policy = config.policy
    return Topology(
        sites=sites,
        engines=engines,
        policy=Policy(
            failure_threshold=policy.failure_threshold,
            quorum=policy.quorum,
            flap_count=policy.flap_count,
            flap_window=policy.flap_window,
            max_lag_on_failover=policy.max_lag_on_failover,
            min_failover_interval=policy.min_failover_interval,
            approval=Approval(policy.approval),
            prefer_other_provider=policy.prefer_other_provider,
            step_deadline=policy.step_deadline,
        ),
        probes=ProbeSettings(
            interval=config.probes.interval,
            timeout=config.probes.timeout,
            vantage_points=tuple(config.probes.vantage_points),
            provider_interval=config.probes.provider_interval,
        ),
        protection=ProtectionSettings(
            duration=config.protection_window.duration, allow=tuple(config.protection_window.allow)
        ),
        display_timezone=config.display_timezone,
    )


def _engine(name: str, engine: EngineConfig) -> Engine:
    replicas = tuple(
        Replica(r_name, name, r.site, r.instance, r.control_url, priority)
        for priority, (r_name, r) in enumerate(engine.replicas.items())
    )
    dns = engine.dns
    target = DnsTarget(dns.provider, dns.zone_id, dns.record, dns.ttl, dns.endpoint_url) if dns else None
    return Engine(name, engine.primary, replicas, target)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the file, for editors (`failover config schema`)."""
    schema = FailoverConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "failover configuration"
    return schema
