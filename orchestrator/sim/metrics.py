"""The figures of a run (docs/design.md §9), measured from the world, the orchestrator's events and its store.

Why each figure comes from where it does:
- `max_primaries`, orders and trades come from the world: they are what clients experienced, whatever the
  orchestrator believed. `max_primaries` counts the replicas that acknowledged writes within the same tick
  (clients follow DNS through caches that expire at random over the TTL); `max_writable_primaries` counts those
  that could have, reached by a client or not. Trades are counted against the phase the orchestrator had
  *announced* at that moment.
- detection and time to a new primary start at the first fault that stops the primary from serving
  (`faults.stopping_windows`) and end at the orchestrator's first `down`/`flapping` verdict on the primary or its
  site, and at the world's first promotion after it.
- failovers are the failover incidents the orchestrator started (the store); one is *false* when no stopping fault
  was active on the old primary's site within the flap window before it started.
- halt and protection are the time spent in each announced phase, in total.
- the failover's own clock (what production would see, now that every call takes time: latency.py): from the same
  origin, when trading was announced halted (`time_to_halted_s`) and when traffic reached the new primary
  (`time_to_traffic_switched_s`: the engine's DNS change in sync at every name server, as clients resolve it; the
  promotion itself for an engine without DNS); the same three moments counted from the detection
  (`after_detection`); and how long each runbook step took, started to done (`step_durations_s`, the longest over
  the run's failovers).
- the final primary, phase and `needs_human` are read from the store, as `failover status` would.
- redundancy (docs/simulated-rejoin.md) comes from the world: how long each engine ran with fewer acknowledging
  standbys than configured (`degraded_redundancy_s`), and when it last had them all again. Quarantine spells come
  from the store's book as the controller kept it (`SimStore.spells`); rejoin attempts from the scenario's policy
  (`rejoiner.py`), rejoins done from the world; failovers refused by quarantine from the controller's actions.

Incident ids carry a random suffix; the timeline renames them in order of appearance so that the same seed gives
byte-identical JSON.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.core.model import Phase, Topology, Verdict
from orchestrator.drivers.events import Event, EventKind
from orchestrator.drivers.state import load_engine
from orchestrator.sim.faults import Fault, FaultKind, describe, stopping_windows
from orchestrator.sim.rejoiner import Attempt
from orchestrator.sim.scenario import DURATION_EXPECTATIONS, REDUNDANCY_EXPECTATIONS, Scenario
from orchestrator.sim.store import SimStore
from orchestrator.sim.world import World
from orchestrator.store.base import StateStore
from orchestrator.store.records import IncidentStatus

DETECTED = (Verdict.DOWN.value, Verdict.FLAPPING.value)
_INCIDENT_ID = re.compile(r"INC-\d{8}-\d{6}-[A-Za-z0-9_]+-[0-9a-f]{4}")
_KEPT_DETAIL = ("step", "state", "phase", "kind", "target", "promoted", "how", "error", "reason", "why", "subject",
                "verdict", "blocked_by")


@dataclass
class SimResult:
    scenario: str
    seed: int
    policy: str
    detection_s: float | None
    halt_s: float
    time_to_new_primary_s: float | None
    protection_s: float
    failovers: int
    false_failovers: int
    orders_acknowledged: int
    orders_lost: int
    trades_during_protection: int
    trades_while_halted: int
    max_primaries: int
    time_to_halted_s: float | None = None
    time_to_traffic_switched_s: float | None = None
    after_detection: dict[str, float | None] = field(default_factory=dict)  # halted, new_primary, traffic_switched
    step_durations_s: dict[str, float] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    expectations: dict[str, bool] = field(default_factory=dict)
    # beyond docs/design.md §9's list: what the expectations and the renderer need, and what helps a reader
    needs_human: bool = False
    max_writable_primaries: int = 0  # replicas that could have acknowledged writes at once, reached or not
    final_phase: str | None = None  # the one phase every engine ended in, else None
    final_primary: dict[str, str] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)
    orders_refused: dict[str, int] = field(default_factory=dict)
    trades: int = 0
    # after the failover (docs/simulated-rejoin.md): redundancy, quarantine, rejoin
    degraded_redundancy_s: float = 0.0  # summed over engines: time with fewer acknowledging standbys than configured
    redundancy_restored: bool = True  # every engine ends with as many acknowledging standbys as configured
    redundancy_restored_at_s: float | None = None  # the latest return to full redundancy (None: never degraded)
    restore_after_quarantine_s: float | None = None  # that return, after the last quarantine's end
    quarantine_s: dict[str, float] = field(default_factory=dict)  # per site, time in quarantine within the run
    quarantines: list[dict[str, Any]] = field(default_factory=list)  # each spell: site, began_s, ended_s, relapses
    failovers_refused_quarantine: int = 0  # failovers wanted whose only eligible target was quarantined
    rejoins: int = 0  # rejoins done (the replica acknowledges again)
    rejoins_started: int = 0
    rejoins_failed: int = 0
    rejoins_refused: dict[str, int] = field(default_factory=dict)  # attempts refused, by kind
    rejoins_on_quarantined_site: int = 0  # rejoins started on a site in quarantine (never expected)
    rejoined: list[dict[str, Any]] = field(default_factory=list)  # replica, started_s, done_s, copied, archived
    cycles: int = 0
    start: str = ""
    duration_s: float = 0.0
    display_timezone: str = "UTC"

    @property
    def passed(self) -> bool:
        return all(self.expectations.values())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _stopping_span(fault: Fault, probe_timeout: float) -> tuple[float, float] | None:
    """When the fault as a whole counts as stopping the primary (a flapping fault is active between its downs)."""
    windows = stopping_windows(fault, probe_timeout)
    if not windows:
        return None
    return (fault.at, fault.end) if fault.kind is FaultKind.FLAPPING else windows[0]


def _phase_totals(log: Sequence[tuple[float, Phase]], start: float, end: float) -> dict[Phase, float]:
    totals = dict.fromkeys(Phase, 0.0)
    phase, since = Phase.OPEN, start
    for at, new in log:
        totals[phase] += max(0.0, min(at, end) - since)
        phase, since = new, min(at, end)
    totals[phase] += max(0.0, end - since)
    return totals


def _primary_at(world: World, engine: str, initial: str, at: float) -> str:
    primary = initial
    for promotion in world.promotions:
        if promotion.engine == engine and promotion.at <= at:
            primary = promotion.replica
    return primary


def _origin(scenario: Scenario, topology: Topology, world: World, engine: str) -> float | None:
    """When the primary first became unable to serve (absolute time), or None if it never did."""
    initial = topology.engines[engine].primary
    starts = sorted((scenario.start + start, fault.site) for fault in scenario.faults
                    for start, _ in stopping_windows(fault, topology.probes.timeout))
    for at, site in starts:
        primary = _primary_at(world, engine, initial, at)
        if topology.engines[engine].replica(primary).site == site:
            return at
    return None


def _detection(events: Sequence[Event], topology: Topology, world: World, engine: str, origin: float,
               ) -> Event | None:
    primary = _primary_at(world, engine, topology.engines[engine].primary, origin)
    subjects = {primary, topology.engines[engine].replica(primary).site}
    for event in events:
        if event.kind is EventKind.VERDICT and event.at >= origin and event.detail.get("subject") in subjects \
                and event.detail.get("verdict") in DETECTED:
            return event
    return None


def _worst(values: Iterable[float | None]) -> float | None:
    found = list(values)
    if not found or any(value is None for value in found):
        return None
    return max(value for value in found if value is not None)


def _halted_at(world: World, engine: str, origin: float) -> float | None:
    """When trading was first announced halted at or after `origin`."""
    return next((at for at, phase in world.phase_log[engine] if at >= origin and phase is Phase.HALTED), None)


def _switched_at(world: World, engine: str, origin: float) -> float | None:
    """When clients could first reach the replica promoted after `origin`: its DNS record in sync (the history's
    entries are dated when the change reached every name server), or the promotion itself without DNS."""
    promoted = next((p for p in world.promotions if p.engine == engine and p.at >= origin), None)
    if promoted is None:
        return None
    flow = world.engines[engine]
    if flow.dns is None:
        return promoted.at
    cloud, zone_id, record, _ = flow.dns
    for at, address in world.clouds[cloud].records.get((zone_id, record), []):
        found = flow.by_address.get(address)
        if at >= origin and found is not None and found.name == promoted.replica:
            return at
    return None


def _moments(world: World, engine: str, origin: float) -> dict[str, float | None]:
    """When, after `origin`, trading was halted, a new primary promoted and traffic switched to it."""
    promoted = next((p.at for p in world.promotions if p.engine == engine and p.at >= origin), None)
    return {"halted": _halted_at(world, engine, origin), "new_primary": promoted,
            "traffic_switched": _switched_at(world, engine, origin)}


def _since(at: float | None, origin: float | None) -> float | None:
    return None if at is None or origin is None else at - origin


def step_durations(store: StateStore) -> dict[str, float]:
    """Per runbook step, the longest it took from its first `started` to its `done` (or `skipped`) in any failover."""
    longest: dict[str, float] = {}
    for incident in store.incidents():
        if incident.kind != "failover":
            continue
        started: dict[str, float] = {}
        for entry in store.journal(incident.id):
            if entry.state == "started":
                started.setdefault(entry.step, entry.at)
            elif entry.state in ("done", "skipped") and entry.step in started:
                took = entry.at - started[entry.step]
                longest[entry.step] = round(max(took, longest.get(entry.step, 0.0)), 3)
    return longest


def measure(scenario: Scenario, topology: Topology, world: World, events: Sequence[Event], store: StateStore,
            *, seed: int, policy: str, cycles: int, attempts: Sequence[Attempt] = (),
            refusals: Sequence[tuple[float, str, str]] = ()) -> SimResult:
    end = scenario.end
    detections: list[float | None] = []
    new_primary: list[float | None] = []
    halted: list[float | None] = []
    switched: list[float | None] = []
    after: dict[str, list[float | None]] = {"halted": [], "new_primary": [], "traffic_switched": []}
    detection_events: list[Event] = []
    halt = protection = 0.0
    for engine in topology.engines:
        totals = _phase_totals(world.phase_log[engine], scenario.start, end)
        halt += totals[Phase.HALTED]
        protection += totals[Phase.PROTECTION]
        origin = _origin(scenario, topology, world, engine)
        if origin is None:
            continue
        found = _detection(events, topology, world, engine, origin)
        if found is not None:
            detection_events.append(found)
        detected = None if found is None else found.at
        detections.append(_since(detected, origin))
        moments = _moments(world, engine, origin)
        new_primary.append(_since(moments["new_primary"], origin))
        halted.append(_since(moments["halted"], origin))
        switched.append(_since(moments["traffic_switched"], origin))
        for name, at in moments.items():
            after[name].append(_since(at, detected))
    failovers, false_failovers = _failovers(scenario, topology, store)
    records = {name: load_engine(store, topology, name) for name in topology.engines}
    phases = {record.phase.phase.value for record in records.values()}
    flows = world.engines.values()
    refused: Counter[str] = Counter()
    for flow in flows:
        refused.update(flow.refused)
    result = SimResult(
        scenario=scenario.name, seed=seed, policy=policy,
        detection_s=_rounded(_worst(detections)), halt_s=round(halt, 3),
        time_to_new_primary_s=_rounded(_worst(new_primary)), protection_s=round(protection, 3),
        failovers=failovers, false_failovers=false_failovers,
        orders_acknowledged=sum(flow.acknowledged for flow in flows),
        orders_lost=sum(world.lost(name, record.primary) for name, record in records.items()),
        trades_during_protection=sum(flow.trades_in_protection for flow in flows),
        trades_while_halted=sum(flow.trades_while_halted for flow in flows),
        max_primaries=max((flow.max_primaries for flow in flows), default=0),
        max_writable_primaries=max((flow.max_writable for flow in flows), default=0),
        time_to_halted_s=_rounded(_worst(halted)), time_to_traffic_switched_s=_rounded(_worst(switched)),
        after_detection={name: _rounded(_worst(values)) for name, values in after.items() if values},
        step_durations_s=step_durations(store),
        needs_human=any(i.status is IncidentStatus.NEEDS_HUMAN for i in store.incidents(open_only=True)),
        final_phase=phases.pop() if len(phases) == 1 else None,
        final_primary={name: record.primary for name, record in records.items()},
        expect=dict(scenario.expect), orders_refused=dict(sorted(refused.items())),
        trades=sum(flow.trades for flow in flows), cycles=cycles, start=iso(scenario.start),
        duration_s=scenario.duration, display_timezone=topology.display_timezone,
    )
    after_failover(result, scenario, topology, world, store, attempts, refusals, events, detection_events)
    result.expectations = check(scenario.expect, result, topology, {n: r.phase.phase.value for n, r in records.items()})
    return result


def _redundancy(log: Sequence[tuple[float, int]], wanted: int, start: float, end: float,
                ) -> tuple[float, bool, float | None]:
    """Time with fewer than `wanted` standbys, whether the log ends with them all, and when they came back last."""
    degraded, restored_at, full = 0.0, None, True
    for index, (at, count) in enumerate(log):
        until = log[index + 1][0] if index + 1 < len(log) else end
        if count < wanted:
            degraded += max(0.0, min(until, end) - max(at, start))
        elif not full:
            restored_at = at
        full = count >= wanted
    return degraded, full, restored_at


def after_failover(result: SimResult, scenario: Scenario, topology: Topology, world: World, store: StateStore,
                   attempts: Sequence[Attempt], refusals: Sequence[tuple[float, str, str]], events: Sequence[Event],
                   detections: Sequence[Event]) -> None:
    """The figures of issue 15's "after the failover": redundancy, quarantine spells, rejoins (in place)."""
    start, end = scenario.start, scenario.end
    degraded, restored, back = 0.0, True, []
    for name, engine in topology.engines.items():
        lost, full, at = _redundancy(world.engines[name].standbys, len(engine.replicas) - 1, start, end)
        degraded += lost
        restored &= full
        if at is not None:
            back.append(at)
    result.degraded_redundancy_s = round(degraded, 3)
    result.redundancy_restored = restored
    result.redundancy_restored_at_s = _rounded(max(back) - start) if back else None
    spells = store.spells if isinstance(store, SimStore) else []
    for spell in spells:
        stop = end if spell.ended is None else min(spell.ended, end)
        result.quarantine_s[spell.site] = round(result.quarantine_s.get(spell.site, 0.0) + max(0.0, stop - spell.began),
                                                3)
        result.quarantines.append({"site": spell.site, "began_s": round(spell.began - start, 3),
                                   "ended_s": None if spell.ended is None else round(spell.ended - start, 3),
                                   "relapses": spell.relapses, "released": spell.released})
    ended = [spell.ended for spell in spells if spell.ended is not None]
    if back and restored and ended and all(spell.ended is not None for spell in spells):
        result.restore_after_quarantine_s = round(max(back) - max(ended), 3)
    result.failovers_refused_quarantine = len(refusals)
    started = [a for a in attempts if a.outcome == "started"]
    result.rejoins_started = len(started)
    result.rejoins_on_quarantined_site = sum(1 for a in started if a.quarantined)
    result.rejoins_refused = dict(sorted(Counter(a.reason for a in attempts if a.outcome == "refused").items()))
    result.rejoins = len(world.rejoined)
    result.rejoins_failed = len(world.failed_rejoins)
    result.rejoined = [{"replica": r.replica, "site": r.site, "primary": r.primary,
                        "started_s": round(r.started_at - start, 3), "done_s": round(r.done_at - start, 3),
                        "copied": r.copied, "archived": r.archived} for r in world.rejoined]
    result.timeline = timeline(scenario, events, detections,
                               _after_items(scenario, spells, attempts, refusals, world))


