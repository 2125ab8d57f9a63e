"""The columnar health evaluator inside the whole controller: every built-in scenario, simulated with the controller
judging health over arrays (core/health_columns.py, what a controller with thousands of replicas uses) and over
objects (core/health.py, what ten engines use), says the same: the report byte for byte, and behind it every event
(verdict changes included), runbook journal entry, incident, audit entry and replica's final state. Event-driven
stepping stays exact with it too (against the tick-by-tick run), and the simulated prober's columns are its
observations."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sim_helpers import SCENARIOS
from test_sim_stepping import COMPRESSED, FILES, LONG, everything, first_difference, scenario_of

from orchestrator.core.health import Assessment
from orchestrator.core.health_columns import Column
from orchestrator.drivers.controller import CycleResult
from orchestrator.sim import Scenario, Simulation, load_scenario
from orchestrator.sim.probes import SimProber, _status_fields
from orchestrator.sim.replica import SimReplica
from orchestrator.sim.runner import Stepping, quiet_adapters


class Recorded(Simulation):
    """A simulation that keeps every cycle's verdicts with their evidence (failing and ok sources, reason, since),
    which the report and the events show only in part."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verdicts: list[tuple[float, list[tuple[str, Assessment]]]] = []
        cycle = self.controller.run_cycle

        def recorded() -> CycleResult:
            result = cycle()
            self.verdicts.append((result.at, list(result.verdicts.items())))
            return result

        self.controller.run_cycle = recorded  # type: ignore[method-assign]


def run(scenario: Scenario, columnar: bool, stepping: Stepping = "event", policy: str = "default") -> Recorded:
    with quiet_adapters():
        sim = Recorded(scenario, 0, policy, stepping=stepping, columnar=columnar)
        sim.run()
    return sim


def assert_same(reference: Recorded, columnar: Recorded, *, same_skips: bool = True) -> None:
    if same_skips:
        assert len(columnar.verdicts) == len(reference.verdicts)
        for (at, found_verdicts), (_, expected_verdicts) in zip(columnar.verdicts, reference.verdicts, strict=True):
            assert found_verdicts == expected_verdicts, f"the verdicts differ at {at}"
        assert columnar.controller.health == reference.controller.health
    expected, found = everything(reference), everything(columnar)
    for part in ("report", "behind"):
        assert found[part] == expected[part], f"the {part} differs:\n" + first_difference(expected[part],
                                                                                          found[part])
    assert columnar.cycles == reference.cycles
    assert columnar.skipped == reference.skipped if same_skips else reference.skipped == 0 < columnar.skipped


CASES = [(path, "default") for path in FILES]
CASES += [(path, policy) for path in FILES if path.stem not in LONG | COMPRESSED for policy in ("naive",)]


@pytest.mark.parametrize(("path", "policy"), CASES, ids=[f"{path.stem}-{policy}" for path, policy in CASES])
def test_every_scenario_reports_the_same_with_health_over_arrays(path: Path, policy: str) -> None:
    scenario = scenario_of(path)
    columnar = run(scenario, True, policy=policy)
    gray = getattr(columnar.topology.policy, "gray", None) is not None
    assert columnar.controller.columnar is not gray  # a gray objective keeps core/health.py (its windows)
    assert_same(run(scenario, False, policy=policy), columnar)


def test_event_driven_stepping_stays_exact_with_health_over_arrays() -> None:
    scenario = load_scenario(SCENARIOS / "observer-partition.yaml")
    assert_same(run(scenario, True, "tick"), run(scenario, True, "event"), same_skips=False)


def test_the_probers_columns_are_its_observations() -> None:
    scenario = load_scenario(SCENARIOS / "zone-outage.yaml")
    for at in (scenario.start + 10, scenario.start + 1000):
        with quiet_adapters():
            sim = Simulation(scenario, 0, columnar=True)
            sim.run_until(at)
        world = sim.world
        round_ = sim.prober.probe_columns(at)
        again = SimProber(world).probe(at)
        flat = [o for item in round_.columns for o in (item.observations() if isinstance(item, Column) else [item])]
        assert round_.observations == [] and any(isinstance(item, Column) for item in round_.columns)
        assert flat == again.observations
        assert round_.statuses == again.statuses


def test_a_kept_status_is_rebuilt_when_any_field_it_is_made_of_changes() -> None:
    """`SimProber` keeps each replica's status while the fields `SimReplica.status` reads are unchanged: the key
    must name every one of them (read from the method's source, so a field added there fails here)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(SimReplica.status)))
    read = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "self"}
    fields = set(_status_fields.__reduce__()[1])
    assert read - {"name"} == fields


def test_a_changed_replica_gets_a_new_status_and_the_others_keep_theirs() -> None:
    scenario = load_scenario(SCENARIOS / "zone-outage.yaml")
    with quiet_adapters():
        sim = Simulation(scenario, 0)
    prober = SimProber(sim.world)
    first = prober.probe(scenario.start)
    replica = prober.sims[0]
    replica.n += 5
    replica.applied += 5
    second = prober.probe(scenario.start + 1)
    assert second.statuses[replica.name].last_seq == first.statuses[replica.name].last_seq + 5
    assert second.statuses == {sim.name: sim.status() for sim in prober.sims if sim.name in second.statuses}
    others = [name for name in first.statuses if name != replica.name]
    assert all(second.statuses[name] is first.statuses[name] for name in others)
