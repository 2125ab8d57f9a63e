from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.testbed.world import LOADED_PROBE_INTERVAL, LOADED_PROBE_TIMEOUT, LOADED_PROTECTION, Testbed


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Testbed]:
    """Three clouds (moto, GCP and Azure fakes) and three real replicas; probes a loaded machine can keep, and the
    shortest protection window the configuration accepts with them."""
    with Testbed(tmp_path / "bed", protection=LOADED_PROTECTION, probe_interval=LOADED_PROBE_INTERVAL,
                 probe_timeout=LOADED_PROBE_TIMEOUT) as testbed:
        yield testbed
