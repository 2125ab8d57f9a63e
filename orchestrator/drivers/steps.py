"""One handler per runbook step: the step's IO half, next to its pure half in `core.runbook.RULES`.

A handler says everything about one step that touches the world: which engine, cloud and DNS calls it makes
(`act`), what it records once its effect holds (`done`), how a plan describes it (`describe`), and, for the few
steps that are not "check, act, check again", how it runs (`run`). The facts its check reads are the core row's
`needs`. The runbook driver runs handlers; `failover plan` runs the same `act` against recording edges
(`drivers.preview`), so the plan cannot list a call the runbook would not make.

Adding a step: a `Step` member and a `RULES` row in `core/runbook.py` (its deadline and its "already done?" check),
and a handler class here under `@handles`; nothing else dispatches on steps. Two kinds of object are passed in:

- `StepIO`: the calls a step may make (engines, providers, routers) and the facts it may gather. `act` and
  `describe` get nothing else, which is what makes them safe to run in a plan.
- `Book`: the runbook driver's bookkeeping (store, announcements, hooks). Only `done` and `run` get it; a plan
  never calls them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol, TypeVar

from orchestrator.core import runbook as rb
from orchestrator.core.errors import EngineError, FailoverError, ProviderError, StaleEpoch
from orchestrator.core.health import Assessment
from orchestrator.core.model import Engine, Phase, Replica, ReplicaStatus, Verdict
from orchestrator.core.phases import PhaseEvent
from orchestrator.core.runbook import Fact, Facts, JournalRecord, Outcome, Plan, Step
from orchestrator.drivers.events import EventKind
from orchestrator.drivers.state import EngineRecord
from orchestrator.engine.base import EngineControl, PromoteRefused
from orchestrator.store.records import Incident
from providers.base import CloudProvider
from providers.traffic import TrafficRouter

PROVIDER_CALL_DEADLINE = 10.0  # one provider call inside a step; the step's own deadline bounds the retries


@dataclass
class StepIO:
    """The engines, clouds and DNS a step talks to. A replica that did not answer is not asked again until
    `silent` is cleared (each ask costs a timeout); the runbook driver clears it once per `advance`."""

    engines: EngineControl
    providers: Mapping[str, CloudProvider]
    routers: Mapping[str, TrafficRouter]
    clock: Callable[[], float] = time.time
    silent: set[str] = field(default_factory=set)

    def statuses(self, engine: Engine) -> dict[str, ReplicaStatus]:
        """Every replica that answers. Not asking a silent one again is safe: an old primary that comes back
        meanwhile cannot acknowledge anything once the others carry the new epoch, and the next cycle asks again."""
        return self._read(engine.replicas)

    def target_status(self, engine: Engine, target: str) -> dict[str, ReplicaStatus]:
        """The new primary's status alone (steps whose checks read nothing else: `StepRule.target_only`)."""
        return self._read([engine.replica(target)])

    def _read(self, replicas: Sequence[Replica]) -> dict[str, ReplicaStatus]:
        found = {}
        for replica in replicas:
            if replica.name in self.silent:
                continue
            try:
                found[replica.name] = self.engines.status(replica)
            except FailoverError:
                self.silent.add(replica.name)
        return found

    def instance_state(self, engine: Engine, replica_name: str) -> str | None:
        replica = engine.replica(replica_name)
        provider = self.providers.get(replica.site)
        if provider is None:
            return None
        try:
            return str(provider.instance_state(replica.instance).value)
        except FailoverError:
            return None

    def dns_target(self, plan: Plan, engine: Engine) -> str | None:
        if engine.dns is None or plan.engine not in self.routers:
            return None
        try:
            return self.routers[plan.engine].current_target(engine.dns)
        except FailoverError:
            return None

    def facts(self, plan: Plan, engine: Engine, verdicts: Mapping[str, Assessment], needs: Sequence[Fact] = (),
              *, target_only: bool = False) -> Facts:
        """The replicas' statuses (or the target's alone) and the target's verdict, and the cloud facts in `needs`
        (each one call)."""
        target = verdicts.get(plan.target)
        return Facts(
            statuses=self.target_status(engine, plan.target) if target_only else self.statuses(engine),
            old_instance_state=self.instance_state(engine, plan.source) if Fact.OLD_INSTANCE in needs else None,
            target_instance_state=self.instance_state(engine, plan.target) if Fact.TARGET_INSTANCE in needs else None,
            dns_target=self.dns_target(plan, engine) if Fact.DNS in needs else None,
            target_verdict=target.verdict if target else Verdict.UNKNOWN,
        )

    def halt_or_fence(
        self, engine: Engine, statuses: Mapping[str, ReplicaStatus], epoch: int, primary: str
    ) -> tuple[dict[str, ReplicaStatus], list[str]]:
        """Halt each replica that answered, the primary first, at `epoch`; but fence a deposed primary
        (`deposed_primaries`) instead. Returns what each said and the errors. StaleEpoch propagates: a newer
        leader acted."""
        answered: dict[str, ReplicaStatus] = {}
        errors: list[str] = []
        deposed = rb.deposed_primaries(statuses)
        for name in sorted(statuses, key=lambda n: n != primary):
            replica = engine.replica(name)
            try:
                if name in deposed:
                    answered[name] = self.engines.fence(replica, epoch)
                else:
                    answered[name] = self.engines.set_phase(replica, Phase.HALTED, None, epoch)
            except StaleEpoch:
                raise
            except FailoverError as error:  # a fenced replica refuses the phase but still says what it is
                answered[name] = statuses[name]
                errors.append(str(error))
        return answered, errors