def _after_items(scenario: Scenario, spells: Sequence[Any], attempts: Sequence[Attempt],
                 refusals: Sequence[tuple[float, str, str]], world: World) -> list[tuple[float, dict[str, Any]]]:
    """Timeline entries: quarantines begun and ended, failovers refused by one, rejoins started, done, failed, and
    refused (once per replica and kind of refusal in a row, not at every retry)."""
    start, items = scenario.start, []
    for spell in spells:
        items.append((spell.began, {"event": "quarantine", "site": spell.site,
                                    "message": f"site {spell.site} in quarantine"}))
        if spell.ended is not None:
            how = "released by hand" if spell.released else "healthy for the whole quarantine"
            items.append((spell.ended, {"event": "quarantine_end", "site": spell.site,
                                        "message": f"quarantine of {spell.site} ends ({how}; "
                                                   f"{spell.relapses} relapses)"}))
    for at, engine, replica in refusals:
        items.append((at, {"event": "refused", "engine": engine,
                           "message": f"[{engine}] failover to {replica} refused: its site is in quarantine"}))
    last: dict[str, str] = {}
    for attempt in attempts:
        if attempt.outcome == "refused" and last.get(attempt.replica) == attempt.reason:
            continue
        last[attempt.replica] = attempt.reason
        items.append((attempt.at, {"event": "rejoin", "engine": attempt.engine, "replica": attempt.replica,
                                   "message": attempt.message if attempt.outcome == "started"
                                   else f"rejoin of {attempt.replica} refused: {attempt.message}"}))
    for done in world.rejoined:
        items.append((done.done_at, {"event": "rejoined", "engine": done.engine, "replica": done.replica,
                                     "message": f"{done.replica} caught up with {done.primary} ({done.copied} "
                                                f"entries copied, {done.archived} archived): acknowledging"}))
    for at, replica, why in world.failed_rejoins:
        items.append((at, {"event": "rejoin_failed", "replica": replica, "message": f"rejoin of {replica}: {why}"}))
    return [(at - start, entry) for at, entry in items]




