"""Exit codes a pager can trust: `failover status` exits 3 exactly while an incident waits for a human.

(`failover check` on a follower exits 0, not 3: tests/e2e/test_operator_commands.py, against real replicas.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.store import open_store

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("failover")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "failover.yaml"
    shutil.copy(ROOT / "configs" / "example.yaml", path)
    return path


def status(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(SCRIPT), "status", "--config", str(config), *extra], capture_output=True, text=True,
                          timeout=120, check=False, env=env)


def open_incident(config: Path, status: str) -> str:
    with open_store(load_config(config).store_url) as store:
        return store.create_incident("spot", "failover", "aws-hk is down", 1.0, source="spot-aws",
                                     target="spot-gcp", status=status).id


def test_nothing_open_exits_0(config: Path) -> None:
    result = status(config)
    assert result.returncode == 0, result.stderr
    assert "no open incident" in result.stdout


def test_a_running_failover_needs_no_human_yet(config: Path) -> None:
    open_incident(config, "running")
    assert status(config).returncode == 0


@pytest.mark.parametrize("waiting", ["needs_human", "proposed"])
def test_an_incident_waiting_for_a_human_exits_3(config: Path, waiting: str) -> None:
    incident = open_incident(config, waiting)
    table = status(config)
    assert table.returncode == 3, table.stderr
    assert f"open incident {incident} (failover, {waiting})" in table.stdout
    as_json = status(config, "--output", "json")
    assert as_json.returncode == 3
    assert json.loads(as_json.stdout)["engines"][0]["incident"]["status"] == waiting  # stdout stays one document


def test_closing_the_incident_brings_it_back_to_0(config: Path) -> None:
    incident = open_incident(config, "needs_human")
    assert status(config).returncode == 3
    with open_store(load_config(config).store_url) as store:
        store.update_incident(incident, status="closed", at=2.0)
    assert status(config).returncode == 0
