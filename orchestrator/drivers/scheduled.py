"""The leader's per-cycle look at the planned switchovers (`core.schedule`): announce, start, or miss.

Why in the cycle of whichever daemon leads: the schedule is in the store, so a leader killed before the time hands
it to its successor with nothing to hand over. A due entry starts only when the same checks as at scheduling pass
again, now: the target is not quarantined, is not the primary already, and is healthy and caught up (the automatic
failover's rules, less the interval: a human chose this); a target on a quarantined site, or one that is already
primary, ends the entry (refused: it will not become right by waiting); anything else waits, each cycle retrying,
until the entry's grace period runs out, and then it is missed and pages, never run late silently.

Starting is claim (compare-and-set), open the incident (its detail names the schedule), confirm: a cancel and a
start cannot both win, and a leader that dies between claim and confirmation leaves an entry its successor finishes
(it finds the incident by the schedule's id, or opens it then). The runbook itself is the ordinary one, run by
the controller's `_advance_running` in the same cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from orchestrator.core import schedule as sch
from orchestrator.core.decide import EngineSnapshot, IncidentView, Rule, check_target
from orchestrator.core.health import Assessment
from orchestrator.core.model import ReplicaStatus, Topology
from orchestrator.core.phases import parse_timezone
from orchestrator.core.quarantine import quarantined_replicas
from orchestrator.core.schedule import Decision, Due, Scheduled
from orchestrator.drivers.events import Event, EventKind, Notifier
from orchestrator.drivers.modes import ControllerSettings
from orchestrator.drivers.runbook import new_plan, plan_detail
from orchestrator.drivers.state import load_engine, next_epoch
from orchestrator.drivers.status import quarantine_duration
from orchestrator.store.base import StateStore
from orchestrator.store.records import Conflict, Incident
from providers.traffic import TrafficRouter

__all__ = ["Leader", "ScheduledOutcome", "run_due", "start_blockers"]

NOT_BY_WAITING = "quarantined"  # a refusal that waiting will not cure (with Rule.NOT_PRIMARY)


class Leader(Protocol):
    """What the leader's controller knows this cycle (`drivers.controller.Controller` has all of it)."""

    @property
    def statuses(self) -> Mapping[str, ReplicaStatus]: ...
    @property
    def token(self) -> int: ...
    @property
    def notifier(self) -> Notifier: ...
    @property
    def routers(self) -> Mapping[str, TrafficRouter]: ...
    @property
    def seq_floor(self) -> Mapping[str, int]: ...
    @property
    def options(self) -> ControllerSettings: ...


@dataclass(frozen=True, slots=True)
class ScheduledOutcome:
    """What one look did; `message` is empty when nothing was due."""

    announced: tuple[str, ...] = ()
    started: tuple[tuple[str, str], ...] = ()  # (schedule, incident)
    waiting: tuple[tuple[str, str], ...] = ()  # (schedule, why)
    missed: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()  # (schedule, why)

    @property
    def acted(self) -> bool:
        return bool(self.started or self.missed or self.refused)

    @property
    def message(self) -> str:
        parts = [f"{s}: started {i}" for s, i in self.started] + [f"{s}: waiting ({w})" for s, w in self.waiting]
        parts += [f"{s}: missed" for s in self.missed] + [f"{s}: refused ({w})" for s, w in self.refused]
        parts += [f"{s}: announced" for s in self.announced]
        return "; ".join(parts)


def run_due(store: StateStore, topology: Topology, leader: Leader, verdicts: Mapping[str, Assessment],
            now: float) -> ScheduledOutcome:
    """Announce, start or miss whatever `core.schedule.review` says is due at `now`. Call only as the leader."""
    outcome = ScheduledOutcome()
    for decision in sch.review(store.schedules(), now):
        if decision.kind is Due.ANNOUNCE:
            outcome = _announce(store, topology, leader, decision, now, outcome)
        elif decision.kind is Due.MISS:
            outcome = _miss(store, topology, leader, decision.entry, now, outcome)
        else:
            outcome = _start(store, topology, leader, verdicts, decision.entry, now, outcome)
    return outcome


