"""What can happen to the simulated world (docs/design.md §9 fault kinds), and how each fault unfolds in time.

A `Fault` is what a scenario author writes; `expand` turns it into `Atom`s, each one effect on one target over
one interval (a flapping fault is several data-plane outages; an outage is also, after `provider_delay`, an
impairment the provider API reports). The world keeps the set of active atoms and recomputes its conditions only
at atom edges, so a quiet hour costs nothing but the ticks themselves.

Which faults *stop the primary from serving* is decided here too (`stopping_windows`), because two figures depend
on it and must agree: detection time starts at the first such window on the primary's site, and a failover is
false when no such window touched the old primary's site within the preceding flap window.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    OUTAGE = "outage"
    FLAPPING = "flapping"
    DEGRADED = "degraded"
    PROBE_LOSS = "probe_loss"
    OBSERVER_PARTITION = "observer_partition"
    SILENT_OUTAGE = "silent_outage"
    API_ERRORS = "api_errors"
    LAG = "lag"
    BLACKOUTS = "blackouts"  # a replica dark for `down` every `down + up` seconds (a gray failure: core/gray.py)
    SLOW = "slow"  # a replica answering `factor` times slower than its normal, within the probe timeout


ORCHESTRATOR = "orchestrator"
DEFAULT_PROVIDER_DELAY = 300.0  # status pages lag the data plane (docs/design.md §9)
# The shortest atom worth keeping, in seconds. An epoch-seconds float of this century resolves about 0.24 us, so a
# shorter span may start and end on one float, and the world, which sorts an instant's ends before its starts, would
# then start it and never end it.
RESOLUTION = 1e-6


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault as written in a scenario; fields not used by `kind` keep their defaults.

    `site`: every kind but observer_partition (optional for lag when `replica` is given; for blackouts and slow,
    the replica's site, which the report's detection and false-failover figures match faults by). `observer`: the
    vantage point that is cut off. `replica` / `entries`: lag (no `entries`: the replica stops applying for the
    duration). `replica` / `down` / `up`: blackouts. `replica` / `factor`: slow.
    """

    kind: FaultKind
    at: float
    duration: float
    site: str | None = None
    provider_delay: float = DEFAULT_PROVIDER_DELAY
    up: float = 0.0
    down: float = 0.0
    latency: float = 0.0
    loss: float = 0.0
    observer: str = ORCHESTRATOR
    status: int = 503
    retry_after: float | None = None
    replica: str | None = None
    entries: int | None = None
    factor: float = 1.0

    @property
    def end(self) -> float:
        return self.at + self.duration


class Effect(StrEnum):
    DATA_PLANE_OUT = "data_plane_out"  # probes fail, replicas unreachable, transitions hang
    PROVIDER_REPORTS_OUT = "provider_reports_out"  # the API reports the zone down and the instances impaired
    LATENCY = "latency"
    PROBE_LOSS = "probe_loss"
    PARTITION = "partition"  # target: a vantage point
    API_ERRORS = "api_errors"
    LAG = "lag"  # target: a site or a replica name; value: entries behind, or -1 for "stops applying"
    REPLICA_OUT = "replica_out"  # target: a replica: it answers nothing (probes, control calls, clients)
    SLOW = "slow"  # target: a replica; value: how many times its normal answer time an answer takes


@dataclass(frozen=True, slots=True)
class Atom:
    start: float  # seconds from the scenario's start
    end: float
    effect: Effect
    target: str
    value: float = 0.0
    fault: int = 0  # index of the fault in the scenario, for the timeline


STOPPED = -1.0  # Atom.value of a lag that stops applying altogether


def _outage(start: float, end: float, site: str, delay: float, index: int, *, silent: bool) -> list[Atom]:
    atoms = [Atom(start, end, Effect.DATA_PLANE_OUT, site, fault=index)]
    if not silent and start + delay < end:
        atoms.append(Atom(start + delay, end, Effect.PROVIDER_REPORTS_OUT, site, fault=index))
    return atoms


def down_windows(fault: Fault) -> list[tuple[float, float]]:
    """The intervals during which a flapping fault's site (a blackouts fault's replica) is out: `down` first, then
    `up`, alternating.

    Each window's offset is counted from the fault's start as `k` periods and compared with the fault's duration,
    never accumulated on the absolute time: 120 periods of 60 s added one by one to a start of 1,200.519... s fall
    one ulp short of the end, and the fault grew a 121st blackout one ulp long, which the world's epoch-seconds
    clock could not tell from an instant and kept dark for the rest of the run (docs/false-failovers.md). A
    window shorter than RESOLUTION is dropped for the same reason."""
    period = fault.down + fault.up
    if period <= 0:  # `down: 0s, up: 0s`: never out (and a loop that would never end)
        return []
    windows = []
    index, offset = 0, 0.0
    while offset < fault.duration:
        window = (fault.at + offset, fault.at + min(offset + fault.down, fault.duration))
        if window[1] - window[0] >= RESOLUTION:
            windows.append(window)
        index += 1
        offset = index * period
    return windows