def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _failovers(scenario: Scenario, topology: Topology, store: StateStore) -> tuple[int, int]:
    spans = [(fault.site, span) for fault in scenario.faults
             if (span := _stopping_span(fault, topology.probes.timeout)) is not None]
    window = topology.policy.flap_window
    count = false = 0
    for incident in store.incidents():
        if incident.kind != "failover" or incident.status is IncidentStatus.PROPOSED or incident.source is None:
            continue
        count += 1
        site = topology.engines[incident.engine].replica(incident.source).site
        opened = incident.opened_at - scenario.start
        if not any(where == site and start <= opened and stop >= opened - window for where, (start, stop) in spans):
            false += 1
    return count, false


def check(expect: Mapping[str, Any], result: SimResult, topology: Topology, phases: Mapping[str, str],
          ) -> dict[str, bool]:
    """Each expectation of the scenario: durations and `max_*` are upper bounds, other counts exact."""
    figures = {"max_detection": result.detection_s, "max_halt": result.halt_s,
               "max_time_to_new_primary": result.time_to_new_primary_s}
    outcome: dict[str, bool] = {}
    for name, wanted in expect.items():
        if name in DURATION_EXPECTATIONS:
            value = figures[name]
            outcome[name] = value is not None and value <= float(wanted)
        elif name == "max_failovers":
            outcome[name] = result.failovers <= int(wanted)
        elif name == "max_primaries":
            outcome[name] = result.max_primaries <= int(wanted)
        elif name == "final_phase":
            outcome[name] = all(phase == wanted for phase in phases.values())
        elif name == "needs_human":
            outcome[name] = result.needs_human is bool(wanted)
        elif name in REDUNDANCY_EXPECTATIONS:
            value = result.degraded_redundancy_s if name == "max_degraded_redundancy" \
                else result.restore_after_quarantine_s
            outcome[name] = value is not None and value <= float(wanted)
        elif name == "redundancy_restored":
            outcome[name] = result.redundancy_restored is bool(wanted)
        elif name == "final_primary_provider_not":
            outcome[name] = all(topology.sites[topology.engines[engine].replica(primary).site].provider != wanted
                                for engine, primary in result.final_primary.items())
        else:
            outcome[name] = getattr(result, name) == int(wanted)
    return outcome


