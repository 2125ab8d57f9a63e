"""Simulated calls take the time production's take, so a simulated failover lasts what a real one would.

The runbook waits for each engine and cloud call to return; in the simulator each call's time is drawn per call
from its distribution (orchestrator/sim/latency.py). These tests read like the runbook they time: the data centre
is lost, the old primary does not answer (each call to it costs the client's timeouts), the standby is promoted,
DNS is changed and reaches resolvers a propagation later.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
from sim_helpers import SCENARIOS, make_scenario
from test_sim_stepping import assert_same

from orchestrator.core.model import Topology
from orchestrator.errors import ConfigError
from orchestrator.sim import Scenario, Simulation, load_scenario, run_scenario, simulate
from orchestrator.sim.faults import Fault, FaultKind
from orchestrator.sim.latency import DEFAULT_CLOUDS, Latencies, Latency, LatencyTable
from orchestrator.sim.runner import quiet_adapters
from providers.base import InstanceState


def outage(topology: Topology, table: LatencyTable | None = None, duration: float = 1800.0) -> Scenario:
    """The primary's site (AWS Hong Kong) lost at +60 s for 20 minutes."""
    scenario = make_scenario(topology, [Fault(FaultKind.OUTAGE, 60.0, 1200.0, site="aws-hk")], duration=duration,
                             expect={"failovers": 1, "orders_lost": 0, "max_primaries": 1})
    return scenario if table is None else replace(scenario, latencies=table)


def test_a_failover_takes_time_after_detection(sim_topology: Topology) -> None:
    """Regression: every step ran in the detection's virtual second (halt_s 0.0, a new primary at the detection).
    Now each step takes its calls' time: the halt, the fence, the checks, the promotion. (The lost primary is not
    asked again: the probe round just before found it dark, so no step waits for its status to time out.)"""
    result = run_scenario(outage(sim_topology))
    assert result.passed, result.expectations
    assert result.detection_s is not None and result.time_to_new_primary_s is not None
    steps = result.step_durations_s
    before_promotion = sum(steps[step] for step in ("halt", "fence_old_primary", "ensure_target_running",
                                                    "wait_caught_up"))
    assert before_promotion > 0.5  # every call of four steps, each tens to hundreds of milliseconds
    assert result.time_to_new_primary_s >= result.detection_s + before_promotion
    assert 1.0 < result.halt_s < 60.0


def test_the_failover_clock_is_reported_after_detection(sim_topology: Topology) -> None:
    result = run_scenario(outage(sim_topology))
    after = result.after_detection
    assert set(after) == {"halted", "new_primary", "traffic_switched"}
    assert 0.0 < after["halted"] < after["new_primary"] < after["traffic_switched"]  # type: ignore[operator]
    # the DNS change reaches every name server tens of seconds after it is written (Route 53: within 60 s)
    assert after["traffic_switched"] - after["new_primary"] > 10.0  # type: ignore[operator]
    assert result.time_to_traffic_switched_s == pytest.approx(result.detection_s + after["traffic_switched"])
    steps = result.step_durations_s
    assert list(steps)[:7] == ["announce", "halt", "fence_old_primary", "ensure_target_running", "wait_caught_up",
                               "promote", "switch_traffic"]
    assert 0.0 < steps["halt"] < 2.0 and 0.0 < steps["promote"] < 2.0  # the dark old primary is not waited for


def test_instant_calls_give_back_the_old_timeline(sim_topology: Topology) -> None:
    """`latencies: {instant: true}`: every call answers at once, the simulator as it was (every step in the
    detection's second), which is what the figures above are compared against."""
    result = run_scenario(outage(sim_topology, LatencyTable(instant=True)))
    assert result.halt_s == 0.0
    assert result.time_to_new_primary_s == result.detection_s
    assert result.step_durations_s["halt"] == 0.0


def test_same_seed_same_timeline_other_seed_other_latencies(sim_topology: Topology) -> None:
    first, again = run_scenario(outage(sim_topology), seed=3), run_scenario(outage(sim_topology), seed=3)
    assert json.dumps(first.to_json(), sort_keys=True) == json.dumps(again.to_json(), sort_keys=True)
    other = run_scenario(outage(sim_topology), seed=4)
    assert other.step_durations_s != first.step_durations_s


def test_a_scenario_overrides_a_call(sim_topology: Topology) -> None:
    """A replica that takes 5 s to promote, and a DNS service that takes 2 minutes to sync."""
    slow = LatencyTable().override({"engine": {"promote": Latency(5.0, 5.0)},
                                    "aws": {"dns_propagation": Latency(120.0, 120.0)}})
    result = run_scenario(outage(sim_topology, slow))
    assert result.step_durations_s["promote"] >= 5.0
    after = result.after_detection
    assert 120.0 <= after["traffic_switched"] - after["new_primary"] < 125.0  # type: ignore[operator]


