"""Rejoin in the simulator: after a failover the engine runs on one standby fewer until the old primary is rebuilt.

The scenario's `rejoin:` policy asks the real `failover rejoin` (drivers/rejoin.py) to rebuild a fenced or diverged
replica; its refusals (an incident open, no current primary, a quarantined site) are counted, and a rejoin that starts
copies the primary's journal at the world's `rejoin_rate` before the replica counts as an acknowledging standby.
The short runs here are also compared with their tick-by-tick runs; hk-2022-rejoin.yaml is, like every scenario
file, by tests/sim/test_sim_stepping.py (docs/simulated-rejoin.md).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sim_helpers import SCENARIOS, make_scenario

from orchestrator.config import load_config
from orchestrator.core.model import Role, Topology
from orchestrator.errors import ConfigError
from orchestrator.sim import Scenario, Simulation, load_scenario, run_scenario
from orchestrator.sim.faults import Fault, FaultKind
from orchestrator.sim.runner import quiet_adapters
from orchestrator.sim.scenario import RejoinPolicy, WorldSettings

sys.path.insert(0, str(Path(__file__).parent))
from test_sim_stepping import assert_same

HK = load_config(SCENARIOS / "hk-topology.yaml").topology
MINUTE = 60.0
AUTO = RejoinPolicy(auto=True, after=5 * MINUTE, retry=MINUTE)


def quarantine(topology: Topology, seconds: float) -> Topology:
    return replace(topology, policy=replace(topology.policy, quarantine=seconds))


def outage(site: str, at: float, duration: float) -> Fault:
    return Fault(FaultKind.OUTAGE, at, duration, site=site)


def scenario(faults: tuple[Fault, ...], *, duration: float = 3600.0, world: WorldSettings | None = None,
             policy: RejoinPolicy = AUTO, topology: Topology | None = None, name: str = "rejoin") -> Scenario:
    return replace(make_scenario(topology or quarantine(HK, MINUTE), faults, duration=duration, world=world,
                                 name=name), rejoin=policy)


def standbys(sim: Simulation) -> list[tuple[float, int]]:
    """(seconds from the start, acknowledging standbys) at each change."""
    return [(round(at - sim.scenario.start, 1), count) for at, count in sim.world.engines["spot"].standbys]


# the primary's site (AWS) is lost for 10 minutes: the engine fails over to GCP and runs on Azure alone as standby
SHORT = (outage("aws-hk", 10 * MINUTE, 10 * MINUTE),)


def test_hk_2022_rejoin_restores_redundancy_once_the_quarantine_ends() -> None:
    """The 24-hour scenario: one failover at 11:00, spot-aws refused every 10 minutes while aws-hk relapses and
    then waits out its two healthy hours, rejoined at the first attempt after that, caught up within a minute."""
    began = time.process_time()
    result = run_scenario(load_scenario(SCENARIOS / "hk-2022-rejoin.yaml"))
    cpu = time.process_time() - began
    assert all(result.expectations.values()), {k: v for k, v in result.expectations.items() if not v}
    assert result.failovers == 1 and result.final_primary == {"spot": "spot-gcp"}
    [spell] = result.quarantines
    assert spell["site"] == "aws-hk" and spell["ended_s"] is not None
    assert spell["ended_s"] == pytest.approx(12.5 * 3600 + 2 * 3600, abs=60)  # healthy from 23:00, two hours
    [done] = result.rejoined
    assert done["replica"] == "spot-aws" and done["primary"] == "spot-gcp"
    assert spell["ended_s"] < done["started_s"] <= spell["ended_s"] + 10 * MINUTE  # the first retry after it
    assert done["done_s"] - done["started_s"] < MINUTE  # five seconds' setup, then ~90,000 entries at 4,000/s
    assert set(result.rejoins_refused) == {"quarantine"} and result.rejoins_started == 1
    assert result.rejoins_refused["quarantine"] >= 80  # every 10 minutes for 13.5 hours
    assert result.rejoins_on_quarantined_site == 0
    # fewer standbys than configured from the failover (30 minutes in) until the rejoin was done
    assert result.degraded_redundancy_s == pytest.approx(done["done_s"] - 30 * MINUTE, abs=10)
    assert result.redundancy_restored and result.redundancy_restored_at_s == done["done_s"]
    assert 0 < (result.restore_after_quarantine_s or 0) <= 15 * MINUTE
    assert cpu < 60  # a generous bound for a loaded machine: ~2.5 s on an idle core


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_short_rejoin_is_the_same_event_driven_and_tick_by_tick(seed: int) -> None:
    assert_same(scenario(SHORT), seed)


def test_the_copy_takes_the_setup_and_the_entries_at_the_rate_and_only_then_acknowledges() -> None:
    runs = {}
    for rate in (4000.0, 100.0):
        with quiet_adapters():
            sim = Simulation(scenario(SHORT, world=WorldSettings(rejoin_rate=rate)))
            result = sim.run()
        [done] = result.rejoined
        runs[rate] = done["done_s"] - done["started_s"]
        expected = 5.0 + done["copied"] / rate  # rejoin_setup, then the copy (the world moves a tick at a time)
        assert expected <= runs[rate] + 1.0 and runs[rate] <= expected + 1.5, (rate, runs[rate], done)
        # the engine got its second standby back when the copy ended, not when the rejoin started
        assert standbys(sim)[-1] == (round(done["done_s"], 1), 2), standbys(sim)
        assert (round(done["started_s"], 1), 2) not in standbys(sim)
        assert sim.world.replicas["spot-aws"].role is Role.STANDBY
        assert sim.world.replicas["spot-aws"].n == sim.world.replicas["spot-gcp"].n
    assert runs[100.0] > runs[4000.0] + 5  # ~900 entries: 9 s at 100 a second, a quarter of one at 4,000


def test_while_the_failover_incident_runs_the_rejoin_waits_for_it() -> None:
    """The failover's protection window keeps its incident running for 20 minutes: every attempt until it closes
    is refused (`incident`), the first one after starts."""
    result = run_scenario(scenario(SHORT))
    incident_closed = next(item["at"] for item in result.timeline
                           if item["event"] == "incident" and "closed" in item["message"])
    assert set(result.rejoins_refused) == {"incident"} and result.rejoins_refused["incident"] >= 10
    [done] = result.rejoined
    assert incident_closed <= done["started_s"] <= incident_closed + MINUTE


def test_a_diverged_old_primary_archives_its_unreplicated_tail() -> None:
    """Asynchronous replication: the primary's last half second was acknowledged and never copied; after the
    failover its journal has diverged, and the rejoin archives exactly what it held beyond the common prefix."""
    world = WorldSettings(synchronous=False, replication_lag=2.0)
    with quiet_adapters():
        sim = Simulation(scenario(SHORT, world=world))
        result = sim.run()
    [done] = result.rejoined
    assert done["archived"] > 0
    assert result.orders_lost == done["archived"]  # async: the archived tail is what clients lost
    old, new = sim.world.replicas["spot-aws"], sim.world.replicas["spot-gcp"]
    assert old.role is Role.STANDBY and old.log[: old.n] == new.log[: old.n]


def test_a_primary_lost_mid_copy_fails_the_rejoin_and_the_next_follows_the_new_primary() -> None:
    """A slow copy (3 entries a second) of spot-aws from spot-gcp is under way when GCP is lost: the failover to
    Azure raises spot-aws's epoch above its primary's, so the rejoin fails; the policy tries again once that
    failover's incident closes, and both old primaries are rebuilt from spot-azure."""
    faults = (outage("aws-hk", 10 * MINUTE, 50 * MINUTE), outage("gcp-hk", 95 * MINUTE, 10 * MINUTE))
    sim_result = assert_same(scenario(faults, duration=3 * 3600.0, world=WorldSettings(rejoin_rate=3.0)))
    result = sim_result.result()
    assert result.rejoins_failed == 1 and result.rejoins_started == 3
    assert {(r["replica"], r["primary"]) for r in result.rejoined} == {("spot-aws", "spot-azure"),
                                                                        ("spot-gcp", "spot-azure")}
    failed = next(item for item in result.timeline if item["event"] == "rejoin_failed")
    assert 95 * MINUTE < failed["at"] < 96 * MINUTE and "spot-gcp is no longer primary" in failed["message"]
    assert result.redundancy_restored and result.failovers == 2