def timeline(scenario: Scenario, events: Sequence[Event], detections: Sequence[Event],
             extra: Sequence[tuple[float, dict[str, Any]]] = ()) -> list[dict[str, Any]]:
    """Faults, detections and everything the orchestrator said but verdict changes, in time order; `extra` (offsets
    from the start, e.g. `_after_items`) after the orchestrator's entries of the same instant, renamed the same way."""
    items: list[tuple[float, int, dict[str, Any]]] = []
    for order, fault in enumerate(scenario.faults):
        where = {"site": fault.site} if fault.site else {"observer": fault.observer}
        items.append((fault.at, order, {"event": "fault", "kind": fault.kind.value, **where,
                                        "message": describe(fault)}))
        if fault.end <= scenario.duration:
            items.append((fault.end, order, {"event": "fault_end", "kind": fault.kind.value, **where,
                                             "message": f"{fault.kind.value} on "
                                                        f"{fault.site or fault.replica or fault.observer} ends"}))
    chosen = list(detections) + [e for e in events if e.kind is not EventKind.VERDICT]
    chosen.sort(key=lambda e: e.at)  # stable: a detection comes before what was done about it
    names: dict[str, str] = {}
    for position, event in enumerate(chosen):
        kind = "detection" if event.kind is EventKind.VERDICT else event.kind.value
        if event.kind is EventKind.DETECTION:
            kind = "decision"
        entry: dict[str, Any] = {"event": kind, "engine": event.engine, "message": _rename(event.message, names)}
        for key in _KEPT_DETAIL:
            if key in event.detail:
                entry[key] = _plain(event.detail[key], names)
        items.append((event.at - scenario.start, len(scenario.faults) + position, entry))
    base = len(scenario.faults) + len(chosen)
    for position, (at, entry) in enumerate(extra):
        items.append((at, base + position, {**entry, "message": _rename(str(entry.get("message", "")), names)}))
    items.sort(key=lambda item: (item[0], item[1]))
    return [{"at": round(at, 3), "utc": iso(scenario.start + at), **entry} for at, _, entry in items]


def _rename(text: str, names: dict[str, str]) -> str:
    def stable(match: re.Match[str]) -> str:
        found = match.group(0)
        if found not in names:
            names[found] = f"{found[:-4]}{len(names) + 1:04d}"
        return names[found]

    return _INCIDENT_ID.sub(stable, text)


def _plain(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _rename(value, names)
    if isinstance(value, list | tuple):
        return [_plain(item, names) for item in value]
    return value
