"""Tampering with the SQLite file directly, as someone with shell access would: `verify_audit` must notice.

SQLite-specific by nature (the contract suite cannot edit an etcd keyspace behind the store's back). The triggers
that make the audit table append-only stop casual edits; a determined editor drops them first, as these tests do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.store import StateStore, open_store
from orchestrator.store.records import audit_hash

T0 = 1_671_332_412.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[StateStore, Path]]:
    path = tmp_path / "state.db"
    with open_store(f"sqlite:///{path}") as store:
        for i in range(1, 6):
            store.audit("alice", "halt", {"engine": "spot", "n": i}, T0 + i)
        assert store.verify_audit().ok
        yield store, path


def tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        for statement in statements:
            conn.execute(statement)
    conn.close()


def test_triggers_refuse_casual_edits(db: tuple[StateStore, Path]) -> None:
    _, path = db
    conn = sqlite3.connect(path)
    for statement in ("UPDATE audit SET actor = 'mallory' WHERE seq = 2", "DELETE FROM audit WHERE seq = 5"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
    conn.close()


@pytest.mark.parametrize(("statements", "bad_seq", "problem"), [
    (["UPDATE audit SET detail = '{\"engine\":\"perp\",\"n\":3}' WHERE seq = 3"], 3, "edited"),
    (["UPDATE audit SET at = at - 3600 WHERE seq = 4"], 4, "edited"),
    (["UPDATE audit SET actor = 'mallory' WHERE seq = 1"], 1, "edited"),
    (["UPDATE audit SET detail = 'garbage' WHERE seq = 2"], 2, "not JSON"),
    (["DELETE FROM audit WHERE seq = 3"], 3, "missing"),
    (["UPDATE audit SET seq = -2 WHERE seq = 2", "UPDATE audit SET seq = 2 WHERE seq = 3",
      "UPDATE audit SET seq = 3 WHERE seq = -2"], 2, "edited"),
    (["DELETE FROM audit WHERE seq = 3", "UPDATE audit SET seq = seq - 1 WHERE seq > 3"], 3, "edited"),
    (["DELETE FROM audit WHERE seq = 5"], 5, "tail was deleted"),
    (["DELETE FROM audit WHERE seq >= 3"], 3, "tail was deleted"),
    (["DELETE FROM audit_head"], 1, "head is missing"),
    (["UPDATE audit_head SET hash = 'x'"], 5, "stored head"),
], ids=["detail", "time", "actor", "garbage", "deleted-middle", "swapped", "deleted-renumbered", "deleted-last",
        "deleted-tail", "deleted-head", "edited-head"])
def test_verify_finds_the_first_bad_entry(
    db: tuple[StateStore, Path], statements: list[str], bad_seq: int, problem: str
) -> None:
    store, path = db
    tamper(path, *statements)
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, bad_seq), report
    assert problem in report.problem and "\n" not in report.problem


def test_an_entry_forged_after_the_head_is_noticed(db: tuple[StateStore, Path]) -> None:
    store, path = db
    last = store.audit_entries()[-1]
    forged = audit_hash(6, T0 + 6, "mallory", "reopen", {}, last.hash)
    tamper(path, f"INSERT INTO audit VALUES (6, {T0 + 6}, 'mallory', 'reopen', '{{}}', '{last.hash}', '{forged}')")
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 6)
    assert "after the head" in report.problem


def test_appending_after_verification_failed_still_chains_on_the_head(db: tuple[StateStore, Path]) -> None:
    store, path = db
    tamper(path, "DELETE FROM audit WHERE seq = 5")
    entry = store.audit("bob", "halt", {}, T0 + 10)
    assert entry.seq == 6  # the head, not the surviving rows, decides: the gap stays visible
    assert store.verify_audit().first_bad_seq == 5
