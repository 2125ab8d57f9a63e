"""After `failover replace`, every command's edges (the daemon's prober, cron's controller) see the replica where it
runs now: the store's recorded place wins over the configuration file's, which stays the operator's to update."""

from __future__ import annotations

import shutil
from pathlib import Path

from orchestrator.config import load_config
from orchestrator.drivers.modes import Mode
from orchestrator.drivers.wiring import build_controller, build_edges
from orchestrator.store import open_store
from orchestrator.store.topology_record import RecordedReplica

ROOT = Path(__file__).resolve().parents[2]


def test_a_replaced_replica_is_probed_at_its_recorded_place(tmp_path: Path) -> None:
    path = tmp_path / "failover.yaml"
    shutil.copy(ROOT / "configs" / "example.yaml", path)
    loaded = load_config(path)
    configured = loaded.topology.engines["spot"].replica("spot-azure")
    with open_store(loaded.store_url) as store:
        store.record_replacement(RecordedReplica("spot", "spot-azure", "aws-hk", "i-0new", "http://10.9.9.9:8080",
                                                 1_700_000_000.0, 1, {"site": configured.site}))
    with build_edges(loaded) as edges:
        moved = edges.topology.engines["spot"].replica("spot-azure") if edges.topology else None
        controller = build_controller(Mode.CRON, loaded, edges, identity="test")
        assert moved is not None and (moved.site, moved.instance, moved.control_url) == (
            "aws-hk", "i-0new", "http://10.9.9.9:8080")
        assert controller.topology.engines["spot"].replica("spot-azure") == moved
        assert loaded.topology.engines["spot"].replica("spot-azure") == configured  # the file's view is untouched
