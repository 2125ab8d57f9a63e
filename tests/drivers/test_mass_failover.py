"""A whole site lost: every engine's primary goes dark in one cycle (docs/mass-failover.md).

The runbook is the one every failover follows; what these tests check is that opening and advancing a thousand of
them at once does not cost the controller work that grows with the square of the engines: one read of the store
per engine that could need it, one look at the replicas' epochs per cycle, not per failover."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.sim_bench import big_topology
from orchestrator.core.decide import ActionKind
from orchestrator.sim import Scenario, Simulation
from orchestrator.sim.faults import Fault, FaultKind
from orchestrator.sim.runner import quiet_adapters
from orchestrator.sim.scenario import WorldSettings
from orchestrator.store.memory import MemoryStore
from orchestrator.store.records import IncidentStatus

START = 1_671_332_400.0
ENGINES = 40


@pytest.fixture
def site_lost() -> Iterator[Simulation]:
    """`ENGINES` engines, their primaries all on aws-hk, which goes dark 5 s in, for good."""
    scenario = Scenario("site-lost", big_topology(ENGINES), start=START, duration=3600.0,
                        world=WorldSettings(order_rate=0.0),
                        faults=(Fault(FaultKind.OUTAGE, 5.0, 3000.0, site="aws-hk"),))
    with quiet_adapters():
        yield Simulation(scenario, stepping="tick")


def _until_failovers(sim: Simulation) -> Any:
    tick = START + 1
    while tick < START + 30:
        sim.world.advance_to(tick)
        result = sim.controller.run_cycle()
        if any(a.kind is ActionKind.FAILOVER for a in result.actions):
            return result
        tick = max(tick + 1, sim.clock())
    raise AssertionError("no failover opened within 30 s of the site going dark")


def test_every_engine_fails_over_away_from_the_lost_site_in_one_cycle(site_lost: Simulation) -> None:
    result = _until_failovers(site_lost)
    failovers = [a for a in result.actions if a.kind is ActionKind.FAILOVER]
    assert len(failovers) == ENGINES
    incidents = site_lost.store.incidents()
    assert len(incidents) == ENGINES
    assert {i.engine for i in incidents} == set(site_lost.topology.engines)
    assert all(i.source.endswith("-aws") and not i.target.endswith("-aws") for i in incidents)
    epochs = [int(i.detail["epoch"]) for i in incidents]
    assert len(set(epochs)) == 1  # the same epoch for all, as each would have got from the same cycle's statuses


def test_a_new_cycles_statuses_raise_the_epoch_the_next_failover_opens_with(site_lost: Simulation) -> None:
    """The highest epoch is kept per cycle, not forever: a cycle that reads a higher epoch opens above it."""
    controller = site_lost.controller
    _until_failovers(site_lost)
    first = controller._highest_epoch()
    assert first == max(s.epoch for s in controller.statuses.values())
    bumped = {name: status for name, status in controller.statuses.items()}
    name = next(iter(bumped))
    bumped[name] = type(bumped[name])(**{**vars_of(bumped[name]), "epoch": first + 1000})
    controller.statuses = bumped  # what each cycle's `_observe` does: a new mapping
    assert controller._highest_epoch() == first + 1000


def vars_of(status: Any) -> dict[str, Any]:
    from dataclasses import fields
    return {f.name: getattr(status, f.name) for f in fields(status)}


class CountingStore(MemoryStore):
    """Counts the per-engine incident reads the controller makes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.per_engine_reads = 0

    def incidents(self, engine: str | None = None, *, open_only: bool = False,
                  limit: int | None = None) -> list[Any]:
        if engine is not None and not open_only:
            self.per_engine_reads += 1
        return super().incidents(engine, open_only=open_only, limit=limit)


def test_returned_old_primaries_are_looked_up_only_for_the_engines_that_have_one(site_lost: Simulation) -> None:
    """`_archive_returned` asks the store about an engine only if one of its replicas answers fenced: its
    incident's source must be fenced to qualify. It asked about every engine, every cycle, once any was."""
    controller = site_lost.controller
    store = CountingStore("memory://counting", clock=site_lost.clock)
    controller.store = store
    controller._fenced = {"engine-0003-aws", "engine-0017-aws"}
    controller._archive_returned(site_lost.clock())
    assert store.per_engine_reads == 2


def test_one_engines_incidents_read_from_its_own_index_match_a_scan_of_all() -> None:
    store = MemoryStore("memory://index")
    at = START
    for n in range(30):
        engine = f"engine-{n % 7}"
        for open_ in store.incidents(engine, open_only=True):
            store.update_incident(open_.id, status=IncidentStatus.CLOSED, at=at)
        store.create_incident(engine, "failover", "site lost", at + (n % 4), source=f"{engine}-a",
                              target=f"{engine}-b", status=IncidentStatus.RUNNING)
        at += 1
    every = store.incidents()
    for k in range(7):
        engine = f"engine-{k}"
        mine = [i for i in every if i.engine == engine]
        assert store.incidents(engine) == mine
        assert store.incidents(engine, limit=2) == mine[:2]
        assert store.incidents(engine, open_only=True) == [i for i in mine if i.is_open]
    assert store.incidents("engine-none") == []
    assert len(every) == 30


def test_the_benchmark_measures_the_cycle_that_opens_every_failover_and_the_three_after() -> None:
    from benchmarks.daemon_scale_bench import MASS_FOLLOWING, mass_failovers, render_mass

    row = mass_failovers(30, instant=True, runs=1)
    assert row["opened"] == 30
    assert row["opening_cpu_s"] > 0
    assert row["opening_virtual_s"] == 0  # instant calls: no simulated waits
    assert len(row["following_cpu_s"]) == MASS_FOLLOWING
    assert row["open_after"] == 30  # each runbook waits out its protection window (await_window) after promoting
    assert "the cycle opening 30 failovers" in render_mass([row])[0]
