"""The runbook step machine (docs/design.md §6), pure: order, deadlines, retries, needs_human, the protection window,
and an exhaustive exploration of crashes and leader changes at every point of a failover."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from orchestrator.core import runbook as rb
from orchestrator.core.model import Phase, ReplicaStatus, Role, Verdict
from orchestrator.core.runbook import Entry, Facts, Outcome, Plan, Status, Step, StepState

PLAN = Plan(engine="spot", source="spot-aws", target="spot-gcp", epoch=7, protection=1200, has_dns=True,
            target_address="10.1.1.10", replicas=("spot-aws", "spot-gcp", "spot-azure"))


def entries(*pairs: tuple[Step, StepState], at: float = 0.0) -> list[Entry]:
    return [Entry(step.value, state.value, at) for step, state in pairs]


def test_first_step_is_announce_and_order_follows_the_table() -> None:
    assert rb.next_step([], 0) == rb.Next(Status.RUN, Step.ANNOUNCE)
    journal: list[Entry] = []
    seen = []
    while (nxt := rb.next_step(journal, 0)).status is Status.RUN:
        assert nxt.step is not None
        seen.append(nxt.step)
        journal += entries((nxt.step, StepState.STARTED), (nxt.step, StepState.DONE))
    assert seen == list(Step)
    assert nxt.status is Status.FINISHED


def test_the_table_holds_every_step_once_in_order_and_the_derived_views_agree() -> None:
    assert tuple(rb.RULES) == tuple(Step) == rb.STEPS
    assert [rb.NEXT[s] for s in rb.STEPS] == [*rb.STEPS[1:], None]
    assert {step: rule.spec for step, rule in rb.RULES.items()} == rb.SPECS
    checked = {Step.HALT, Step.FENCE_OLD_PRIMARY, Step.ENSURE_TARGET_RUNNING, Step.WAIT_CAUGHT_UP, Step.PROMOTE,
               Step.SWITCH_TRAFFIC, Step.OPEN_PROTECTION, Step.REOPEN}
    assert set(rb.CHECKS) == checked  # announce, the window and the close have no effect to look for
    assert {Step.OPEN_PROTECTION, Step.AWAIT_WINDOW, Step.REOPEN} == rb.TRADING_AFTER
    assert {s: rule.needs for s, rule in rb.RULES.items() if rule.needs} == {
        Step.FENCE_OLD_PRIMARY: (rb.Fact.OLD_INSTANCE,), Step.ENSURE_TARGET_RUNNING: (rb.Fact.TARGET_INSTANCE,),
        Step.SWITCH_TRAFFIC: (rb.Fact.DNS,)}


def test_step_deadlines_scale_with_the_policy_and_keep_their_proportions() -> None:
    assert rb.deadlines() == {step: spec.deadline for step, spec in rb.SPECS.items()}
    halved = rb.deadlines(30)
    assert (halved[Step.HALT], halved[Step.ENSURE_TARGET_RUNNING], halved[Step.AWAIT_WINDOW]) == (15, 150, None)
    journal = entries((Step.HALT, StepState.STARTED))
    assert rb.next_step(journal, 16, halved).status is Status.NEEDS_HUMAN
    assert rb.next_step(journal, 16).status is Status.RUN  # the table's own 30 s


def test_interrupted_step_is_resumed_not_skipped() -> None:
    journal = entries((Step.ANNOUNCE, StepState.DONE), (Step.HALT, StepState.STARTED))
    nxt = rb.next_step(journal, 1)
    assert (nxt.status, nxt.step, nxt.resumed) == (Status.RUN, Step.HALT, True)
    assert rb.was_started(journal, Step.HALT, nxt.attempt)  # not journaled twice


def test_failed_step_backs_off_then_retries_then_needs_human_after_its_deadline() -> None:
    journal = entries((Step.PROMOTE, StepState.STARTED), (Step.PROMOTE, StepState.FAILED))
    assert rb.next_step(journal, 0.5).status is Status.WAIT
    nxt = rb.next_step(journal, 1.0)
    assert (nxt.status, nxt.attempt) == (Status.RUN, 2)
    late = rb.next_step(journal, 31.0)
    assert late.status is Status.NEEDS_HUMAN and "30s" in late.reason


def test_backoff_grows_and_is_capped() -> None:
    spec = rb.SPECS[Step.FENCE_OLD_PRIMARY]
    assert [rb.backoff(spec, n) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 15, 15]


def test_final_failure_needs_a_human_at_once() -> None:
    journal = [Entry(Step.PROMOTE, StepState.STARTED, 0), Entry(Step.PROMOTE, StepState.FAILED, 0, {"final": True,
                                                                                                     "error": "x"})]
    assert rb.next_step(journal, 0.1) == rb.Next(Status.NEEDS_HUMAN, Step.PROMOTE, 1, reason="x")


def test_needs_human_is_sticky() -> None:
    journal = [rb.needs_human(Step.PROMOTE, "stuck", 5)]
    assert rb.next_step(journal, 1e9).status is Status.NEEDS_HUMAN


def test_pending_writes_nothing_and_outcomes_map_to_journal_states() -> None:
    assert rb.record(Step.WAIT_CAUGHT_UP, Outcome.PENDING, 1) is None
    assert rb.record(Step.HALT, Outcome.DONE, 1) == Entry("halt", "done", 1, {})
    failed = rb.record(Step.HALT, Outcome.FAIL, 1, {"error": "e"})
    assert failed is not None and failed.detail == {"error": "e", "final": True}


def st(name: str, *, role: Role = Role.STANDBY, epoch: int = 7, phase: Phase = Phase.HALTED, seq: int = 10,
       until: float | None = None) -> ReplicaStatus:
    return ReplicaStatus(name, role, epoch, phase, until, seq, seq)


def test_checks_recognise_each_effect() -> None:
    halted = Facts({"spot-gcp": st("spot-gcp"), "spot-azure": st("spot-azure")})
    assert rb.halted(PLAN, halted)
    assert not rb.halted(PLAN, Facts({"spot-gcp": st("spot-gcp", epoch=6)}))
    open_primary = st("spot-aws", role=Role.PRIMARY, phase=Phase.OPEN)
    assert not rb.halted(PLAN, Facts({**halted.statuses, "spot-aws": open_primary}))
    open_standby = st("spot-azure", phase=Phase.OPEN)  # a standby's phase mirrors its primary: epoch is enough
    assert rb.halted(PLAN, Facts({"spot-gcp": st("spot-gcp"), "spot-azure": open_standby}))
    assert rb.fenced(PLAN, Facts({"spot-aws": st("spot-aws", role=Role.FENCED)})) == "fenced by epoch"
    assert rb.fenced(PLAN, Facts({}, old_instance_state="stopped")) == "instance stopped"
    assert rb.fenced(PLAN, halted) is not None  # unreachable, and every other replica carries the new epoch
    only_target = Facts({"spot-gcp": st("spot-gcp")})
    assert rb.fenced(PLAN, only_target) is None  # azure unreachable: it could still be the old primary's partner
    assert rb.fenced(PLAN, Facts(only_target.statuses, old_instance_state="stopped")) == "instance stopped"
    assert rb.fenced(PLAN, Facts({"spot-gcp": st("spot-gcp"), "spot-azure": st("spot-azure", epoch=3)})) is None
    assert rb.fenced(PLAN, Facts({"spot-aws": st("spot-aws", role=Role.PRIMARY)})) is None
    assert rb.caught_up(PLAN, Facts({"spot-gcp": st("spot-gcp", seq=9), "spot-azure": st("spot-azure")})) == (
        False, 1)
    remembered = replace(PLAN, seq_floor=12)  # a standby lost since was seen holding 12 entries
    assert rb.caught_up(remembered, Facts({"spot-gcp": st("spot-gcp", seq=10)})) == (False, 2)
    assert rb.promoted(PLAN, Facts({"spot-gcp": st("spot-gcp", role=Role.PRIMARY)}))
    assert rb.traffic_switched(PLAN, Facts({}, dns_target="10.1.1.10"))
    assert not rb.traffic_switched(PLAN, Facts({}, dns_target="10.0.1.10"))


def test_window_waits_then_reopens_only_onto_a_healthy_primary_and_extends_otherwise() -> None:
    opened = [Entry(Step.OPEN_PROTECTION, StepState.DONE, 0, {"until": 1200.0})]
    good = Facts({"spot-gcp": st("spot-gcp", role=Role.PRIMARY, phase=Phase.PROTECTION)},
                 target_verdict=Verdict.HEALTHY)
    assert rb.window_outcome(opened, PLAN, good, 1199)[0] is Outcome.PENDING
    assert rb.window_outcome(opened, PLAN, good, 1200)[0] is Outcome.DONE
    shaky = Facts(good.statuses, target_verdict=Verdict.SUSPECT)
    outcome, detail = rb.window_outcome(opened, PLAN, shaky, 1200)
    assert outcome is Outcome.EXTEND and detail["until"] == 2400
    extended = [*opened, Entry(Step.AWAIT_WINDOW, StepState.EXTENDED, 1200, {"until": 2400.0})]
    assert rb.protection_until(extended) == 2400
    assert rb.window_outcome(extended, PLAN, good, 2000)[0] is Outcome.PENDING
    too_many = extended + [Entry(Step.AWAIT_WINDOW, StepState.EXTENDED, t, {"until": t + 1200}) for t in (2400, 3600)]
    assert rb.window_outcome(too_many, PLAN, shaky, 4800)[0] is Outcome.FAIL


# ---- exhaustive crash exploration ------------------------------------------------------------------------------


@dataclass
class ModelWorld:
    """A tiny pure world the step effects act on, to explore crashes without any I/O."""

    halted: bool = False
    fenced: bool = False
    running: bool = True
    applied: int = 8
    primary: str = "spot-aws"
    dns: str = "10.0.1.10"
    phase: Phase = Phase.OPEN
    until: float | None = None
    effects: list[str] = field(default_factory=list)

    def facts(self) -> Facts:
        target_role = Role.PRIMARY if self.primary == "spot-gcp" else Role.STANDBY
        statuses = {
            "spot-gcp": ReplicaStatus("spot-gcp", target_role, 7 if self.halted else 1, self.phase, self.until, 10,
                                      self.applied),
            "spot-azure": ReplicaStatus("spot-azure", Role.STANDBY, 7 if self.halted else 1, self.phase, None, 10,
                                        10),
        }
        return Facts(statuses, old_instance_state="stopped" if self.fenced else None, dns_target=self.dns,
                     target_verdict=Verdict.HEALTHY)

    def act(self, step: Step, now: float) -> None:
        self.effects.append(step.value)
        if step is Step.HALT:
            self.halted, self.phase = True, Phase.HALTED
        elif step is Step.FENCE_OLD_PRIMARY:
            self.fenced = True
        elif step is Step.WAIT_CAUGHT_UP:
            self.applied = min(10, self.applied + 1)
        elif step is Step.PROMOTE:
            assert rb.fenced(PLAN, self.facts()) and self.applied == 10, "promoted before fencing or catching up"
            self.primary = "spot-gcp"
        elif step is Step.SWITCH_TRAFFIC:
            self.dns = "10.1.1.10"
        elif step is Step.OPEN_PROTECTION:
            self.phase, self.until = Phase.PROTECTION, now + 1200
        elif step is Step.REOPEN:
            assert self.primary == "spot-gcp" and self.phase is Phase.PROTECTION and self.until is not None
            assert now >= self.until, "reopened before the window ended"
            self.phase, self.until = Phase.OPEN, None


class Crash(Exception):
    pass


def execute(world: ModelWorld, step: Step, journal: list[Entry], now: float) -> tuple[Outcome, dict[str, Any]]:
    if step is Step.AWAIT_WINDOW:
        return rb.window_outcome(journal, PLAN, world.facts(), now)
    if step in (Step.ANNOUNCE, Step.CLOSE_INCIDENT):
        return Outcome.DONE, {}
    check = rb.CHECKS[step]
    if check(PLAN, world.facts()):
        detail = {"until": world.until} if step is Step.OPEN_PROTECTION else {}
        return Outcome.DONE, detail
    world.act(step, now)
    if check(PLAN, world.facts()):
        return Outcome.DONE, ({"until": world.until} if step is Step.OPEN_PROTECTION else {})
    return (Outcome.PENDING if step is Step.WAIT_CAUGHT_UP else Outcome.RETRY), {}


def drive(world: ModelWorld, journal: list[Entry], crashes: set[int], clock: list[float],
          reached: list[int] | None = None) -> Status:
    """Run until finished; raise Crash at the numbered points (each point: before or after a journal write).
    `reached` collects the points passed, to count them."""
    counter = itertools.count()

    def crash_here() -> bool:
        at = next(counter)
        if reached is not None:
            reached.append(at)
        return at in crashes

    while True:
        clock[0] += 1
        now = clock[0]
        nxt = rb.next_step(journal, now)
        if nxt.status in (Status.FINISHED, Status.NEEDS_HUMAN):
            return nxt.status
        if nxt.status is Status.WAIT:
            clock[0] = nxt.not_before or now
            continue
        step = nxt.step
        assert step is not None
        if crash_here():
            raise Crash
        if not rb.was_started(journal, step, nxt.attempt):
            journal.append(Entry(step.value, StepState.STARTED, now))
        if crash_here():
            raise Crash
        outcome, detail = execute(world, step, journal, now)
        if outcome is Outcome.PENDING and step is Step.AWAIT_WINDOW:
            clock[0] = rb.protection_until(journal) or now
        entry = rb.record(step, outcome, now, detail)
        if crash_here():
            raise Crash  # the effect happened, the journal does not know yet
        if entry is not None:
            journal.append(entry)


def run_with_crashes(crashes: set[int]) -> tuple[ModelWorld, list[Entry]]:
    world, journal, clock = ModelWorld(), [], [0.0]
    remaining = set(crashes)
    while True:
        try:
            assert drive(world, journal, remaining, clock) is Status.FINISHED
            return world, journal
        except Crash:
            # a restarted process or a new leader: memory is gone, only the journal and the world remain
            passed = min(remaining)
            remaining = {c - passed - 1 for c in remaining if c > passed}


BASELINE, _ = run_with_crashes(set())


def clean_points() -> int:
    reached: list[int] = []
    assert drive(ModelWorld(), [], set(), [0.0], reached) is Status.FINISHED
    return len(reached)


POINTS = clean_points() + 3 * 3  # every point of a clean run, and three steps' worth that a crash makes it repeat


@pytest.mark.parametrize("depth", [1, 2])
def test_every_crash_point_up_to_depth_ends_in_the_same_state(depth: int) -> None:
    """Crash (or hand over to a new leader) at every journal boundary, once or twice, in every combination."""
    final = (BASELINE.primary, BASELINE.dns, BASELINE.phase, BASELINE.halted, BASELINE.applied)
    assert final == ("spot-gcp", "10.1.1.10", Phase.OPEN, True, 10)
    explored = 0
    for crashes in itertools.combinations(range(POINTS), depth):
        world, journal = run_with_crashes(set(crashes))
        assert (world.primary, world.dns, world.phase, world.halted, world.applied) == final
        done = [e.step for e in journal if e.state == StepState.DONE]
        assert done == [s.value for s in Step]  # every step done exactly once, in order
        assert world.effects.count("promote") <= 1 and world.effects.count("reopen") <= 1
        explored += 1
    assert explored == len(list(itertools.combinations(range(POINTS), depth)))
