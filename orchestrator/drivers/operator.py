"""The operator's commands (docs/design.md §8): plan, execute, halt, protect, reopen, approve, history, report.

Refusals are `UnsafeError` (exit 3) raised before anything changes. Commands that move an engine take an epoch
above everything the engine has seen, so a human's word outranks the automation: a daemon still working with an
older epoch is refused by the replicas and hands the incident to a human.

`execute` and `approve` drive the runbook themselves when they can take the leader lease; when a daemon holds it,
they open (or release) the incident and watch the daemon run it, so that one runbook never has two drivers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.config import LoadedConfig
from orchestrator.core.decide import EngineSnapshot, IncidentView, Rule, check_target, rank_candidates
from orchestrator.core.errors import ConfigError, FailoverError, IllegalTransition, StoreError, UnsafeError
from orchestrator.core.health import Assessment, assumed_loss, one_look
from orchestrator.core.model import Engine, Phase, ReplicaStatus, Role, Topology, Verdict
from orchestrator.core.phases import PhaseChange, PhaseEvent, PhaseState, announce, parse_timezone, transition
from orchestrator.core.quarantine import quarantined_replicas
from orchestrator.core.runbook import Status as RunStatus
from orchestrator.core.runbook import deposed_primaries
from orchestrator.drivers import spool
from orchestrator.drivers.controller import Controller
from orchestrator.drivers.events import Event, EventKind, Notifier
from orchestrator.drivers.modes import Mode
from orchestrator.drivers.preview import PlannedStep, preview
from orchestrator.drivers.runbook import Progress, new_plan
from orchestrator.drivers.state import HEALTH_KEY, EngineRecord, load_engine, next_epoch, save_engine
from orchestrator.drivers.status import current_topology, read_verdicts
from orchestrator.drivers.wiring import Edges, build_controller
from orchestrator.engine.base import EngineControl, answering
from orchestrator.store.base import Conflict, StateStore
from orchestrator.store.records import Incident, IncidentStatus

__all__ = ["EmergencyBrake", "HaltOutcome", "Operator", "PlanReport", "PlannedStep", "check_replica", "pick_engine"]


def pick_engine(topology: Topology, name: str | None) -> Engine:
    """`--engine NAME`, or the only engine there is. Checked before any store or engine is touched."""
    if name is None:
        if len(topology.engines) != 1:
            raise ConfigError(f"several engines are configured ({', '.join(topology.engines)}); "
                              "name one with --engine")
        return next(iter(topology.engines.values()))
    if name not in topology.engines:
        raise ConfigError(f"--engine {name}: no such engine (configured: {', '.join(topology.engines)})")
    return topology.engines[name]


def check_replica(engine: Engine, name: str) -> None:
    """`--target NAME` must be one of the engine's replicas: a typo is bad input, not a refusal."""
    if name not in {r.name for r in engine.replicas}:
        raise ConfigError(f"--target {name}: engine {engine.name} has no such replica "
                          f"(replicas: {', '.join(r.name for r in engine.replicas)})")


@dataclass(frozen=True, slots=True)
class PlanReport:
    engine: str
    source: str
    target: str | None
    epoch: int
    blocked_by: list[str]
    candidates: list[dict[str, Any]]
    steps: list[PlannedStep] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return self.target is not None and not self.blocked_by


