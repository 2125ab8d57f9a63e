"""Gray failures in the simulator (docs/gray-failures.md), through the real controller and runbook.

The runbook's cases: the primary's data centre dark two seconds every minute is `degraded` after the second
blackout and paged once, never `down`, never failed over; a primary six times slower than its normal is `degraded`
within seconds and healthy again once its window is clean; with `action: switchover` a degraded primary is moved to
a healthy standby on another cloud, halt first, nothing lost; with no standby safe to take over it is only paged;
and a noisy day (20 % of probe tries lost on every site) is never degraded and never failed over. The replica-level
fault kinds (blackouts, slow) do the same, and event-driven stepping reports them as the tick-by-tick run does.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from sim_helpers import SCENARIOS, make_scenario

from orchestrator.core.gray import DEGRADED, GrayAction, GrayObjective
from orchestrator.core.model import Policy, Topology
from orchestrator.drivers.events import EventKind
from orchestrator.sim import Scenario, Simulation, load_scenario
from orchestrator.sim.faults import Fault, FaultKind
from orchestrator.sim.runner import Stepping, quiet_adapters

pytestmark = pytest.mark.skipif("gray" not in Policy.__dataclass_fields__,
                                reason="core/model.py's Policy has no `gray` yet (docs/gray-failures.md)")

BLACKOUTS = SCENARIOS / "gray-blackouts.yaml"
SLOW = SCENARIOS / "gray-slow.yaml"
FIRST_FAULT = 1200.0  # both scenarios: twenty quiet minutes first (the baseline is learnt in ten)


def run(scenario: Scenario, seed: int = 0, stepping: Stepping = "event") -> Simulation:
    with quiet_adapters():
        sim = Simulation(scenario, seed, stepping=stepping)
        sim.run()
    return sim


def verdicts(sim: Simulation, subject: str) -> list[tuple[float, str]]:
    """(seconds into the scenario, verdict) at each change of `subject`'s verdict."""
    start = sim.scenario.start
    return [(e.at - start, str(e.detail["verdict"])) for e in sim.events.events
            if e.kind is EventKind.VERDICT and e.detail.get("subject") == subject]


def first(found: list[tuple[float, str]], verdict: str) -> float | None:
    return next((at for at, said in found if said == verdict), None)


def actions(sim: Simulation, kind: str) -> list[str]:
    return [e.message for e in sim.events.events if e.kind is EventKind.ACTION and e.detail.get("kind") == kind]


def acting(scenario: Scenario, action: GrayAction) -> Scenario:
    policy = scenario.topology.policy
    gray = policy.gray or GrayObjective()  # type: ignore[attr-defined]
    topology = replace(scenario.topology, policy=replace(policy, gray=replace(gray, action=action)))
    return replace(scenario, topology=topology)


def noisy(hours: float, action: GrayAction = GrayAction.SWITCHOVER) -> Scenario:
    base = acting(load_scenario(BLACKOUTS), action)
    faults = [Fault(FaultKind.PROBE_LOSS, 0.0, hours * 3600, site=site, loss=0.2) for site in base.topology.sites]
    return make_scenario(base.topology, faults, duration=hours * 3600, name="gray-noisy")


def test_two_dark_seconds_every_minute_are_degraded_after_the_second_and_paged_once() -> None:
    sim = run(load_scenario(BLACKOUTS))
    seen = verdicts(sim, "spot-aws")
    assert first(seen, DEGRADED) == FIRST_FAULT + 62  # 4 s dark of a 3 s budget
    assert {said for _, said in seen} <= {"healthy", "suspect", DEGRADED}  # never down, never flapping
    blackouts_end = FIRST_FAULT + 7200
    assert [said for at, said in seen if FIRST_FAULT + 62 < at < blackouts_end] == []  # degraded through them all
    assert [said for at, said in seen if at >= blackouts_end] in ([], ["healthy"])
    pages = actions(sim, "page")
    assert len(pages) == 1 and "available 99.33% over the last 600s" in pages[0], pages
    result = sim.result()
    assert result.failovers == 0 and result.passed, result.expectations


def test_a_primary_six_times_slower_than_its_normal_is_degraded_then_healthy_again() -> None:
    sim = run(load_scenario(SLOW))
    seen = verdicts(sim, "spot-aws")
    assert first(seen, DEGRADED) == FIRST_FAULT + 7  # 1 % of ten minutes is 6 s: breached in the 7th
    healthy_again = [at for at, said in seen if said == "healthy" and at > FIRST_FAULT]
    slowness_ends = FIRST_FAULT + 3600
    assert healthy_again and slowness_ends < healthy_again[0] <= slowness_ends + 600
    assert not [e for e in sim.events.events if "past suspect_timeout" in e.message]  # degraded, not held as suspect
    assert len(actions(sim, "page")) == 1 and sim.result().failovers == 0


