"""The immutable data the core reasons about: topology, observations, verdicts, replica status.

Times are floats: seconds since the Unix epoch, UTC. The caller owns the clock and passes `now` in, so the same
code runs on the wall clock in the daemon and on a virtual clock in the simulator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from orchestrator.core.gray import GrayObjective


class Status(StrEnum):
    """What one source saw of one subject at one moment."""

    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"


class Verdict(StrEnum):
    """What the orchestrator concludes about a subject from many observations."""

    HEALTHY = "healthy"
    SUSPECT = "suspect"
    DOWN = "down"
    FLAPPING = "flapping"
    UNKNOWN = "unknown"
    CANNOT_COMMIT = "cannot_commit"  # a primary that answers but whose writes no standby on another cloud takes
    DEGRADED = "degraded"  # answers, but misses its gray objective over the sliding window (core/gray.py)


class Phase(StrEnum):
    """Trading phase of one engine (docs/design.md §5)."""

    OPEN = "open"
    HALTED = "halted"
    PROTECTION = "protection"


class Role(StrEnum):
    PRIMARY = "primary"
    STANDBY = "standby"
    FENCED = "fenced"


class Approval(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"


class Cause(StrEnum):
    """Why an observation says what it says, where that changes what the controller does (typed, so that no one
    decides on the wording of a detail)."""

    API_FAILED = "api_failed"  # the source's own API did not answer: nothing is known of the subject


@dataclass(frozen=True, slots=True)
class Observation:
    """`(at, subject, source, status, detail)`: subject is a site or replica name, source a vantage point
    such as `provider:aws` or `probe:gcp-hk`. `cause` is for the process that made it; the store keeps the
    detail, not the cause."""

    at: float
    subject: str
    source: str
    status: Status
    detail: str = ""
    cause: Cause | None = None


class Options(dict[str, Any]):
    """An adapter's own settings on a `Site` or `DnsTarget` (AWS `profile`, GCP `project`, ...), immutable and
    hashable. Opaque to the core, which never reads a key (tooz's way: the shared code never sees a backend's
    fields); the adapter's options model validated them. A dict, so that `asdict` and JSON output still work;
    nested lists become tuples and nested mappings `Options`."""

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /) -> None:
        super().__init__((str(key), _frozen(value)) for key, value in dict(items).items())

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[type[Options], tuple[dict[str, Any]]]:
        return Options, (dict(self),)  # copy and pickle through the constructor, never through __setitem__

    def _immutable(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("adapter options are immutable")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _immutable


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return value if isinstance(value, Options) else Options(value)
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, set | frozenset):
        return frozenset(_frozen(item) for item in value)
    return value


@dataclass(frozen=True, slots=True)
class Site:
    """One failure domain: a region (and zones) of one provider. Never holds a secret. `options` belong to the
    provider's adapter (validated by the options model it registered); the core passes them through unread."""

    name: str
    provider: str
    region: str
    zones: tuple[str, ...] = ()
    endpoint_url: str | None = None
    options: Mapping[str, Any] = field(default_factory=Options)

    def __post_init__(self) -> None:
        if not isinstance(self.options, Options):
            object.__setattr__(self, "options", Options(self.options))


@dataclass(frozen=True, slots=True)
class Replica:
    name: str
    engine: str
    site: str
    instance: str
    control_url: str
    priority: int = 0  # lower is preferred; the order in the configuration


@dataclass(frozen=True, slots=True)
class DnsTarget:
    """The record that sends an engine's clients to its primary, moved by the router that `provider` names; `options`
    belong to that router, as a site's belong to its cloud adapter."""

    provider: str
    zone_id: str
    record: str
    ttl: int = 30
    endpoint_url: str | None = None
    options: Mapping[str, Any] = field(default_factory=Options)

    def __post_init__(self) -> None:
        if not isinstance(self.options, Options):
            object.__setattr__(self, "options", Options(self.options))