class Book(Protocol):
    """The runbook driver's bookkeeping, for what a step records once done (`RunbookDriver` implements it)."""

    clock: Callable[[], float]

    def run_hooks(self, commands: Sequence[str], plan: Plan, incident: Incident, when: str) -> str | None: ...
    def record_phase(self, plan: Plan, event: PhaseEvent, now: float, until: float | None, reason: str) -> None: ...
    def say(self, engine: str, now: float, message: str, kind: EventKind,
            detail: dict[str, Any] | None = None) -> None: ...
    def update_record(self, engine: str, change: Callable[[EngineRecord], EngineRecord]) -> EngineRecord: ...
    def snapshot_stats(self, incident_id: str, engine: Engine, key: str) -> None: ...
    def archive_tail(self, incident: Incident, now: float) -> dict[str, Any]: ...
    def record_phases(self, incident: Incident, now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class StepContext:
    """One run of one step: the failover's plan and what the cycle knows. `incident` is None in a plan."""

    plan: Plan
    engine: Engine
    verdicts: Mapping[str, Assessment]
    now: float
    journal: Sequence[JournalRecord] = ()
    incident: Incident | None = None
    pre_hooks: tuple[str, ...] = ()
    post_hooks: tuple[str, ...] = ()

    @property
    def opened(self) -> Incident:
        if self.incident is None:
            raise AssertionError("a step that records needs its incident (a plan records nothing)")
        return self.incident


class StepHandler:
    """The default step: skip if there is nothing to do; if its effect already holds, record it done; else act,
    look again, and record it done or retry. Subclasses set `step` and override what differs."""

    step: ClassVar[Step]
    contingent: ClassVar[bool] = False  # acts only on a condition known when it runs (a plan lists it "if needed")

    @property
    def rule(self) -> rb.StepRule:
        return rb.RULES[self.step]

    def holds(self, plan: Plan, facts: Facts) -> bool:
        """The core's "already done?" check; a step without one never holds before it ran."""
        check = self.rule.check
        return check is not None and check(plan, facts)

    def gather(self, io: StepIO, ctx: StepContext) -> Facts:
        return io.facts(ctx.plan, ctx.engine, ctx.verdicts, self.rule.needs, target_only=self.rule.target_only)

    def skip(self, ctx: StepContext) -> str | None:
        """Why the step has nothing to do in this failover (journaled as skipped), or None."""
        return None

    def act(self, io: StepIO, ctx: StepContext, facts: Facts) -> str | None:
        """The step's calls, and nothing else (a plan runs this against recording edges). Returns an error to
        journal when part of it failed; whether the step is done is for the check to say."""
        return None

    def done(self, book: Book, ctx: StepContext, facts: Facts) -> dict[str, Any]:
        """What the step records once its effect holds: the journal detail, and announcements or records."""
        return {}

    def describe(self, io: StepIO, ctx: StepContext, facts: Facts, holds: bool) -> list[str]:
        """The step in words for a plan, where it is more than its calls (or makes none because it holds)."""
        return [f"{self.step.value}: already so (no call)"] if holds else []

    def run(self, io: StepIO, book: Book, ctx: StepContext) -> tuple[Outcome, dict[str, Any]]:
        reason = self.skip(ctx)
        if reason is not None:
            return Outcome.SKIPPED, {"why": reason}
        facts = self.gather(io, ctx)
        if self.holds(ctx.plan, facts):
            return Outcome.DONE, {"already": True, **self.done(book, ctx, facts)}
        error = self.act(io, ctx, facts)
        return self.confirm(io, book, ctx, facts, error)

    def confirm(self, io: StepIO, book: Book, ctx: StepContext, before: Facts,
                error: str | None) -> tuple[Outcome, dict[str, Any]]:
        """After acting: done once the check holds, else retry (the core backs off, or hands over at the
        deadline)."""
        after = self.gather(io, ctx)
        if self.holds(ctx.plan, after):
            return Outcome.DONE, self.done(book, ctx, after)
        return Outcome.RETRY, {"error": error or f"{self.step.value} not confirmed"}


HANDLERS: dict[Step, StepHandler] = {}
H = TypeVar("H", bound=StepHandler)


def handles(cls: type[H]) -> type[H]:
    """Register a handler for its step (one per step)."""
    if cls.step in HANDLERS:
        raise AssertionError(f"two handlers for {cls.step}")
    HANDLERS[cls.step] = cls()
    return cls


def run_step(io: StepIO, book: Book, ctx: StepContext, step: Step) -> tuple[Outcome, dict[str, Any]]:
    """Run one step; an engine or cloud error is a retry, a newer epoch a failure for a human."""
    try:
        return HANDLERS[step].run(io, book, ctx)
    except StaleEpoch as error:
        return Outcome.FAIL, {"error": f"a newer epoch acted: {error}"}
    except (EngineError, ProviderError) as error:
        return Outcome.RETRY, {"error": str(error)}


# ---- the steps, in the runbook's order ----------------------------------------------------------------------------


@handles
class Announce(StepHandler):
    step = Step.ANNOUNCE

    def run(self, io: StepIO, book: Book, ctx: StepContext) -> tuple[Outcome, dict[str, Any]]:
        plan, incident = ctx.plan, ctx.opened
        failed = book.run_hooks(ctx.pre_hooks, plan, incident, "pre")
        if failed:
            return Outcome.FAIL, {"error": f"pre-failover hook failed, failover aborted: {failed}"}
        book.say(plan.engine, ctx.now, f"[{plan.engine}] {incident.kind} from {plan.source} to {plan.target} "
                 f"begins: {incident.reason}", EventKind.INCIDENT)
        return Outcome.DONE, {}

    def describe(self, io: StepIO, ctx: StepContext, facts: Facts, holds: bool) -> list[str]:
        return [f"notify: failover {ctx.plan.source} -> {ctx.plan.target}",
                *(f"run pre-failover hook: {command}" for command in ctx.pre_hooks)]


@handles
class Halt(StepHandler):
    """Every replica that answers at the new epoch, the primary first; a deposed primary fenced, never stamped."""

    step = Step.HALT

    def act(self, io: StepIO, ctx: StepContext, facts: Facts) -> str | None:
        _, errors = io.halt_or_fence(ctx.engine, facts.statuses, ctx.plan.epoch, ctx.plan.source)
        return "; ".join(errors) or None

    def done(self, book: Book, ctx: StepContext, facts: Facts) -> dict[str, Any]:
        # announced only when true: the old primary answered and is halted. If it did not answer it may still be
        # trading, and the halt is announced once it is fenced (the next step).
        if ctx.plan.source in facts.statuses:
            book.record_phase(ctx.plan, PhaseEvent.HALT, book.clock(), None, "failover")
        book.snapshot_stats(ctx.opened.id, ctx.engine, "stats_at_halt")
        return {}

    def describe(self, io: StepIO, ctx: StepContext, facts: Facts, holds: bool) -> list[str]:
        return [f"every replica that answers is already halted at epoch {ctx.plan.epoch} (no call)"] if holds else []


@handles
class FenceOldPrimary(StepHandler):
    step = Step.FENCE_OLD_PRIMARY

    def act(self, io: StepIO, ctx: StepContext, facts: Facts) -> str | None:
        """Raise the epoch on the old primary if it answers; stop its machine if it does not; carry the new epoch
        to every standby, so that none follows the old primary again."""
        plan = ctx.plan
        old = ctx.engine.replica(plan.source)
        errors = []
        try:
            io.engines.fence(old, plan.epoch)
        except StaleEpoch:
            raise
        except EngineError as error:
            errors.append(str(error))
        if plan.source not in facts.statuses:
            provider = io.providers.get(old.site)
            if provider is not None:
                try:
                    provider.fence(old.instance, deadline=PROVIDER_CALL_DEADLINE)
                except ProviderError as error:
                    errors.append(str(error))
        for name, status in facts.statuses.items():
            if name != plan.source and status.epoch < plan.epoch:
                try:
                    io.engines.set_phase(ctx.engine.replica(name), Phase.HALTED, None, plan.epoch)
                except EngineError as error:
                    errors.append(str(error))
        return "; ".join(errors) or None

    def done(self, book: Book, ctx: StepContext, facts: Facts) -> dict[str, Any]:
        how = rb.fenced(ctx.plan, facts)
        book.record_phase(ctx.plan, PhaseEvent.HALT, book.clock(), None, f"failover; old primary {how}")
        return {"how": how}

    def describe(self, io: StepIO, ctx: StepContext, facts: Facts, holds: bool) -> list[str]:
        return [f"{ctx.plan.source} already fenced: {rb.fenced(ctx.plan, facts)} (no call)"] if holds else []


@handles
class EnsureTargetRunning(StepHandler):
    step = Step.ENSURE_TARGET_RUNNING

    def act(self, io: StepIO, ctx: StepContext, facts: Facts) -> str | None:
        target = ctx.engine.replica(ctx.plan.target)
        provider = io.providers.get(target.site)
        if provider is not None:
            provider.start(target.instance, deadline=PROVIDER_CALL_DEADLINE)
        return None

    def describe(self, io: StepIO, ctx: StepContext, facts: Facts, holds: bool) -> list[str]:
        target = ctx.engine.replica(ctx.plan.target)
        provider = io.providers.get(target.site)
        if not holds:
            return [] if target.name in facts.statuses else [f"wait for {target.name} to answer"]
        if provider is None:
            return [f"{target.name} answers (no call)"]
        return [f"{provider.kind}: instance {target.instance} already running (no call)"]


@handles
class WaitCaughtUp(StepHandler):
    """Nothing to do but wait: pending (not journaled) until the target holds what it owes (`owed_seq`)."""

    step = Step.WAIT_CAUGHT_UP

    def confirm(self, io: StepIO, book: Book, ctx: StepContext, before: Facts,
                error: str | None) -> tuple[Outcome, dict[str, Any]]:
        caught, lag = rb.caught_up(ctx.plan, before)
        return (Outcome.DONE if caught else Outcome.PENDING), {"lag": lag}

    def describe(self, io: StepIO, ctx: StepContext, facts: Facts, holds: bool) -> list[str]:
        _, lag = rb.caught_up(ctx.plan, facts)
        now = f"lag now {lag}" if lag >= 0 else f"{ctx.plan.target} does not answer now"
        return [f"GET {ctx.engine.replica(ctx.plan.target).control_url}/v1/status until lag <= {ctx.plan.max_lag} "
                f"({now})"]


@handles
class Promote(StepHandler):
    step = Step.PROMOTE

    def act(self, io: StepIO, ctx: StepContext, facts: Facts) -> str | None:
        try:
            io.engines.promote(ctx.engine.replica(ctx.plan.target), ctx.plan.epoch)
        except PromoteRefused as error:
            return f"promotion refused: {error}"
        return None

    def done(self, book: Book, ctx: StepContext, facts: Facts) -> dict[str, Any]:
        plan, now = ctx.plan, book.clock()
        book.update_record(plan.engine, lambda r: replace(r, primary=plan.target, epoch=max(r.epoch, plan.epoch)))
        book.say(plan.engine, now, f"[{plan.engine}] {plan.target} is the new primary (epoch {plan.epoch})",
                 EventKind.STEP, {"promoted": plan.target})
        return {}


@handles
class SwitchTraffic(StepHandler):
    step = Step.SWITCH_TRAFFIC

    def skip(self, ctx: StepContext) -> str | None:
        return None if ctx.plan.has_dns else "no DNS record configured"

    def act(self, io: StepIO, ctx: StepContext, facts: Facts) -> str | None:
        if ctx.engine.dns is None:
            raise AssertionError(f"{ctx.engine.name}: a plan with DNS for an engine without it")
        io.routers[ctx.plan.engine].point_to(ctx.engine.dns, ctx.plan.target_address)
        return None

    def describe(self, io: StepIO, ctx: StepContext, facts: Facts, holds: bool) -> list[str]:
        return ["DNS already points there (no call)"] if holds else []


@handles
class OpenProtection(StepHandler):
    step = Step.OPEN_PROTECTION

    def skip(self, ctx: StepContext) -> str | None:
        return "no protection window asked for (planned switchover)" if rb.windowless(ctx.plan) else None

    def act(self, io: StepIO, ctx: StepContext, facts: Facts) -> str | None:
        plan = ctx.plan  # the window is measured from the call that opens it
        io.engines.set_phase(ctx.engine.replica(plan.target), Phase.PROTECTION, io.clock() + plan.protection,
                             plan.epoch)
        return None

    def done(self, book: Book, ctx: StepContext, facts: Facts) -> dict[str, Any]:
        plan, now = ctx.plan, book.clock()
        until = facts.statuses[plan.target].phase_until or (now + plan.protection)
        book.record_phase(plan, PhaseEvent.PROTECT, now, until, "after failover")
        return {"until": until}


@handles
class AwaitWindow(StepHandler):
    """Pending until the window ends; then reopen only onto a healthy, still-promoted primary, else extend
    (`core.runbook.window_outcome`). A new primary down or flapping in protection is a human's call at once."""

    step = Step.AWAIT_WINDOW
    contingent = True

    def run(self, io: StepIO, book: Book, ctx: StepContext) -> tuple[Outcome, dict[str, Any]]:
        plan = ctx.plan
        facts = self.gather(io, ctx)
        if facts.target_verdict in (Verdict.DOWN, Verdict.FLAPPING):
            return Outcome.FAIL, {"error": f"new primary {plan.target} is {facts.target_verdict.value} in protection"}
        now = io.clock()  # after the reads: an extension is measured from the call that makes it
        outcome, detail = rb.window_outcome(ctx.journal, plan, facts, now)
        if outcome is Outcome.EXTEND and not rb.windowless(plan):  # without a window it stays halted: no call
            until = float(detail["until"])
            self._extend(io, ctx, until)
            book.record_phase(plan, PhaseEvent.EXTEND, now, until, f"protection extended: {detail.get('why', '')}")
        return outcome, detail

    def act(self, io: StepIO, ctx: StepContext, facts: Facts) -> str | None:
        """The call an extension makes (what a plan lists as "if needed"); none without a window."""
        if not rb.windowless(ctx.plan):
            self._extend(io, ctx, io.clock() + ctx.plan.protection)
        return None

    @staticmethod
    def _extend(io: StepIO, ctx: StepContext, until: float) -> None:
        io.engines.set_phase(ctx.engine.replica(ctx.plan.target), Phase.PROTECTION, until, ctx.plan.epoch)

    def describe(self, io: StepIO, ctx: StepContext, facts: Facts, holds: bool) -> list[str]:
        if rb.windowless(ctx.plan):
            return [f"no protection window: re-check the new primary's health while halted; stay halted while it is "
                    f"not healthy (looking again every {rb.HALTED_RECHECK:g}s, at most {rb.MAX_EXTENSIONS} times)"]
        return [f"wait for the window ({ctx.plan.protection:g}s); re-check the new primary's health; extend while "
                f"it is not healthy (at most {rb.MAX_EXTENSIONS} times)"]


@handles
class Reopen(StepHandler):
    step = Step.REOPEN

    def act(self, io: StepIO, ctx: StepContext, facts: Facts) -> str | None:
        io.engines.set_phase(ctx.engine.replica(ctx.plan.target), Phase.OPEN, None, ctx.plan.epoch)
        return None

    def done(self, book: Book, ctx: StepContext, facts: Facts) -> dict[str, Any]:
        book.record_phase(ctx.plan, PhaseEvent.REOPEN, book.clock(), None,
                          "protection window over, new primary healthy")
        return {}


@handles
class CloseIncident(StepHandler):
    """Post-failover hooks (at least once: a resumed close runs them again), final counters, the old primary's
    unacknowledged tail archived (`RunbookDriver.archive_tail`), and the time the failover completed, which starts
    `min_failover_interval`. The incident itself is closed only once this step is journaled done (the driver's
    `_finish`), so a crash here leaves it running and resumable."""

    step = Step.CLOSE_INCIDENT

    def run(self, io: StepIO, book: Book, ctx: StepContext) -> tuple[Outcome, dict[str, Any]]:
        plan, incident, now = ctx.plan, ctx.opened, ctx.now
        book.run_hooks(ctx.post_hooks, plan, incident, "post")
        book.snapshot_stats(incident.id, ctx.engine, "stats_at_close")
        book.archive_tail(incident, now)
        book.record_phases(incident, now)  # the report times its windows by the engine's own phase entries
        book.update_record(plan.engine, lambda r: replace(r, last_failover_done_at=now, override_interval=False))
        return Outcome.DONE, {}

    def describe(self, io: StepIO, ctx: StepContext, facts: Facts, holds: bool) -> list[str]:
        return ["close the incident; audit; archive what the old primary wrote that the new one does not hold",
                *(f"run post-failover hook: {command}" for command in ctx.post_hooks)]


if set(HANDLERS) != set(Step):  # every step of the core's table has its handler, and no other
    raise AssertionError(f"runbook steps without a handler: {sorted(set(Step) - set(HANDLERS))}")
