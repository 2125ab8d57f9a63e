"""Quarantine in target selection, through the real `decide.rank_candidates` on the example topology: the calls
the controller and `decide` are asked to make (see docs/after-the-failover.md) pick the next site, never the one
still in quarantine, and pick it again once the quarantine has run out."""

from __future__ import annotations

from orchestrator.core.decide import EngineSnapshot, rank_candidates
from orchestrator.core.health import Assessment
from orchestrator.core.model import Phase, ReplicaStatus, Role, Topology, Verdict
from orchestrator.core.quarantine import DEFAULT_QUARANTINE, observe, quarantined_replicas, without_quarantined

NOW = 1_671_332_400.0
H = 3600.0


def _snapshot(topology: Topology) -> EngineSnapshot:
    statuses = {name: ReplicaStatus(name, Role.PRIMARY if name == "spot-aws" else Role.STANDBY, 1, Phase.OPEN,
                                    None, 100, 100) for name in ("spot-aws", "spot-gcp", "spot-azure")}
    return EngineSnapshot(engine=topology.engines["spot"], primary="spot-aws", statuses=statuses)


def _verdicts() -> dict[str, Assessment]:
    healthy = ["gcp-hk", "azure-hk", "spot-gcp", "spot-azure"]
    found = {s: Assessment(s, Verdict.HEALTHY, NOW) for s in healthy}
    return {**found, "aws-hk": Assessment("aws-hk", Verdict.DOWN, NOW), "spot-aws": Assessment(
        "spot-aws", Verdict.DOWN, NOW)}


def test_a_site_healthy_for_less_than_the_quarantine_is_passed_over(topology: Topology) -> None:
    """gcp-hk failed an hour and a half ago and has been healthy for half an hour: AWS now fails, and the next
    target is Azure, although GCP comes first in the configuration and is judged healthy."""
    book = observe({}, {"gcp-hk": ("down", "dark")}, NOW - 1.5 * H, DEFAULT_QUARANTINE)
    book = observe(book, {"gcp-hk": ("healthy", "")}, NOW - 0.5 * H, DEFAULT_QUARANTINE)
    snapshot, verdicts = _snapshot(topology), _verdicts()
    assert rank_candidates(snapshot, topology, verdicts)[0].replica == "spot-gcp"  # without quarantine

    excluded = quarantined_replicas(snapshot.engine, book, NOW, DEFAULT_QUARANTINE)
    ranked = rank_candidates(snapshot, topology, verdicts, exclude=excluded)
    assert [(c.replica, c.eligible) for c in ranked] == [("spot-azure", True)]
    filtered = without_quarantined(rank_candidates(snapshot, topology, verdicts), snapshot.engine, book, NOW,
                                   DEFAULT_QUARANTINE)
    assert filtered == ranked

    later = NOW + 1.5 * H  # two hours healthy
    assert rank_candidates(snapshot, topology, verdicts, exclude=quarantined_replicas(
        snapshot.engine, book, later, DEFAULT_QUARANTINE))[0].replica == "spot-gcp"
