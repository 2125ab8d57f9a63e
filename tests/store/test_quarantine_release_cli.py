"""`failover status` shows each quarantine and when it ends (UTC and the display zone); `failover release SITE`
ends one, audited, through the real CLI entry point and a real SQLite store. `release` is registered here the way
`orchestrator/cli/commands.py` will register it (`"release": "quarantine_cmd"`)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from orchestrator.cli import commands
from orchestrator.cli.app import main
from orchestrator.config import load_config
from orchestrator.store import open_store

ROOT = Path(__file__).resolve().parents[2]
H = 3600.0


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(commands.COMMANDS, "release", "quarantine_cmd")
    path = tmp_path / "failover.yaml"
    shutil.copy(ROOT / "configs" / "example.yaml", path)
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def _quarantine(config: Path) -> float:
    """aws-hk went down an hour ago and has been healthy for ten minutes; gcp-hk is down now."""
    now = time.time()
    with open_store(load_config(config).store_url) as store:
        store.observe_quarantines({"aws-hk": ("down", "dark"), "gcp-hk": ("healthy", "")}, now - H, 2 * H)
        store.observe_quarantines({"aws-hk": ("healthy", "")}, now - 600, 2 * H)
        store.observe_quarantines({"gcp-hk": ("down", "zone impaired")}, now - 60, 2 * H)
    return now


def test_status_shows_each_quarantine_and_when_it_ends(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = _quarantine(config)
    code, out, _ = run_cli(["status", "--config", str(config), "--output", "json"], capsys)
    assert code == 0
    body = json.loads(out)
    lines = {q["site"]: q for q in body["quarantines"]}
    assert set(lines) == {"aws-hk", "gcp-hk"} and body["quarantine_s"] == 2 * H
    assert lines["aws-hk"]["ends_at"] == pytest.approx(now - 600 + 2 * H)
    assert lines["gcp-hk"]["ends_at"] is None

    code, out, _ = run_cli(["status", "--config", str(config)], capsys)
    text = " ".join(out.split())
    assert "quarantine gcp-hk: down since" in text
    assert "not healthy now: ends 2h after it is healthy again" in text
    aws = next(line for line in out.splitlines() if line.startswith("quarantine aws-hk"))
    assert " UTC (" in aws and "UTC+08:00)" in aws  # UTC and the example's display zone (Hong Kong)


def test_release_ends_one_quarantine_and_audits_it(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _quarantine(config)
    code, out, err = run_cli(["release", "aws-hk", "--config", str(config), "--reason", "AWS confirmed the fix"],
                             capsys)
    assert (code, err) == (0, "")
    assert out.startswith("released aws-hk from quarantine at ")
    with open_store(load_config(config).store_url) as store:
        assert set(store.quarantines()) == {"gcp-hk"}
        entry = store.audit_entries()[-1]
    assert (entry.action, entry.detail["site"], entry.detail["reason"]) == ("quarantine.release", "aws-hk",
                                                                          "AWS confirmed the fix")
    assert "@" in entry.actor


@pytest.mark.parametrize(("site", "message"), [
    ("azure-hk", "error: site azure-hk: not in quarantine (nothing to release)"),
    ("aws-tokyo", "error: site aws-tokyo: not in {config} (sites: aws-hk, azure-hk, gcp-hk)"),
])
def test_a_release_that_cannot_be_is_one_line_and_exit_2(config: Path, capsys: pytest.CaptureFixture[str],
                                                         site: str, message: str) -> None:
    _quarantine(config)
    code, out, err = run_cli(["release", site, "--config", str(config)], capsys)
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [message.format(config=config)]
    with open_store(load_config(config).store_url) as store:
        assert set(store.quarantines()) == {"aws-hk", "gcp-hk"} and store.audit_entries() == []
