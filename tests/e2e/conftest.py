from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.drill.testbed import Testbed


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Testbed]:
    """Three clouds (moto, GCP and Azure fakes) and three real replicas; fast probes and a 1 s protection window."""
    with Testbed(tmp_path / "bed", protection="1s", probe_interval="30ms", probe_timeout="25ms") as testbed:
        yield testbed