class Operator:
    """The operator's commands on one process's edges. `topology` is where each replica runs now (the edges' view:
    the file with every replica `failover replace` moved at its recorded place, `drivers.status.current_topology`),
    so a plan, a switchover or a phase command reaches a replaced replica at its new site and address."""

    def __init__(self, loaded: LoadedConfig, edges: Edges, *, actor: str = "operator") -> None:
        self.loaded = loaded
        self.topology = edges.topology if edges.topology is not None else current_topology(loaded.topology,
                                                                                            edges.store)
        self.edges = edges
        self.store = edges.store
        self.actor = actor
        self.display = parse_timezone(self.topology.display_timezone)

    # ---- helpers --------------------------------------------------------------------------------------------

    def engine(self, name: str | None) -> Engine:
        return pick_engine(self.topology, name)

    @staticmethod
    def replica_named(engine: Engine, name: str) -> None:
        check_replica(engine, name)

    def statuses(self, engine: Engine) -> dict[str, ReplicaStatus]:
        return answering(self.edges.engines, engine.replicas)

    def live_verdicts(self, engine: Engine, statuses: Mapping[str, ReplicaStatus]) -> dict[str, Assessment]:
        """The last cycle's verdicts where the store has them; else what one look from here shows."""
        _, stored = read_verdicts(self.store)
        known = {subject: Verdict(found["verdict"]) for subject, found in stored.items()}
        return one_look(engine, statuses.keys(), known, self.edges.clock())

    def snapshot(self, engine: Engine, statuses: Mapping[str, ReplicaStatus]) -> tuple[EngineSnapshot, EngineRecord]:
        record = load_engine(self.store, self.topology, engine.name)
        incident = self.store.open_incident(engine.name)
        view = IncidentView(incident.id, incident.status.value, incident.target) if incident else None
        snap = EngineSnapshot(engine=engine, primary=record.primary, phase=record.phase, epoch=record.epoch,
                              statuses=dict(statuses), incident=view,
                              last_failover_done_at=record.last_failover_done_at,
                              override_interval=record.override_interval,
                              quarantined=quarantined_replicas(engine, self.store.quarantines(), self.edges.clock(),
                                                               self.topology.policy.quarantine))
        return snap, record

    def _audit(self, action: str, detail: dict[str, Any]) -> None:
        self.store.audit(self.actor, action, detail, self.edges.clock())

    def _epoch(self, record: EngineRecord, statuses: Mapping[str, ReplicaStatus]) -> int:
        return next_epoch(record, max((s.epoch for s in statuses.values()), default=0), 0)

    # ---- plan -----------------------------------------------------------------------------------------------

    def plan(self, engine_name: str | None = None, target: str | None = None, *,
             assume_primary_lost: bool = False) -> PlanReport:
        """What a failover would do now, call by call, and which rule would block it. Changes nothing: the
        runbook's own steps run against recording edges (`drivers.preview`): engine calls go to a recording client
        that answers from the statuses read now, provider and DNS writes are recorded by the adapters' dry-run mode.

        `assume_primary_lost` contacts no engine: it plans as if the primary's site had just been lost and every
        other replica were healthy and caught up (a CI dry run against moto or localstack, where no engine runs);
        the cloud calls are still real reads and recorded writes."""
        engine = self.engine(engine_name)
        if target is not None:
            self.replica_named(engine, target)
        if assume_primary_lost:
            record = load_engine(self.store, self.topology, engine.name)
            statuses, verdicts = self._assumed_loss(engine, record.primary)
        else:
            statuses = self.statuses(engine)
            verdicts = self.live_verdicts(engine, statuses)
        snap, record = self.snapshot(engine, statuses)
        now = self.edges.clock()
        ranked = rank_candidates(snap, self.topology, verdicts)
        if target is None:
            eligible = [c for c in ranked if c.eligible]
            target = eligible[0].replica if eligible else (ranked[0].replica if ranked else None)
        blocked = list(check_target(snap, self.topology, verdicts, target, now, manual=True)) if target else [
            Rule.TARGET_REPLICA_HEALTHY]
        epoch = self._epoch(record, statuses)
        steps = self._preview(engine, snap.primary, target, epoch, statuses, verdicts) if target else []
        return PlanReport(engine.name, snap.primary, target, epoch, [r.value for r in blocked],
                          [{"replica": c.replica, "eligible": c.eligible, "lag": c.lag,
                            "blocked_by": [r.value for r in c.blocked_by]} for c in ranked], steps)

    def _assumed_loss(self, engine: Engine, primary: str) -> tuple[dict[str, ReplicaStatus],
                                                                    dict[str, Assessment]]:
        now = self.edges.clock()
        lost = engine.replica(primary)
        statuses = {r.name: ReplicaStatus(r.name, Role.STANDBY, 0, Phase.OPEN, None, 0, 0)
                    for r in engine.replicas if r.name != primary}
        return statuses, assumed_loss(engine, lost.site, now)

    def _preview(self, engine: Engine, source: str, target: str, epoch: int,
                 statuses: Mapping[str, ReplicaStatus], verdicts: Mapping[str, Assessment]) -> list[PlannedStep]:
        """The runbook's steps run dry from `statuses` (`drivers.preview`), with the plan an incident would get."""
        plan = new_plan(self.topology, engine.name, source, target, epoch, has_router=engine.name in self.edges.routers,
                        seq_floor=self._seq_floor(engine.name))
        notifications = self.loaded.config.notifications
        return preview(plan, engine, statuses, verdicts, self.edges.providers, self.edges.routers,
                       clock=self.edges.clock, pre_hooks=notifications.pre_failover,
                       post_hooks=notifications.post_failover)

    def _seq_floor(self, engine_name: str) -> int:
        """The highest journal position a standby of this engine was seen holding, as the controller keeps it."""
        found = self.store.get_state(HEALTH_KEY)
        floors = found[0].get("seq_floor", {}) if found else {}
        return int(floors.get(engine_name, 0)) if isinstance(floors, dict) else 0

    # ---- execute / approve ----------------------------------------------------------------------------------

    def execute(self, engine_name: str | None, target: str, *, protection: float | None = None,
                on_progress: Callable[[list[Any]], None] | None = None, poll: float = 0.2,
                timeout: float | None = None) -> Incident:
        """A manual switchover (or failover) to `target`, checked against the safety rules first."""
        engine = self.engine(engine_name)
        self.replica_named(engine, target)
        statuses = self.statuses(engine)
        verdicts = self.live_verdicts(engine, statuses)
        snap, record = self.snapshot(engine, statuses)
        now = self.edges.clock()
        running = self.resumable(engine.name, target)
        if running is not None:
            return self.resume(running, on_progress=on_progress, poll=poll, timeout=timeout)
        if snap.incident is not None and snap.incident.status == "needs_human":
            incident = self.store.incident(snap.incident.id)
            if incident.kind == "halt":  # a human now decides where to go: this switchover supersedes the halt
                self.store.update_incident(incident.id, status=IncidentStatus.CLOSED, at=now,
                                           detail={"resolution": f"superseded by a switchover to {target}"})
                snap = replace(snap, incident=None)
        broken = check_target(snap, self.topology, verdicts, target, now, manual=True)
        if snap.incident is not None and Rule.ONE_IN_FLIGHT not in broken:
            broken = (*broken, Rule.ONE_IN_FLIGHT)
        if broken:
            raise UnsafeError(f"refused: switchover of {engine.name} to {target}: "
                              f"{'; '.join(rule.value for rule in broken)}")
        controller = self._controller(protection)
        controller.statuses = dict(statuses)
        leader = controller._lead()
        reason = f"operator {self.actor}: switchover to {target}"
        incident_id = controller.open_failover(engine.name, snap.primary, target, reason, record, kind="switchover")
        self._audit("execute", {"incident": incident_id, "engine": engine.name, "target": target})
        try:
            return self._drive(controller, incident_id, leader, on_progress, poll, timeout)
        finally:
            controller.release()

    def resumable(self, engine_name: str | None, target: str) -> str | None:
        """The running incident of this engine towards `target`, which a repeated `execute` continues."""
        incident = self.store.open_incident(self.engine(engine_name).name)
        if incident is not None and incident.status is IncidentStatus.RUNNING and incident.target == target:
            return incident.id
        return None

    def resume(self, incident_id: str, *, on_progress: Callable[[list[Any]], None] | None = None,
               poll: float = 0.2, timeout: float | None = None) -> Incident:
        """Go on with a running incident from its journal (the command that drove it was killed)."""
        self._audit("resume", {"incident": incident_id})
        return self._run_to_end(incident_id, on_progress, poll, timeout)

    def approve(self, incident_id: str, *, on_progress: Callable[[list[Any]], None] | None = None,
                poll: float = 0.2, timeout: float | None = None) -> Incident:
        incident = self.store.incident(incident_id)
        if incident.status is not IncidentStatus.PROPOSED:
            raise UnsafeError(f"refused: incident {incident_id} is {incident.status.value}, not proposed")
        now = self.edges.clock()
        self.store.update_incident(incident_id, status=IncidentStatus.RUNNING, at=now,
                                   detail={"approved_by": self.actor})
        self._audit("approve", {"incident": incident_id})
        return self._run_to_end(incident_id, on_progress, poll, timeout)

    def _run_to_end(self, incident_id: str, on_progress: Callable[[list[Any]], None] | None, poll: float,
                    timeout: float | None) -> Incident:
        controller = self._controller(None)
        leader = controller._lead()
        try:
            return self._drive(controller, incident_id, leader, on_progress, poll, timeout)
        finally:
            controller.release()

    def _controller(self, protection: float | None) -> Controller:
        topology = self.topology
        if protection is not None:
            topology = replace(topology, protection=replace(topology.protection, duration=protection))
        return build_controller(Mode.OPERATOR, self.loaded, self.edges, identity=self.actor, topology=topology)

    def _drive(self, controller: Controller, incident_id: str, leader: bool,
               on_progress: Callable[[list[Any]], None] | None, poll: float, timeout: float | None) -> Incident:
        """Advance the runbook (or watch the leader advance it) until it finishes or needs a human."""
        started = time.monotonic()
        while True:
            if leader:
                result = controller.run_cycle()
                progress = [p for p in result.progress if p.incident == incident_id]
                if not progress:
                    progress = [Progress(incident_id, RunStatus.RUN, None, "waiting for the leader lease")]
            incident = self.store.incident(incident_id)
            if on_progress is not None:
                on_progress(self.store.journal(incident_id))
            if incident.status in (IncidentStatus.CLOSED, IncidentStatus.NEEDS_HUMAN):
                return incident
            if timeout is not None and time.monotonic() - started > timeout:
                raise UnsafeError(f"incident {incident_id} still {incident.status.value} after {timeout:g}s; "
                                  "it continues under the daemon or the next `failover check`")
            time.sleep(poll)
            if not leader:
                leader = controller._lead()

    # ---- phase commands -------------------------------------------------------------------------------------

    def _set_phase(self, engine: Engine, event: PhaseEvent, phase: Phase, until: float | None, reason: str,
                   *, force: bool = False) -> EngineRecord:
        statuses = self.statuses(engine)
        snap, record = self.snapshot(engine, statuses)
        now = self.edges.clock()
        primary = engine.replica(snap.primary)
        if snap.primary not in statuses:
            raise UnsafeError(f"refused: primary {snap.primary} of {engine.name} does not answer; nothing changed")
        current = replace(record.phase, phase=statuses[snap.primary].phase,
                          until=statuses[snap.primary].phase_until)
        try:
            after = transition(current, event, now, until)
        except IllegalTransition as error:
            raise UnsafeError(f"refused: {engine.name}: {error}") from None
        epoch = self._epoch(record, statuses)
        self.edges.engines.set_phase(primary, phase, until, epoch)
        for name in statuses:
            if name != snap.primary and phase is Phase.HALTED:
                try:
                    self.edges.engines.set_phase(engine.replica(name), phase, until, epoch)
                except FailoverError:
                    continue
        saved = save_engine(self.store, replace(record, phase=after, epoch=max(record.epoch, epoch)))
        change = PhaseChange(engine.name, current, after, event, now, reason)
        message = announce(change, self.display)
        self.edges.notifier.publish(Event(now, EventKind.PHASE, engine.name, message,
                                          {"phase": after.phase.value, "until": after.until, "forced": force}))
        self._audit(f"phase.{event.value}", {"engine": engine.name, "until": until, "epoch": epoch,
                                             "reason": reason, "forced": force})
        return saved

    def protect(self, engine_name: str | None, duration: float, reason: str) -> EngineRecord:
        engine = self.engine(engine_name)
        record = load_engine(self.store, self.topology, engine.name)
        event = PhaseEvent.EXTEND if record.phase.phase is Phase.PROTECTION else PhaseEvent.PROTECT
        return self._set_phase(engine, event, Phase.PROTECTION, self.edges.clock() + duration, reason)

    def reopen(self, engine_name: str | None, *, force: bool, reason: str) -> EngineRecord:
        engine = self.engine(engine_name)
        incident = self.store.open_incident(engine.name)
        if incident is not None and not force:
            raise UnsafeError(f"refused: incident {incident.id} is {incident.status.value}; a runbook step is "
                              "unconfirmed (use --force to reopen anyway)")
        event = PhaseEvent.FORCE_OPEN if force else PhaseEvent.REOPEN
        return self._set_phase(engine, event, Phase.OPEN, None, reason, force=force)

    # ---- history / report -----------------------------------------------------------------------------------

    def history(self, engine_name: str | None = None, limit: int = 20) -> list[Incident]:
        if engine_name is not None:
            self.engine(engine_name)
        return self.store.incidents(engine=engine_name, limit=limit)


