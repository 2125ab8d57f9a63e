"""`failover report INCIDENT --format csv|json|md` from a real SQLite store, after the fact: the impact rows per
account, the windows by the engine, and a bad `--format` refused in one line with exit 2."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.config import load_config
from orchestrator.core.runbook import Step, StepState
from orchestrator.store import open_store

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_671_332_400.0  # 2022-12-18 03:00:00 UTC
PHASES = [{"seq": 41, "at": T0 + 2.0, "phase": "halted", "until": None},
          {"seq": 42, "at": T0 + 5.0, "phase": "protection", "until": T0 + 25.0},
          {"seq": 60, "at": T0 + 25.0, "phase": "open", "until": None}]
STATS = {"spot-gcp": {"refused": {"halted": 3}, "refused_by_phase": {
    "halted": {"acct-1": {"halted": 3}}, "protection": {"acct-2": {"market orders refused": 1}}}}}


@pytest.fixture
def incident(tmp_path: Path) -> tuple[Path, str]:
    config = tmp_path / "failover.yaml"
    shutil.copy(ROOT / "configs" / "example.yaml", config)
    with open_store(load_config(config).store_url) as store:
        made = store.create_incident("spot", "failover", "aws-hk is down", T0, source="spot-aws",
                                     target="spot-gcp", detail={"engine_phases": {"entries": PHASES},
                                                                "stats_at_close": STATS})
        for step, at in ((Step.HALT, 2.5), (Step.OPEN_PROTECTION, 5.5), (Step.REOPEN, 29.0)):
            store.append_journal(made.id, step.value, StepState.DONE, T0 + at)
        store.update_incident(made.id, status="closed", at=T0 + 30)
    return config, made.id


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_csv_has_one_row_per_account_window_and_reason(incident: tuple[Path, str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    config, incident_id = incident
    code, out, _ = run_cli(["report", incident_id, "--config", str(config), "--format", "csv"], capsys)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["account"], r["window"], r["reason"], r["orders"]) for r in rows] == [
        ("acct-1", "halted", "halted", "3"), ("acct-2", "protection", "market orders refused", "1")]
    assert (rows[1]["window_start_utc"], rows[1]["window_end_utc"]) == ("2022-12-18T03:00:05.000Z",
                                                                        "2022-12-18T03:00:25.000Z")
    assert rows[1]["window_end_local"].endswith("+08:00")  # the example's display zone


def test_json_carries_the_rows_and_md_the_table(incident: tuple[Path, str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config, incident_id = incident
    _, out, _ = run_cli(["report", incident_id, "--config", str(config), "--format", "json"], capsys)
    body = json.loads(out)
    assert [row["orders"] for row in body["impact"]] == [3, 1]
    assert body["protection"]["end"] == T0 + 25.0 and body["protection"]["source"] == "engine"
    _, out, _ = run_cli(["report", incident_id, "--config", str(config)], capsys)
    assert "| acct-2 | refused | protection | market orders refused | 1 |  |" in out


def test_an_unknown_format_is_refused_in_one_line(incident: tuple[Path, str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config, incident_id = incident
    code, out, err = run_cli(["report", incident_id, "--config", str(config), "--format", "xlsx"], capsys)
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == ["error: --format xlsx: expected md or json (or csv, the impact rows)"]
