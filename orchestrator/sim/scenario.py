"""Scenario files (docs/design.md §9) → a validated, typed `Scenario`, every problem reported as
`FILE:LINE: field: message`.

Why the same machinery as the configuration: an SRE writing a drill scenario makes the same typos as in a config,
and `failover simulate` must fail the same way (`ConfigError`, exit 2, one line per problem) before any virtual
second has run. The YAML is read with `orchestrator.config.parse_yaml` (duplicate keys refused, lines indexed),
shapes and types are checked by pydantic, references (sites, replicas, vantage points) against the topology the
scenario names, which is itself loaded with `load_config` — so a scenario can only point at a config that
`failover config validate` accepts.

Besides docs/design.md §9's keys a scenario may carry a `world:` section: how the simulated exchange behaves (order
rate, synchronous or asynchronous replication, probe attempts, cloud API timings), and a `latencies:` section: how
long each engine and cloud call takes (`orchestrator.sim.latency`, docs/simulated-latency.md). Every field has a
default.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.config import Duration, load_config, locate, parse_yaml, read_text
from orchestrator.core.durations import parse_duration
from orchestrator.core.model import Topology
from orchestrator.errors import ConfigError
from orchestrator.sim.faults import DEFAULT_PROVIDER_DELAY, ORCHESTRATOR, Fault, FaultKind
from orchestrator.sim.latency import ENGINE, Latency, LatencyTable

Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0)]

DURATION_EXPECTATIONS = ("max_detection", "max_halt", "max_time_to_new_primary")
COUNT_EXPECTATIONS = ("failovers", "max_failovers", "false_failovers", "orders_lost", "trades_during_protection",
                      "trades_while_halted", "max_primaries", "rejoins", "rejoins_on_quarantined_site")
REDUNDANCY_EXPECTATIONS = ("max_degraded_redundancy", "max_restore_after_quarantine")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _FaultModel(_Strict):
    at: Duration
    duration: Duration


class _SiteFault(_FaultModel):
    site: Name


class OutageModel(_SiteFault):
    kind: Literal["outage"]
    provider_delay: Duration = DEFAULT_PROVIDER_DELAY


class FlappingModel(_SiteFault):
    kind: Literal["flapping"]
    up: Duration
    down: Duration
    provider_delay: Duration = DEFAULT_PROVIDER_DELAY

    @model_validator(mode="after")
    def _goes_down(self) -> FlappingModel:
        """A flapping fault that is never down is a mistake, not a quiet fault (it once kept the site dark forever)."""
        if self.down <= 0:
            raise ValueError(f"down must be more than 0s (got {self.down:g}s)")
        return self


class DegradedModel(_SiteFault):
    kind: Literal["degraded"]
    latency: Duration


class ProbeLossModel(_SiteFault):
    kind: Literal["probe_loss"]
    loss: Fraction


class ObserverPartitionModel(_FaultModel):
    kind: Literal["observer_partition"]
    observer: Name = ORCHESTRATOR


class SilentOutageModel(_SiteFault):
    kind: Literal["silent_outage"]


class ApiErrorsModel(_SiteFault):
    kind: Literal["api_errors"]
    status: Literal[401, 403, 429, 500, 502, 503, 504] = 503
    retry_after: Duration | None = None


class LagModel(_FaultModel):
    kind: Literal["lag"]
    site: Name | None = None
    replica: Name | None = None
    entries: Annotated[int, Field(ge=1)] | None = None


FaultModel = Annotated[
    OutageModel | FlappingModel | DegradedModel | ProbeLossModel | ObserverPartitionModel | SilentOutageModel
    | ApiErrorsModel | LagModel,
    Field(discriminator="kind"),
]


class ExpectModel(_Strict):
    max_detection: Duration | None = None
    max_halt: Duration | None = None
    max_time_to_new_primary: Duration | None = None
    failovers: Count | None = None
    max_failovers: Count | None = None
    false_failovers: Count | None = None
    orders_lost: Count | None = None
    trades_during_protection: Count | None = None
    trades_while_halted: Count | None = None
    max_primaries: Count | None = None
    final_phase: Literal["open", "halted", "protection"] | None = None
    needs_human: bool | None = None
    final_primary_provider_not: Name | None = None
    rejoins: Count | None = None  # rejoins done (docs/simulated-rejoin.md)
    rejoins_on_quarantined_site: Count | None = None
    redundancy_restored: bool | None = None  # every engine ends with as many acknowledging standbys as configured
    max_degraded_redundancy: Duration | None = None  # time with fewer acknowledging standbys than configured
    max_restore_after_quarantine: Duration | None = None  # last quarantine's end -> full redundancy again


class WorldModel(_Strict):
    order_rate: Annotated[float, Field(ge=0.0, le=1000.0)] = 2.0
    replication: Literal["synchronous", "asynchronous"] = "synchronous"
    replication_lag: Duration = 0.5
    sync_timeout: Duration = 2.0
    probe_attempts: Annotated[int, Field(ge=1, le=10)] = 2
    control_timeout: Duration | None = None
    provider_call_deadline: Duration = 20.0
    provider_request_timeout: Duration = 10.0
    provider_interval: Duration = 30.0
    instance_start_time: Duration = 30.0
    instance_stop_time: Duration = 5.0
    rejoin_rate: Annotated[float, Field(gt=0.0)] = 4000.0
    rejoin_setup: Duration = 5.0


class ScheduledRejoinModel(_Strict):
    replica: Name
    at: Duration


class RejoinModel(_Strict):
    """When the simulation rejoins a fenced or diverged replica (docs/simulated-rejoin.md): `auto` once it has
    waited `after`, again every `retry` while refused; and each `schedule` entry once, at its time."""

    auto: bool = False
    after: Duration = 1800.0
    retry: Duration = 600.0
    schedule: list[ScheduledRejoinModel] = []


class LatencyModel(_Strict):
    """`{median: 20s, p95: 60s}`, or one duration (`20ms`): always that long."""

    median: Duration
    p95: Duration

    @model_validator(mode="before")
    @classmethod
    def _fixed(cls, value: Any) -> Any:
        if isinstance(value, str):
            parse_duration(value)  # a bad one is named once, as this field
            return {"median": value, "p95": value}
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError("expected a duration string with a unit, e.g. 500ms, 1s, 20m, 1h, or {median, p95}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> LatencyModel:
        if self.median < 0:
            raise ValueError(f"median must be 0s or more (got {self.median:g}s)")
        if self.p95 < self.median:
            raise ValueError(f"p95 ({self.p95:g}s) must be at least the median ({self.median:g}s)")
        return self


class EngineLatencies(_Strict):
    status: LatencyModel | None = None
    set_phase: LatencyModel | None = None
    promote: LatencyModel | None = None
    fence: LatencyModel | None = None
    no_answer: LatencyModel | None = None


class CloudLatencies(_Strict):
    api: LatencyModel | None = None
    stop: LatencyModel | None = None
    start: LatencyModel | None = None
    dns_api: LatencyModel | None = None
    dns_propagation: LatencyModel | None = None


class LatenciesModel(BaseModel):
    """`engine:` and one section per cloud provider of the topology (`aws:`, `gcp:`, `azure:`...)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, CloudLatencies]
    instant: bool = False
    engine: EngineLatencies = EngineLatencies()


