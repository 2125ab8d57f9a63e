"""The simulated edges behave like the real ones: the epoch rule, roles, reachability, probes, replication."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sim_helpers import T0, make_scenario

from orchestrator.core.errors import EngineError, StaleEpoch
from orchestrator.core.model import Observation, Phase, Role, Status, Topology
from orchestrator.drivers.probe import EngineProber
from orchestrator.engine.base import PromoteRefused
from orchestrator.errors import ConfigError
from orchestrator.sim import Simulation, apply_policy, render_timeline, run_scenario
from orchestrator.sim.engine import SimEngineControl
from orchestrator.sim.faults import Fault, FaultKind
from orchestrator.sim.probes import SimProber
from orchestrator.sim.scenario import WorldSettings
from providers.base import InstanceState
from providers.local import LocalApiError, LocalCloud


def world_of(topology: Topology, *faults: Fault, **settings: object) -> Simulation:
    return Simulation(make_scenario(topology, faults, world=WorldSettings(**settings)))  # type: ignore[arg-type]


def replica(topology: Topology, name: str):  # type: ignore[no-untyped-def]
    return topology.engines["spot"].replica(name)


# --- SimEngineControl -------------------------------------------------------------------------------------------


def test_the_epoch_rule_refuses_lower_epochs_and_changes_nothing(sim_topology: Topology) -> None:
    sim = world_of(sim_topology)
    engines = SimEngineControl(sim.world)
    gcp = replica(sim_topology, "spot-gcp")
    assert engines.set_phase(gcp, Phase.HALTED, None, 5).epoch == 5  # a standby records the epoch and phase
    with pytest.raises(StaleEpoch):
        engines.set_phase(gcp, Phase.OPEN, None, 4)
    with pytest.raises(StaleEpoch):
        engines.promote(gcp, 4)
    with pytest.raises(StaleEpoch):
        engines.fence(gcp, 4)
    status = engines.status(gcp)
    assert (status.role, status.epoch, status.phase) == (Role.STANDBY, 5, Phase.HALTED)


def test_fenced_replicas_refuse_writes_and_report_halted(sim_topology: Topology) -> None:
    sim = world_of(sim_topology)
    engines = SimEngineControl(sim.world)
    aws = replica(sim_topology, "spot-aws")
    fenced = engines.fence(aws, 7)
    assert (fenced.role, fenced.phase) == (Role.FENCED, Phase.HALTED)
    assert engines.set_phase(aws, Phase.HALTED, None, 7).role is Role.FENCED  # already halted: harmless
    with pytest.raises(EngineError, match="fenced"):
        engines.set_phase(aws, Phase.OPEN, None, 8)
    with pytest.raises(EngineError, match="fenced"):
        engines.promote(aws, 9)


def test_promote_refuses_a_replica_behind_a_reachable_peer_unless_forced(sim_topology: Topology) -> None:
    sim = world_of(sim_topology, Fault(FaultKind.LAG, 0.0, 600.0, replica="spot-gcp", entries=20))
    sim.run_until(T0 + 120)
    engines = SimEngineControl(sim.world)
    gcp = replica(sim_topology, "spot-gcp")
    behind = engines.status(gcp)
    with pytest.raises(PromoteRefused) as refused:
        engines.promote(gcp, 10)
    assert refused.value.peer_seq > refused.value.last_seq == behind.last_seq
    forced = engines.promote(gcp, 10, force=True)
    assert (forced.role, forced.phase) == (Role.PRIMARY, Phase.HALTED)  # a new primary starts halted


def test_calls_fail_when_the_site_is_out_or_the_orchestrator_is_cut_off(sim_topology: Topology) -> None:
    sim = world_of(sim_topology, Fault(FaultKind.OUTAGE, 10.0, 60.0, site="aws-hk"),
                   Fault(FaultKind.OBSERVER_PARTITION, 100.0, 60.0))
    engines = SimEngineControl(sim.world)
    sim.world.advance_to(T0 + 20)
    with pytest.raises(EngineError, match="site aws-hk is out"):
        engines.status(replica(sim_topology, "spot-aws"))
    assert engines.status(replica(sim_topology, "spot-gcp")).role is Role.STANDBY
    sim.world.advance_to(T0 + 120)
    with pytest.raises(EngineError, match="partitioned"):
        engines.status(replica(sim_topology, "spot-gcp"))


# --- SimProber --------------------------------------------------------------------------------------------------


def seen(o: Observation) -> tuple[object, ...]:
    return o.at, o.subject, o.source, o.status, o.detail, o.cause


def test_probes_have_the_shape_of_the_production_prober(sim_topology: Topology) -> None:
    sim = world_of(sim_topology)
    ours = SimProber(sim.world).probe(T0)
    production = EngineProber(sim_topology, SimEngineControl(sim.world))
    try:
        theirs = production.probe(T0)
    finally:
        production.close()
    mine = [o for o in ours.observations if o.source == "probe:orchestrator"]
    # the same observations; production's answers also carry their measured round trip (gray.Measured), which the
    # simulator gives only under a gray objective
    assert [seen(o) for o in mine] == [seen(o) for o in theirs.observations]
    assert ours.statuses == theirs.statuses
    assert {o.source for o in ours.observations} == {"probe:aws-hk", "probe:gcp-hk", "probe:azure-hk",
                                                     "probe:orchestrator"}
    assert len(ours.observations) == 4 * (3 + 3)


def test_a_vantage_point_in_a_lost_site_cannot_report(sim_topology: Topology) -> None:
    sim = world_of(sim_topology, Fault(FaultKind.OUTAGE, 0.0, 60.0, site="aws-hk"))
    sim.world.advance_to(T0 + 1)
    round_ = SimProber(sim.world).probe(T0 + 1)
    assert "probe:aws-hk" not in {o.source for o in round_.observations}
    about_aws = {o.source: o.status for o in round_.observations if o.subject == "spot-aws"}
    assert set(about_aws.values()) == {Status.DOWN} and len(about_aws) == 3


def test_a_partitioned_vantage_point_reports_everything_down(sim_topology: Topology) -> None:
    sim = world_of(sim_topology, Fault(FaultKind.OBSERVER_PARTITION, 0.0, 60.0, observer="gcp-hk"))
    sim.world.advance_to(T0 + 1)
    round_ = SimProber(sim.world).probe(T0 + 1)
    from_gcp = {o.status for o in round_.observations if o.source == "probe:gcp-hk"}
    assert from_gcp == {Status.DOWN}
    assert {o.status for o in round_.observations if o.source == "probe:orchestrator"} == {Status.OK}


def test_latency_within_the_timeout_is_degraded_beyond_it_down(sim_topology: Topology) -> None:
    sim = world_of(sim_topology, Fault(FaultKind.DEGRADED, 0.0, 60.0, site="aws-hk", latency=0.2),
                   Fault(FaultKind.DEGRADED, 100.0, 60.0, site="aws-hk", latency=2.0))
    sim.world.advance_to(T0 + 1)
    assert {o.status for o in SimProber(sim.world).probe(T0 + 1).observations if o.subject == "spot-aws"} == \
        {Status.DEGRADED}
    sim.world.advance_to(T0 + 101)
    assert {o.status for o in SimProber(sim.world).probe(T0 + 101).observations if o.subject == "spot-aws"} == \
        {Status.DOWN}


# --- replication and orders ------------------------------------------------------------------------------------


def test_synchronous_replication_needs_a_standby_on_another_cloud(sim_topology: Topology) -> None:
    scenario = make_scenario(sim_topology, [Fault(FaultKind.OUTAGE, 60.0, 300.0, site="gcp-hk"),
                                            Fault(FaultKind.OUTAGE, 60.0, 300.0, site="azure-hk")], duration=600)
    result = run_scenario(scenario)
    assert result.orders_refused.get("replication_timeout", 0) > 300
    assert result.failovers == 0 and result.orders_lost == 0


def test_asynchronous_replication_can_lose_acknowledged_orders(sim_topology: Topology) -> None:
    scenario = make_scenario(sim_topology, [Fault(FaultKind.OUTAGE, 300.0, 600.0, site="aws-hk")], duration=1200,
                             world=WorldSettings(synchronous=False, replication_lag=10.0, order_rate=5.0))
    result = run_scenario(scenario)
    assert result.failovers == 1
    assert result.orders_lost > 0  # the measure works: what the old primary acknowledged alone is gone


def test_a_lag_that_stops_applying_freezes_applied_seq_only(sim_topology: Topology) -> None:
    sim = world_of(sim_topology, Fault(FaultKind.LAG, 10.0, 100.0, replica="spot-azure"))
    sim.run_until(T0 + 100)
    status = sim.world.replicas["spot-azure"].status()
    assert status.applied_seq < status.last_seq == sim.world.replicas["spot-aws"].n
    sim.run_until(T0 + 130)
    status = sim.world.replicas["spot-azure"].status()
    assert status.applied_seq == status.last_seq


# --- the simulated cloud ----------------------------------------------------------------------------------------


def test_a_stop_hangs_while_the_zone_is_down_and_completes_after() -> None:
    now = [0.0]
    cloud = LocalCloud("aws", clock=lambda: now[0], stop_time=5.0)
    cloud.add_instance("aws-hk", "i-1", "a")
    cloud.set_data_plane("a", False)
    cloud.stop_instance("aws-hk", "i-1")
    now[0] = 100.0
    assert cloud.state_of("aws-hk", "i-1") is InstanceState.STOPPING
    cloud.set_data_plane("a", True)
    assert cloud.state_of("aws-hk", "i-1") is InstanceState.STOPPED


def test_api_faults_and_dns_history() -> None:
    now = [0.0]
    cloud = LocalCloud("aws", clock=lambda: now[0])
    cloud.add_instance("aws-hk", "i-1", "a")
    cloud.fail_api("aws-hk", status=429, until=10.0, retry_after=2.0)
    with pytest.raises(LocalApiError) as failed:
        cloud.describe_instances("aws-hk", ["i-1"])
    assert (failed.value.status, failed.value.retry_after) == (429, 2.0)
    now[0] = 10.0
    assert "i-1" in cloud.describe_instances("aws-hk", ["i-1"])
    cloud.seed_record("Z", "spot", "10.0.0.1", 0.0)
    now[0] = 50.0
    cloud.put_record("Z", "spot", "10.1.0.1")
    assert (cloud.resolve("Z", "spot", 49.0), cloud.resolve("Z", "spot", 50.0)) == ("10.0.0.1", "10.1.0.1")
    assert cloud.changed_at("Z", "spot", 60.0) == 50.0


# --- presets and rendering --------------------------------------------------------------------------------------


def test_policy_presets(sim_topology: Topology) -> None:
    route53 = apply_policy(sim_topology, "route53")
    assert (route53.probes.interval, route53.policy.failure_threshold) == (30.0, 3)
    assert apply_policy(sim_topology, "route53-fast").probes.interval == 10.0
    assert apply_policy(sim_topology, "patroni").probes.interval == 10.0
    naive = apply_policy(sim_topology, "naive").policy
    assert (naive.failure_threshold, naive.quorum) == (1, 1)
    assert apply_policy(sim_topology, "default") == sim_topology
    with pytest.raises(ConfigError, match="unknown policy 'nope'"):
        apply_policy(sim_topology, "nope")


def test_render_timeline_shows_utc_and_the_display_zone(sim_topology: Topology) -> None:
    scenario = make_scenario(replace(sim_topology, display_timezone="+08:00"),
                             [Fault(FaultKind.OUTAGE, 60.0, 600.0, site="aws-hk")], duration=900,
                             expect={"failovers": 1})
    text = render_timeline(run_scenario(scenario))
    assert "03:01:00 UTC (11:01:00 UTC+08:00)" in text
    assert "ok   failovers = 1" in text
