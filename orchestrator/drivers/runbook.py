"""Runs the core's runbook step machine against the engines, the providers and the store (docs/design.md §6).

Each call to `advance` moves one incident as far as it can without waiting: it asks the core for the next step,
journals `started`, runs the step's handler (`drivers.steps`: each first checks whether the step's effect already
holds, so a resumed step never acts twice), journals the outcome, and goes on until a step is pending, backing off,
finished, or needs a human. Nothing here sleeps; the daemon's next cycle, the next cron run, or a new leader
continues. Nothing here knows one step from another either: what a step does is its handler's business, and this
driver keeps the books (`steps.Book`: the store, announcements, hooks) and the safety net around every step
(leadership, needs_human, halting everywhere).

Failpoints: `FAILOVER_FAILPOINT=<step>` (or `<step>:before` / `<step>:after`) kills the process with SIGKILL at that
point, so tests can show that every step resumes (see `failpoint`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast
from urllib.parse import urlparse

from orchestrator.core import runbook as rb
from orchestrator.core.errors import FailoverError
from orchestrator.core.health import Assessment
from orchestrator.core.model import Engine, Phase, ReplicaStatus, Role, Topology
from orchestrator.core.phases import PhaseChange, PhaseEvent, announce, mirror, parse_timezone
from orchestrator.core.runbook import Fact, Facts, Plan, Step, deposed_primaries
from orchestrator.drivers.events import Event, EventKind, Notifier
from orchestrator.drivers.reconcile import JournalReader, diverged_tail
from orchestrator.drivers.report import PhaseReader, record_engine_phases
from orchestrator.drivers.state import EPOCH_STRIDE, EngineRecord, load_engine, save_engine
from orchestrator.drivers.steps import PROVIDER_CALL_DEADLINE, StepContext, StepIO, run_step
from orchestrator.drivers.webhooks import run_hooks
from orchestrator.engine.base import EngineControl
from orchestrator.store.base import StateStore
from orchestrator.store.records import Incident, IncidentStatus
from providers.base import CloudProvider
from providers.traffic import TrafficRouter

__all__ = ["PROVIDER_CALL_DEADLINE", "Progress", "RunbookDriver", "address_of", "deposed_primaries", "failpoint",
           "new_plan", "plan_detail", "plan_of"]

FAILPOINT_ENV = "FAILOVER_FAILPOINT"


def failpoint(step: Step, where: str) -> None:
    """Die here if the environment asks for it (tests of resumption only).

    `<step>:before` dies after `started` is journaled, before the step acts; `<step>` or `<step>:acted` after it
    acted, before its outcome is journaled (the hardest case: the world changed, the journal does not know);
    `<step>:after` once the outcome is journaled. With `FAILOVER_FAILPOINT_ONCE=<path>`, only the first process
    to reach the point dies (it creates the file)."""
    wanted = os.environ.get(FAILPOINT_ENV)
    if not wanted or wanted not in (f"{step.value}:{where}", step.value if where == "acted" else ""):
        return
    once = os.environ.get(FAILPOINT_ENV + "_ONCE")
    if once:  # among several processes (HA tests), only the first to get here dies
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class Progress:
    incident: str
    status: rb.Status
    step: Step | None
    message: str
    stalled_for: float | None = None  # seconds the runbook could not move, once that outlasts the step's deadline


def plan_of(incident: Incident) -> Plan:
    detail = incident.detail
    return Plan(
        engine=incident.engine,
        source=str(detail["source"]),
        target=str(detail["target"]),
        epoch=int(detail["epoch"]),
        protection=float(detail["protection"]),
        max_lag=int(detail.get("max_lag", 0)),
        has_dns=bool(detail.get("has_dns", False)),
        target_address=str(detail.get("target_address", "")),
        replicas=tuple(str(name) for name in detail.get("replicas", ())),
        seq_floor=int(detail.get("seq_floor", 0)),
        step_deadline=float(detail.get("step_deadline", rb.REFERENCE_DEADLINE)),
    )


def plan_detail(plan: Plan) -> dict[str, Any]:
    return {
        "source": plan.source, "target": plan.target, "epoch": plan.epoch, "protection": plan.protection,
        "max_lag": plan.max_lag, "has_dns": plan.has_dns, "target_address": plan.target_address,
        "replicas": list(plan.replicas), "seq_floor": plan.seq_floor, "step_deadline": plan.step_deadline,
    }


def address_of(control_url: str) -> str:
    """The address traffic should go to: the host of the replica's control URL."""
    return urlparse(control_url).hostname or control_url