class ScenarioModel(_Strict):
    name: Name
    description: str = ""
    topology: Annotated[str, Field(min_length=1)]
    start: datetime
    duration: Duration
    faults: list[FaultModel] = []
    expect: ExpectModel = ExpectModel()
    world: WorldModel = WorldModel()
    latencies: LatenciesModel = LatenciesModel()
    rejoin: RejoinModel = RejoinModel()


@dataclass(frozen=True)
class WorldSettings:
    """How the simulated exchange and clouds behave. The defaults are production's: the engine client makes 2
    attempts per call and times out after the probe timeout (`drivers/wiring.py`), provider calls get 20 s with
    their retries, and the controller polls providers every 30 s."""

    order_rate: float = 2.0
    synchronous: bool = True
    replication_lag: float = 0.5
    sync_timeout: float = 2.0  # a standby slower than this cannot acknowledge (the reference replica's default)
    probe_attempts: int = 2
    control_timeout: float | None = None  # None: the probe timeout, as the production engine client
    provider_call_deadline: float = 20.0
    provider_request_timeout: float = 10.0
    provider_interval: float = 30.0
    instance_start_time: float = 30.0
    instance_stop_time: float = 5.0
    rejoin_rate: float = 4000.0  # entries a second a rejoin copies (docs/rejoin.md measured 3,500-4,900 on loopback)
    rejoin_setup: float = 5.0  # seconds before the copy starts (the snapshot, the search, the ledger replay)


