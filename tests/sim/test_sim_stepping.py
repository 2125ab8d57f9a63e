"""Event-driven stepping changes how fast a simulation runs, never what it says.

The runner accounts for a tick without running the controller when that cycle could not come out differently from
the last one (orchestrator/sim/stepping.py). Every claim here compares a run with `stepping="event"` (the default)
against the same run with `stepping="tick"` (every cycle runs, as before): the report's JSON byte for byte, and
beyond it every event the orchestrator published (verdict changes included), every runbook journal entry, and every
replica's final journal position, epoch, role and phase. Incident ids carry a random suffix, so they are renamed in
order of appearance first, as the report's timeline does.

Covered: every scenario in configs/scenarios (seeds 0, 1, 2 under the default policy; seed 0 under the `route53`
and `naive` presets, which probe every 30 s and fail over on the first failed probe; hk-2022, 14 hours, on seed 0);
random fault schedules of every kind, edges between ticks included (20 on the one-engine topology, some under the
route53-fast and naive presets; 5 on the ten-engine one); and faults injected between calls. exchange-10's day
costs a minute and a half tick by tick, so here its faults are moved closer together (quiet gaps of at most 20
minutes: the same faults on the same ten engines, in 3.6 hours); `python -m benchmarks.sim_scale_bench` compares
the whole day.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_helpers import SCENARIOS, make_scenario

from orchestrator.config import load_config
from orchestrator.sim import Scenario, Simulation, load_scenario
from orchestrator.sim.faults import Fault, FaultKind, expand
from orchestrator.sim.runner import Stepping, quiet_adapters

FILES = sorted(path for path in SCENARIOS.glob("*.yaml") if path.name != "hk-topology.yaml")
LONG = {"hk-2022", "hk-2022-rejoin"}  # 14 simulated hours: seed 0
COMPRESSED = {"exchange-10"}  # 24 hours of ten engines: its faults closer together (see the module's docstring)
HK = load_config(SCENARIOS / "hk-topology.yaml").topology
EXCHANGE = load_config(SCENARIOS / "topologies" / "exchange-10.yaml").topology
INCIDENT = re.compile(r"INC-\d{8}-\d{6}-[A-Za-z0-9_]+-[0-9a-f]{4}")


def run(scenario: Scenario, seed: int = 0, policy: str = "default", stepping: Stepping = "event") -> Simulation:
    with quiet_adapters():
        sim = Simulation(scenario, seed, policy, stepping=stepping)
        sim.run()
    return sim


def renamed(text: str) -> str:
    names: dict[str, str] = {}
    return INCIDENT.sub(lambda found: names.setdefault(found.group(0), f"INC-{len(names) + 1}"), text)


def everything(sim: Simulation) -> dict[str, str]:
    """What a run says (its report) and everything behind it, as text to compare."""
    store = sim.store
    behind = {
        "events": [(e.at, e.kind.value, e.engine, e.message, e.detail) for e in sim.events.events],
        "journals": [[(entry.at, entry.step, entry.state, entry.detail) for entry in store.journal(incident.id)]
                     for incident in store.incidents()],
        "incidents": [(i.engine, i.kind, i.status.value, i.opened_at, i.source, i.target) for i in store.incidents()],
        "replicas": {name: (r.role.value, r.epoch, r.phase.value, r.phase_until, r.n, r.applied)
                     for name, r in sim.world.replicas.items()},
        "audit": [(entry.at, entry.actor, entry.action, entry.detail) for entry in store.audit_entries()],
    }
    return {"report": renamed(json.dumps(sim.result().to_json(), sort_keys=True, indent=1)),
            "behind": renamed(json.dumps(behind, sort_keys=True, indent=1, default=str))}


def first_difference(tick: str, event: str) -> str:
    diff = difflib.unified_diff(tick.splitlines(), event.splitlines(), "tick by tick", "event driven", n=2, lineterm="")
    return "\n".join(list(diff)[:30])


def assert_same(scenario: Scenario, seed: int = 0, policy: str = "default") -> Simulation:
    exact, fast = run(scenario, seed, policy, "tick"), run(scenario, seed, policy, "event")
    expected, found = everything(exact), everything(fast)
    for part in ("report", "behind"):
        assert found[part] == expected[part], f"{scenario.name} seed {seed} {policy}: the {part} differs:\n" + \
            first_difference(expected[part], found[part])
    assert fast.cycles == exact.cycles and exact.skipped == 0
    return fast


def compressed(scenario: Scenario, gap: float = 1200.0) -> Scenario:
    """The scenario with every quiet stretch longer than `gap` (before, between and after its faults) cut to `gap`."""
    faults, shift, end = [], 0.0, 0.0
    for fault in sorted(scenario.faults, key=lambda f: f.at):
        shift = max(shift, fault.at - (end + gap))
        faults.append(replace(fault, at=fault.at - shift))
        end = max(end, fault.at - shift + fault.duration)
    return replace(scenario, faults=tuple(faults), duration=min(scenario.duration - shift, end + gap))


def scenario_of(path: Path) -> Scenario:
    scenario = load_scenario(path)
    return compressed(scenario) if path.stem in COMPRESSED else scenario


CASES = [(path, seed, "default") for path in FILES
         for seed in ((0,) if path.stem in LONG | COMPRESSED else (0, 1, 2))]
CASES += [(path, 0, policy) for path in FILES if path.stem not in LONG | COMPRESSED for policy in ("route53", "naive")]


@pytest.mark.parametrize(("path", "seed", "policy"), CASES,
                         ids=[f"{path.stem}-{seed}-{policy}" for path, seed, policy in CASES])
def test_every_scenario_reports_the_same_event_driven(path: Path, seed: int, policy: str) -> None:
    assert_same(scenario_of(path), seed, policy)


def test_exchange_10_compressed_keeps_its_faults_and_their_order() -> None:
    day = load_scenario(SCENARIOS / "exchange-10.yaml")
    short = compressed(day)
    assert [(f.kind, f.site, f.duration) for f in short.faults] == [(f.kind, f.site, f.duration) for f in day.faults]
    assert [f.at for f in short.faults] == [1200.0, 5100.0, 9900.0] and short.duration == 12900.0


def test_most_ticks_of_a_quiet_scenario_run_no_cycle() -> None:
    """A 45-minute zone outage in 90 minutes: the cycles run around the loss, the failover, the window's end and
    every cloud poll; the rest of the day is accounted for."""
    sim = assert_same(load_scenario(SCENARIOS / "zone-outage.yaml"))
    # a tick a second over 90 minutes is 5,401; fewer, because a cycle whose simulated calls take longer than a
    # second (the lost primary's 2.1 s of timeouts each cycle of the protection window) spans several
    assert 4000 < sim.cycles < 5401
    assert sim.skipped > 0.9 * sim.cycles, (sim.skipped, sim.cycles)


def test_a_suspect_primary_held_past_its_timeout_on_ten_engines() -> None:
    """Azure, primary of three of the ten engines, answers slowly but within the probe timeout for ten minutes:
    each of those primaries is suspect, past suspect_timeout the orchestrator holds and pages once, and while the
    slowness lasts nothing more happens (ticks are skipped), until it ends."""
    faults = (Fault(FaultKind.DEGRADED, 300.0, 600.0, site="azure-hk", latency=0.2),)
    sim = assert_same(make_scenario(EXCHANGE, faults, duration=1800.0, name="slow-azure"))
    pages = [e.message for e in sim.events.events if "past suspect_timeout" in e.message]
    assert len(pages) == 3, pages
    assert sim.skipped > 0.8 * sim.cycles


# ---- random fault schedules ------------------------------------------------------------------------------------

SITE_KINDS = (FaultKind.OUTAGE, FaultKind.SILENT_OUTAGE, FaultKind.FLAPPING, FaultKind.DEGRADED)


def faults_on(topology: Any, span: float) -> st.SearchStrategy[Fault]:
    sites = st.sampled_from(sorted(topology.sites))
    replicas = st.sampled_from(sorted(r.name for e in topology.engines.values() for r in e.replicas))
    observers = st.sampled_from(["orchestrator", *topology.probes.vantage_points])
    at = st.floats(0.0, span, allow_nan=False).map(lambda value: round(value, 2))  # edges between ticks too
    length = st.floats(2.0, span, allow_nan=False).map(lambda value: round(value, 2))
    site_fault = st.builds(
        lambda kind, at, length, site, delay, latency, up, down: Fault(
            kind, at, length, site=site, provider_delay=delay, latency=latency, up=up, down=down),
        st.sampled_from(SITE_KINDS), at, length, sites, st.sampled_from([0.0, 60.0, 300.0]),
        st.sampled_from([0.1, 0.2, 0.4, 0.8, 3.0]), st.sampled_from([20.0, 120.0, 600.0]),
        st.sampled_from([2.0, 30.0, 300.0]))
    return st.one_of(
        site_fault,
        st.builds(lambda at, length, site, loss: Fault(FaultKind.PROBE_LOSS, at, length, site=site, loss=loss),
                  at, length, sites, st.sampled_from([0.05, 0.3, 0.9])),
        st.builds(lambda at, length, observer: Fault(FaultKind.OBSERVER_PARTITION, at, length, observer=observer),
                  at, length, observers),
        st.builds(lambda at, length, site, status: Fault(FaultKind.API_ERRORS, at, length, site=site, status=status),
                  at, length, sites, st.sampled_from([429, 503])),
        st.builds(lambda at, length, replica, entries: Fault(FaultKind.LAG, at, length, replica=replica,
                                                              entries=entries),
                  at, length, replicas, st.none() | st.integers(1, 200)),
    )


def schedules(topology: Any, span: float, most: int) -> st.SearchStrategy[list[Fault]]:
    return st.lists(faults_on(topology, span), min_size=1, max_size=most)


RANDOM = settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@RANDOM
@given(faults=schedules(HK, 3000.0, 5), seed=st.integers(0, 3),
       policy=st.sampled_from(["default", "default", "route53-fast", "naive"]))
def test_random_fault_schedules_report_the_same(faults: list[Fault], seed: int, policy: str) -> None:
    assert_same(make_scenario(HK, faults, duration=3600.0, name="random"), seed, policy)


@settings(RANDOM, max_examples=5)
@given(faults=schedules(EXCHANGE, 700.0, 3), seed=st.integers(0, 3))
def test_random_fault_schedules_on_ten_engines_report_the_same(faults: list[Fault], seed: int) -> None:
    assert_same(make_scenario(EXCHANGE, faults, duration=900.0, name="random-10"), seed)


def test_a_fault_injected_between_calls_reports_the_same() -> None:
    """Faults injected while the simulation runs (as tests/sim/test_sim_safety.py does) start right after the
    call that ran up to them: the last tick of that call runs its cycle, as the tick before any fault edge does,
    so that the vantage points that stop reporting then stop at the same moment in both runs. (It was skipped
    before: the orchestrator's host cut off at +615 s, between two cloud polls, gave other verdicts.)"""
    faults = {615.0: Fault(FaultKind.OBSERVER_PARTITION, 0.0, 300.0),
              1901.5: Fault(FaultKind.OUTAGE, 0.0, 900.0, site="aws-hk", provider_delay=60.0)}

    def drive(stepping: Stepping) -> dict[str, str]:
        sim = Simulation(make_scenario(HK, duration=3600.0, name="stateful"), stepping=stepping)
        start = sim.scenario.start
        with quiet_adapters():
            for offset in (*faults, 3600.0):
                sim.run_until(start + offset)
                if offset in faults:
                    sim.world.inject(expand(replace(faults[offset], at=sim.clock() - start)))
        return everything(sim)

    tick, event = drive("tick"), drive("event")
    for part in ("report", "behind"):
        assert event[part] == tick[part], first_difference(tick[part], event[part])


def test_stepping_must_be_named() -> None:
    with pytest.raises(ValueError, match="stepping 'fast'"):
        Simulation(replace(make_scenario(HK), name="x"), stepping="fast")  # type: ignore[arg-type]