@dataclass(frozen=True, slots=True)
class Engine:
    name: str
    primary: str
    replicas: tuple[Replica, ...]
    dns: DnsTarget | None = None

    def replica(self, name: str) -> Replica:
        for replica in self.replicas:
            if replica.name == name:
                return replica
        raise KeyError(f"engine {self.name!r} has no replica {name!r}")


@dataclass(frozen=True, slots=True)
class AutoRejoin:
    """`policy.auto_rejoin`: whether the leader rebuilds a fenced, deposed or diverged replica by itself, after how
    long a replica has needed it, how soon a failed attempt is retried, and how many run at once
    (drivers/auto_rejoin.py)."""

    enabled: bool = False
    after: float = 300.0
    retry: float = 120.0
    max_concurrent: int = 1


@dataclass(frozen=True, slots=True)
class Policy:
    failure_threshold: int = 3
    quorum: int = 2
    flap_count: int = 3
    flap_window: float = 1800.0
    max_lag_on_failover: int = 0
    min_failover_interval: float = 3600.0
    approval: Approval = Approval.AUTO
    prefer_other_provider: bool = True
    step_deadline: float = 60.0
    suspect_timeout: float = 30.0  # a suspect primary undecided for longer than this pages a human (issue 11 hole 5)
    quorum_may_count_cloud_apis: bool = False  # config validate refuses a quorum only a cloud API can complete
    isolation_fraction: float = 0.5  # a vantage point that sees more than this share of subjects fail is suspect
    gray: GrayObjective | None = None  # policy.gray: availability and latency over a sliding window (core/gray.py)
    quarantine: float = 7200.0  # a site that went down hosts nothing until healthy this long (core/quarantine.py)
    auto_rejoin: AutoRejoin = AutoRejoin()  # policy.auto_rejoin (off unless enabled)


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    interval: float = 1.0
    timeout: float = 0.5
    vantage_points: tuple[str, ...] = ()
    provider_interval: float = 30.0


@dataclass(frozen=True, slots=True)
class ProtectionSettings:
    duration: float = 1200.0
    allow: tuple[str, ...] = ("cancel", "post_only", "add_margin")


@dataclass(frozen=True, slots=True)
class Topology:
    """Everything the core needs to know of the configuration, already validated."""

    sites: Mapping[str, Site]
    engines: Mapping[str, Engine]
    policy: Policy = field(default_factory=Policy)
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    protection: ProtectionSettings = field(default_factory=ProtectionSettings)
    display_timezone: str = "UTC"

    def site_of(self, replica: Replica) -> Site:
        return self.sites[replica.site]


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """`GET /v1/status` of the engine control protocol (docs/design.md §7), times as epoch seconds."""

    replica: str
    role: Role
    epoch: int
    phase: Phase
    phase_until: float | None
    last_seq: int
    applied_seq: int
    # Replication health, as far as the replica reports it (None: it does not say). A synchronous primary whose
    # entries stay unacknowledged cannot commit anything, even though it answers every probe.
    synchronous: bool | None = None
    replicated_seq: int | None = None  # on a primary: the highest seq a standby on another cloud holds
    unreplicated_age: float | None = None  # on a primary: seconds its oldest unacknowledged entry has waited
    replication_timeouts: int = 0  # on a primary: writes answered 503 replication_timeout since it started
    following: str | None = None  # on a standby: where it copies from
    error: str | None = None  # replication stopped (a diverged journal)
    primary_contact_age: float | None = None  # on a standby: seconds since it last heard from its primary

    def acknowledged_seq(self) -> int:
        """Of a replica that is or was the primary, the highest seq it acknowledged to clients. In synchronous mode
        that is what a standby on another cloud holds (its `replicated_seq`, 0 once it no longer reports one, since
        the standbys' own positions then tell); anything above was never acknowledged. Otherwise all it holds."""
        if self.synchronous:
            return min(self.last_seq, self.replicated_seq or 0)
        return self.last_seq
