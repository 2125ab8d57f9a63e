"""The configuration file's shape as pydantic models: types, ranges and defaults of every setting.

Unknown keys are errors, so that a typo never silently keeps a default. What spans several fields (a quorum the
sources can reach, a lease long enough for the cycle) is checked in `checks.py`, after these models accept the file.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from orchestrator.config.addresses import parse_listen, store_url_problem
from orchestrator.core.durations import parse_duration


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("expected a duration string with a unit, e.g. 500ms, 1s, 20m, 1h")


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$", "examples": ["500ms", "20m"]}),
]


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be longer than 0s")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


def _store_url(value: str) -> str:
    problem = store_url_problem(value)
    if problem:
        raise ValueError(problem)
    return value


StoreUrl = Annotated[
    str,
    AfterValidator(_store_url),
    WithJsonSchema({"type": "string", "pattern": r"^(sqlite:///[^?#]+|etcd://[^?#@]+)$",
                    "examples": ["sqlite:///failover-state.db", "etcd://10.0.0.1:2379,10.1.0.1:2379/failover"]}),
]


def _listen(value: str) -> str:
    parse_listen(value)
    return value


ListenAddress = Annotated[
    str, AfterValidator(_listen), WithJsonSchema({"type": "string", "examples": ["127.0.0.1:9464", "[::1]:9464"]})
]
Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Url = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]
# A registered adapter's name (providers/catalog.py): which names exist is the catalog's business, not the models'.
ProviderName = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SiteConfig(_Strict):
    """One failure domain. Credentials: AWS profile/env, Google ADC, Azure DefaultAzureCredential. Every key but
    these four belongs to the provider's adapter (`project` for gcp, ...): `adapters.py` validates them with the
    options model the adapter registered, so this model lets them through, into `model_extra`."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=False)

    provider: ProviderName
    region: Annotated[str, Field(min_length=1)]
    zones: list[Annotated[str, Field(min_length=1)]] = []
    endpoint_url: Url | None = None


class ProbesConfig(_Strict):
    interval: PositiveDuration = 1.0
    timeout: PositiveDuration = 0.5
    vantage_points: list[str] = []
    provider_interval: PositiveDuration = 30.0  # how often each cloud's API is asked (control-plane health)


def _fraction(value: Any) -> Any:
    """`99.5%`, or the same as a fraction (0.995): a share written either way, never 99.5 meaning a percentage."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError("expected a percentage such as 99.5%") from None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1:
        return float(value)
    raise ValueError("expected a percentage such as 99.5% (or a fraction such as 0.995)")


def _below_whole(value: float) -> float:
    if not 0 < value < 1:
        raise ValueError("must be above 0% and below 100% (100% leaves no budget: every lost probe would page)")
    return value


Share = Annotated[
    float, BeforeValidator(_fraction), AfterValidator(_below_whole),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?%$", "examples": ["99.5%", "99.9%"]}),
]


def _gray_window(value: float) -> float:
    if not 60.0 <= value <= 86400.0:
        raise ValueError("must be between 1m and 24h (the window is kept in 20 buckets)")
    return value


class GrayConfig(_Strict):
    """`policy.gray` (docs/gray-failures.md): each replica's availability and p99 latency, against its own baseline,
    over a sliding window; a sustained breach is the verdict `degraded`, and `action` says what a degraded primary
    leads to: `page` (a human is told, trading stays open) or `switchover` (to a healthy, caught-up standby)."""

    availability: Share = 0.995
    window: Annotated[Duration, AfterValidator(_gray_window)] = 600.0
    latency_p99_factor: Annotated[float, Field(gt=1.0, le=1000.0)] = 4.0
    action: Literal["page", "switchover"] = "page"


class AutoRejoinConfig(_Strict):
    """`policy.auto_rejoin` (docs/auto-rejoin.md): the leader rebuilds a fenced, deposed or diverged replica as a
    standby once it has needed it for `after` (and its site is out of quarantine and no incident of its engine is
    open), again every `retry` after a refusal or a failed rejoin, at most `max_concurrent` rejoins running at once.
    Off by default: a rebuild copies the primary's journal and takes its archive of the diverged tail on the
    replica's disk, and an operator may prefer to look first."""

    enabled: bool = False
    after: Duration = 300.0
    retry: PositiveDuration = 120.0
    max_concurrent: Annotated[int, Field(ge=1, le=100)] = 1