def test_a_rejoin_on_a_quarantined_site_is_refused_until_the_quarantine_ends() -> None:
    """The topology's two hours: spot-aws is back at 20 minutes, refused (quarantine) until about 2:20."""
    result = run_scenario(scenario(SHORT, duration=3 * 3600.0, topology=HK, policy=replace(AUTO, retry=5 * MINUTE)))
    [spell] = result.quarantines
    assert spell["site"] == "aws-hk" and spell["ended_s"] == pytest.approx(20 * MINUTE + 2 * 3600, abs=30)
    assert result.rejoins_refused.get("quarantine", 0) >= 20
    [done] = result.rejoined
    assert spell["ended_s"] < done["started_s"] <= spell["ended_s"] + 5 * MINUTE
    assert result.rejoins_on_quarantined_site == 0


def test_a_scheduled_rejoin_of_a_healthy_standby_is_refused() -> None:
    result = run_scenario(scenario((), policy=RejoinPolicy(schedule=((10 * MINUTE, "spot-azure"),))))
    assert result.rejoins_refused == {"healthy_standby": 1} and result.rejoins == 0
    assert result.degraded_redundancy_s == 0 and result.redundancy_restored


def test_without_a_rejoin_policy_redundancy_stays_degraded() -> None:
    result = run_scenario(scenario(SHORT, policy=RejoinPolicy()))
    assert result.rejoins == 0 and result.rejoins_refused == {} and not result.redundancy_restored
    assert result.degraded_redundancy_s == pytest.approx(3600 - 10 * MINUTE, abs=1)


HEAD = (f"name: bad\ntopology: {SCENARIOS / 'hk-topology.yaml'}\nstart: 2022-12-18T11:00:00+08:00\n"
        "duration: 1h\n")


@pytest.mark.parametrize(("text", "expected"), [
    (HEAD + "rejoin:\n  schedule:\n    - {replica: spot-nowhere, at: 10m}\n",
     ":7: rejoin.schedule.0.replica: unknown replica 'spot-nowhere'"),
    (HEAD + "rejoin:\n  schedule:\n    - {replica: spot-aws, at: 2h}\n",
     ":7: rejoin.schedule.0.at: after the scenario ends (3600s)"),
    (HEAD + "rejoin:\n  auto: true\n  retry: 0s\n", ":7: rejoin.retry: must be longer than 0s"),
    (HEAD + "rejoin:\n  when: always\n", ":6: rejoin.when: unknown key"),
    (HEAD + "world:\n  rejoin_rate: 0\n", ":6: world.rejoin_rate: "),
])
def test_a_bad_rejoin_section_is_one_line_naming_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}{expected}"), str(caught.value)
