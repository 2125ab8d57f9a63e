"""An SQLite file written by an older release is brought up to date when opened; one from a newer release is
refused in one line (its tables may mean something this release does not know)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.errors import StoreError
from orchestrator.store import open_store
from orchestrator.store.sqlite import SCHEMA_VERSION

T0 = 1_671_332_412.0


def _as_version_1(path: Path) -> None:
    """What release 1 wrote: no outbox (nor anything added later), version 1."""
    conn = sqlite3.connect(path)
    with conn:
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for name in names:
            if name in {"outbox", "heartbeats", "counters"}:
                conn.execute(f"DROP TABLE {name}")
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    conn.close()


def test_a_version_1_file_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with open_store(f"sqlite:///{path}") as store:
        store.audit("alice", "halt", {}, T0)
        incident = store.create_incident("spot", "outage", "down", T0)
    _as_version_1(path)
    with open_store(f"sqlite:///{path}") as store:
        assert store.verify_audit().ok and store.incident(incident.id) == incident
        ident = store.enqueue_notification("slack-ops", {"text": "halted"}, T0)
        assert [i.id for i in store.due_notifications(T0, 10)] == [ident]
    conn = sqlite3.connect(path)
    assert [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")][-1] == \
        SCHEMA_VERSION
    conn.close()


def test_a_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    open_store(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError) as error:
        open_store(f"sqlite:///{path}")
    assert str(error.value) == (f"state store {path}: schema version {SCHEMA_VERSION + 1} is not the supported "
                                f"{SCHEMA_VERSION}")
