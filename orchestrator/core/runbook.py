"""The failover runbook as a pure step machine (docs/design.md §6): from the journal, the next step.

Everything that decides the order of steps, their deadlines and retries, whether a step's effect already holds,
and when protection may end lives in this file: one row of `RULES` per step. What a step *does* (its engine, cloud
and DNS calls, what it records once done, how a plan describes it) is the row's other half, one handler per step in
`orchestrator.drivers.steps`, keyed by the same `Step`. The driver executes one step at a time, journals it before
and after, and asks `next_step` again, so a killed orchestrator, a new leader, or the next cron run resumes from
the journal alone. Waiting steps (catch-up, the protection window) never sleep: they answer `PENDING` and the next
cycle asks again.

    announce → halt → fence_old_primary → ensure_target_running → wait_caught_up → promote → switch_traffic
      → open_protection → await_window (health re-checked; extended while the new primary is not healthy)
      → reopen → close_incident
    a switchover that asked for no window skips open_protection: await_window re-checks health while halted
    any step that fails for good, or outlives its deadline → needs_human, trading halted
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from orchestrator.core.model import Phase, ReplicaStatus, Role, Verdict


class Step(StrEnum):
    ANNOUNCE = "announce"
    HALT = "halt"
    FENCE_OLD_PRIMARY = "fence_old_primary"
    ENSURE_TARGET_RUNNING = "ensure_target_running"
    WAIT_CAUGHT_UP = "wait_caught_up"
    PROMOTE = "promote"
    SWITCH_TRAFFIC = "switch_traffic"
    OPEN_PROTECTION = "open_protection"
    AWAIT_WINDOW = "await_window"
    REOPEN = "reopen"
    CLOSE_INCIDENT = "close_incident"


class StepState(StrEnum):
    """What the journal records of a step."""

    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    EXTENDED = "extended"  # await_window: the window was extended
    NEEDS_HUMAN = "needs_human"


class Outcome(StrEnum):
    """What an executed step reports back to the driver."""

    DONE = "done"
    SKIPPED = "skipped"  # nothing to do (no DNS configured, ...)
    PENDING = "pending"  # not yet; ask again next cycle (not journaled)
    RETRY = "retry"  # failed; retry after a backoff while the deadline allows
    FAIL = "fail"  # failed for good: a human must decide
    EXTEND = "extend"  # await_window: extend protection


class Status(StrEnum):
    RUN = "run"
    WAIT = "wait"
    NEEDS_HUMAN = "needs_human"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class StepSpec:
    deadline: float | None  # seconds from the step's first start; None: no deadline of its own
    retry_base: float = 1.0
    retry_max: float = 15.0


REFERENCE_DEADLINE = 60.0
"""`policy.step_deadline` scales the steps' deadlines (`RULES`): at its default (60 s) each step has the deadline
listed, at 30 s half of it. The proportions stay: stopping a machine or moving DNS takes longer than a halt."""


# ---- what each step's effect looks like: the "already done?" checks --------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """One failover's fixed parameters, journaled with the incident."""

    engine: str
    source: str  # the old primary
    target: str
    epoch: int
    protection: float  # seconds
    max_lag: int = 0
    has_dns: bool = True
    target_address: str = ""
    replicas: tuple[str, ...] = ()  # every replica of the engine, the source included
    seq_floor: int = 0  # the highest journal position any standby was seen holding: the target must reach it
    step_deadline: float = REFERENCE_DEADLINE  # policy.step_deadline when the failover began


@dataclass(frozen=True, slots=True)
class Facts:
    """What the driver observed just now, gathered for the checks below."""

    statuses: Mapping[str, ReplicaStatus]  # replicas that answered, by name
    old_instance_state: str | None = None  # "stopped", "running", ... or None when the provider cannot say
    target_instance_state: str | None = None
    dns_target: str | None = None
    target_verdict: Verdict = Verdict.UNKNOWN


def _current(status: ReplicaStatus | None, epoch: int) -> bool:
    return status is not None and status.epoch >= epoch


def halted(plan: Plan, facts: Facts) -> bool:
    """Every replica that answers carries our epoch (a standby records it; its phase mirrors its primary's), any
    primary among them is halted, and the target answers."""
    if plan.target not in facts.statuses:
        return False
    return all(
        _current(s, plan.epoch) and (s.role is not Role.PRIMARY or s.phase is Phase.HALTED)
        for s in facts.statuses.values()
    )