def test_switchover_moves_a_degraded_primary_to_a_healthy_standby_halt_first() -> None:
    sim = run(acting(load_scenario(BLACKOUTS), GrayAction.SWITCHOVER))
    result = sim.result()
    assert result.failovers == 1 and result.false_failovers == 0
    assert result.orders_lost == 0 and result.trades_while_halted == 0
    assert result.trades_during_protection == 0 and result.max_primaries == 1
    assert [p.replica for p in sim.world.promotions] == ["spot-gcp"]  # another cloud first
    # degraded at +62 s; the promotion follows once the runbook's simulated calls have taken their time
    # (orchestrator/sim/latency.py): simulated seconds, deterministic, so bounded on both sides
    assert FIRST_FAULT + 62 < sim.world.promotions[0].at - sim.scenario.start < FIRST_FAULT + 62 + 60
    phases = [phase.value for _, phase in sim.world.phase_log["spot"]]
    assert phases[:3] == ["halted", "protection", "open"]  # the runbook halted trading before it moved anything
    failovers = actions(sim, "failover")
    assert len(failovers) == 1 and "planned switchover" in failovers[0]


def test_no_switchover_without_a_standby_that_is_caught_up_only_a_page() -> None:
    base = acting(load_scenario(BLACKOUTS), GrayAction.SWITCHOVER)
    behind = tuple(Fault(FaultKind.LAG, 0.0, base.duration, replica=name)  # they take entries, apply none
                   for name in ("spot-gcp", "spot-azure"))
    sim = run(replace(base, faults=base.faults + behind, expect={}))
    assert sim.result().failovers == 0
    pages = actions(sim, "page")
    assert len(pages) == 1 and "is degraded" in pages[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_noisy_day_is_never_degraded_and_never_failed_over(seed: int) -> None:
    """Two hours of 20 % of probe tries lost on every site, with the switchover action (a false `degraded` would
    fail over): the benchmark runs the whole day (benchmarks/gray_bench.py)."""
    sim = run(noisy(2.0), seed)
    said = {str(e.detail["verdict"]) for e in sim.events.events if e.kind is EventKind.VERDICT}
    assert DEGRADED not in said and "down" not in said
    assert sim.result().failovers == 0


def test_thirty_percent_loss_on_the_primary_site_stays_quiet_under_a_gray_objective() -> None:
    """configs/scenarios/gray-failure.yaml (30 % loss on the primary's site for two hours, 30 minutes on another)
    on the gray topology, switchover action."""
    lossy = load_scenario(SCENARIOS / "gray-failure.yaml")
    topology: Topology = acting(load_scenario(BLACKOUTS), GrayAction.SWITCHOVER).topology
    sim = run(replace(lossy, topology=topology))
    assert DEGRADED not in {str(e.detail["verdict"]) for e in sim.events.events if e.kind is EventKind.VERDICT}
    assert sim.result().passed


def replica_faults() -> Scenario:
    topology = load_scenario(BLACKOUTS).topology
    faults = [Fault(FaultKind.BLACKOUTS, 900.0, 1800.0, site="aws-hk", replica="spot-aws", down=2.0, up=58.0),
              Fault(FaultKind.SLOW, 900.0, 1800.0, site="gcp-hk", replica="spot-gcp", factor=6.0)]
    return make_scenario(topology, faults, duration=3600.0, name="gray-replicas")


def test_a_replica_dark_two_seconds_a_minute_and_one_six_times_slower_are_each_degraded() -> None:
    sim = run(replica_faults())
    assert first(verdicts(sim, "spot-aws"), DEGRADED) == 900 + 62
    assert first(verdicts(sim, "spot-gcp"), DEGRADED) == 900 + 7
    assert first(verdicts(sim, "spot-azure"), DEGRADED) is None


def test_event_driven_stepping_reports_replica_gray_faults_as_tick_by_tick() -> None:
    scenario = replica_faults()
    tick, event = run(scenario, stepping="tick"), run(scenario, stepping="event")

    def said(sim: Simulation) -> str:
        return json.dumps([(e.at, e.kind.value, e.message) for e in sim.events.events]) + \
            json.dumps(sim.result().to_json(), sort_keys=True)

    assert said(event) == said(tick)
    assert event.skipped > 0
