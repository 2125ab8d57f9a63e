"""gray-blackouts, seed 2 of `make bench` (docs/false-failovers.md): the failover 7,202 s after the first blackout.

The bench moves every fault by a random fraction of the probe interval (benchmarks/sim_bench.py `shifted`); seed 2
moves the two-hour flapping fault to start at 1,200.519... s. Adding the 60 s period 120 times to that start lands
on 8,400.519220289407, one ulp short of the fault's end (8,400.519220289409), so the fault grew a 121st blackout
one ulp long. On the world's epoch-seconds clock its start and its end are the same float, and an atom's end sorts
before its start at one instant: the site went dark at the end of the fault and stayed dark for the rest of the
run. The orchestrator then saw aws-hk fail from three vantage points three times in a row and failed over, rightly
for the world it saw; by the scenario's own definition the primary was fine (the last blackout had ended 58 s
before). The fix is in the fault's expansion: a window's start is counted from the fault's start by multiplying the
period, and compared with the fault's duration, not accumulated on the absolute time.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from sim_helpers import SCENARIOS

from orchestrator.errors import EXIT_BAD_INPUT, ConfigError
from orchestrator.sim import Simulation, load_scenario
from orchestrator.sim.faults import Effect, Fault, FaultKind, down_windows, expand
from orchestrator.sim.runner import quiet_adapters
from orchestrator.sim.scenario import Scenario

SEED = 2
GRAY_BLACKOUTS = SCENARIOS / "gray-blackouts.yaml"


def shifted_as_the_bench_does(scenario: Scenario, seed: int, interval: float = 1.0) -> Scenario:
    """benchmarks/sim_bench.py `shifted`: every fault moved by the same random fraction of the probe interval."""
    offset = random.Random(f"phase:{seed}").random() * interval
    return replace(scenario, faults=tuple(replace(f, at=f.at + offset) for f in scenario.faults))


def test_seed_2_moves_the_fault_where_accumulated_periods_fall_short_of_its_end() -> None:
    """The premise: the shift the bench draws for seed 2 is the one that exposed the sliver."""
    fault = shifted_as_the_bench_does(load_scenario(GRAY_BLACKOUTS), SEED).faults[0]
    at = fault.at
    for _ in range(120):
        at += fault.down + fault.up
    assert at < fault.end  # 120 periods added one by one fall short of the end by a rounding error


def test_a_two_hour_flapping_fault_has_120_blackouts_of_two_seconds_whatever_its_start() -> None:
    fault = shifted_as_the_bench_does(load_scenario(GRAY_BLACKOUTS), SEED).faults[0]
    windows = down_windows(fault)
    assert len(windows) == 120
    assert all(end - start == 2.0 or abs(end - start - 2.0) < 1e-6 for start, end in windows)
    assert windows[-1][1] <= fault.end - 58.0 + 1e-6  # the last blackout ends 58 s before the fault does


def test_no_fault_expands_to_an_atom_shorter_than_the_clock_can_tell() -> None:
    """Every flapping start a bench seed can draw (0 to 1 s, by 1/1000), over a period that does not divide the
    duration evenly in binary either: no sliver window, no atom whose start and end are one float apart."""
    for thousandth in range(1000):
        fault = Fault(FaultKind.FLAPPING, 1200.0 + thousandth / 1000, 7200.0, site="aws-hk", down=2.0, up=58.0)
        odd = Fault(FaultKind.FLAPPING, 600.0 + thousandth / 1000, 60.0, site="aws-hk", down=0.3, up=0.7)
        for each in (fault, odd):
            windows = down_windows(each)
            assert len(windows) == round(each.duration / (each.down + each.up)), each
            assert all(atom.end - atom.start > 0.25 for atom in expand(each)), each


def test_the_site_is_serving_after_the_flapping_fault_ends() -> None:
    """In the world of seed 2, 30 s after the fault's end, aws-hk is not out (it was out until the run's end)."""
    scenario = shifted_as_the_bench_does(load_scenario(GRAY_BLACKOUTS), SEED)
    fault = scenario.faults[0]
    with quiet_adapters():
        sim = Simulation(scenario, SEED)
        sim.world.advance_to(scenario.start + fault.end + 30.0)
    assert "aws-hk" not in sim.world.out
    assert not [a for a in sim.world._active if a.effect is Effect.DATA_PLANE_OUT]


def test_seed_2_replayed_as_the_bench_runs_it_makes_no_failover() -> None:
    """The whole scenario, seed 2, our policy: no failover, every expectation of gray-blackouts.yaml met."""
    scenario = shifted_as_the_bench_does(load_scenario(GRAY_BLACKOUTS), SEED)
    with quiet_adapters():
        sim = Simulation(scenario, SEED, "default")
        sim.run_until(scenario.end)
        result = sim.result()
    assert result.failovers == 0
    assert result.expectations == dict.fromkeys(result.expectations, True)
    assert result.passed


def test_an_outage_of_no_duration_leaves_the_site_serving() -> None:
    """The same trap without rounding: `duration: 0s` made one atom that started and never ended."""
    scenario = load_scenario(GRAY_BLACKOUTS)
    nothing = replace(scenario, faults=(Fault(FaultKind.OUTAGE, 600.0, 0.0, site="aws-hk"),))
    with quiet_adapters():
        sim = Simulation(nothing, SEED)
        sim.world.advance_to(nothing.start + 700.0)
    assert sim.world.out == set()


def test_a_flapping_fault_that_is_never_down_is_refused_with_its_line(tmp_path: Path) -> None:
    """`down: 0s` made atoms of no length, each of which started and never ended: the site dark from the first one
    to the end of the run. Now the file is refused before any virtual second runs (exit 2, its line named)."""
    path = tmp_path / "scenario.yaml"
    path.write_text(f"name: flap0\ntopology: {SCENARIOS / 'hk-topology.yaml'}\nstart: 2022-12-18T11:00:00+08:00\n"
                    "duration: 1h\nfaults:\n  - {at: 1m, site: aws-hk, kind: flapping, down: 0s, up: 58s, "
                    "duration: 5m}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert str(caught.value) == f"{path}:6: faults.0: down must be more than 0s (got 0s)"
