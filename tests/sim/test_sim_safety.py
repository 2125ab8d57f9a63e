"""Hypothesis drives the simulator with random fault schedules and checks the safety rules after every step.

The rules (docs/design.md §4) as the world measures them, not as the orchestrator believes them:
- never two primaries: no two replicas of an engine acknowledged writes in the same tick;
- never a trade while the exchange has announced `halted` or `protection`, nor by a replica that is not open;
- never a promotion of a lagging replica: at each promotion, the promoted replica had applied everything any
  replica it could reach held (within max_lag_on_failover);
- never a step after an unconfirmed one: in every runbook journal, a step starts only once every step before it
  is done (or skipped), so reopening needs every earlier step confirmed;
- nothing acknowledged is missing from the engine's recorded primary (synchronous replication).

Example counts are kept small so that tests/sim stays well under its time budget; the benchmark runs the
scenario set over fifty seeds for the statistical claims.

Three gaps this test once found in the orchestrator are pinned by the deterministic tests at the end: an old
primary counted fenced while an unreachable replica could still be its partner; a halt announced but not enforced
on a primary that answered later; a lagging standby promoted once the replicas that held more were lost.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sim_helpers import SCENARIOS, T0, make_scenario

from orchestrator.config import load_config
from orchestrator.core import runbook as rb
from orchestrator.drivers.state import load_engine
from orchestrator.sim import Simulation, run_scenario
from orchestrator.sim.faults import Fault, FaultKind, expand

TOPOLOGY = load_config(SCENARIOS / "hk-topology.yaml").topology
SITES = tuple(TOPOLOGY.sites)
REPLICAS = tuple(r.name for e in TOPOLOGY.engines.values() for r in e.replicas)
OBSERVERS = ("orchestrator", *TOPOLOGY.probes.vantage_points)
LENGTHS = st.integers(min_value=3, max_value=1800).map(float)
DONE = {rb.StepState.DONE.value, rb.StepState.SKIPPED.value}
SITE_FAULTS = (FaultKind.OUTAGE, FaultKind.SILENT_OUTAGE, FaultKind.FLAPPING, FaultKind.DEGRADED)


class SafetyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim = Simulation(make_scenario(TOPOLOGY, duration=12 * 3600.0, name="stateful"))
        self.elapsed = 0.0
        self.sim.run_until(T0)

    def _violated(self, message: str) -> None:
        raise AssertionError(message)

    def teardown(self) -> None:
        failovers = sum(1 for incident in self.sim.store.incidents() if incident.kind == "failover")
        event(f"failovers in the example: {min(failovers, 2)}{'+' if failovers > 2 else ''}")


    def _inject(self, fault: Fault) -> None:
        self.sim.world.inject(expand(fault))

    # ---- what happens to the world ------------------------------------------------------------------------

    @rule(kind=st.sampled_from(SITE_FAULTS), site=st.sampled_from(SITES), length=LENGTHS,
          delay=st.sampled_from([0.0, 60.0, 300.0]), latency=st.sampled_from([0.1, 0.4, 0.8, 3.0, 10.0]),
          up=st.integers(5, 600), down=st.integers(2, 600))
    def site_fails(self, kind: FaultKind, site: str, length: float, delay: float, latency: float, up: int,
                   down: int) -> None:
        self._inject(Fault(kind, self.elapsed, length, site=site, provider_delay=delay, latency=latency,
                           up=float(up), down=float(down)))

    @rule(kind=st.sampled_from(SITE_FAULTS), length=LENGTHS, latency=st.sampled_from([0.8, 3.0]))
    def primary_site_fails(self, kind: FaultKind, length: float, latency: float) -> None:
        """Faults anywhere rarely hit the primary of the moment; this one always does."""
        engine = TOPOLOGY.engines["spot"]
        site = engine.replica(load_engine(self.sim.store, TOPOLOGY, "spot").primary).site
        self._inject(Fault(kind, self.elapsed, length, site=site, latency=latency, up=120.0, down=60.0))

    @rule(replica=st.sampled_from(REPLICAS), entries=st.none() | st.integers(1, 200), length=LENGTHS)
    def standby_lags_then_the_others_are_lost(self, replica: str, entries: int | None, length: float) -> None:
        """A standby falls behind, then every other site is lost: the orchestrator sees only the laggard."""
        self._inject(Fault(FaultKind.LAG, self.elapsed, length + 600.0, replica=replica, entries=entries))
        lagging_site = TOPOLOGY.engines["spot"].replica(replica).site
        for site in SITES:
            if site != lagging_site:
                self._inject(Fault(FaultKind.OUTAGE, self.elapsed + 60.0, length, site=site, provider_delay=0.0))

    @rule(site=st.sampled_from(SITES), length=LENGTHS, loss=st.floats(0.05, 0.95))
    def probes_lost(self, site: str, length: float, loss: float) -> None:
        self._inject(Fault(FaultKind.PROBE_LOSS, self.elapsed, length, site=site, loss=loss))

    @rule(observer=st.sampled_from(OBSERVERS), length=LENGTHS)
    def observer_cut_off(self, observer: str, length: float) -> None:
        self._inject(Fault(FaultKind.OBSERVER_PARTITION, self.elapsed, length, observer=observer))

    @rule(site=st.sampled_from(SITES), length=LENGTHS, status=st.sampled_from([429, 503]))
    def api_fails(self, site: str, length: float, status: int) -> None:
        self._inject(Fault(FaultKind.API_ERRORS, self.elapsed, length, site=site, status=status))

    @rule(replica=st.sampled_from(REPLICAS), length=LENGTHS, entries=st.none() | st.integers(1, 200))
    def replica_lags(self, replica: str, length: float, entries: int | None) -> None:
        self._inject(Fault(FaultKind.LAG, self.elapsed, length, replica=replica, entries=entries))

    @rule(seconds=st.integers(min_value=1, max_value=120))
    def a_moment_passes(self, seconds: int) -> None:
        self.elapsed += seconds
        self.sim.run_until(T0 + self.elapsed)

    @rule(seconds=st.integers(min_value=120, max_value=1800))
    def time_passes(self, seconds: int) -> None:
        self.elapsed += seconds
        self.sim.run_until(T0 + self.elapsed)

    # ---- what must always hold ---------------------------------------------------------------------------

    @invariant()
    def never_two_primaries(self) -> None:
        for flow in self.sim.world.engines.values():
            if flow.max_primaries > 1:
                self._violated(f"{flow.name}: {flow.max_primaries} replicas acknowledged writes at once")

    @invariant()
    def never_a_trade_while_halted_or_in_protection(self) -> None:
        for flow in self.sim.world.engines.values():
            counts = (flow.trades_while_halted, flow.trades_in_protection, flow.trades_off_phase)
            if counts != (0, 0, 0):
                self._violated(f"{flow.name}: trades while halted / in protection / off phase: {counts}")

    @invariant()
    def never_promote_a_lagging_replica(self) -> None:
        allowed = TOPOLOGY.policy.max_lag_on_failover
        for promotion in self.sim.world.promotions:
            assert not promotion.forced
            assert promotion.applied_seq >= promotion.reachable_peer_seq - allowed, promotion
            if promotion.applied_seq < promotion.highest_seq - allowed:
                self._violated(f"promoted {promotion.replica} at {promotion.applied_seq}, "
                               f"but a replica held {promotion.highest_seq}")

    @invariant()
    def never_a_step_after_an_unconfirmed_one(self) -> None:
        store = self.sim.store
        for incident in store.incidents():
            confirmed: set[str] = set()
            for entry in store.journal(incident.id):
                if entry.state == rb.StepState.STARTED.value:
                    earlier = rb.STEPS[: rb.STEPS.index(rb.Step(entry.step))]
                    missing = [step.value for step in earlier if step.value not in confirmed]
                    assert not missing, f"{incident.id}: {entry.step} started before {missing} were confirmed"
                elif entry.state in DONE:
                    confirmed.add(entry.step)

    @invariant()
    def nothing_acknowledged_is_lost(self) -> None:
        for name in TOPOLOGY.engines:
            primary = load_engine(self.sim.store, TOPOLOGY, name).primary
            lost = self.sim.world.lost(name, primary)
            if lost:
                self._violated(f"{name}: {lost} acknowledged orders missing from {primary}")

SafetyMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=20, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSafety = SafetyMachine.TestCase


def test_an_unreachable_standby_does_not_keep_the_old_primary_writable() -> None:
    """The primary's site slows beyond the probe timeout while its provider API fails, and the Azure standby is
    slow too (too slow for the orchestrator's control calls, fast enough for replication): the old primary must not
    be counted fenced while a replica it could replicate to has not taken the new epoch."""
    faults = [Fault(FaultKind.API_ERRORS, 60.0, 1800.0, site="aws-hk"),
              Fault(FaultKind.DEGRADED, 120.0, 1200.0, site="azure-hk", latency=1.0),
              Fault(FaultKind.DEGRADED, 180.0, 1200.0, site="aws-hk", latency=1.0)]
    result = run_scenario(make_scenario(TOPOLOGY, faults, duration=2400.0))
    assert result.failovers == 1
    assert result.trades_while_halted == 0 and result.orders_lost == 0


def test_a_halt_for_a_human_holds_when_the_primary_comes_back() -> None:
    """No replica is safe to promote (GCP lags, Azure is lost), so the engine halts for a human; Azure misses the
    halt's epoch while it is out; when AWS and Azure return, AWS must not trade under the HALTED banner."""
    faults = [Fault(FaultKind.LAG, 0.0, 3600.0, replica="spot-gcp", entries=100),
              Fault(FaultKind.OUTAGE, 50.0, 400.0, site="azure-hk", provider_delay=0.0),
              Fault(FaultKind.OUTAGE, 60.0, 600.0, site="aws-hk", provider_delay=0.0),
              Fault(FaultKind.OUTAGE, 61.0, 5.0, site="gcp-hk", provider_delay=0.0)]
    result = run_scenario(make_scenario(TOPOLOGY, faults, duration=1500.0))
    assert result.needs_human and result.final_phase == "halted"
    assert result.trades_while_halted == 0


def test_a_lagging_standby_is_not_promoted_when_the_others_are_lost() -> None:
    """GCP lags 100 entries behind; Azure and then AWS are lost; GCP is the only replica the orchestrator sees: its
    lag must be measured against what Azure was seen holding, so it is not promoted without those orders."""
    faults = [Fault(FaultKind.LAG, 0.0, 3600.0, replica="spot-gcp", entries=100),
              Fault(FaultKind.OUTAGE, 50.0, 400.0, site="azure-hk", provider_delay=0.0),
              Fault(FaultKind.OUTAGE, 60.0, 600.0, site="aws-hk", provider_delay=0.0)]
    result = run_scenario(make_scenario(TOPOLOGY, faults, duration=1200.0))
    assert result.orders_lost == 0
