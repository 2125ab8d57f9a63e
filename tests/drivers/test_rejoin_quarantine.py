"""A site that went down hosts no rejoin until it has been healthy for `policy.quarantine`: the old primary's own
site is the one that failed, and rebuilding it there an hour later would hand the engine back to a data centre that
may fail again (the seed's exchange returned to it all afternoon)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import load_config
from orchestrator.core.errors import UnsafeError
from orchestrator.drivers.rejoin import Rejoin
from orchestrator.store.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_670_036_400.0


class NoEngines:
    """The quarantine is judged before any replica is asked: a call here would be a bug."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"an engine call ({name}) before the quarantine was checked")


def test_the_failed_site_hosts_no_rejoin_until_healthy_for_the_quarantine() -> None:
    topology = load_config(ROOT / "configs" / "example.yaml").topology
    store = MemoryStore()
    hour = 3600.0
    store.observe_quarantines({"azure-hk": ("down", "zone lost")}, T0, topology.policy.quarantine)
    store.observe_quarantines({"azure-hk": ("healthy", "")}, T0 + hour, topology.policy.quarantine)
    rejoin = Rejoin(topology, store, NoEngines(), actor="sre", clock=lambda: T0 + 2 * hour)  # type: ignore[arg-type]
    with pytest.raises(UnsafeError, match="azure-hk, where spot-azure runs, is in quarantine"):
        rejoin.plan("spot", "spot-azure")
    store.release_quarantine("azure-hk", "sre:alice", T0 + 2 * hour, "checked by hand")
    with pytest.raises(AssertionError, match="an engine call"):  # past the quarantine: on to the replicas
        rejoin.plan("spot", "spot-azure")
