"""`failover status` and `failover audit verify` against a real SQLite store."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.config import load_config
from orchestrator.store import open_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "failover.yaml"
    shutil.copy(ROOT / "configs" / "example.yaml", path)
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_status_json_on_a_fresh_store(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["status", "--config", str(config), "--output", "json"], capsys)
    assert code == 0
    report = json.loads(out)
    [engine] = report["engines"]
    assert (engine["name"], engine["primary"], engine["phase"]) == ("spot", "spot-aws", "open")
    assert engine["incident"] is None
    assert [r["provider"] for r in engine["replicas"]] == ["aws", "gcp", "azure"]
    assert report["store"] == f"sqlite:///{config.parent / 'failover-state.db'}"


def test_status_shows_an_open_incident(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loaded = load_config(config)
    with open_store(loaded.store_url) as store:
        incident = store.create_incident("spot", "failover", "aws-hk is down", 1.0, source="spot-aws",
                                         target="spot-gcp", status="running")
    code, out, _ = run_cli(["status", "--config", str(config)], capsys)
    assert code == 0
    assert f"open incident {incident.id} (failover, running): aws-hk is down" in out


def test_audit_verify_detects_an_edited_entry(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loaded = load_config(config)
    with open_store(loaded.store_url) as store:
        for n in range(5):
            store.audit("sre:alice", "phase.halt", {"engine": "spot", "n": n}, 100.0 + n)
    code, out, _ = run_cli(["audit", "verify", "--config", str(config)], capsys)
    anchor = config.parent / "failover-state.db.audit-head"
    assert (code, out.strip()) == (0, f"audit log intact: 5 entries verified, consistent with the anchor file {anchor}")

    db = sqlite3.connect(config.parent / "failover-state.db")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")  # a determined editor removes the append-only guard first
    db.execute("UPDATE audit SET actor = 'sre:mallory' WHERE seq = 3")
    db.commit()
    db.close()
    code, out, _ = run_cli(["audit", "verify", "--config", str(config), "--output", "json"], capsys)
    report = json.loads(out)
    assert code == 3
    assert report["ok"] is False and report["first_bad_seq"] == 3