def fenced(plan: Plan, facts: Facts) -> str | None:
    """How the old primary is fenced, or None. Unreachable counts only once *every* other replica of the engine
    answers with our epoch: under synchronous replication it then cannot acknowledge an order (no standby accepts
    its older epoch). One other replica we cannot reach could still be its partner: then only a stopped machine
    counts."""
    old = facts.statuses.get(plan.source)
    if old is not None and old.role is Role.FENCED and old.epoch >= plan.epoch:
        return "fenced by epoch"
    if facts.old_instance_state in ("stopped", "terminated"):
        return f"instance {facts.old_instance_state}"
    others = [name for name in plan.replicas if name != plan.source]
    if old is None and others and all(_current(facts.statuses.get(name), plan.epoch) for name in others):
        return "unreachable; every other replica carries the new epoch"
    return None


def is_fenced(plan: Plan, facts: Facts) -> bool:
    return fenced(plan, facts) is not None


def target_running(plan: Plan, facts: Facts) -> bool:
    return plan.target in facts.statuses and facts.target_instance_state in (None, "running")


def owed_seq(plan: Plan, facts: Facts) -> int:
    """The journal position the target must reach: everything any standby holds or was ever seen holding
    (`seq_floor`: a replica lost since may have held acknowledged orders), and of the old primary only what it can
    vouch was acknowledged. Entries a synchronous primary wrote but no standby on another cloud took were never
    acknowledged to anyone; a deposed primary thawed after the halt writes just such entries, and waiting for
    them would wait forever (they are archived for reconciliation instead, never replayed)."""
    held = (s.acknowledged_seq() if name == plan.source else s.last_seq for name, s in facts.statuses.items()
            if name == plan.source or s.role is not Role.FENCED)  # a replica deposed earlier owes nothing
    return max(plan.seq_floor, *held, 0)


def caught_up(plan: Plan, facts: Facts) -> tuple[bool, int]:
    """Whether the target has applied everything it owes (`owed_seq`), within max_lag."""
    target = facts.statuses.get(plan.target)
    if target is None:
        return False, -1
    highest = owed_seq(plan, facts)
    lag = max(0, highest - target.applied_seq)
    return lag <= plan.max_lag, lag


def is_caught_up(plan: Plan, facts: Facts) -> bool:
    return caught_up(plan, facts)[0]


def promoted(plan: Plan, facts: Facts) -> bool:
    target = facts.statuses.get(plan.target)
    return target is not None and target.role is Role.PRIMARY and target.epoch >= plan.epoch


def traffic_switched(plan: Plan, facts: Facts) -> bool:
    return not plan.has_dns or facts.dns_target == plan.target_address


def windowless(plan: Plan) -> bool:
    """A switchover that asked for no protection window: from halted straight to open (open_protection skipped),
    once the new primary is seen healthy and still halted under our epoch. Nothing was lost (the old primary was
    fenced only after the target held every acknowledged order), so there is nothing to recover from."""
    return plan.protection <= 0


def still_halted(plan: Plan, facts: Facts) -> bool:
    target = facts.statuses.get(plan.target)
    return target is not None and target.phase is Phase.HALTED and _current(target, plan.epoch)


def in_protection(plan: Plan, facts: Facts) -> bool:
    target = facts.statuses.get(plan.target)
    return target is not None and target.phase is Phase.PROTECTION and _current(target, plan.epoch)


def reopened(plan: Plan, facts: Facts) -> bool:
    target = facts.statuses.get(plan.target)
    return target is not None and target.phase is Phase.OPEN and target.role is Role.PRIMARY


def deposed_primaries(statuses: Mapping[str, ReplicaStatus]) -> set[str]:
    """Replicas claiming primary under an epoch below one another replica already carries: deposed while they
    could not hear (frozen, partitioned). Stamping one with the new epoch, even to halt it, would make it a primary
    at that epoch: the standbys would follow it again and copy what it wrote while no one acknowledged it. Such a
    replica is fenced, never stamped."""
    deposed = set()
    for name, status in statuses.items():
        others = [other.epoch for other_name, other in statuses.items() if other_name != name]
        if status.role is Role.PRIMARY and others and status.epoch < max(others):
            deposed.add(name)
    return deposed


# ---- the table: one row per step ---------------------------------------------------------------------------------


class Fact(StrEnum):
    """What a step's check reads beyond the replicas' statuses and the target's verdict; each costs the driver a
    cloud or DNS call, so a step names the ones it needs."""

    OLD_INSTANCE = "old_instance"  # Facts.old_instance_state
    TARGET_INSTANCE = "target_instance"  # Facts.target_instance_state
    DNS = "dns"  # Facts.dns_target


