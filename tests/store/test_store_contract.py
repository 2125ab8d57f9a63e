"""The contract every StateStore backend keeps. Bodies use only the public API and `store_url` / `store`, so the
same tests run on SQLite and, once it exists, etcd (see conftest.py)."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.model import Observation, Status
from orchestrator.errors import ConfigError, LeaseLost, StoreError
from orchestrator.store import (
    GENESIS_HASH,
    AuditHead,
    Conflict,
    IncidentStatus,
    JournalState,
    NotFound,
    StateStore,
    open_store,
    parse_head,
)

T0 = 1_671_332_412.0  # 2022-12-18T03:00:12Z


def obs(at: float, subject: str = "aws-hk", source: str = "probe:gcp", status: Status = Status.OK,
        detail: str = "") -> Observation:
    return Observation(at=at, subject=subject, source=source, status=status, detail=detail)


# --- observations -------------------------------------------------------------------------------------------------


def test_observations_round_trip_in_time_then_insertion_order(store: StateStore) -> None:
    batch = [obs(T0 + 2, detail="late"), obs(T0, "gcp-hk", status=Status.DOWN, detail="timeout"),
             obs(T0 + 1, "azure-hk", "provider:azure", Status.DEGRADED), obs(T0, "aws-hk", detail="same time, after")]
    assert store.record_observations(batch) == 4
    assert store.observations(T0) == [batch[1], batch[3], batch[2], batch[0]]


def test_observations_since_is_inclusive_and_subjects_filter(store: StateStore) -> None:
    store.record_observations([obs(T0 + i, subject=f"site-{i % 3}") for i in range(9)])
    assert [o.at for o in store.observations(T0 + 6)] == [T0 + 6, T0 + 7, T0 + 8]
    assert [o.subject for o in store.observations(T0, {"site-1"})] == ["site-1"] * 3
    assert store.observations(T0, []) == []
    assert store.observations(T0, ["nowhere"]) == []


def test_observations_large_batch_is_stored_whole(store: StateStore) -> None:
    batch = [obs(T0 + i / 1000, f"replica-{i % 50}", f"probe:{i % 7}") for i in range(5000)]
    started = time.monotonic()
    store.record_observations(batch)
    assert time.monotonic() - started < 2.0
    assert store.observations(0) == batch


def test_a_bad_observation_stores_nothing_of_its_batch(store: StateStore) -> None:
    bad = Observation(at=T0, subject="aws-hk", source="probe:x", status="sideways")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="sideways"):
        store.record_observations([obs(T0), bad])
    with pytest.raises(StoreError, match="epoch seconds"):
        store.record_observations([obs(float("nan"))])
    assert store.observations(0) == []


def test_latest_observations_keeps_the_last_n_of_each_pair(store: StateStore) -> None:
    pairs = [("aws-hk", "probe:gcp"), ("aws-hk", "provider:aws"), ("gcp-hk", "probe:aws")]
    batch = [obs(T0 + i, subject, source) for i in range(10) for subject, source in pairs]
    store.record_observations(batch)
    latest = store.latest_observations(3)
    assert latest == [o for o in batch if o.at >= T0 + 7]
    assert store.latest_observations(3, since=T0 + 9) == [o for o in batch if o.at == T0 + 9]
    with pytest.raises(StoreError):
        store.latest_observations(0)


def test_prune_observations_deletes_before_the_cutoff(store: StateStore) -> None:
    store.record_observations([obs(T0 + i) for i in range(10)] + [obs(T0, "old-site")])
    assert store.prune_observations(T0 + 4) == 5
    assert [o.at for o in store.observations(0)] == [T0 + i for i in range(4, 10)]
    assert store.latest_observations(1) == [obs(T0 + 9)]
    assert store.prune_observations(T0 + 4) == 0


# --- incidents ----------------------------------------------------------------------------------------------------


def test_incident_round_trips_with_a_sortable_id(store_url: str) -> None:
    with open_store(store_url) as store:
        _round_trip(store)


def _round_trip(store: StateStore) -> None:
    created = store.create_incident("spot", "outage", "primary unreachable from 2 of 3 sources", T0,
                                    source="spot-aws", detail={"verdict": "down", "sources": ["a", "b"]})
    assert re.fullmatch(r"INC-20221218-030012-spot-[0-9a-f]{4}", created.id)
    assert created.status is IncidentStatus.OPEN and created.closed_at is None and created.target is None
    assert store.incident(created.id) == created
    with open_store(store.url) as other:  # durable, and visible to another handle
        assert other.incident(created.id) == created


def test_missing_incident_is_not_found(store: StateStore) -> None:
    with pytest.raises(NotFound, match="INC-nope"):
        store.incident("INC-nope")
    with pytest.raises(NotFound):
        store.update_incident("INC-nope", at=T0, status=IncidentStatus.CLOSED)
    assert issubclass(NotFound, StoreError)


def test_incident_lifecycle_merges_detail_and_closes_once(store: StateStore) -> None:
    inc = store.create_incident("spot", "outage", "down", T0, source="spot-aws", detail={"a": 1, "b": 1})
    inc = store.update_incident(inc.id, at=T0 + 1, status=IncidentStatus.PROPOSED, target="spot-gcp",
                                detail={"b": 2, "plan": ["halt", "fence"]})
    assert (inc.status, inc.target, inc.updated_at) == (IncidentStatus.PROPOSED, "spot-gcp", T0 + 1)
    assert inc.detail == {"a": 1, "b": 2, "plan": ["halt", "fence"]}
    inc = store.update_incident(inc.id, at=T0 + 2, status="running")
    assert inc.status is IncidentStatus.RUNNING
    inc = store.update_incident(inc.id, at=T0 + 3, status=IncidentStatus.CLOSED)
    assert (inc.closed_at, inc.is_open) == (T0 + 3, False)
    with pytest.raises(Conflict, match="closed"):
        store.update_incident(inc.id, at=T0 + 4, status=IncidentStatus.RUNNING)
    noted = store.update_incident(inc.id, at=T0 + 5, detail={"postmortem": "PM-7"})
    assert noted.closed_at == T0 + 3 and noted.detail["postmortem"] == "PM-7"
    assert store.incident(inc.id) == noted
    with pytest.raises(StoreError, match="incident status"):
        store.update_incident(inc.id, at=T0 + 6, status="resolved")


def test_one_open_incident_per_engine(store: StateStore) -> None:
    first = store.create_incident("spot", "outage", "down", T0)
    with pytest.raises(Conflict, match=first.id):
        store.create_incident("spot", "flapping", "again", T0 + 1)
    other = store.create_incident("perp", "outage", "down", T0 + 1)
    assert store.open_incident("spot") == first and store.open_incident("perp") == other
    store.update_incident(first.id, at=T0 + 2, status=IncidentStatus.CLOSED)
    assert store.open_incident("spot") is None
    second = store.create_incident("spot", "flapping", "again", T0 + 3, status=IncidentStatus.NEEDS_HUMAN)
    assert store.open_incident("spot") == second


def test_incidents_are_listed_newest_first(store: StateStore) -> None:
    made = []
    for i, engine in enumerate(["spot", "perp", "spot", "options"]):
        made.append(store.create_incident(engine, "outage", f"#{i}", T0 + 100 * i))
        if i < 3:
            store.update_incident(made[-1].id, at=T0 + 100 * i + 1, status=IncidentStatus.CLOSED)
    assert [i.reason for i in store.incidents()] == ["#3", "#2", "#1", "#0"]
    assert [i.reason for i in store.incidents(engine="spot")] == ["#2", "#0"]
    assert [i.reason for i in store.incidents(open_only=True)] == ["#3"]
    assert [i.reason for i in store.incidents(limit=2)] == ["#3", "#2"]
    assert store.incidents(engine="spot", open_only=True) == []


# --- runbook journal ----------------------------------------------------------------------------------------------


def test_journal_seq_counts_per_incident(store: StateStore) -> None:
    spot = store.create_incident("spot", "outage", "down", T0)
    perp = store.create_incident("perp", "outage", "down", T0)
    first = store.append_journal(spot.id, "halt", JournalState.STARTED, T0 + 1, token=7)
    store.append_journal(perp.id, "halt", JournalState.STARTED, T0 + 1)
    store.append_journal(spot.id, "halt", "done", T0 + 2, {"phase": "halted"}, token=7)
    store.append_journal(spot.id, "fence_old_primary", JournalState.SKIPPED, T0 + 3, token=8)
    entries = store.journal(spot.id)
    assert entries[0] == first
    assert [(e.seq, e.step, e.state, e.token) for e in entries] == [
        (1, "halt", JournalState.STARTED, 7), (2, "halt", JournalState.DONE, 7),
        (3, "fence_old_primary", JournalState.SKIPPED, 8),
    ]
    assert entries[1].detail == {"phase": "halted"} and entries[1].at == T0 + 2
    assert [e.seq for e in store.journal(perp.id)] == [1]
    assert store.journal("INC-none") == []


def test_journal_refuses_a_deposed_writer(store: StateStore) -> None:
    inc = store.create_incident("spot", "outage", "down", T0)
    store.append_journal(inc.id, "halt", JournalState.STARTED, T0, token=5)
    store.append_journal(inc.id, "halt", JournalState.DONE, T0 + 1, token=5)  # same leader: fine
    with pytest.raises(LeaseLost, match="token 4"):
        store.append_journal(inc.id, "fence_old_primary", JournalState.STARTED, T0 + 2, token=4)
    store.append_journal(inc.id, "fence_old_primary", JournalState.STARTED, T0 + 2, token=9)  # new leader
    with pytest.raises(LeaseLost):
        store.append_journal(inc.id, "promote", JournalState.STARTED, T0 + 3, token=5)
    assert [e.token for e in store.journal(inc.id)] == [5, 5, 9]


def test_journal_validates_its_input(store: StateStore) -> None:
    with pytest.raises(NotFound):
        store.append_journal("INC-none", "halt", JournalState.STARTED, T0)
    inc = store.create_incident("spot", "outage", "down", T0)
    with pytest.raises(StoreError, match="journal state"):
        store.append_journal(inc.id, "halt", "finished", T0)
    with pytest.raises(StoreError, match="token"):
        store.append_journal(inc.id, "halt", JournalState.STARTED, T0, token=-1)
    assert store.journal(inc.id) == []


# --- audit log ----------------------------------------------------------------------------------------------------


def _expected_hash(seq: int, at: float, actor: str, action: str, detail: Any, prev: str) -> str:
    payload = json.dumps([seq, at, actor, action, detail, prev], sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def test_audit_chain_links_and_verifies(store: StateStore) -> None:
    assert store.verify_audit().ok and store.audit_head() is None
    written = [store.audit("alice", "halt", {"engine": "spot", "why": "drill", "n": i, "zh": "停"}, T0 + i)
               for i in range(5)]
    assert written[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(written):
        assert after.prev_hash == before.hash and after.seq == before.seq + 1
    first = written[0]
    assert first.hash == _expected_hash(1, T0, "alice", "halt", first.detail, GENESIS_HASH)
    assert store.audit_entries() == written
    assert store.audit_entries(after_seq=3) == written[3:]
    head = store.audit_head()
    assert head is not None and (head.seq, head.hash) == (5, written[-1].hash)
    assert str(head) == f"5:{written[-1].hash}"
    report = store.verify_audit()
    assert (report.ok, report.entries, report.first_bad_seq, report.problem, report.head) == (True, 5, None, "", head)


def test_the_anchor_file_follows_the_head_outside_the_store(store: StateStore, tmp_path: Path) -> None:
    anchor = tmp_path / "elsewhere" / "audit.head"
    anchor.parent.mkdir()
    store.set_audit_anchor(anchor)
    assert store.audit_anchor_path == anchor and store.verify_audit().ok  # empty store, no anchor yet: fine
    written = [store.audit("alice", "halt", {"n": i}, T0 + i) for i in range(3)]
    on_disk = json.loads(anchor.read_text())
    assert (on_disk["seq"], on_disk["hash"], on_disk["store"]) == (3, written[-1].hash, store.url)
    report = store.verify_audit()
    assert report.ok and report.anchor_file == str(anchor)
    assert report.checked == (f"the anchor file {anchor}",)


def test_a_store_younger_than_its_anchor_was_recreated(store: StateStore, tmp_path: Path) -> None:
    """The anchor remembers a chain of 3 entries; this store never held it (re-created, or truncated)."""
    anchor = tmp_path / "audit.head"
    earlier = "ab" * 32
    anchor.write_text(json.dumps({"seq": 3, "hash": earlier}))
    store.set_audit_anchor(anchor)
    report = store.verify_audit()
    assert (report.ok, report.entries, report.first_bad_seq) == (False, 0, 1)
    assert report.problem == (f"the store holds 0 entries but the anchor file {anchor} says the chain reached "
                              "seq 3: the store was truncated or re-created")
    for i in range(5):  # appends go on, but never move the evidence
        store.audit("alice", "halt", {"n": i}, T0 + i)
        assert json.loads(anchor.read_text())["hash"] == earlier
    report = store.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert report.problem == f"entry 3: its hash differs from the anchor file {anchor}: the chain was rewritten"


def test_a_missing_or_garbled_anchor_is_reported(store: StateStore, tmp_path: Path) -> None:
    anchor = tmp_path / "audit.head"
    store.set_audit_anchor(anchor)
    store.audit("alice", "halt", {}, T0)
    anchor.unlink()
    report = store.verify_audit()
    assert not report.ok and report.problem.startswith(f"the anchor file {anchor} is missing while the store "
                                                       "holds 1 entries")
    anchor.write_text("57:" + "ab" * 32)
    report = store.verify_audit()
    assert not report.ok and report.problem == f"the anchor file {anchor} is unreadable: not JSON"
    store.audit("alice", "halt", {}, T0 + 1)  # the append stands; the garbled anchor stays as evidence
    assert anchor.read_text() == "57:" + "ab" * 32 and len(store.audit_entries()) == 2


def test_an_anchor_that_cannot_be_written_does_not_stop_appends(
    store: StateStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    anchor = tmp_path / "no-such-directory" / "audit.head"
    store.set_audit_anchor(anchor)
    assert store.audit("alice", "halt", {}, T0).seq == 1
    assert "could not be written" in caplog.text and str(anchor) in caplog.text
    assert not store.verify_audit().ok


def test_verify_against_a_head_kept_elsewhere(store: StateStore) -> None:
    written = [store.audit("alice", "halt", {"n": i}, T0 + i) for i in range(5)]
    for seq in (1, 3, 5):
        assert store.verify_audit(expect=AuditHead(seq, written[seq - 1].hash)).ok
        report = store.verify_audit(expect=AuditHead(seq, written[seq - 1].hash[:16]))
        assert report.ok and report.checked[-1] == f"the expected head {seq}:{written[seq - 1].hash[:16]}"
    wrong = store.verify_audit(expect=AuditHead(3, written[3].hash))
    assert (wrong.ok, wrong.first_bad_seq) == (False, 3) and "differs from the expected head 3:" in wrong.problem
    beyond = store.verify_audit(expect=AuditHead(9, written[0].hash))
    assert (beyond.ok, beyond.first_bad_seq) == (False, 6) and "truncated or re-created" in beyond.problem
    assert store.verify_audit(expect=AuditHead(0, GENESIS_HASH)).ok


def test_parse_head_reads_what_audit_head_prints() -> None:
    digest = "0123456789abcdef" * 4
    assert parse_head(f"57:{digest}") == AuditHead(57, digest)
    assert parse_head(f" 57:{digest[:16].upper()} ") == AuditHead(57, digest[:16])
    for bad in ("57", f"57:{digest[:15]}", f"-1:{digest}", f"57:{digest}0", f"x:{digest}", f"57:{'g' * 64}"):
        with pytest.raises(ConfigError, match="SEQ:HASH"):
            parse_head(bad)


def test_audit_detail_reads_back_as_written(store: StateStore) -> None:
    entry = store.audit("cron", "check", {"pair": ("a", "b"), "nested": {"z": 1, "a": [1.5, None]}}, T0)
    assert entry.detail == {"nested": {"a": [1.5, None], "z": 1}, "pair": ["a", "b"]}
    assert store.audit_entries() == [entry]


@pytest.mark.parametrize("detail", [
    {"token": "abc"}, {"password": "x"}, {"api_key": "x"}, {"privateKey": "x"}, {"AWS_SECRET_ACCESS_KEY": "x"},
    {"client-secret": "x"}, {"credentials": {}}, {"ok": {"auth": {"user": "u"}}}, {"list": [{"passwd": "p"}]},
    {"note": "Bearer eyJhbGciOi"}, {"key_id": "AKIAABCDEFGHIJKLMNOP"},
    {"pem": "-----BEGIN RSA PRIVATE KEY-----\nMII..."},
])
def test_secret_like_detail_is_refused_everywhere(store: StateStore, detail: dict[str, Any]) -> None:
    with pytest.raises(StoreError, match="secret"):
        store.audit("alice", "login", detail, T0)
    with pytest.raises(StoreError, match="secret"):
        store.create_incident("spot", "outage", "down", T0, detail=detail)
    with pytest.raises(StoreError, match="secret"):
        store.put_state("spot", detail, None)
    assert store.audit_entries() == [] and store.incidents() == [] and store.get_state("spot") is None


def test_innocent_keys_are_accepted(store: StateStore) -> None:
    detail = {"fencing_token": 4, "lease_token": 4, "author": "bob", "authority": "ops", "tokens_seen": 1,
              "key": "spot", "note": "bearer of bad news", "control_token_file": "/etc/failover/token"}
    assert store.audit("bob", "promote", detail, T0).detail == detail


def test_non_json_detail_is_refused(store: StateStore) -> None:
    for detail in ({"when": {1, 2}}, {"x": float("nan")}, {1: "int key"}, ["not", "a", "mapping"]):
        with pytest.raises(StoreError):
            store.audit("alice", "halt", detail, T0)  # type: ignore[arg-type]
    assert store.audit_entries() == []


# --- leases -------------------------------------------------------------------------------------------------------


def test_lease_is_exclusive_and_reacquiring_keeps_the_token(store_url: str) -> None:
    with open_store(store_url) as one, open_store(store_url) as two:  # two handles: two processes' view
        lease = one.acquire_lease("leader", "host-a", 30)
        assert lease is not None and lease.holder == "host-a"
        assert two.acquire_lease("leader", "host-b", 30) is None
        assert two.current_lease("leader") == lease
        again = two.acquire_lease("leader", "host-a", 60)
        assert again is not None and again.token == lease.token and again.expires_at > lease.expires_at
        other = two.acquire_lease("other-lock", "host-b", 30)
        assert other is not None


def test_lease_tokens_only_grow_across_holders_and_releases(store: StateStore) -> None:
    tokens = []
    for holder in ["a", "b", "a", "a", "c"]:
        lease = store.acquire_lease("leader", holder, 30)
        assert lease is not None
        tokens.append(lease.token)
        store.release_lease(lease)
        assert store.current_lease("leader") is None
    assert tokens == sorted(set(tokens))


def test_renew_and_release_need_the_lease_to_be_ours(store: StateStore) -> None:
    lease = store.acquire_lease("leader", "a", 30)
    assert lease is not None
    renewed = store.renew_lease(lease, 60)
    assert renewed.token == lease.token and renewed.expires_at > lease.expires_at
    store.release_lease(lease)
    with pytest.raises(LeaseLost):
        store.renew_lease(lease, 30)
    taken = store.acquire_lease("leader", "b", 30)
    assert taken is not None and taken.token > lease.token
    store.release_lease(lease)  # a stale release must not free b's lease
    assert store.current_lease("leader") == taken
    with pytest.raises(StoreError, match="ttl"):
        store.acquire_lease("leader", "b", 0)


def _wait_until_free(store: StateStore, name: str, deadline: float = 15.0) -> float:
    """Seconds until nobody holds `name` (etcd expires leases on its own clock, sweeping every 500 ms)."""
    started = time.monotonic()
    while store.current_lease(name) is not None:
        assert time.monotonic() - started < deadline, f"lease {name!r} never expired"
        time.sleep(0.1)
    return time.monotonic() - started


def test_lease_expiry_on_a_real_clock(store_url: str) -> None:
    with open_store(store_url) as store:
        lost = store.acquire_lease("lost", "a", 1)
        kept = store.acquire_lease("kept", "a", 1)
        assert lost is not None and kept is not None
        assert _wait_until_free(store, "lost") > 0.8
        taken = store.acquire_lease("lost", "b", 30)
        assert taken is not None and taken.token > lost.token
        with pytest.raises(LeaseLost):
            store.renew_lease(lost, 30)
        # Expired, and nobody took it: renewing keeps its token where the store keeps the expired lease (SQLite,
        # memory), or says LeaseLost where expiry deletes it (etcd). Never two holders either way.
        _wait_until_free(store, "kept")
        try:
            renewed = store.renew_lease(kept, 30)
        except LeaseLost:
            again = store.acquire_lease("kept", "a", 30)
            assert again is not None and again.token > kept.token
        else:
            assert renewed.token == kept.token and store.current_lease("kept") == renewed
        assert store.acquire_lease("kept", "b", 30) is None


# --- controller state ---------------------------------------------------------------------------------------------


def test_state_compare_and_set(store: StateStore) -> None:
    assert store.get_state("engine/spot") is None
    value = {"phase": "halted", "epoch": 12, "last_failover_at": T0, "history": [{"at": T0, "to": "spot-gcp"}]}
    assert store.put_state("engine/spot", value, None) == 1
    assert store.get_state("engine/spot") == (value, 1)
    with pytest.raises(Conflict):
        store.put_state("engine/spot", {"phase": "open"}, None)
    assert store.put_state("engine/spot", {"phase": "open"}, 1) == 2
    with pytest.raises(Conflict, match="expected version 1, found 2"):
        store.put_state("engine/spot", {"phase": "protection"}, 1)
    with pytest.raises(Conflict):
        store.put_state("engine/perp", {"phase": "open"}, 3)
    assert store.get_state("engine/spot") == ({"phase": "open"}, 2)
    assert store.get_state("engine/perp") is None


# --- lifecycle ----------------------------------------------------------------------------------------------------


def test_a_closed_store_refuses_calls(store_url: str) -> None:
    with open_store(store_url) as store:
        store.audit("alice", "halt", {}, T0)
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.audit_entries()
    with open_store(store_url) as reopened:
        assert reopened.verify_audit().entries == 1