@dataclass(frozen=True)
class RejoinPolicy:
    auto: bool = False
    after: float = 1800.0
    retry: float = 600.0
    schedule: tuple[tuple[float, str], ...] = ()  # (seconds from the start, replica)

    @property
    def active(self) -> bool:
        return self.auto or bool(self.schedule)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Fault times are seconds from `start` (epoch seconds, UTC)."""

    name: str
    topology: Topology
    start: float
    duration: float
    faults: tuple[Fault, ...] = ()
    expect: Mapping[str, Any] = field(default_factory=dict)
    world: WorldSettings = field(default_factory=WorldSettings)
    latencies: LatencyTable = field(default_factory=LatencyTable)
    path: Path | None = None
    description: str = ""
    rejoin: RejoinPolicy = field(default_factory=RejoinPolicy)

    @property
    def end(self) -> float:
        return self.start + self.duration


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; one ConfigError listing every problem, one `FILE:LINE: ...` line each."""
    file = Path(path)
    data, lines = parse_yaml(file, read_text(file, what="scenario"))
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1: a scenario must be a mapping (name, topology, start, duration, faults, expect)")
    try:
        model = ScenarioModel.model_validate(data)
    except ValidationError as error:
        raise ConfigError("\n".join(locate(file, lines, path, message) for path, message in _problems(error))) \
            from None
    topology_file = (file.parent / model.topology)
    if not topology_file.is_file():
        raise ConfigError(locate(file, lines, ("topology",), f"no such config file {topology_file}"))
    topology = load_config(topology_file).topology
    problems = list(_reference_problems(model, topology))
    if model.start.tzinfo is None:
        problems.append((("start",), "needs a UTC offset, e.g. 2022-12-18T11:00:00+08:00"))
    if problems:
        raise ConfigError("\n".join(locate(file, lines, path, message) for path, message in problems))
    return Scenario(
        name=model.name, topology=topology, start=model.start.timestamp(), duration=model.duration,
        faults=tuple(_fault(item) for item in model.faults), expect=_expectations(model.expect),
        world=_world(model.world), latencies=_latencies(model.latencies), path=file, description=model.description,
        rejoin=RejoinPolicy(model.rejoin.auto, model.rejoin.after, model.rejoin.retry,
                            tuple(sorted((item.at, item.replica) for item in model.rejoin.schedule))),
    )


def _fault(model: Any) -> Fault:
    values = {key: value for key, value in model.model_dump().items() if value is not None}
    values["kind"] = FaultKind(values["kind"])
    return Fault(**values)


def _expectations(model: ExpectModel) -> dict[str, Any]:
    return {key: value for key, value in model.model_dump().items() if value is not None}


def _world(model: WorldModel) -> WorldSettings:
    values = model.model_dump()
    values["synchronous"] = values.pop("replication") == "synchronous"
    return WorldSettings(**values)