def test_latencies_section_is_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text(
        f"name: slow\ntopology: {SCENARIOS / 'hk-topology.yaml'}\nstart: 2022-12-18T11:00:00+08:00\nduration: 1h\n"
        "latencies:\n  engine:\n    status: 50ms\n    promote: {median: 1s, p95: 3s}\n"
        "  gcp:\n    stop: {median: 40s, p95: 90s}\n", encoding="utf-8")
    table = load_scenario(path).latencies
    assert table.of("engine.status") == Latency(0.05, 0.05)
    assert table.of("engine.promote") == Latency(1.0, 3.0)
    assert table.of("gcp.stop") == Latency(40.0, 90.0)
    assert table.of("aws.dns_propagation") == DEFAULT_CLOUDS["aws"]["dns_propagation"]  # untouched: the default


BAD = [
    ("  engine:\n    fence: {median: 2s, p95: 1s}\n", r":6: latencies\.engine\.fence: p95 \(1s\) must be at least"),
    ("  aws:\n    stpo: 3s\n", r":6: latencies\.aws\.stpo: unknown key"),
    ("  aws:\n    stop: soon\n", r":6: latencies\.aws\.stop: 'soon' is not a duration"),
    ("  aws:\n    stop: {median: 20s}\n", r":6: latencies\.aws\.stop\.p95: required field is missing"),
    ("  ibm:\n    api: 1s\n", r":5: latencies\.ibm: no site of the topology is on 'ibm'; known: engine, aws"),
    ("  engine:\n    status: 0.02\n", r":6: latencies\.engine\.status: expected a duration string"),
]


@pytest.mark.parametrize(("section", "expected"), BAD, ids=[expected.split(": ")[0] for _, expected in BAD])
def test_a_bad_latency_is_one_line_naming_the_field(tmp_path: Path, section: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\ntopology: {SCENARIOS / 'hk-topology.yaml'}\nstart: 2022-12-18T11:00:00+08:00\n"
                    f"latencies:\n{section}duration: 1h\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=expected) as caught:
        load_scenario(path)
    assert len(str(caught.value).splitlines()) == 1, str(caught.value)


def test_draws_follow_the_distribution_and_are_keyed(sim_topology: Topology) -> None:
    sim = Simulation(outage(sim_topology))
    latency = Latencies(LatencyTable().override({"aws": {"stop": Latency(20.0, 60.0)}}), sim.clock, seed=1)
    draws = [latency.draw("aws.stop", "i-1", 1000.0 + k) for k in range(4000)]
    assert statistics.median(draws) == pytest.approx(20.0, rel=0.05)
    assert sorted(draws)[int(0.95 * len(draws))] == pytest.approx(60.0, rel=0.08)
    assert max(draws) <= Latency(20.0, 60.0).most
    assert latency.draw("aws.stop", "i-1", 1000.0) == draws[0]  # the same call at the same instant: the same time
    assert Latencies(latency.table, sim.clock, seed=2).draw("aws.stop", "i-1", 1000.0) != draws[0]


def test_a_fence_waits_for_the_machine_to_stop(sim_topology: Topology) -> None:
    """AWS's forced stop is asked for, and the fence returns once the machine is stopped: the drawn stop time,
    plus the API requests and the adapter's polls, on the virtual clock."""
    table = LatencyTable().override({"aws": {"stop": Latency(25.0, 25.0), "api": Latency(0.2, 0.2)}})
    sim = Simulation(outage(sim_topology, table))
    began = sim.clock()
    with quiet_adapters():
        sim.providers["aws-hk"].fence("i-0123456789abcdef0", deadline=120.0)
    took = sim.clock() - began
    assert sim.world.replicas["spot-aws"].machine.state is InstanceState.STOPPED
    assert 25.0 < took < 25.0 + 2.0 + 1.0  # at most one 2 s poll late, and a few 0.2 s requests


def test_event_stepping_equals_tick_with_slow_calls(sim_topology: Topology) -> None:
    """A protection window whose cycles each wait 3 s for the lost primary's status and 0.3 s for every other: the
    skipped ticks replay those waits, so the event-driven run says exactly what the tick-by-tick run says."""
    slow = LatencyTable().override({"engine": {"no_answer": Latency(3.0, 3.0), "status": Latency(0.2, 0.4)}})
    sim = assert_same(outage(sim_topology, slow, duration=2400.0), seed=1)
    assert sim.skipped > 0.5 * sim.cycles


def test_every_built_in_scenario_still_meets_its_expectations_with_latencies() -> None:
    for path in (SCENARIOS / "hk-2022.yaml", SCENARIOS / "zone-outage.yaml"):
        result = run_scenario(load_scenario(path))
        assert result.passed, (path.name, result.expectations)
        assert result.halt_s > 0.0


def test_simulate_instant_is_the_old_simulator() -> None:
    """`failover simulate --instant`: the same scenario with every call answering at once."""
    timed = simulate(SCENARIOS / "zone-outage.yaml")
    instant = simulate(SCENARIOS / "zone-outage.yaml", instant=True)
    assert instant["halt_s"] == 0.0 and instant["time_to_new_primary_s"] == instant["detection_s"]
    assert timed["halt_s"] > 1.0 and timed["time_to_new_primary_s"] > timed["detection_s"] + 0.5
