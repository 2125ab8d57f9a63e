"""One handler per step, and a plan made from the handlers: what `failover plan` shows is what the runbook driver
then does. Replicas are `AssumedEngine` (the engine protocol's rules on plain statuses), clouds the in-memory cloud
(`providers.local`, its starts and stops instant); the run goes through `RunbookDriver.advance` on a memory store,
as the daemon's cycles would, step by step."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.core.errors import EngineError, StaleEpoch
from orchestrator.core.health import Assessment
from orchestrator.core.model import Phase, Replica, ReplicaStatus, Role, Topology, Verdict
from orchestrator.core.runbook import MAX_EXTENSIONS, STEPS, Plan
from orchestrator.drivers.events import EventLog
from orchestrator.drivers.preview import Call, CallOrder, PlannedStep, flat, preview
from orchestrator.drivers.runbook import RunbookDriver, new_plan, plan_detail
from orchestrator.drivers.state import load_engine
from orchestrator.drivers.steps import HANDLERS
from orchestrator.engine.recording import AssumedEngine, EngineCall, RecordingEngine
from orchestrator.store import open_store
from orchestrator.store.memory import MemoryStore
from providers.base import InstanceState
from providers.calls import ApiCaller, PlannedCall
from providers.local import LocalCloud, LocalProvider, LocalRouter

ROOT = Path(__file__).resolve().parents[2]
START = 1_700_000_000.0
SOURCE, TARGET = "spot-aws", "spot-gcp"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def topology() -> Topology:
    return load_config(ROOT / "configs" / "example.yaml").topology


def st(name: str, role: Role = Role.STANDBY, epoch: int = 3, phase: Phase = Phase.OPEN) -> ReplicaStatus:
    return ReplicaStatus(name, role, epoch, phase, None, 10, 10)


def healthy() -> dict[str, ReplicaStatus]:
    return {SOURCE: st(SOURCE, Role.PRIMARY), TARGET: st(TARGET), "spot-azure": st("spot-azure")}


class World:
    """One cloud per site (the example's GCP and Azure machines share a name) and a DNS zone on the AWS one, all on
    the world's clock, which the driver's cycles also read."""

    def __init__(self, topology: Topology, stopped: tuple[str, ...] = (), dns: str | None = "10.0.1.10") -> None:
        self.topology = topology
        self.clock = Clock()
        self.clouds = {name: LocalCloud(name, self.clock, start_time=0.0, stop_time=0.0) for name in topology.sites}
        engine = topology.engines["spot"]
        for replica in engine.replicas:
            state = InstanceState.STOPPED if replica.name in stopped else InstanceState.RUNNING
            self.clouds[replica.site].add_instance(replica.site, replica.instance,
                                                   topology.sites[replica.site].zones[0], state)
        if engine.dns is not None and dns is not None:
            self.clouds["aws-hk"].seed_record(engine.dns.zone_id, engine.dns.record, dns, self.clock())

    def edges(self) -> tuple[dict[str, LocalProvider], dict[str, LocalRouter]]:
        providers = {name: LocalProvider(site, cloud=self.clouds[name], clock=self.clock, poll_interval=0.0)
                     for name, site in self.topology.sites.items()}
        return providers, {"spot": LocalRouter(cloud=self.clouds["aws-hk"])}


def log_writes(caller: ApiCaller, log: list[Call]) -> None:
    real = caller._write

    def write(operation: str, fn: object, /, *, subject: str = "", **params: object) -> object:
        log.append(PlannedCall(operation, dict(params)))
        return real(operation, fn, subject=subject, **params)  # type: ignore[arg-type]

    caller._write = write  # type: ignore[method-assign]


def verdicts(clock: Clock) -> dict[str, Assessment]:
    return {TARGET: Assessment(TARGET, Verdict.HEALTHY, clock())}


def planned(topology: Topology, world: World, statuses: dict[str, ReplicaStatus], epoch: int) -> list[PlannedStep]:
    clock = world.clock
    providers, routers = world.edges()
    plan = new_plan(topology, "spot", SOURCE, TARGET, epoch, has_router=True)
    return preview(plan, topology.engines["spot"], statuses, verdicts(clock), providers, routers, clock=clock)


def drive(driver: RunbookDriver, store: MemoryStore, plan: Plan, clock: Clock, *, kind: str = "failover",
          cycles: int = 60, every: float = 60.0, verdict: Verdict = Verdict.HEALTHY) -> str:
    """Open the incident of `plan` and advance its runbook as the daemon's cycles would, `every` seconds apart,
    until it is no longer open or `cycles` have run; the target judged `verdict` each cycle. Returns its id."""
    incident = store.create_incident("spot", kind, "test", clock(), source=SOURCE, target=TARGET,
                                     status="running", detail=plan_detail(plan))
    for _ in range(cycles):
        driver.advance(incident.id, {TARGET: Assessment(TARGET, verdict, clock())})
        if not store.incident(incident.id).is_open:
            break
        clock.now += every
    return incident.id


def run(topology: Topology, world: World, statuses: dict[str, ReplicaStatus], epoch: int) -> tuple[list[Call],
                                                                                                     AssumedEngine]:
    """The runbook driver, cycle after cycle (a minute apart), until the incident closes; every call logged."""
    clock, made = world.clock, list[Call]()
    replicas = AssumedEngine(statuses)
    providers, routers = world.edges()
    callers: list[ApiCaller] = [*providers.values(), *routers.values()]
    for caller in callers:
        log_writes(caller, made)
    store = open_store("memory://")
    driver = RunbookDriver(topology, store, RecordingEngine(replicas, clock=clock, on_call=made.append), providers,
                           routers, EventLog(), clock)
    plan = new_plan(topology, "spot", SOURCE, TARGET, epoch, has_router=True)
    incident = drive(driver, store, plan, clock)
    closed = store.incident(incident)
    assert closed.status.value == "closed", [(e.step, e.state, e.detail) for e in store.journal(incident)]
    return made, replicas


def shown(calls: list[Call]) -> list[str]:
    return [str(call) for call in calls]


def test_every_step_has_one_handler_that_names_it() -> None:
    assert set(HANDLERS) == set(STEPS)
    assert all(handler.step is step for step, handler in HANDLERS.items())


SCENARIOS = {
    "all answer": (healthy(), (), {}),
    "old primary silent": ({TARGET: st(TARGET), "spot-azure": st("spot-azure")}, (), {}),
    "old primary and its partner silent": ({TARGET: st(TARGET)}, (), {"fence_old_primary": ["local.stop_instance"]}),
    "target machine stopped": (healthy(), (TARGET,), {"ensure_target_running": ["local.start_instance"]}),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_plan_lists_the_calls_the_runbook_then_makes(topology: Topology, scenario: str) -> None:
    statuses, stopped, cloud_writes = SCENARIOS[scenario]
    steps = planned(topology, World(topology, stopped), statuses, 4)
    made, _ = run(topology, World(topology, stopped), statuses, 4)
    assert shown(made) == shown(flat(steps))
    writes = {s.step: [c.operation for c in s.made if isinstance(c, PlannedCall)] for s in steps}
    expected = {**cloud_writes, "switch_traffic": ["local.put_record"]}  # the record points at the old primary
    assert {step: ops for step, ops in writes.items() if ops} == expected


def test_a_plan_changes_nothing(topology: Topology) -> None:
    world = World(topology, stopped=(TARGET,))
    before = {name: (repr(cloud.instances), repr(cloud.records)) for name, cloud in world.clouds.items()}
    statuses = healthy()
    steps = planned(topology, world, statuses, 4)
    assert any(s.made for s in steps)  # it did plan writes: a start, a DNS change
    assert {name: (repr(cloud.instances), repr(cloud.records)) for name, cloud in world.clouds.items()} == before
    assert statuses == healthy()  # the assumed replicas are a copy
    assert [s.step for s in steps] == [s.value for s in STEPS]


def test_the_halt_fences_a_deposed_primary_and_never_stamps_it(topology: Topology) -> None:
    """A thawed old primary below the epoch its standbys carry: fenced in the halt step, before the standbys are
    stamped; the fence step then finds it fenced and makes no call."""
    zombie = {SOURCE: st(SOURCE, Role.PRIMARY, epoch=5), TARGET: st(TARGET, epoch=9),
              "spot-azure": st("spot-azure", epoch=9)}
    steps = {s.step: s for s in planned(topology, World(topology), zombie, 10)}
    engine = topology.engines["spot"]
    url = {r.name: r.control_url for r in engine.replicas}
    assert shown(list(steps["halt"].made)) == [
        f"POST {url[SOURCE]}/v1/fence {{epoch: 10}}",
        f"POST {url[TARGET]}/v1/phase {{phase: halted, epoch: 10}}",
        f"POST {url['spot-azure']}/v1/phase {{phase: halted, epoch: 10}}"]
    assert steps["fence_old_primary"].made == ()
    assert steps["fence_old_primary"].calls[0] == f"{SOURCE} already fenced: fenced by epoch (no call)"
    made, replicas = run(topology, World(topology), zombie, 10)
    assert shown(made) == shown(flat(list(steps.values())))
    assert replicas.replicas[SOURCE].role is Role.FENCED


def test_the_live_primary_is_halted_before_any_standby_is_stamped(topology: Topology) -> None:
    statuses = {TARGET: st(TARGET), "spot-azure": st("spot-azure"), SOURCE: st(SOURCE, Role.PRIMARY)}
    [halt] = [s for s in planned(topology, World(topology), statuses, 4) if s.step == "halt"]
    assert [(c.verb, c.replica) for c in halt.made if isinstance(c, EngineCall)] == [
        ("phase", SOURCE), ("phase", TARGET), ("phase", "spot-azure")]


def test_steps_that_would_not_act_show_their_calls_only_if_needed(topology: Topology) -> None:
    steps = {s.step: s for s in planned(topology, World(topology, dns=None), healthy(), 4)}
    assert steps["ensure_target_running"].calls == ["local: instance spot-engine-1 already running (no call)"]
    assert steps["ensure_target_running"].if_needed == ()  # a running machine is not started again
    window = steps["await_window"]
    assert window.made == () and [c.verb for c in window.if_needed if isinstance(c, EngineCall)] == ["phase"]
    assert window.calls[-1].startswith("if needed: POST ") and "until: now+1200s" in window.calls[-1]
    assert steps["switch_traffic"].calls[-1].startswith("local.put_record(")  # no record yet: it is created


def test_without_dns_the_switch_is_skipped_in_the_plan_and_in_the_run(topology: Topology) -> None:
    engine = replace(topology.engines["spot"], dns=None)
    topology = replace(topology, engines={"spot": engine})
    world = World(topology)
    clock = world.clock
    plan = new_plan(topology, "spot", SOURCE, TARGET, 4, has_router=False)
    providers, _ = world.edges()
    steps = {s.step: s for s in preview(plan, engine, healthy(), verdicts(clock), providers, {}, clock=clock)}
    assert steps["switch_traffic"].calls == ["(no DNS record configured)"] and steps["switch_traffic"].made == ()


def test_the_recording_client_logs_failed_calls_and_lends_the_rest(topology: Topology) -> None:
    replica = topology.engines["spot"].replica(SOURCE)
    silent = topology.engines["spot"].replica("spot-azure")
    clock = Clock()
    engines = RecordingEngine(AssumedEngine({SOURCE: st(SOURCE, Role.PRIMARY, epoch=5)}), clock=clock)
    engines.set_phase(replica, Phase.PROTECTION, clock() + 11.8, 6)
    with pytest.raises(StaleEpoch):
        engines.fence(replica, 4)
    with pytest.raises(EngineError):
        engines.promote(silent, 6)
    assert shown(list(engines.calls)) == [f"POST {replica.control_url}/v1/phase {{phase: protection, until: now+12s, "
                                          f"epoch: 6}}", f"POST {replica.control_url}/v1/fence {{epoch: 4}}",
                                          f"POST {silent.control_url}/v1/promote {{epoch: 6}}"]
    assert [bool(c.failed) for c in engines.calls] == [False, True, True]
    assert engines.calls[1] == EngineCall("fence", SOURCE, replica.control_url, 4)  # a failure is not its identity
    now = engines.status(replica)
    assert (now.phase, now.phase_until, now.epoch) == (Phase.PROTECTION, START + 11.8, 6)  # the refusal changed nothing
    assert engines.reads == {SOURCE: 1}
    assert engines.replicas is engines.inner.replicas  # what the client does not define is the inner client's


def test_the_assumed_replicas_follow_the_protocol(topology: Topology) -> None:
    engine = topology.engines["spot"]
    primary, standby = engine.replica(SOURCE), engine.replica(TARGET)
    replicas = AssumedEngine({SOURCE: st(SOURCE, Role.PRIMARY), TARGET: st(TARGET)})
    assert replicas.set_phase(standby, Phase.HALTED, None, 4).phase is Phase.OPEN  # a standby only takes the epoch
    assert replicas.status(standby).epoch == 4
    with pytest.raises(StaleEpoch):
        replicas.set_phase(standby, Phase.HALTED, None, 3)
    assert replicas.fence(primary, 4).role is Role.FENCED
    with pytest.raises(EngineError):
        replicas.set_phase(primary, Phase.OPEN, None, 4)  # a fenced replica refuses all but halted
    promoted = replicas.promote(standby, 4)
    assert (promoted.role, promoted.phase) == (Role.PRIMARY, Phase.HALTED)  # a new primary starts halted


def test_call_order_interleaves_engine_calls_and_cloud_writes() -> None:
    writes: list[PlannedCall] = []
    order = CallOrder(writes)
    call = EngineCall("fence", "a", "http://a", 1)
    order.engine_call(call)
    writes.append(PlannedCall("local.stop_instance", {"instance_id": "i-1"}))
    order.engine_call(replace(call, verb="phase", replica="b"))
    writes.append(PlannedCall("local.put_record", {}))
    assert [str(c) for c in order.since(0)] == ["POST http://a/v1/fence {epoch: 1}",
                                                "local.stop_instance(instance_id='i-1')",
                                                "POST http://a/v1/phase {epoch: 1}", "local.put_record()"]


def test_the_driver_still_gathers_facts_by_flag(topology: Topology) -> None:
    world = World(topology, stopped=(SOURCE,))
    clock = world.clock
    providers, routers = world.edges()
    driver = RunbookDriver(topology, open_store("memory://"), AssumedEngine(healthy()), providers, routers, EventLog(),
                           clock)
    plan = new_plan(topology, "spot", SOURCE, TARGET, 4, has_router=True)
    facts = driver.facts(plan, topology.engines["spot"], verdicts(clock), old_instance=True, dns=True)
    assert (facts.old_instance_state, facts.target_instance_state, facts.dns_target) == ("stopped", None, "10.0.1.10")
    assert set(facts.statuses) == {SOURCE, TARGET, "spot-azure"} and facts.target_verdict is Verdict.HEALTHY



# ---- a planned switchover without a protection window (issue 15: "no protection window unless asked") ----------


class Asked(AssumedEngine):
    """Assumed replicas that note when each status was asked for (`asked`: (clock, replica))."""

    def __init__(self, statuses: dict[str, ReplicaStatus], clock: Clock) -> None:
        super().__init__(statuses)
        self.clock, self.asked = clock, list[tuple[float, str]]()

    def status(self, replica: Replica) -> ReplicaStatus:
        self.asked.append((self.clock(), replica.name))
        return super().status(replica)


def switchover(topology: Topology, *, protection: float, verdict: Verdict = Verdict.HEALTHY, every: float = 1.0,
               slow_protect: float = 0.0, cycles: int = 40,
               gone_once_fenced: bool = False) -> tuple[list[Call], Asked, MemoryStore, str]:
    """The runbook of a switchover from a healthy primary, a cycle every `every` seconds; `slow_protect` seconds
    pass inside the call that opens the window (a busy machine: the window may end before the step confirms it);
    with `gone_once_fenced` the old primary's host stops answering once it is fenced."""
    world = World(topology)
    clock, made = world.clock, list[Call]()
    replicas = Asked(healthy(), clock)

    def called(call: Call) -> None:
        made.append(call)
        if isinstance(call, EngineCall) and call.phase is Phase.PROTECTION:
            clock.now += slow_protect
        if gone_once_fenced and isinstance(call, EngineCall) and (call.verb, call.replica) == ("fence", SOURCE):
            replicas.replicas.pop(SOURCE)

    providers, routers = world.edges()
    store = open_store("memory://")
    driver = RunbookDriver(topology, store, RecordingEngine(replicas, clock=clock, on_call=called), providers,
                           routers, EventLog(), clock)
    plan = replace(new_plan(topology, "spot", SOURCE, TARGET, 4, has_router=True), protection=protection)
    incident = drive(driver, store, plan, clock, kind="switchover", cycles=cycles, every=every, verdict=verdict)
    return made, replicas, store, incident


def states(store: MemoryStore, incident: str) -> list[tuple[str, str]]:
    return [(e.step, e.state) for e in store.journal(incident) if e.state != "started"]


def test_a_switchover_without_a_window_goes_from_halted_straight_to_open(topology: Topology) -> None:
    made, replicas, store, incident = switchover(topology, protection=0.0)
    assert store.incident(incident).status.value == "closed", states(store, incident)
    assert ("open_protection", "skipped") in states(store, incident)
    phases = [c.phase for c in made if isinstance(c, EngineCall) and c.verb == "phase" and c.replica == TARGET]
    assert Phase.PROTECTION not in phases and phases[-1] is Phase.OPEN
    assert replicas.replicas[TARGET].phase is Phase.OPEN
    record = load_engine(store, topology, "spot")
    assert (record.primary, record.phase.phase) == (TARGET, Phase.OPEN)


def test_without_a_window_a_doubtful_new_primary_stays_halted_then_a_human_decides(topology: Topology) -> None:
    made, replicas, store, incident = switchover(topology, protection=0.0, verdict=Verdict.SUSPECT, every=2.0)
    seen = states(store, incident)
    assert seen.count(("await_window", "extended")) == MAX_EXTENSIONS, seen
    assert store.incident(incident).status.value == "needs_human"
    target_phases = [c.phase for c in made if isinstance(c, EngineCall) and c.verb == "phase" and c.replica == TARGET]
    assert Phase.PROTECTION not in target_phases and Phase.OPEN not in target_phases
    assert replicas.replicas[TARGET].phase is Phase.HALTED  # trading never reopened on an uncertain primary
    assert load_engine(store, topology, "spot").phase.phase is Phase.HALTED


def test_a_window_that_ends_before_its_step_is_confirmed_still_reopens_the_record(topology: Topology) -> None:
    """A 5 s window on a machine so busy that the call opening it returns 7 s later: the engine's window is already
    over when the step records it. The engine record must still follow the engine: protection, then open (it
    used to stay `halted`, and `status` showed trading halted on an open engine)."""
    _, replicas, store, incident = switchover(topology, protection=5.0, slow_protect=7.0)
    assert store.incident(incident).status.value == "closed", states(store, incident)
    assert replicas.replicas[TARGET].phase is Phase.OPEN
    assert load_engine(store, topology, "spot").phase.phase is Phase.OPEN


def test_once_traffic_moves_the_runbook_no_longer_asks_the_old_primary(topology: Topology) -> None:
    """A failover whose old primary's host is gone once fenced, then a 30 s window: the steps from switch_traffic
    on read the new primary alone. Asking the dead host again in every cycle of the window cost each daemon cycle
    a connect timeout and held up every other engine's decisions."""
    _, replicas, store, incident = switchover(topology, protection=30.0, gone_once_fenced=True)
    assert store.incident(incident).status.value == "closed", states(store, incident)
    journal = store.journal(incident)
    moved = next(e.at for e in journal if e.step == "switch_traffic" and e.state == "done")
    closing = next(e.at for e in journal if e.step == "close_incident")  # archives its tail: one read, rightly
    window = [name for at, name in replicas.asked if moved < at < closing]
    assert window.count(TARGET) >= 29 and window.count(SOURCE) == 0  # the window was watched: the target only


def test_a_replica_the_last_probe_round_found_dark_is_not_asked_again_by_the_runbook(topology: Topology) -> None:
    """The old primary's host is gone (it answers nobody) and the probe round just before said so: the whole
    failover runs without asking it once (each ask is a connect timeout in production, paid per engine)."""
    world = World(topology)
    clock = world.clock
    replicas = Asked({TARGET: st(TARGET), "spot-azure": st("spot-azure")}, clock)
    providers, routers = world.edges()
    store = open_store("memory://")
    driver = RunbookDriver(topology, store, replicas, providers, routers, EventLog(), clock,
                           unreachable=lambda engine: {SOURCE})
    plan = replace(new_plan(topology, "spot", SOURCE, TARGET, 4, has_router=True), protection=5.0)
    incident = drive(driver, store, plan, clock, cycles=20, every=1.0)
    assert store.incident(incident).status.value == "closed", states(store, incident)
    asked = [name for _, name in replicas.asked]
    assert SOURCE not in asked and asked.count(TARGET) > 5
