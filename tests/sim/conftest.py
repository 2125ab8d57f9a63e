"""Fixtures for the simulator's tests."""

from __future__ import annotations

import pytest
from sim_helpers import SCENARIOS

from orchestrator.config import load_config
from orchestrator.core.model import Topology


@pytest.fixture(scope="session")
def sim_topology() -> Topology:
    return load_config(SCENARIOS / "hk-topology.yaml").topology