def _latencies(model: LatenciesModel) -> LatencyTable:
    sections: dict[str, dict[str, Latency]] = {}
    for name, calls in [(ENGINE, model.engine), *(model.model_extra or {}).items()]:
        sections[name] = {call: Latency(value.median, value.p95) for call, value in calls if value is not None}
    return LatencyTable().override(sections, instant=model.instant)


Path_ = tuple[str | int, ...]


def _problems(error: ValidationError) -> Iterator[tuple[Path_, str]]:
    kinds = {kind.value for kind in FaultKind}
    for item in error.errors():
        loc = list(item["loc"])
        # a discriminated union puts the chosen tag into the location: faults.0.outage.site -> faults.0.site
        if len(loc) > 2 and loc[0] == "faults" and loc[2] in kinds:
            del loc[2]
        kind = item["type"]
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            loc.append("kind")
            message = f"must be one of {', '.join(sorted(kinds))}"
        elif kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            message = message[:1].lower() + message[1:]
            if "input" in item and not isinstance(item["input"], dict | list):
                message += f" (got {item['input']!r})"
        yield tuple(loc), message


def _reference_problems(model: ScenarioModel, topology: Topology) -> Iterator[tuple[Path_, str]]:
    replicas = {r.name: r for e in topology.engines.values() for r in e.replicas}
    observers = {*topology.probes.vantage_points, ORCHESTRATOR}
    for index, fault in enumerate(model.faults):
        where: Path_ = ("faults", index)
        if fault.duration <= 0:
            yield (*where, "duration"), "must be longer than 0s"
        if fault.at > model.duration:
            yield (*where, "at"), f"starts after the scenario ends ({model.duration:g}s)"
        site = getattr(fault, "site", None)
        if site is not None and site not in topology.sites:
            yield (*where, "site"), f"unknown site {site!r}; known: {', '.join(sorted(topology.sites))}"
        if isinstance(fault, ObserverPartitionModel) and fault.observer not in observers:
            yield (*where, "observer"), f"{fault.observer!r} is not a vantage point ({', '.join(sorted(observers))})"
        if isinstance(fault, FlappingModel) and (fault.up <= 0 or fault.down <= 0):
            yield (*where, "up" if fault.up <= 0 else "down"), "must be longer than 0s"
        if isinstance(fault, LagModel):
            yield from _lag_problems(fault, where, replicas)
    for index, item in enumerate(model.rejoin.schedule):
        if item.replica not in replicas:
            yield ("rejoin", "schedule", index, "replica"), \
                f"unknown replica {item.replica!r}; known: {', '.join(sorted(replicas))}"
        if item.at > model.duration:
            yield ("rejoin", "schedule", index, "at"), f"after the scenario ends ({model.duration:g}s)"
    if model.rejoin.retry <= 0:
        yield ("rejoin", "retry"), "must be longer than 0s"
    clouds = {site.provider for site in topology.sites.values()}
    clouds |= {engine.dns.provider for engine in topology.engines.values() if engine.dns is not None}
    for name in model.latencies.model_extra or {}:
        if name not in clouds:
            yield ("latencies", name), f"no site of the topology is on {name!r}; known: engine, " \
                                       f"{', '.join(sorted(clouds))}"


def _lag_problems(fault: LagModel, where: Path_, replicas: Mapping[str, Any]) -> Iterator[tuple[Path_, str]]:
    if fault.replica is None and fault.site is None:
        yield (*where, "replica"), "a lag needs the replica (or the site whose replicas lag)"
    elif fault.replica is not None and fault.replica not in replicas:
        yield (*where, "replica"), f"unknown replica {fault.replica!r}; known: {', '.join(sorted(replicas))}"
    elif fault.replica is not None and fault.site is not None and replicas[fault.replica].site != fault.site:
        yield (*where, "site"), f"replica {fault.replica} is not at site {fault.site}"
