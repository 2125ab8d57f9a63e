"""`failover status` lists what the automatic rejoin (policy.auto_rejoin) is doing: a replica waiting for its next
attempt and what holds it back, and one being rebuilt, to which primary, since when. The book is the one the leader
writes (`store.auto_rejoin`), read through the real CLI entry point from a real SQLite store."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.config import load_config
from orchestrator.store import open_store
from orchestrator.store.auto_rejoin import REJOINING, Pending, save_auto_rejoin

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "failover.yaml"
    shutil.copy(ROOT / "configs" / "example.yaml", path)
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    return int(exited.value.code or 0), capsys.readouterr().out


def test_status_lists_replicas_waiting_for_a_rebuild_and_those_being_rebuilt(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    with open_store(load_config(config).store_url) as store:
        save_auto_rejoin(store, {
            "spot-aws": Pending("spot", "spot-aws", "fenced", now - 600, now + 120, attempts=1,
                                blocked="site aws-hk is in quarantine"),
            "spot-azure": Pending("spot", "spot-azure", "diverged", now - 300, now - 60, REJOINING, 1,
                                  "spot-gcp", "http://127.0.0.1:1/", 7, now - 30)})
    code, out = run_cli(["status", "--config", str(config)], capsys)
    assert code in (0, 1), out
    lines = {line.split(" (")[0]: line for line in out.splitlines() if line.startswith("rebuild ")}
    assert set(lines) == {"rebuild spot/spot-aws", "rebuild spot/spot-azure"}
    assert "next attempt" in lines["rebuild spot/spot-aws"] and "(attempt 2)" in lines["rebuild spot/spot-aws"]
    assert lines["rebuild spot/spot-aws"].endswith("held: site aws-hk is in quarantine")
    assert "rejoining to spot-gcp at epoch 7 since" in lines["rebuild spot/spot-azure"]

    code, out = run_cli(["status", "--config", str(config), "--output", "json"], capsys)
    rebuilds = {entry["replica"]: entry for entry in json.loads(out)["rebuilds"]}
    assert (rebuilds["spot-aws"]["need"], rebuilds["spot-azure"]["state"]) == ("fenced", "rejoining")


def test_status_names_the_replicas_a_replacement_has_not_told_yet(config: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A replace that rejoined the new machine but could not reach spot-gcp to give it the new peer list: a
    switchover onto the replaced replica would not commit until spot-gcp is told, so `status` says so."""
    with open_store(load_config(config).store_url) as store:
        store.put_replace_progress("spot", "spot-azure", {"site": "gcp-hk", "state": "peers", "key": "k-1",
                                                          "pending": {"spot-gcp": "did not answer"}})
    code, out = run_cli(["status", "--config", str(config)], capsys)
    assert code in (0, 1), out
    [line] = [line for line in out.splitlines() if line.startswith("replace ")]
    assert line == ("replace spot/spot-azure: rejoined on gcp-hk, but spot-gcp still look(s) for it at its old "
                    "address (`failover replace spot-azure --site gcp-hk` finishes it)")
    _, out = run_cli(["status", "--config", str(config), "--output", "json"], capsys)
    assert json.loads(out)["replacing"] == [line]