# ---- the emergency brake ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HaltOutcome:
    """What `failover halt` did: which replicas confirmed the halt, and where the record of it went."""

    engine: str
    primary: str
    epoch: int
    halted: tuple[str, ...]
    silent: tuple[str, ...]  # did not answer, or refused
    recorded: bool = False  # audit entry and engine record are in the store
    spool: Path | None = None  # where they were queued instead
    store_problem: str = ""  # why the store did not take them
    spool_problem: str = ""  # why the spool did not either (then this outcome is the only trace)
    replayed: int = 0  # older queued records written into the store on the way
    unplaced: str = ""  # why the replicas were reached where the file places them (the store did not say in time)


PLACES_BUDGET = 2.0  # seconds `halt` waits for the store to say where replaced replicas run before it goes without


def placed_within(loaded: LoadedConfig, budget: float = PLACES_BUDGET,
                  open_store: Callable[[], StateStore] | None = None) -> tuple[Topology, str]:
    """Where the replicas run now for `failover halt`, which must never wait on the store: the store is asked on a
    thread of its own and given `budget` seconds. When it answers, every replica `failover replace` moved is at its
    recorded place (`current_topology`), so the brake reaches a new primary the file does not know. When it fails or
    is slow, the file's topology and why (the caller says so: a replaced replica may then be missed)."""
    found: list[Topology] = []
    failed: list[str] = []

    def read() -> None:
        try:
            with (open_store or loaded.open_store)() as store:
                found.append(current_topology(loaded.topology, store))
        except Exception as error:  # any failure on this thread means "use the file", and never a traceback
            failed.append(" ".join(str(error).split()) or type(error).__name__)

    reader = threading.Thread(target=read, name="recorded-topology", daemon=True)
    reader.start()
    reader.join(budget)
    if found:
        return found[0], ""
    return loaded.topology, failed[0] if failed else f"no answer within {budget:g}s"