def start_blockers(store: StateStore, topology: Topology, statuses: Mapping[str, ReplicaStatus],
                   verdicts: Mapping[str, Assessment], engine_name: str, target: str, now: float,
                   seq_floor: int = 0) -> list[str]:
    """Why a planned switchover of `engine_name` to `target` may not start now, in words: a quarantined target
    site, then the rules of an automatic failover (`decide.check_target`) less the interval. The same list refuses
    `execute --at` when it is scheduled and holds the switchover when it is due."""
    engine = topology.engines[engine_name]
    record = load_engine(store, topology, engine_name)
    incident = store.open_incident(engine_name)
    view = IncidentView(incident.id, incident.status.value, incident.target) if incident else None
    snap = EngineSnapshot(engine=engine, primary=record.primary, phase=record.phase, epoch=record.epoch,
                          statuses={n: s for n, s in statuses.items() if n in {r.name for r in engine.replicas}},
                          incident=view, last_failover_done_at=record.last_failover_done_at,
                          override_interval=True, seq_floor=seq_floor)
    blocked: list[str] = []
    if target in quarantined_replicas(engine, store.quarantines(), now, quarantine_duration(topology)):
        blocked.append(f"{NOT_BY_WAITING}: site {engine.replica(target).site} of {target} is in quarantine")
    rules = check_target(snap, topology, verdicts, target, now)
    if incident is not None and Rule.ONE_IN_FLIGHT not in rules:
        rules = (*rules, Rule.ONE_IN_FLIGHT)  # a proposal or a halt waiting for a human is in flight too
    blocked.extend(rule.value for rule in rules)
    return blocked


def _announce(store: StateStore, topology: Topology, leader: Leader, decision: Decision, now: float,
              outcome: ScheduledOutcome) -> ScheduledOutcome:
    """Mark first, then publish: a leader dying in between loses one reminder; the other order would repeat
    reminders each time a leader dies."""
    marked = store.change_schedule(decision.entry.id,
                                   lambda e: sch.announced(e, now) if e.state is sch.State.PENDING else None)
    if marked is None:
        return outcome
    display = parse_timezone(topology.display_timezone)
    leader.notifier.publish(Event(now, EventKind.INCIDENT, marked.engine, sch.reminder_message(marked, now, display),
                                  {"schedule": marked.id, "at": marked.at, "lead": decision.lead}))
    return replace(outcome, announced=(*outcome.announced, marked.id))


def _miss(store: StateStore, topology: Topology, leader: Leader, entry: Scheduled, now: float,
          outcome: ScheduledOutcome) -> ScheduledOutcome:
    found = _incident_of(store, entry)
    if found is not None:  # the claimer opened it and died before confirming: it ran
        return _confirm(store, topology, leader, entry, found, now, outcome)
    missed = store.change_schedule(entry.id, lambda e: sch.ended(e, sch.State.MISSED, now, sch.miss_reason(e))
                                   if e.is_open else None)
    if missed is None:
        return outcome
    _page(store, topology, leader, missed, now, "schedule.missed")
    return replace(outcome, missed=(*outcome.missed, missed.id))


def _start(store: StateStore, topology: Topology, leader: Leader, verdicts: Mapping[str, Assessment],
           entry: Scheduled, now: float, outcome: ScheduledOutcome) -> ScheduledOutcome:
    found = _incident_of(store, entry)
    if found is not None:
        return _confirm(store, topology, leader, entry, found, now, outcome)
    if entry.engine not in topology.engines or entry.target not in {
            r.name for r in topology.engines[entry.engine].replicas}:
        return _refuse(store, topology, leader, entry, now, outcome, "no longer in the configuration")
    blocked = start_blockers(store, topology, leader.statuses, verdicts, entry.engine, entry.target, now,
                             leader.seq_floor.get(entry.engine, 0))
    final = [why for why in blocked if why.startswith(NOT_BY_WAITING) or why == Rule.NOT_PRIMARY.value]
    if final:
        return _refuse(store, topology, leader, entry, now, outcome, "; ".join(final))
    if blocked:
        why = "; ".join(blocked)
        store.change_schedule(entry.id, lambda e: sch.waiting(e, why) if e.is_open else None)
        return replace(outcome, waiting=(*outcome.waiting, (entry.id, why)))
    identity = leader.options.identity
    claim = store.change_schedule(entry.id, lambda e: sch.claimed(e, identity) if e.is_open else None)
    if claim is None and not _still_claimed(store, entry.id, identity):
        return outcome  # cancelled (or ended) under us
    try:
        incident = _open(store, topology, leader, entry, now)
    except Conflict:  # an incident opened since the check: the claim stays, and the next cycle waits or misses
        return replace(outcome, waiting=(*outcome.waiting, (entry.id, Rule.ONE_IN_FLIGHT.value)))
    return _confirm(store, topology, leader, entry, incident, now, outcome)


