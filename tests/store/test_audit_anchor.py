"""Where each backend keeps its audit anchor, and that the anchor holds up when several writers append at once and
when an etcd keyspace is edited behind the store's back (SQLite's file edits: test_audit_tamper.py)."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest

from orchestrator.store import AUDIT_HEAD_FILE_ENV, StateStore, open_store
from orchestrator.store.etcd import EtcdStore
from orchestrator.store.memory import MemoryStore

T0 = 1_671_332_412.0


@pytest.fixture(autouse=True)
def _no_anchor_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUDIT_HEAD_FILE_ENV, raising=False)


def test_sqlite_keeps_its_anchor_beside_the_file_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with open_store(url) as store:
        assert store.audit_anchor_path == tmp_path / "state.db.audit-head"
    monkeypatch.setenv(AUDIT_HEAD_FILE_ENV, str(tmp_path / "env.head"))
    with open_store(url) as store:
        assert store.audit_anchor_path == tmp_path / "env.head"
    with open_store(url, audit_anchor=tmp_path / "config.head") as store:
        assert store.audit_anchor_path == tmp_path / "config.head"
        store.audit("alice", "halt", {}, T0)
    assert json.loads((tmp_path / "config.head").read_text())["seq"] == 1
    assert not (tmp_path / "env.head").exists() and not (tmp_path / "state.db.audit-head").exists()


def test_memory_keeps_no_anchor_whatever_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUDIT_HEAD_FILE_ENV, str(tmp_path / "env.head"))
    with MemoryStore() as store:
        assert store.audit_anchor_path is None
        store.audit("sim", "halt", {}, T0)
        assert store.verify_audit().ok and store.verify_audit().anchor_file is None
    assert not (tmp_path / "env.head").exists()


def test_threads_appending_at_once_never_move_the_anchor_backwards(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    stores = [open_store(url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))

    def append(store: StateStore, name: str) -> None:
        barrier.wait()
        for i in range(40):
            store.audit(name, "append", {"i": i}, T0 + i)

    threads = [threading.Thread(target=append, args=(store, f"w{n}")) for n, store in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    head = stores[0].audit_head()
    assert head is not None and head.seq == 160
    assert json.loads((tmp_path / "state.db.audit-head").read_text())["hash"] == head.hash
    assert stores[0].verify_audit().ok
    for store in stores:
        store.close()


# --- etcd: a keyspace edited with etcdctl -------------------------------------------------------------------------


@pytest.fixture
def etcd_store(request: pytest.FixtureRequest, etcd_url: str, tmp_path: Path) -> EtcdStore:
    store = open_store(f"{etcd_url}/anchor/{request.node.name}", audit_anchor=tmp_path / "audit.head")
    assert isinstance(store, EtcdStore)
    request.addfinalizer(store.close)
    for n in range(1, 6):
        store.audit("sre:alice", "phase.halt", {"n": n}, T0 + n)
    return store


def _put(store: EtcdStore, key: bytes, value: bytes) -> None:
    b64 = base64.b64encode
    store._etcd.commit([], [{"request_put": {"key": b64(key).decode(), "value": b64(value).decode()}}], [])


@pytest.mark.etcd
@pytest.mark.parametrize(("value", "problem"), [
    (b"garbage", "entry 3: the stored entry is not JSON"),
    (b"[1, 2]", "entry 3: the stored entry is not a JSON object"),
    (b'{"seq": 3, "at": NaN}', "entry 3: the stored entry is not JSON: NaN is not a number JSON allows"),
    (b'{"seq": 3, "at": 1e999}', "entry 3: the stored entry is not JSON: 1e999 is not a finite number"),
    (b"[" * 100_000, "entry 3: the stored entry is not JSON: nested too deeply"),
    (b'{"seq": 3, "at": 1.0, "actor": 7}', "entry 3: its actor is an integer, not text"),
    (b'{"seq": 3, "at": "noon"}', "entry 3: its time is text, not epoch seconds"),
    (b'{"seq": "3"}', "the row after entry 2: its seq is text, not an integer"),
], ids=["garbage", "array", "nan", "1e999", "nested", "actor-int", "time-text", "seq-text"])
def test_edited_etcd_entries_are_named_not_crashed_on(etcd_store: EtcdStore, value: bytes, problem: str) -> None:
    _put(etcd_store, etcd_store.keys.audit_entry(3), value)
    report = etcd_store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert report.problem.startswith(problem) and "\n" not in report.problem


@pytest.mark.etcd
@pytest.mark.parametrize(("value", "problem"), [
    (b"{nope", "the stored head is corrupt: not JSON"),
    (b'{"seq": "five", "hash": "x"}', "the stored head is corrupt: its seq is text, not an integer"),
    (b'{"seq": 5, "hash": null}', "the stored head is corrupt: its hash is NULL, not text"),
])
def test_an_edited_etcd_head_is_reported(etcd_store: EtcdStore, value: bytes, problem: str) -> None:
    _put(etcd_store, etcd_store.keys.audit_head, value)
    report = etcd_store.verify_audit()
    assert not report.ok and report.problem.startswith(problem)


@pytest.mark.etcd
def test_a_wiped_etcd_prefix_is_caught_by_the_anchor(etcd_store: EtcdStore) -> None:
    keys = etcd_store.keys
    etcd_store._etcd.commit([], [{"request_delete_range": {
        "key": base64.b64encode(keys.audit_dir).decode(), "range_end": base64.b64encode(keys.audit_end).decode()}},
        {"request_delete_range": {"key": base64.b64encode(keys.audit_head).decode()}}], [])
    report = etcd_store.verify_audit()
    assert not report.ok and "the store holds 0 entries but the anchor file" in report.problem