class PolicyConfig(_Strict):
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    quorum: Annotated[int, Field(ge=1, le=10)] = 2
    flap_count: Annotated[int, Field(ge=2, le=100)] = 3
    flap_window: Duration = 1800.0
    max_lag_on_failover: Annotated[int, Field(ge=0)] = 0
    min_failover_interval: Duration = 3600.0
    approval: Literal["auto", "manual"] = "auto"
    prefer_other_provider: bool = True
    step_deadline: PositiveDuration = 60.0
    suspect_timeout: PositiveDuration = 30.0  # a suspect primary undecided for longer pages a human
    quorum_may_count_cloud_apis: bool = False  # only with the reason in a comment on the same line
    gray: GrayConfig | None = None  # no section: no gray tracking
    # a site that went down is neither a failover target nor a rejoin host until healthy this long (relapse: again)
    quarantine: Duration = 7200.0
    auto_rejoin: AutoRejoinConfig = AutoRejoinConfig()  # rebuild fenced or diverged replicas without a human


class ProtectionConfig(_Strict):
    duration: Duration = 1200.0
    allow: list[Literal["cancel", "post_only", "add_margin"]] = ["cancel", "post_only", "add_margin"]


class ReplicaConfig(_Strict):
    site: Name
    instance: Annotated[str, Field(min_length=1)]
    control_url: Url


class DnsConfig(_Strict):
    """The record moved to the new primary. Keys beyond these belong to the router `provider` names, as a site's
    belong to its cloud adapter."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=False)

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
    """`url`, or `url_file` naming a file that holds it: a Slack incoming-webhook URL is itself a credential.
    `timeout` bounds one delivery attempt from connect to the last byte of the answer (a total deadline, not a
    per-read one: an endpoint that drips a byte at a time must not hold the sender); `max_attempts` counts the
    attempts, with backoff between them, before the notification is given up as undelivered."""

    url: Url | None = None
    url_file: str | None = None
    timeout: PositiveDuration = 5.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 10

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
    listen: ListenAddress = "127.0.0.1:9464"  # read-only /metrics, /healthz, /status
    listen_public: bool = False  # listen on a non-loopback address: an explicit choice, never a default
    cycle_interval: PositiveDuration | None = None  # default: probes.interval
    lease_ttl: PositiveDuration = 10.0  # at least 3 cycles and 2s: a leader renews several times per TTL
    max_clock_offset: PositiveDuration = 5.0  # a daemon whose clock is further off the others' refuses to lead
    observation_retention: PositiveDuration = 86400.0


class AuditConfig(_Strict):
    """Where the audit chain's head is copied outside the database, so that a rewritten chain can be told apart."""

    head_file: Annotated[str, Field(min_length=1)] | None = None  # a relative path is relative to this file


class FailoverConfig(_Strict):
    """The whole file. Unknown keys are errors, so a typo never silently keeps a default."""

    version: Literal[1]
    display_timezone: str = "UTC"
    store: StoreUrl = "sqlite:///failover-state.db"
    require_multi_cloud: bool = True
    control_token_file: str | None = None
    sites: Annotated[dict[Name, SiteConfig], Field(min_length=1)]
    probes: ProbesConfig = ProbesConfig()
    policy: PolicyConfig = PolicyConfig()
    protection_window: ProtectionConfig = ProtectionConfig()
    engines: Annotated[dict[Name, EngineConfig], Field(min_length=1)]
    notifications: NotificationsConfig = NotificationsConfig()
    daemon: DaemonConfig = DaemonConfig()
    audit: AuditConfig = AuditConfig()