class EmergencyBrake:
    """`failover halt` needs no store. It reaches the engines first, with an epoch above every epoch they report,
    and records afterwards: in the store when it answers, else in the local spool (replayed by the next command
    that opens the store). A store that is down or full must never delay or prevent the halt itself.

    `notifier(store)` gives the channels the halt is announced on, last: given the open store once the halt is
    recorded there (an outbox can queue the webhooks in it), None when the store did not answer."""

    def __init__(self, loaded: LoadedConfig, engines: EngineControl,
                 notifier: Callable[[StateStore | None], Notifier], *, actor: str,
                 clock: Callable[[], float] = time.time,
                 open_store: Callable[[], StateStore] | None = None, topology: Topology | None = None,
                 unplaced: str = "") -> None:
        # `topology`: where the replicas run now (`placed_within`); the file's, and why (`unplaced`), when the store
        # did not say in time
        self.loaded, self.engines, self.notifier = loaded, engines, notifier
        self.topology = topology if topology is not None else loaded.topology
        self.unplaced = unplaced
        self.actor, self.clock, self.open_store = actor, clock, open_store or loaded.open_store

    def halt(self, engine_name: str | None, reason: str) -> HaltOutcome:
        engine = pick_engine(self.topology, engine_name)
        statuses = self._statuses(engine)
        primary = self._primary(engine, statuses)
        now = self.clock()
        before = PhaseState(statuses[primary].phase, now, statuses[primary].phase_until)
        after = transition(before, PhaseEvent.HALT, now, None)  # legal from every phase: no record needed
        epoch = max(status.epoch for status in statuses.values()) + 1
        halted, silent = self._stop(engine, primary, statuses, epoch)
        message = announce(PhaseChange(engine.name, before, after, PhaseEvent.HALT, now, reason),
                           parse_timezone(self.topology.display_timezone))
        event = Event(now, EventKind.PHASE, engine.name, message, {"phase": after.phase.value, "until": None,
                                                                   "forced": False, "epoch": epoch})
        outcome = HaltOutcome(engine.name, primary, epoch, halted, silent, unplaced=self.unplaced)
        return self._record(engine, outcome, after, reason, event)

    def _statuses(self, engine: Engine) -> dict[str, ReplicaStatus]:
        found = answering(self.engines, engine.replicas)
        if not found:
            raise UnsafeError(f"refused: no replica of {engine.name} answers; nothing changed")
        return found

    @staticmethod
    def _primary(engine: Engine, statuses: Mapping[str, ReplicaStatus]) -> str:
        """The replica that says it is primary (the highest epoch wins); the configured one if none says so."""
        claims = [(s.epoch, name) for name, s in statuses.items() if s.role is Role.PRIMARY]
        if claims:
            return max(claims)[1]
        if engine.primary in statuses:
            return engine.primary
        raise UnsafeError(f"refused: no replica of {engine.name} claims to be primary and {engine.primary} does "
                          "not answer; nothing changed")

    def _stop(self, engine: Engine, primary: str, statuses: Mapping[str, ReplicaStatus],
              epoch: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The primary first (its failure is the command's failure), then every other replica that answered."""
        self.engines.set_phase(engine.replica(primary), Phase.HALTED, None, epoch)
        halted, silent = [primary], [r.name for r in engine.replicas if r.name not in statuses]
        deposed = deposed_primaries(statuses)  # fenced, never stamped: a stamp would make it primary again
        for name in statuses:
            if name == primary:
                continue
            try:
                if name in deposed:
                    self.engines.fence(engine.replica(name), epoch)
                else:
                    self.engines.set_phase(engine.replica(name), Phase.HALTED, None, epoch)
                halted.append(name)
            except FailoverError:
                silent.append(name)
        return tuple(halted), tuple(silent)

    def _record(self, engine: Engine, outcome: HaltOutcome, after: PhaseState, reason: str,
                event: Event) -> HaltOutcome:
        """Into the store, else into the spool; then the announcement (last: a slow webhook may delay this
        command's exit, never the halt or its record)."""
        url = self.loaded.store_url
        detail = {"engine": engine.name, "until": None, "epoch": outcome.epoch, "reason": reason, "forced": False,
                  "halted": list(outcome.halted)}
        store: StateStore | None = None
        try:
            store = self.open_store()
            epoch = self._save(store, engine, outcome, after)
            store.audit(self.actor, "phase.halt", {**detail, "epoch": epoch}, after.since)
            replayed = spool.replay(store, url, self.topology, self.clock())
            outcome = replace(outcome, epoch=epoch, recorded=True, replayed=replayed)
            event = replace(event, detail={**event.detail, "epoch": epoch})
        except (FailoverError, OSError) as error:
            outcome = self._queue(engine, outcome, after, detail, " ".join(str(error).split()) or type(error).__name__)
        try:
            self.notifier(store if outcome.recorded else None).publish(event)
        finally:
            if store is not None:
                store.close()
        return outcome

    def _queue(self, engine: Engine, outcome: HaltOutcome, after: PhaseState, detail: dict[str, Any],
               problem: str) -> HaltOutcome:
        queued = spool.Spooled(self.loaded.store_url, after.since, self.actor, "phase.halt", detail, engine.name,
                               outcome.epoch)
        try:
            return replace(outcome, spool=spool.append(queued), store_problem=problem)
        except OSError as spool_error:
            return replace(outcome, store_problem=problem,
                           spool_problem=f"{spool.spool_path()}: {spool_error.strerror or spool_error}")

    def _save(self, store: StateStore, engine: Engine, outcome: HaltOutcome, after: PhaseState) -> int:
        """The engine record learns of the halt. If it holds an epoch the replicas have not seen yet (a leader
        about to use it), the halt is stamped again above it, so that no command of that leader outranks it."""
        epoch = outcome.epoch
        for _ in range(5):
            record = load_engine(store, self.topology, engine.name)
            if record.epoch >= epoch:
                epoch = record.epoch + 1
                for name in outcome.halted:
                    try:
                        self.engines.set_phase(engine.replica(name), Phase.HALTED, None, epoch)
                    except FailoverError:
                        continue
            try:
                save_engine(store, replace(record, phase=after, epoch=epoch))
                return epoch
            except Conflict:
                continue
        raise StoreError(f"engine record {engine.name} kept changing under the halt; not written")
