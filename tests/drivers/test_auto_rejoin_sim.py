"""The simulator's rejoin policy keeps the daemon's clock (`drivers.auto_rejoin.need_of` and `track`): the old
primary is first due `after` from the tick it was first seen needing a rebuild, and then every `retry` while the
real driver refuses it (here: the failover's incident, open through its protection window)."""

from __future__ import annotations

import itertools
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
from sim_helpers import SCENARIOS, make_scenario

from orchestrator.config import load_config
from orchestrator.sim import Simulation
from orchestrator.sim.faults import Fault, FaultKind
from orchestrator.sim.runner import quiet_adapters
from orchestrator.sim.scenario import RejoinPolicy

MINUTE = 60.0
HK = load_config(SCENARIOS / "hk-topology.yaml").topology
AUTO = RejoinPolicy(auto=True, after=5 * MINUTE, retry=MINUTE)


def test_the_old_primary_is_due_after_the_wait_then_every_retry_while_refused() -> None:
    topology = replace(HK, policy=replace(HK.policy, quarantine=MINUTE))
    scenario = replace(make_scenario(topology, (Fault(FaultKind.OUTAGE, 10 * MINUTE, 10 * MINUTE, site="aws-hk"),),
                                     duration=3600.0), rejoin=AUTO)
    with quiet_adapters():
        sim = Simulation(scenario)
        assert sim.rejoiner is not None
        since = None
        at = scenario.start
        while since is None and at < scenario.end:
            at += 10.0
            sim.run_until(at)
            entry = sim.rejoiner.book.get("spot-aws")
            since = entry.since if entry is not None else None
        assert since is not None and entry is not None and entry.due == since + 5 * MINUTE
        assert entry.need in ("fenced", "deposed")
        result = sim.run()
    tick = topology.probes.interval  # an attempt is made at the first tick at or after it is due
    attempts = [a for a in sim.rejoiner.attempts if a.replica == "spot-aws"]
    assert since + 5 * MINUTE <= attempts[0].at < since + 5 * MINUTE + tick and attempts[0].reason == "incident"
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    assert len(gaps) >= 5 and all(MINUTE <= gap < MINUTE + 3 * tick for gap in gaps), gaps  # a cycle takes time
    assert attempts[-1].outcome == "started" and all(a.outcome == "refused" for a in attempts[:-1])
    assert result.rejoins == 1 and result.redundancy_restored
    assert sim.rejoiner.book == {}