@dataclass(frozen=True, slots=True)
class StepRule:
    """The pure half of one step: its deadline and retries, how to tell that its effect already holds (None: the
    step has no effect to look for and always runs), the facts that check reads, and whether trading is no longer
    halted once the step ran (a needs_human there must halt again).

    From `switch_traffic` on, every check is about the new primary alone: those steps read its status and no
    other. The old primary is by then fenced and often gone for good; asking it again in every cycle of a 20-minute
    window cost each cycle a connect timeout (2.1 s), holding up every other engine's decisions in that cycle. A
    thawed old primary is still seen, and fenced, by the controller's own probes."""

    spec: StepSpec
    check: Callable[[Plan, Facts], bool] | None = None
    needs: tuple[Fact, ...] = ()
    trading: bool = False
    target_only: bool = False  # the check reads the new primary's status alone (see below)


RULES: dict[Step, StepRule] = {
    Step.ANNOUNCE: StepRule(StepSpec(10)),
    Step.HALT: StepRule(StepSpec(30), halted),
    Step.FENCE_OLD_PRIMARY: StepRule(StepSpec(120, retry_base=2), is_fenced, (Fact.OLD_INSTANCE,)),
    Step.ENSURE_TARGET_RUNNING: StepRule(StepSpec(300, retry_base=5), target_running, (Fact.TARGET_INSTANCE,)),
    Step.WAIT_CAUGHT_UP: StepRule(StepSpec(60), is_caught_up),
    Step.PROMOTE: StepRule(StepSpec(30), promoted),
    Step.SWITCH_TRAFFIC: StepRule(StepSpec(120, retry_base=2), traffic_switched, (Fact.DNS,), target_only=True),
    Step.OPEN_PROTECTION: StepRule(StepSpec(30), in_protection, trading=True, target_only=True),
    Step.AWAIT_WINDOW: StepRule(StepSpec(None), trading=True, target_only=True),
    Step.REOPEN: StepRule(StepSpec(30), reopened, trading=True, target_only=True),
    Step.CLOSE_INCIDENT: StepRule(StepSpec(30)),
}
"""The runbook, in order. A new step is a `Step` member and a row here (and its handler in `drivers.steps`)."""
if tuple(RULES) != tuple(Step):  # the enum and the table must list the same steps in the same order
    raise AssertionError(f"runbook table out of step with Step: {list(RULES)} != {list(Step)}")

STEPS: tuple[Step, ...] = tuple(RULES)
NEXT: dict[Step, Step | None] = {step: (STEPS[i + 1] if i + 1 < len(STEPS) else None) for i, step in enumerate(STEPS)}
SPECS: dict[Step, StepSpec] = {step: rule.spec for step, rule in RULES.items()}
CHECKS: dict[Step, Callable[[Plan, Facts], bool]] = {
    step: rule.check for step, rule in RULES.items() if rule.check is not None}
TRADING_AFTER: frozenset[Step] = frozenset(step for step, rule in RULES.items() if rule.trading)


def deadlines(step_deadline: float = REFERENCE_DEADLINE) -> dict[Step, float | None]:
    """Every step's deadline for a given `policy.step_deadline`."""
    scale = step_deadline / REFERENCE_DEADLINE
    return {step: None if spec.deadline is None else spec.deadline * scale for step, spec in SPECS.items()}


MAX_EXTENSIONS = 3
HALTED_RECHECK = 5.0
"""Without a protection window (a planned switchover asked for none: `Plan.protection` 0), how long a new primary
in doubt stays halted before the runbook looks again; after `MAX_EXTENSIONS` looks a human decides, trading held."""