def expand(fault: Fault, index: int = 0) -> list[Atom]:
    """The atoms of one fault; times are relative to the scenario's start. None shorter than RESOLUTION: a fault of
    `duration: 0s` is no fault (kept, its atom would start and never end)."""
    return [atom for atom in _atoms(fault, index) if atom.end - atom.start >= RESOLUTION]


def _atoms(fault: Fault, index: int) -> list[Atom]:
    target = fault.site or ""
    match fault.kind:
        case FaultKind.OUTAGE:
            return _outage(fault.at, fault.end, target, fault.provider_delay, index, silent=False)
        case FaultKind.SILENT_OUTAGE:
            return _outage(fault.at, fault.end, target, 0.0, index, silent=True)
        case FaultKind.FLAPPING:
            return [atom for start, end in down_windows(fault)
                    for atom in _outage(start, end, target, fault.provider_delay, index, silent=False)]
        case FaultKind.DEGRADED:
            return [Atom(fault.at, fault.end, Effect.LATENCY, target, fault.latency, index)]
        case FaultKind.PROBE_LOSS:
            return [Atom(fault.at, fault.end, Effect.PROBE_LOSS, target, fault.loss, index)]
        case FaultKind.OBSERVER_PARTITION:
            return [Atom(fault.at, fault.end, Effect.PARTITION, fault.observer, 0.0, index)]
        case FaultKind.API_ERRORS:
            return [Atom(fault.at, fault.end, Effect.API_ERRORS, target, float(fault.status), index)]
        case FaultKind.LAG:
            value = STOPPED if fault.entries is None else float(fault.entries)
            return [Atom(fault.at, fault.end, Effect.LAG, fault.replica or target, value, index)]
        case FaultKind.BLACKOUTS:
            return [Atom(start, end, Effect.REPLICA_OUT, fault.replica or "", fault=index)
                    for start, end in down_windows(fault)]
        case FaultKind.SLOW:
            return [Atom(fault.at, fault.end, Effect.SLOW, fault.replica or "", fault.factor, index)]
    raise AssertionError(fault.kind)


def stopping_windows(fault: Fault, probe_timeout: float) -> list[tuple[float, float]]:
    """When this fault stops a replica on its site from serving (docs/design.md §9: outage, flapping's downs, silent
    outage, degradation beyond the probe timeout); empty for faults that leave the data plane serving."""
    if fault.kind in (FaultKind.OUTAGE, FaultKind.SILENT_OUTAGE):
        return [(fault.at, fault.end)]
    if fault.kind in (FaultKind.FLAPPING, FaultKind.BLACKOUTS):
        return down_windows(fault)
    if fault.kind is FaultKind.DEGRADED and fault.latency > probe_timeout:
        return [(fault.at, fault.end)]
    return []


def describe(fault: Fault) -> str:
    """One line for the timeline."""
    where = (fault.replica if fault.kind in (FaultKind.BLACKOUTS, FaultKind.SLOW) else None) or fault.site \
        or fault.replica or fault.observer
    extra = {
        FaultKind.OUTAGE: f"provider notices after {fault.provider_delay:g}s",
        FaultKind.FLAPPING: f"down {fault.down:g}s / up {fault.up:g}s",
        FaultKind.DEGRADED: f"latency {fault.latency * 1000:g}ms",
        FaultKind.PROBE_LOSS: f"{fault.loss:.0%} of probes lost",
        FaultKind.OBSERVER_PARTITION: "reaches no site",
        FaultKind.SILENT_OUTAGE: "provider API keeps saying ok",
        FaultKind.API_ERRORS: f"provider API answers {fault.status}",
        FaultKind.LAG: "stops applying" if fault.entries is None else f"{fault.entries} entries behind",
        FaultKind.BLACKOUTS: f"dark {fault.down:g}s every {fault.down + fault.up:g}s",
        FaultKind.SLOW: f"answers {fault.factor:g}x slower",
    }[fault.kind]
    return f"{fault.kind.value} on {where} for {fault.duration:g}s ({extra})"