def new_plan(topology: Topology, engine_name: str, source: str, target: str, epoch: int, *, has_router: bool,
             seq_floor: int = 0) -> Plan:
    """A failover's fixed parameters from the configuration: what an incident is opened with, and what
    `failover plan` walks the steps with."""
    engine = topology.engines[engine_name]
    return Plan(
        engine=engine_name, source=source, target=target, epoch=epoch, protection=topology.protection.duration,
        max_lag=topology.policy.max_lag_on_failover, has_dns=engine.dns is not None and has_router,
        target_address=address_of(engine.replica(target).control_url),
        replicas=tuple(r.name for r in engine.replicas), seq_floor=seq_floor,
        step_deadline=topology.policy.step_deadline,
    )


class RunbookDriver:
    def __init__(
        self,
        topology: Topology,
        store: StateStore,
        engines: EngineControl,
        providers: Mapping[str, CloudProvider],
        routers: Mapping[str, TrafficRouter],
        notifier: Notifier,
        clock: Callable[[], float],
        *,
        token: int = 0,
        actor: str = "orchestrator",
        pre_hooks: Sequence[str] = (),
        post_hooks: Sequence[str] = (),
        guard: Callable[[], bool] | None = None,
        unreachable: Callable[[Engine], Collection[str]] | None = None,
    ) -> None:
        self.topology = topology
        self.store = store
        self.engines = engines
        self.providers = providers
        self.routers = routers
        self.notifier = notifier
        self.clock = clock
        self.token = token
        self.actor = actor
        self.display = parse_timezone(topology.display_timezone)
        self.pre_hooks = tuple(pre_hooks)
        self.post_hooks = tuple(post_hooks)
        self.guard = guard
        self.unreachable = unreachable
        self.io = StepIO(engines, providers, routers, clock)

    # ---- the loop -------------------------------------------------------------------------------------------

    def advance(self, incident_id: str, verdicts: Mapping[str, Assessment]) -> Progress:
        """Run steps until one waits; returns where the runbook stands."""
        incident = self.store.incident(incident_id)
        engine = self.topology.engines[incident.engine]
        self.io.silent.clear()
        if self.unreachable is not None:  # what the probe round just before found dark is not asked again here
            self.io.silent.update(self.unreachable(engine))
        plan = plan_of(incident)
        if not plan.replicas:
            plan = replace(plan, replicas=tuple(r.name for r in engine.replicas))
        plan = self._adopt(incident, plan, engine)
        limits = rb.deadlines(plan.step_deadline)
        while True:
            journal = self.store.journal(incident_id)
            now = self.clock()
            nxt = rb.next_step(journal, now, limits)
            if nxt.status is rb.Status.FINISHED:
                self._finish(incident_id, plan, now)
                return Progress(incident_id, nxt.status, None, "finished")
            if nxt.status is rb.Status.WAIT:
                return Progress(incident_id, nxt.status, nxt.step, f"{nxt.step} retries after backoff")
            if nxt.status is rb.Status.NEEDS_HUMAN:
                self._needs_human(incident, plan, engine, nxt, journal_has_it=journal[-1].state == "needs_human")
                return Progress(incident_id, nxt.status, nxt.step, nxt.reason)
            step = nxt.step
            assert step is not None
            if self.guard is not None and not self.guard():
                return self._unsure(incident_id, step, journal, limits, now)
            if not rb.was_started(journal, step, nxt.attempt):
                self._journal(incident_id, step, rb.StepState.STARTED, now, {"attempt": nxt.attempt})
            failpoint(step, "before")
            context = StepContext(plan, engine, verdicts, self.clock(), journal, incident, self.pre_hooks,
                                  self.post_hooks)
            outcome, detail = run_step(self.io, self, context, step)
            failpoint(step, "acted")
            entry = rb.record(step, outcome, self.clock(), detail)
            if entry is None:
                return Progress(incident_id, rb.Status.RUN, step, f"{step} pending")
            self._journal(incident_id, step, rb.StepState(entry.state), entry.at, dict(entry.detail))
            failpoint(step, "after")
            started_at = next((e.at for e in journal if e.step == step.value and e.state == "started"), now)
            self.notifier.publish(Event(entry.at, EventKind.STEP, plan.engine, f"{step.value}: {entry.state}",
                                        {"step": step.value, "state": entry.state, "incident": incident_id,
                                         "duration": entry.at - started_at, **entry.detail}))
            if outcome not in (rb.Outcome.DONE, rb.Outcome.SKIPPED, rb.Outcome.EXTEND):
                continue  # the core decides between retry, wait and a human

    def _unsure(
        self, incident_id: str, step: Step, journal: Sequence[Any], limits: Mapping[Step, float | None], now: float
    ) -> Progress:
        """Leadership is not certain, so no step may act; but a runbook must never wait in silence. Once it has
        not moved for longer than the step's deadline, say so: the controller pages, and `check` exits 3."""
        waiting = now - journal[-1].at if journal else 0.0
        deadline = limits.get(step) or rb.REFERENCE_DEADLINE
        stalled = waiting if waiting > deadline else None
        message = "leadership not certain; stopped before a step"
        if stalled is not None:
            message += f" (the runbook has not moved for {waiting:.0f}s, past {step}'s {deadline:g}s deadline)"
        return Progress(incident_id, rb.Status.WAIT, step, message, stalled)

    def _adopt(self, incident: Incident, plan: Plan, engine: Engine) -> Plan:
        """A new leader (a newer fencing token) takes the runbook over under an epoch of its own and stamps it on
        every replica it reaches, so that the deposed leader's calls are refused from now on."""
        floor = self.token * EPOCH_STRIDE
        if floor <= plan.epoch:
            return plan
        now = self.clock()
        statuses = self.statuses(engine)
        epoch = max(floor, plan.epoch, *(s.epoch for s in statuses.values())) + 1
        adopted = replace(plan, epoch=epoch)
        self.store.update_incident(incident.id, detail={"epoch": epoch, "adopted_by": self.actor}, at=now)
        self.store.audit(self.actor, "incident.adopted", {"incident": incident.id, "epoch": epoch,
                                                          "previous_epoch": plan.epoch}, now)
        for name, status in statuses.items():
            if name == plan.source or status.role is Role.FENCED:
                continue
            try:
                self.engines.set_phase(engine.replica(name), status.phase, status.phase_until, epoch)
            except FailoverError:
                continue
        return adopted

    def _journal(self, incident_id: str, step: Step, state: rb.StepState, at: float, detail: dict[str, Any]) -> None:
        self.store.append_journal(incident_id, step.value, state.value, at, detail, token=self.token)

    # ---- facts ----------------------------------------------------------------------------------------------

    def statuses(self, engine: Engine) -> dict[str, ReplicaStatus]:
        """Every replica that answers; one that did not is not asked again within the same `advance`."""
        return self.io.statuses(engine)

    def facts(self, plan: Plan, engine: Engine, verdicts: Mapping[str, Assessment], *, old_instance: bool = False,
              target_instance: bool = False, dns: bool = False) -> Facts:
        needs = [fact for fact, wanted in ((Fact.OLD_INSTANCE, old_instance), (Fact.TARGET_INSTANCE, target_instance),
                                           (Fact.DNS, dns)) if wanted]
        return self.io.facts(plan, engine, verdicts, needs)

    # ---- the books a step keeps (steps.Book) -------------------------------------------------------------------

    def run_hooks(self, commands: Sequence[str], plan: Plan, incident: Incident, when: str) -> str | None:
        """Run hook commands with the failover's context; the first failure, described, or None."""
        if not commands:
            return None
        context = {"incident": incident.id, "engine": plan.engine, "source": plan.source, "target": plan.target,
                   "epoch": str(plan.epoch), "kind": incident.kind, "reason": incident.reason, "hook": when}
        results = run_hooks(commands, context)
        self.store.audit(self.actor, f"hooks.{when}", {"incident": incident.id, "results": [
            {"command": r.command, "returncode": r.returncode} for r in results]}, self.clock())
        bad = [r for r in results if r.returncode != 0]
        return f"{bad[0].command!r} exited {bad[0].returncode}" if bad else None

    def snapshot_stats(self, incident_id: str, engine: Engine, key: str) -> None:
        """Request counters of each replica that offers them (the reference replica does), so the report can say
        how many orders were refused, and why, while the engine was halted or protected."""
        stats = getattr(self.engines, "stats", None)
        if stats is None:
            return
        found = {}
        for replica in engine.replicas:
            try:
                body = stats(replica)
                found[replica.name] = {"refused": dict(body.get("refused", {})),
                                       "refused_by_phase": dict(body.get("refused_by_phase", {}))}
            except FailoverError:
                continue
        self.store.update_incident(incident_id, detail={key: found}, at=self.clock())

    def record_phases(self, incident: Incident, now: float) -> None:
        """Capture the new primary's phase entries into the incident (`report.record_engine_phases`), so the
        report's halt and protection windows are the engine's, not when this driver journaled its steps."""
        reader = getattr(self.engines, "journal", None)
        if reader is None or not hasattr(self.engines, "status"):
            return
        engine = self.topology.engines[incident.engine]
        target = str(incident.detail.get("target", incident.target))
        if target not in {replica.name for replica in engine.replicas}:
            return
        record_engine_phases(self.store, self.store.incident(incident.id), cast("PhaseReader", self.engines),
                             engine.replica(target), now)

    def archive_tail(self, incident: Incident, now: float) -> dict[str, Any]:
        """Record in the incident what the old primary wrote that the new primary does not hold (see
        `reconcile`): at close, or when a failover is handed to a human, if both answer and the old primary can
        no longer write; else later (the controller asks each cycle once the old primary answers, fenced). An old
        primary that still answers as primary may still be journaling orders nobody acknowledges (started again at
        its old epoch, say, and not yet fenced): a comparison then would archive part of its tail and call it
        the whole."""
        engine = self.topology.engines[incident.engine]
        source, target = str(incident.source), str(incident.detail.get("target", incident.target))
        reader = getattr(self.engines, "journal", None)
        statuses = self.statuses(engine)
        found: dict[str, Any] = {"replica": source, "checked": False}
        if reader is None:
            found["why"] = "this engine offers no journal to compare"
        elif source not in statuses:
            found["why"] = "the old primary did not answer; compared when it answers again"
        elif target not in statuses:
            found["why"] = f"the new primary {target} did not answer; compared when both answer"
        elif statuses[source].role is Role.PRIMARY:
            found["why"] = (f"{source} still answers as primary at epoch {statuses[source].epoch}: it may still "
                            "write; compared once it is fenced")
        else:
            try:
                found = diverged_tail(cast(JournalReader, self.engines), engine.replica(source),
                                      engine.replica(target), statuses[source].last_seq, statuses[target].last_seq)
            except (FailoverError, KeyError, ValueError, TypeError) as error:
                found["why"] = f"comparison failed: {error}"
        found["at"] = now
        self.store.update_incident(incident.id, detail={"diverged": found}, at=now)
        if found.get("count"):
            self.store.audit(self.actor, "incident.diverged_archived",
                             {"incident": incident.id, "replica": source, "entries": found["count"],
                              "common_seq": found.get("common_seq")}, now)
            self.say(incident.engine, now, f"[{incident.engine}] {found['count']} entries {source} wrote after "
                     f"seq {found.get('common_seq')} were never acknowledged and are not in the new primary's "
                     f"history: archived in incident {incident.id} for reconciliation, not replayed",
                     EventKind.INCIDENT)
        return found

    def _finish(self, incident_id: str, plan: Plan, now: float) -> None:
        incident = self.store.incident(incident_id)
        if not incident.is_open:
            return
        self.store.update_incident(incident_id, status=IncidentStatus.CLOSED, at=now)
        self.store.audit(self.actor, "incident.closed", {"incident": incident_id, "engine": plan.engine}, now)
        self.say(plan.engine, now, f"[{plan.engine}] incident {incident_id} closed; {plan.target} is primary",
                 EventKind.INCIDENT)

    def _needs_human(
        self, incident: Incident, plan: Plan, engine: Engine, nxt: rb.Next, *, journal_has_it: bool
    ) -> None:
        if journal_has_it and incident.status is IncidentStatus.NEEDS_HUMAN:
            return
        now = self.clock()
        if not journal_has_it:
            entry = rb.needs_human(nxt.step, nxt.reason, now)
            self.store.append_journal(incident.id, entry.step, entry.state, now, dict(entry.detail), token=self.token)
        journal = self.store.journal(incident.id)
        touched = any(e.step != Step.ANNOUNCE for e in journal if e.state == rb.StepState.STARTED)
        trading = "nothing was changed; trading as before"
        if touched:  # trading never reopens on an uncertain state; before the halt step nothing was changed
            confirmed = self.halt_everywhere(engine, plan.epoch, "needs a human", now)
            trading = "trading halted" if confirmed else "halt not yet confirmed by the primary"
        self.store.update_incident(incident.id, status=IncidentStatus.NEEDS_HUMAN, at=now)
        self.store.audit(self.actor, "incident.needs_human", {"incident": incident.id, "reason": nxt.reason}, now)
        self.say(plan.engine, now, f"[{plan.engine}] NEEDS A HUMAN: incident {incident.id} at {nxt.step}: "
                 f"{nxt.reason}; {trading}", EventKind.PAGE)
        if touched:
            # the old primary may be deposed: whoever takes over needs its unacknowledged tail recorded as much as a
            # close does (soak seed 2043: a failover that ended here never recorded it)
            self.archive_tail(self.store.incident(incident.id), now)
            self.record_phases(self.store.incident(incident.id), now)

    def halt_everywhere(self, engine: Engine, epoch: int, reason: str, now: float, *, quiet: bool = False) -> bool:
        """Halt every replica that answers (a standby records the epoch; a fenced one refuses, harmlessly), and
        announce HALTED only once it is true: the engine's primary answered and is halted. A primary that did not
        answer may still be trading; announcing a halt it has not taken would be a lie to every client. Until it
        answers, the controller tries again each cycle (`Controller._enforce`). Returns whether it is true."""
        record = self.update_record(engine.name, lambda r: replace(r, epoch=max(r.epoch, epoch)))
        answered, _ = self.io.halt_or_fence(engine, self.statuses(engine), max(epoch, record.epoch),
                                             record.primary)
        trading = [n for n, s in answered.items() if s.role is Role.PRIMARY and s.phase is not Phase.HALTED]
        halted_primary = record.primary in answered and not trading
        if halted_primary:
            self.record_phase(Plan(engine.name, record.primary, "", epoch, 0), PhaseEvent.HALT, now, None, reason)
        elif record.phase.phase is not Phase.HALTED and not quiet:
            self.say(engine.name, now, f"[{engine.name}] halt ordered (epoch {epoch}) but the primary "
                     f"{record.primary} does not answer: it may still be trading; retrying every cycle",
                     EventKind.PAGE)
        return halted_primary

    # ---- bookkeeping ----------------------------------------------------------------------------------------

    def update_record(self, engine: str, change: Callable[[EngineRecord], EngineRecord]) -> EngineRecord:
        record = load_engine(self.store, self.topology, engine)
        return save_engine(self.store, change(record))

    def record_phase(self, plan: Plan, event: PhaseEvent, now: float, until: float | None, reason: str) -> None:
        record = load_engine(self.store, self.topology, plan.engine)
        before = record.phase
        after = mirror(before, event, now, until)  # the step confirmed the engine made it: the record follows
        if after == before:
            return
        save_engine(self.store, replace(record, phase=after))
        change = PhaseChange(plan.engine, before, after, event, now, reason)
        self.say(plan.engine, now, announce(change, self.display), EventKind.PHASE,
                 {"phase": after.phase.value, "until": after.until, "before": before.phase.value})

    def say(
        self, engine: str, now: float, message: str, kind: EventKind, detail: dict[str, Any] | None = None
    ) -> None:
        self.notifier.publish(Event(now, kind, engine, message, detail or {}))