def _still_claimed(store: StateStore, entry_id: str, identity: str) -> bool:
    """A claim that wrote nothing because we had claimed it already (our earlier cycle died before opening)."""
    found = next((e for e in store.schedules() if e.id == entry_id), None)
    return found is not None and found.state is sch.State.STARTING and found.claimed_by == identity


def _open(store: StateStore, topology: Topology, leader: Leader, entry: Scheduled, now: float) -> Incident:
    """The incident a manual `execute` would open (`Controller.open_failover`), with the schedule's window and
    its id in the detail. Conflict if the engine has an open incident after all."""
    record = load_engine(store, topology, entry.engine)
    seen = max((s.epoch for s in leader.statuses.values()), default=0)
    plan = new_plan(topology, entry.engine, record.primary, entry.target, next_epoch(record, seen, leader.token),
                    has_router=entry.engine in leader.routers, seq_floor=leader.seq_floor.get(entry.engine, 0))
    plan = replace(plan, protection=entry.window)
    reason = f"planned switchover {entry.id} by {entry.created_by}" + (f": {entry.reason}" if entry.reason else "")
    incident = store.create_incident(entry.engine, "switchover", reason, now, source=record.primary,
                                     target=entry.target, status="running",
                                     detail={**plan_detail(plan), "schedule": entry.id})
    store.audit(leader.options.identity, "incident.running",
                {"incident": incident.id, "engine": entry.engine, "source": record.primary, "target": entry.target,
                 "epoch": plan.epoch, "reason": reason, "schedule": entry.id}, now)
    leader.notifier.publish(Event(now, EventKind.INCIDENT, entry.engine,
                                  f"[{entry.engine}] planned switchover {record.primary} -> {entry.target} started "
                                  f"({entry.id}, incident {incident.id})", {"incident": incident.id,
                                                                            "schedule": entry.id}))
    return incident


def _confirm(store: StateStore, topology: Topology, leader: Leader, entry: Scheduled, incident: Incident,
             now: float, outcome: ScheduledOutcome) -> ScheduledOutcome:
    done = store.change_schedule(entry.id, lambda e: sch.started(e, incident.id, now) if e.is_open else None)
    if done is not None:
        store.audit(leader.options.identity, "schedule.started", {"schedule": entry.id, "incident": incident.id,
                                                                  "engine": entry.engine, "at": entry.at}, now)
    return replace(outcome, started=(*outcome.started, (entry.id, incident.id)))


def _refuse(store: StateStore, topology: Topology, leader: Leader, entry: Scheduled, now: float,
            outcome: ScheduledOutcome, why: str) -> ScheduledOutcome:
    refused = store.change_schedule(entry.id, lambda e: sch.ended(e, sch.State.REFUSED, now, why)
                                    if e.is_open else None)
    if refused is None:
        return outcome
    _page(store, topology, leader, refused, now, "schedule.refused")
    return replace(outcome, refused=(*outcome.refused, (refused.id, why)))


def _page(store: StateStore, topology: Topology, leader: Leader, entry: Scheduled, now: float, action: str) -> None:
    store.audit(leader.options.identity, action, {"schedule": entry.id, "engine": entry.engine,
                                                  "target": entry.target, "at": entry.at, "why": entry.why}, now)
    leader.notifier.publish(Event(now, EventKind.PAGE, entry.engine,
                                  sch.page_message(entry, parse_timezone(topology.display_timezone)),
                                  {"schedule": entry.id, "state": entry.state.value}))


def _incident_of(store: StateStore, entry: Scheduled) -> Incident | None:
    """The incident opened for this entry, if a leader opened one (it names the schedule in its detail)."""
    if entry.state is not sch.State.STARTING:
        return None
    for incident in store.incidents(entry.engine, limit=5):
        if incident.detail.get("schedule") == entry.id:
            return incident
    return None
