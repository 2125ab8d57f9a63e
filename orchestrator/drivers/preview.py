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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.core.errors import FailoverError
from orchestrator.core.health import Assessment
from orchestrator.core.model import Engine, ReplicaStatus
from orchestrator.core.runbook import STEPS, Plan
from orchestrator.drivers.steps import HANDLERS, StepContext, StepHandler, StepIO
from orchestrator.engine.recording import AssumedEngine, EngineCall, RecordingEngine
from providers.base import CloudProvider
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
        order = CallOrder(planned)
        engines = RecordingEngine(AssumedEngine(statuses), clock=clock, on_call=order.engine_call)
        io = StepIO(engines, providers, routers, clock)
        return [_step(HANDLERS[step], io, order, StepContext(plan, engine, verdicts, clock(),
                                                               pre_hooks=tuple(pre_hooks),
                                                               post_hooks=tuple(post_hooks)))
                for step in STEPS]


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

