"""`failover execute --target R --at TIME` and `failover cancel [ID]` through the real CLI entry point, against
real replica processes and a SQLite store (the testbed): a planned switchover is checked, stored, announced and
audited; bad times are refused with exit 2, a quarantined target with exit 3, each in one line, changing nothing.
`cancel` is registered here the way `orchestrator/cli/commands.py` will register it (`"cancel": "schedule_cmd"`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.config import load_config
from orchestrator.core.schedule import State
from orchestrator.store import open_store
from orchestrator.testbed.world import LOADED_PROBE_INTERVAL, LOADED_PROBE_TIMEOUT, LOADED_PROTECTION, Testbed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    with Testbed(tmp_path_factory.mktemp("bed"), protection=LOADED_PROTECTION, probe_interval=LOADED_PROBE_INTERVAL,
                 probe_timeout=LOADED_PROBE_TIMEOUT) as started:
        yield started


@pytest.fixture
def config(bed: Testbed, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The testbed's configuration, with nothing planned and nothing quarantined before and after each test."""
    monkeypatch.setenv("FAILOVER_CONFIG", str(bed.config_path))
    url = load_config(bed.config_path).store_url
    yield bed.config_path
    with open_store(url) as store:
        for entry in store.schedules():
            if entry.state is State.PENDING:
                store.cancel_schedule(entry.id, "test", time.time(), "cleanup")
        for site in store.quarantines():
            store.release_quarantine(site, "test", time.time())


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), " ".join(captured.out.split()), " ".join(captured.err.split())


def test_a_planned_failback_is_stored_announced_and_audited_then_cancelled(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["execute", "--target", "spot-gcp", "--at", "+2h", "--yes"], capsys)
    assert code == 0, err
    with open_store(load_config(config).store_url) as store:
        [entry] = [e for e in store.schedules() if e.state is State.PENDING]
        created = [a for a in store.audit_entries() if a.action == "schedule.create"][-1]
    assert (entry.engine, entry.target, entry.source, entry.protection) == ("spot", "spot-gcp", "spot-aws", None)
    assert 7100 < entry.at - time.time() <= 7200
    assert created.detail["id"] == entry.id
    assert f"scheduled {entry.id}: spot to spot-gcp at" in out
    assert "UTC+08:00" in out and "trading halts briefly, no protection window" in out  # the announcement

    code, out, err = run_cli(["execute", "--target", "spot-azure", "--at", "+3h", "--yes"], capsys)
    assert code == 3 and f"spot already has a planned switchover, {entry.id}" in err

    code, out, _ = run_cli(["status"], capsys)  # the SRE on shift sees it, and how to cancel it
    assert f"planned switchover {entry.id}: spot to spot-gcp at" in out and f"failover cancel {entry.id}" in out

    code, out, err = run_cli(["cancel", "--reason", "market event tonight"], capsys)
    assert code == 0, err
    assert f"cancelled {entry.id} (spot to spot-gcp); audited" in out and "will not happen" in out
    with open_store(load_config(config).store_url) as store:
        cancelled = [a for a in store.audit_entries() if a.action == "schedule.cancel"][-1]
        [after] = [e for e in store.schedules() if e.id == entry.id]
    assert cancelled.detail["schedule"] == entry.id and cancelled.detail["reason"] == "market event tonight"
    assert after.state is State.CANCELLED

    code, _, err = run_cli(["cancel", entry.id], capsys)
    assert (code, err) == (2, f"error: schedule {entry.id}: already cancelled; nothing to cancel")


def test_an_asked_protection_window_is_kept(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["execute", "--target", "spot-gcp", "--at", "+1h", "--protect", "5m", "--yes"], capsys)
    assert code == 0, err
    with open_store(load_config(config).store_url) as store:
        [entry] = [e for e in store.schedules() if e.state is State.PENDING]
    assert entry.protection == 300.0


@pytest.mark.parametrize(("when", "said"), [
    ("2026-12-05T02:00:00", "--at 2026-12-05T02:00:00: no time zone; add one (Z, +08:00)"),
    ("2020-01-01T00:00:00Z", "--at 2020-01-01T00:00:00Z: in the past"),
    ("+8d", "--at +8d: more than 168h ahead"),
    ("soon", "--at soon: expected an ISO 8601 time with a zone"),
])
def test_a_bad_time_is_refused_in_one_line_and_nothing_is_stored(
        config: Path, capsys: pytest.CaptureFixture[str], when: str, said: str) -> None:
    code, _, err = run_cli(["execute", "--target", "spot-gcp", "--at", when, "--yes"], capsys)
    assert code == 2 and err.startswith(f"error: {said}"), err
    with open_store(load_config(config).store_url) as store:
        assert not [e for e in store.schedules() if e.is_open]


def test_a_quarantined_target_is_refused_when_scheduling(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open_store(load_config(config).store_url) as store:
        store.observe_quarantines({"gcp-hk": ("down", "zone impaired")}, time.time() - 60, 7200.0)
        audited = len(store.audit_entries())
    code, _, err = run_cli(["execute", "--target", "spot-gcp", "--at", "+1h", "--yes"], capsys)
    assert code == 3
    assert "refused: planned switchover of spot to spot-gcp: quarantined: site gcp-hk of spot-gcp is in quarantine" \
        in err
    with open_store(load_config(config).store_url) as store:
        assert not [e for e in store.schedules() if e.is_open] and len(store.audit_entries()) == audited


def test_the_current_primary_is_refused_as_a_target(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["execute", "--target", "spot-aws", "--at", "+1h", "--yes"], capsys)
    assert code == 3 and "target must not be the current primary" in err


def test_cancel_with_nothing_planned_or_a_bad_id(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["cancel"], capsys)[0::2] == (2, "error: no planned switchover to cancel")
    assert run_cli(["cancel", "INC-1"], capsys)[0::2] == (
        2, "error: schedule INC-1: not a planned switchover's id (SCH-...)")
    assert run_cli(["cancel", "SCH-1"], capsys)[0::2] == (2, "error: schedule SCH-1: no such planned switchover")


def test_a_dry_run_checks_and_says_what_it_would_plan_storing_nothing(config: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    day = datetime.fromtimestamp(time.time() + 2 * 86400, UTC).date()  # 02:00 in Hong Kong, two days ahead
    code, out, err = run_cli(["execute", "--target", "spot-gcp", "--at", f"{day}T02:00:00+08:00", "--dry-run"],
                             capsys)
    assert code == 0, err
    assert out.startswith("would schedule: [spot] planned switchover of spot from spot-aws to spot-gcp")
    assert f"{day - timedelta(days=1)} 18:00:00 UTC ({day} 02:00:00 UTC+08:00)" in out
    with open_store(load_config(config).store_url) as store:
        assert not [e for e in store.schedules() if e.is_open]
    code, _, err = run_cli(["execute", "--target", "spot-gcp", "--at", "+1h", "--timeout", "5m"], capsys)
    assert (code, err) == (2, "error: --timeout: not with --at (there is nothing to watch until then: failover "
                              "status)")