class JournalRecord(Protocol):
    """The fields of a journal entry the core reads; the store's entries have them."""

    @property
    def step(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def detail(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Entry:
    """A journal entry the core builds; the driver stores it."""

    step: str
    state: str
    at: float
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Next:
    status: Status
    step: Step | None = None
    attempt: int = 1
    not_before: float | None = None
    resumed: bool = False
    reason: str = ""


def _attempts(journal: Sequence[JournalRecord], step: Step) -> tuple[int, float | None]:
    starts = [entry.at for entry in journal if entry.step == step.value and entry.state == StepState.STARTED]
    return len(starts), (starts[0] if starts else None)


def backoff(spec: StepSpec, attempt: int) -> float:
    """Exponential backoff without jitter: the core stays deterministic; drivers may add jitter."""
    return float(min(spec.retry_max, spec.retry_base * 2 ** max(0, attempt - 1)))


def next_step(
    journal: Sequence[JournalRecord], now: float, limits: Mapping[Step, float | None] | None = None
) -> Next:
    """Where the runbook stands: the step to run (or resume), a wait, a human, or the end. `limits` are the
    steps' deadlines (`deadlines(policy.step_deadline)`; the table's own when not given)."""
    if not journal:
        return Next(Status.RUN, Step.ANNOUNCE)
    last = journal[-1]
    if last.state == StepState.NEEDS_HUMAN:
        return Next(Status.NEEDS_HUMAN, Step(last.step), reason=str(last.detail.get("reason", "")))
    step = Step(last.step)
    spec = SPECS[step]
    attempts, first = _attempts(journal, step)
    if last.state in (StepState.DONE, StepState.SKIPPED):
        following = NEXT[step]
        return Next(Status.FINISHED) if following is None else Next(Status.RUN, following)
    deadline = spec.deadline if limits is None else limits.get(step, spec.deadline)
    if deadline is not None and first is not None and now - first > deadline:
        return Next(Status.NEEDS_HUMAN, step, attempts, reason=f"{step.value} did not finish within {deadline:g}s")
    if last.state == StepState.FAILED:
        if last.detail.get("final"):
            return Next(Status.NEEDS_HUMAN, step, attempts, reason=str(last.detail.get("error", "step failed")))
        ready = last.at + backoff(spec, attempts)
        if now < ready:
            return Next(Status.WAIT, step, attempts + 1, not_before=ready)
        return Next(Status.RUN, step, attempts + 1)
    # started (interrupted or pending) or extended: run it again; each step checks whether its effect holds
    return Next(Status.RUN, step, max(attempts, 1), resumed=True)


def record(step: Step, outcome: Outcome, now: float, detail: Mapping[str, Any] | None = None) -> Entry | None:
    """The journal entry for a step's outcome; PENDING writes nothing (the `started` entry stands)."""
    extra = dict(detail or {})
    match outcome:
        case Outcome.DONE:
            return Entry(step.value, StepState.DONE, now, extra)
        case Outcome.SKIPPED:
            return Entry(step.value, StepState.SKIPPED, now, extra)
        case Outcome.PENDING:
            return None
        case Outcome.RETRY:
            return Entry(step.value, StepState.FAILED, now, extra)
        case Outcome.FAIL:
            return Entry(step.value, StepState.FAILED, now, {**extra, "final": True})
        case Outcome.EXTEND:
            return Entry(step.value, StepState.EXTENDED, now, extra)
    raise AssertionError(outcome)


def needs_human(step: Step | None, reason: str, now: float) -> Entry:
    return Entry((step or Step.ANNOUNCE).value, StepState.NEEDS_HUMAN, now, {"reason": reason})


def was_started(journal: Sequence[JournalRecord], step: Step, attempt: int) -> bool:
    """Whether `started` is already journaled for this attempt (a resumed step is not journaled twice)."""
    attempts, _ = _attempts(journal, step)
    last = journal[-1] if journal else None
    return attempts >= attempt and last is not None and last.step == step.value and last.state != StepState.FAILED


def protection_until(journal: Sequence[JournalRecord]) -> float | None:
    """The current end of the protection window: set by open_protection, moved by each extension."""
    until = None
    for entry in journal:
        if entry.step in (Step.OPEN_PROTECTION, Step.AWAIT_WINDOW) and "until" in entry.detail:
            until = float(entry.detail["until"])
    return until


def window_outcome(
    journal: Sequence[JournalRecord], plan: Plan, facts: Facts, now: float
) -> tuple[Outcome, dict[str, Any]]:
    """At the end of the window, reopen only onto a healthy, still-promoted primary; otherwise extend, up to
    MAX_EXTENSIONS times, then hand over to a human with trading held."""
    until = protection_until(journal)
    if until is None and windowless(plan):
        until = now  # no window: the health check is due at once
    if until is None:
        return Outcome.FAIL, {"error": "no protection window recorded"}
    if now < until:
        return Outcome.PENDING, {"until": until}
    doubt = _window_doubt(plan, facts)
    if doubt is None:
        return Outcome.DONE, {"until": until}
    extensions = sum(1 for e in journal if e.step == Step.AWAIT_WINDOW and e.state == StepState.EXTENDED)
    if extensions >= MAX_EXTENSIONS:
        return Outcome.FAIL, {"error": f"after {extensions} extensions the {doubt}"}
    return Outcome.EXTEND, {"until": now + (HALTED_RECHECK if windowless(plan) else plan.protection), "why": doubt}


def _window_doubt(plan: Plan, facts: Facts) -> str | None:
    """Why trading may not reopen onto the new primary yet, in words for the journal and the page; None if it may."""
    if facts.target_verdict is not Verdict.HEALTHY:
        return f"new primary {plan.target} is {facts.target_verdict.value}"
    if not promoted(plan, facts):
        found = facts.statuses.get(plan.target)
        what = "did not answer" if found is None else f"answers as {found.role.value} at epoch {found.epoch}"
        return f"new primary {plan.target} is no longer primary under epoch {plan.epoch}: it {what}"
    if windowless(plan):
        return None if still_halted(plan, facts) else f"new primary {plan.target} is no longer halted"
    if not in_protection(plan, facts):
        return f"new primary {plan.target} is not in the protection window"
    return None
