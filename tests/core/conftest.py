from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.core.model import Topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def topology() -> Topology:
    return load_config(ROOT / "configs" / "example.yaml").topology
