"""What a failover would do, step by step, from the steps' own code (`failover plan`).

Why not describe the calls by hand: a description beside the runbook drifts from it. Instead each step's handler
(`drivers.steps`) runs here as it would in the runbook, with its `act` against recording edges: the engines are
`RecordingEngine(AssumedEngine(statuses))` (the replicas as they answered, or as assumed, changed by each call as
the protocol says, nothing real touched), and the providers and routers record their writes in dry-run mode
(`providers.calls.plan_recorder`) while their reads still run. Each step sees the effects of the steps before it.

A step whose effect already holds makes no call in the runbook; its calls are shown "if needed" (they are what it
would make if the check failed when it runs), as are the calls of a step that acts only on a condition known when it
runs (the protection window's extension). Skipped steps say why. Nothing is journaled, announced or stored: a plan
never calls a handler's `run` or `done`.

A fact a step's check reads (the old primary's machine, the target's machine, the DNS record) that the cloud would
not give (a refused credential, an API down, an instance it does not list) is *unknown*, never assumed: a step that
needs it says so instead of "already ... (no call)", and the plan is blocked (`unknowns`). A CI dry run with a
credential the cloud refuses must fail, not print "safe".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from orchestrator.core.errors import FailoverError
from orchestrator.core.health import Assessment
from orchestrator.core.model import Engine, ReplicaStatus
from orchestrator.core.runbook import RULES, STEPS, Fact, Plan, Step
from orchestrator.drivers.steps import HANDLERS, StepContext, StepHandler, StepIO
from orchestrator.engine.recording import AssumedEngine, EngineCall, RecordingEngine
from providers.base import CloudProvider, InstanceState
from providers.calls import PlannedCall, plan_recorder
from providers.traffic import TrafficRouter

Call = EngineCall | PlannedCall
"""One write a step makes: an engine control call, or a cloud or DNS write."""


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One step of a plan. `calls` is what `failover plan` prints: the step in words where it is more than its
    calls, each call it makes (`made`), and each call it makes only if needed (`if_needed`) prefixed so."""

    step: str
    calls: list[str]
    note: str = ""
    made: tuple[Call, ...] = ()
    if_needed: tuple[Call, ...] = ()
    unknown: str = ""  # why a fact this step's check reads could not be read (then the plan is blocked)


class CallOrder:
    """Engine calls and cloud writes in the order they were made: the engine calls arrive one by one; the cloud
    writes collect in the dry-run list, and are taken from it before each engine call and at the end of a step."""

    def __init__(self, planned: list[PlannedCall]) -> None:
        self.planned = planned
        self.taken = 0
        self.calls: list[Call] = []

    def engine_call(self, call: EngineCall) -> None:
        self.sync()
        self.calls.append(call)

    def sync(self) -> None:
        self.calls += self.planned[self.taken:]
        self.taken = len(self.planned)

    def since(self, mark: int) -> tuple[Call, ...]:
        self.sync()
        return tuple(self.calls[mark:])


def preview(
    plan: Plan,
    engine: Engine,
    statuses: Mapping[str, ReplicaStatus],
    verdicts: Mapping[str, Assessment],
    providers: Mapping[str, CloudProvider],
    routers: Mapping[str, TrafficRouter],
    *,
    clock: Callable[[], float],
    pre_hooks: Sequence[str] = (),
    post_hooks: Sequence[str] = (),
) -> list[PlannedStep]:
    """Every step of `plan`, in the runbook's order, with the calls it would make from `statuses`."""
    with plan_recorder(*providers.values(), *routers.values()) as planned:
        unread = unreadable(plan, engine, providers, routers)
        order = CallOrder(planned)
        engines = RecordingEngine(AssumedEngine(statuses), clock=clock, on_call=order.engine_call)
        io = StepIO(engines, providers, routers, clock)
        steps = [_step(HANDLERS[step], io, order, StepContext(plan, engine, verdicts, clock(),
                                                                pre_hooks=tuple(pre_hooks),
                                                                post_hooks=tuple(post_hooks)))
                 for step in STEPS]
    return [_unknown(step, unread) for step in steps]


def unreadable(plan: Plan, engine: Engine, providers: Mapping[str, CloudProvider],
               routers: Mapping[str, TrafficRouter]) -> dict[Fact, str]:
    """The cloud facts the runbook's checks read that cannot be read now, each with why (one line). The step
    handlers read them too, but turn a failed read into "no state" (None), which their checks may take as done."""
    reasons: dict[Fact, str] = {}
    for fact, name in ((Fact.OLD_INSTANCE, plan.source), (Fact.TARGET_INSTANCE, plan.target)):
        replica = engine.replica(name)
        provider = providers.get(replica.site)
        if provider is None:
            continue
        try:
            state = provider.instance_state(replica.instance)
        except FailoverError as error:
            reasons[fact] = f"state of {name}'s instance {replica.instance} unknown: {error}"
            continue
        if state is InstanceState.UNKNOWN:
            reasons[fact] = f"state of {name}'s instance {replica.instance} unknown: {provider.kind} did not say"
    router = routers.get(plan.engine)
    if engine.dns is not None and router is not None:
        try:
            router.current_target(engine.dns)
        except FailoverError as error:
            reasons[Fact.DNS] = f"DNS record {engine.dns.record} unknown: {error}"
    return reasons


def _unknown(step: PlannedStep, unread: Mapping[Fact, str]) -> PlannedStep:
    """The step as planned, unless a fact its check reads is unknown: then that, and no "already so" claim."""
    reasons = [unread[fact] for fact in RULES[Step(step.step)].needs if fact in unread]
    if not reasons:
        return step
    why = "; ".join(reasons)
    lines = [f"unknown: {why}"] + [line for line in step.calls if not line.endswith("(no call)")]
    return replace(step, calls=lines, unknown=why)


def unknowns(steps: Sequence[PlannedStep]) -> list[str]:
    """Why the plan cannot vouch for what it shows: one line per step whose facts could not be read."""
    return [f"{step.step}: {step.unknown}" for step in steps if step.unknown]


def _step(handler: StepHandler, io: StepIO, order: CallOrder, ctx: StepContext) -> PlannedStep:
    name = handler.step.value
    skipped = handler.skip(ctx)
    if skipped is not None:
        return PlannedStep(name, [f"({skipped})"])
    facts = handler.gather(io, ctx)
    holds = handler.holds(ctx.plan, facts)
    order.sync()
    mark = len(order.calls)
    try:
        error = handler.act(io, ctx, facts)
    except FailoverError as failure:
        error = str(failure)
    made = order.since(mark)
    words = handler.describe(io, ctx, facts, holds)
    if holds or handler.contingent:
        return PlannedStep(name, words + [f"if needed: {call}" for call in made], if_needed=made)
    return PlannedStep(name, words + [str(call) for call in made], error or "", made=made)


def flat(steps: Sequence[PlannedStep]) -> list[Call]:
    """Every call the plan says the failover makes, in order (what `failover execute` should then make)."""
    return [call for step in steps for call in step.made]

