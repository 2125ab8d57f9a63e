"""Several processes on one store at once (a cron run overlapping an operator command): nothing lost, no seq
given twice, the audit chain intact, and never two holders of one lease."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store import AUDIT_HEAD_FILE_ENV, StateStore, open_store

WORKER = Path(__file__).with_name("store_worker.py")

pytestmark = pytest.mark.slow


def run_together(url: str, mode: str, names: list[str], *args: str) -> list[dict[str, Any]]:
    """Start one worker per name, release them at the same moment, and return their summaries."""
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), mode, url, name, *args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in names
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in results]


def test_two_processes_append_without_loss(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    anchor = tmp_path / "audit.head"
    monkeypatch.setenv(AUDIT_HEAD_FILE_ENV, str(anchor))  # the workers inherit it
    with open_store(store_url) as store:
        incident = store.create_incident("spot", "drill", "concurrency", 1.0)
    run_together(store_url, "append", ["cron", "operator"], incident.id)
    with open_store(store_url) as store:
        report = store.verify_audit()
        assert report.ok and report.entries == 600, report
        assert report.anchor_file == str(anchor)
        head = store.audit_head()
        assert head is not None and json.loads(anchor.read_text())["hash"] == head.hash, "the anchor fell behind"
        actors = [e.actor for e in store.audit_entries()]
        switches = sum(1 for a, b in itertools.pairwise(actors) if a != b)
        assert switches >= 2, "the two writers did not overlap: the test proved nothing"
        by_actor = sorted((e.actor, e.detail["i"]) for e in store.audit_entries())
        assert by_actor == sorted((a, i) for a in ("cron", "operator") for i in range(300))
        journal = store.journal(incident.id)
        assert [e.seq for e in journal] == list(range(1, 601))
        assert sorted((e.detail["writer"], e.detail["i"]) for e in journal) == by_actor
        observations = store.observations(0)
        assert len(observations) == 2000
        assert len({(o.subject, o.detail) for o in observations}) == 2000
        assert [o.at for o in observations] == sorted(o.at for o in observations)


def _check_exclusive(store: StateStore, incident_id: str) -> list[int]:
    """In audit order every `enter` is followed by the same holder's `exit` with the same token: no overlap."""
    entries = store.audit_entries()
    assert len(entries) % 2 == 0
    tokens = []
    for enter, leave in zip(entries[::2], entries[1::2], strict=True):
        assert (enter.action, leave.action) == ("enter", "exit"), (enter, leave)
        assert enter.actor == leave.actor and enter.detail == leave.detail
        tokens.append(enter.detail["fencing_token"])
    assert tokens == sorted(set(tokens)), "tokens must be unique and increasing"
    assert [e.token for e in store.journal(incident_id)] == tokens
    return tokens


def test_processes_racing_for_a_lease_never_hold_it_together(store_url: str) -> None:
    with open_store(store_url) as store:
        incident = store.create_incident("spot", "drill", "lease race", 1.0)
    summaries = run_together(store_url, "race", ["host-a", "host-b"], incident.id, "40")
    assert [s["wins"] for s in summaries] == [40, 40]
    assert sum(s["tries"] for s in summaries) > 80, "nobody was ever refused: the holders never contended"
    with open_store(store_url) as store:
        assert len(_check_exclusive(store, incident.id)) == 80
        assert store.verify_audit().ok
        assert store.current_lease("race") is None


def test_processes_can_create_a_fresh_store_at_once(store_url: str) -> None:
    summaries = run_together(store_url, "open", ["a", "b", "c", "d"], "-")
    assert sorted(s["seq"] for s in summaries) == [1, 2, 3, 4]
    with open_store(store_url) as store:
        assert store.verify_audit().entries == 4
