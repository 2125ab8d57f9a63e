"""The etcd state store: the same contract as SQLite, shared by orchestrators running in several clouds.

    etcd://h1:2379,h2:2379,h3:2379[/prefix]        (prefix default /failover; port default 2379)

Why every hook is one etcd transaction: SQLite gets atomicity from a write lock; etcd has no locks, only
transactions that compare revisions and then write. So each read-modify-write here is "read, decide, then write
only if what was read is unchanged" (compare on mod_revision / create_revision / version), looping when another
writer got there first. The key layout and the JSON of each record are in etcd_layout.py, the observation
documents in etcd_obs.py, the transport (member rotation, timeouts, error mapping) in etcd_client.py.

How each rule of base.py holds:
- one open incident per engine: the incident and an index key `open/<engine>` are created together, the index
  only if it does not exist (`create_revision == 0`); closing deletes the index in the same transaction;
- journal: the per-incident head key holds the last seq and the highest fencing token; an append compares the
  head's mod_revision, so the seq and the stale-token refusal (LeaseLost) are decided on what is stored;
- audit: the chain head is compared (mod_revision) and rewritten with the entry, so two writers never fork it;
- leases, as patroni's etcd3 leader lock (etcd_lease.py): the key is created only if absent and exists exactly
  while its etcd lease lives, so expiry is etcd's TTL on etcd's clock and no host compares wall clocks; the fencing
  token is the key's create revision; renewal is a compare-and-set on it plus a keepalive;
- the outbox (etcd_outbox.py): a claim is a key on an etcd lease, expiring on etcd's clock too;
- state documents: the version is the key's etcd `version` (1 on creation, +1 per put); CAS compares it.

A write that got no answer (a member died mid-request) is settled by reading back a key it wrote, whose value is
unique to that attempt: applied, or not applied and retried. See `EtcdClient.commit`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.errors import LeaseLost, StoreError
from orchestrator.store import etcd_arrivals as arrivals
from orchestrator.store import etcd_layout as layout
from orchestrator.store import etcd_obs as obs
from orchestrator.store.base import Conflict, NotFound, ObservationRow, StateStore
from orchestrator.store.etcd_arrivals import EtcdArrivals
from orchestrator.store.etcd_client import (
    CALL_WINDOW,
    DEFAULT_PREFIX,
    KV,
    READ_TIMEOUT,
    EtcdClient,
    created_at,
    delete_op,
    exists,
    get_op,
    modified_at,
    parse_url,
    prefix_end,
    put_op,
    serialised,
    txn_op,
    unmodified_since,
    value_is,
    version_is,
)
from orchestrator.store.etcd_lease import EtcdLeases
from orchestrator.store.etcd_outbox import EtcdOutbox
from orchestrator.store.records import (
    GENESIS_HASH,
    AuditEntry,
    AuditHead,
    AuditRow,
    Incident,
    JournalEntry,
    JournalState,
)

__all__ = ["EtcdStore", "open_url"]

MAX_ATTEMPTS = 64  # compare-and-set rounds before a hook gives up with Conflict (others kept writing)

def open_url(url: str) -> EtcdStore:
    """`etcd://host:port,host:port[/prefix]`; ConfigError for a URL we cannot read, StoreError if no member
    answers or the prefix holds something else."""
    address = parse_url(url)
    return EtcdStore(address.endpoints, address.prefix, url=url)


class EtcdStore(EtcdLeases, StateStore, EtcdOutbox, EtcdArrivals):
    """A StateStore on an etcd cluster (3.4 or later) through its JSON gateway."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        prefix: str = DEFAULT_PREFIX,
        *,
        url: str | None = None,
        read_timeout: float = READ_TIMEOUT,
        window: float = CALL_WINDOW,
    ) -> None:
        self._etcd = EtcdClient(endpoints, read_timeout=read_timeout, window=window)
        super().__init__(url or f"etcd://{self._etcd.names}{prefix}")
        self.keys = layout.Layout(prefix)
        self._lock = threading.RLock()
        # What this object last wrote or read of the hot keys; a stale entry only costs one failed compare.
        self._pairs: tuple[obs.Spans, int] | None = None
        self._obs_seq: tuple[int, int] | None = None  # the last batch number and its key's mod revision
        self._journal_heads: dict[str, layout.JournalHead] = {}
        self._audit_head: tuple[AuditHead | None, int] | None = None
        try:
            self._check_schema()
        except BaseException:
            self._etcd.close()
            raise

    @property
    def current_member(self) -> str:
        """The member the next request goes to (it changes when one stops answering)."""
        return self._etcd.current

    # --- plumbing -------------------------------------------------------------------------------------------------

    def _gave_up(self, what: str) -> Conflict:
        return Conflict(f"etcd {self._etcd.names}: {what}: other writers kept changing it ({MAX_ATTEMPTS} attempts)")

    def _check_schema(self) -> None:
        """Claim the prefix on first use; refuse one that holds another schema (or another program's keys)."""
        with self._lock:
            for _ in range(MAX_ATTEMPTS):
                kv = self._etcd.get(self.keys.schema)
                if kv is None:
                    self._etcd.commit([created_at(self.keys.schema, 0)], [put_op(self.keys.schema, layout.SCHEMA)], [])
                    continue
                if kv.value != layout.SCHEMA:
                    found, wanted = kv.value[:20].decode(errors="replace"), layout.SCHEMA.decode()
                    raise StoreError(f"state store {self.url}: schema {found!r} is not the supported {wanted!r}")
                return
            raise self._gave_up("schema")

    def _close(self) -> None:
        self._etcd.close()

    # --- observations ---------------------------------------------------------------------------------------------

    def _read_pairs(self, revision: int = 0) -> tuple[obs.Spans, int, int]:
        """The pairs document, its mod revision (0: absent) and the revision the read saw."""
        kv, seen = self._etcd.read(self.keys.obs_pairs, revision)
        return obs.decode_pairs(kv), (kv.mod_revision if kv else 0), seen

    @serialised
    def _insert_observations(self, rows: Sequence[ObservationRow]) -> None:
        batch = uuid.uuid4().hex.encode()
        parts = obs.split_batch(rows)
        docs = [(obs.bucket_key(self.keys.obs, bucket) + batch, obs.encode_rows(part))
                for bucket, part in sorted(parts.items())]
        obs.check_size(docs, len(rows))
        spans = obs.spans_of(rows)
        for _ in range(MAX_ATTEMPTS):
            known, revision = self._pairs or self._read_pairs()[:2]
            seq, seq_revision = self._obs_seq or arrivals.decode_seq(self._etcd.get(self.keys.obs_seq))
            merged = obs.merge_spans(known, spans)
            success = [put_op(key, value) for key, value in docs]
            success += [put_op(self.keys.obs_seq, layout.dump({"seq": seq + 1})),
                        put_op(self.keys.obs_arrival(seq + 1), arrivals.encode_arrival(batch, parts))]
            if merged is not None:
                success.append(put_op(self.keys.obs_pairs, obs.encode_pairs(merged, uuid.uuid4().hex)))
            result = self._etcd.commit(
                [modified_at(self.keys.obs_pairs, revision), modified_at(self.keys.obs_seq, seq_revision)], success,
                [get_op(self.keys.obs_pairs), get_op(self.keys.obs_seq)], docs[0]
            )
            self._pairs, self._obs_seq = None, None
            if result.succeeded:
                if result.responses is not None:
                    self._pairs = (known, revision) if merged is None else (merged, result.revision)
                    self._obs_seq = seq + 1, result.revision
                return
            if result.known:
                kv = result.first(0)
                self._pairs = obs.decode_pairs(kv), (kv.mod_revision if kv else 0)
                self._obs_seq = arrivals.decode_seq(result.first(1))
        raise self._gave_up("observations")

    @serialised
    def _select_observations(self, since: float, subjects: Sequence[str] | None) -> list[ObservationRow]:
        wanted = None if subjects is None else set(subjects)

        def keep(row: ObservationRow) -> bool:
            return row[0] >= since and (wanted is None or row[1] in wanted)

        docs = self._etcd.scan(obs.bucket_key(self.keys.obs, obs.bucket_of(since)), self.keys.obs_end)
        return [row for _, row in obs.ordered_rows(docs, keep)]

    @serialised
    def _select_latest_observations(self, limit: int, since: float | None) -> list[ObservationRow]:
        spans, _, revision = self._read_pairs()
        scan = obs.LatestScan(limit, since, spans)
        start = self.keys.obs if since is None else obs.bucket_key(self.keys.obs, obs.bucket_of(since))
        for doc in self._etcd.scan(start, self.keys.obs_end, revision=revision, descend=True):
            scan.feed(self.keys.obs, doc)
            if scan.done:
                break
        return scan.result()

    @serialised
    def _delete_observations(self, before: float) -> int:
        directory, bucket = self.keys.obs, obs.bucket_of(before)
        low, high = obs.bucket_key(directory, bucket), obs.bucket_key(directory, bucket + 1)
        for _ in range(MAX_ATTEMPTS):
            known, pairs_revision, revision = self._read_pairs()
            gone = sum(len(obs.decode_rows(kv)) for kv in self._etcd.scan(directory, low, revision=revision))
            success = [delete_op(directory, low)]
            kept_pairs: set[tuple[str, str]] = set()
            for kv in self._etcd.scan(low, high, revision=revision):
                old = obs.decode_rows(kv)
                kept = [row for row in old if row[0] >= before]
                kept_pairs.update((row[1], row[2]) for row in kept)
                if len(kept) < len(old):
                    gone += len(old) - len(kept)
                    success.append(put_op(kv.key, obs.encode_rows(kept)) if kept else delete_op(kv.key))
            pruned = obs.prune_spans(known, bucket, kept_pairs)
            if not gone and pruned == known:
                return 0
            if len(success) > obs.MAX_DOCS_PER_WRITE:
                raise StoreError(f"etcd {self._etcd.names}: too many observation documents around {before} to prune "
                                 "in one transaction; prune at a time further from the newest cycle")
            success += self._prune_arrivals(bucket)
            value = obs.encode_pairs(pruned, uuid.uuid4().hex)
            success.append(put_op(self.keys.obs_pairs, value))
            compare = [modified_at(self.keys.obs_pairs, pairs_revision), unmodified_since(directory, high, revision)]
            result = self._etcd.commit(compare, success, [], (self.keys.obs_pairs, value))
            self._pairs = None
            if result.succeeded:
                return gone
        raise self._gave_up("observation pruning")

    def _prune_arrivals(self, bucket: int) -> list[dict[str, Any]]:
        """A range delete of the oldest arrival entries whose documents all lie before `bucket` (being pruned);
        it stops at the first entry naming a bucket that stays, so it costs only what is pruned, and never reaches
        past the last entry it read (a batch arriving meanwhile keeps its entry)."""
        end = None
        for kv in self._etcd.scan(self.keys.obs_arrivals, self.keys.obs_arrivals_end):
            if max(arrivals.decode_arrival(kv)[1], default=bucket) >= bucket:
                end = kv.key
                break
            end = kv.key + b"\0"
        return [] if end is None else [delete_op(self.keys.obs_arrivals, end)]

    # --- incidents ------------------------------------------------------------------------------------------------

    @serialised
    def _insert_incident(self, incident: Incident) -> None:
        key, value = self.keys.incident(incident.id), layout.dump_incident(incident)
        compare, success, failure = [created_at(key, 0)], [put_op(key, value)], [get_op(key, keys_only=True)]
        if incident.is_open:
            index = self.keys.open_incident(incident.engine)
            compare.append(created_at(index, 0))
            success.append(put_op(index, incident.id.encode()))
            failure.append(get_op(index))
        for _ in range(MAX_ATTEMPTS):
            result = self._etcd.commit(compare, success, failure, (key, value))
            if result.succeeded:
                return
            if not result.known:
                continue
            if result.first(0) is not None:
                raise Conflict(f"incident {incident.id} already exists")
            holder = result.first(1)
            if holder is not None:
                other = holder.value.decode(errors="replace")
                raise Conflict(f"engine {incident.engine} already has an open incident: {other}")
        raise self._gave_up(f"incident {incident.id}")

    @serialised
    def _update_incident(self, incident_id: str, change: Callable[[Incident], Incident]) -> Incident:
        key = self.keys.incident(incident_id)
        kv = self._etcd.get(key)
        for _ in range(MAX_ATTEMPTS):
            if kv is None:
                raise NotFound(f"no incident {incident_id!r} in {self.url}")
            old = layout.load_incident(kv)
            new = change(old)
            value = layout.dump_incident(new)
            success = [put_op(key, value)]
            if old.is_open and not new.is_open:  # free the engine's slot, if it is still this incident's
                index = self.keys.open_incident(old.engine)
                success.append(txn_op([value_is(index, old.id.encode())], [delete_op(index)]))
            result = self._etcd.commit([modified_at(key, kv.mod_revision)], success, [get_op(key)], (key, value))
            if result.succeeded:
                return new
            kv = result.first(0) if result.known else self._etcd.get(key)
        raise self._gave_up(f"incident {incident_id}")

    @serialised
    def _select_incident(self, incident_id: str) -> Incident | None:
        kv = self._etcd.get(self.keys.incident(incident_id))
        return None if kv is None else layout.load_incident(kv)

    @serialised
    def _select_incidents(self, engine: str | None, open_only: bool, limit: int | None) -> list[Incident]:
        if open_only:  # the open index is small (one key per engine with an open incident): no full scan
            if engine is None:
                index = list(self._etcd.scan(self.keys.open_dir, prefix_end(self.keys.open_dir)))
                revision = 0
            else:
                kv, revision = self._etcd.read(self.keys.open_incident(engine))
                index = [] if kv is None else [kv]
            found = [self._etcd.read(self.keys.incident(kv.value.decode()), revision)[0] for kv in index]
            incidents = [layout.load_incident(kv) for kv in found if kv is not None]
            incidents = [i for i in incidents if i.is_open]
        else:
            every = self._etcd.scan(self.keys.incidents, self.keys.incidents_end)
            incidents = [layout.load_incident(kv) for kv in every]
        if engine is not None:
            incidents = [i for i in incidents if i.engine == engine]
        incidents.sort(key=lambda i: (i.opened_at, i.id), reverse=True)
        return incidents if limit is None else incidents[:limit]

    # --- journal --------------------------------------------------------------------------------------------------

    @serialised
    def _append_journal(
        self, incident_id: str, step: str, state: JournalState, at: float, detail: dict[str, Any], token: int
    ) -> JournalEntry:
        incident_key, head_key = self.keys.incident(incident_id), self.keys.journal_head(incident_id)
        head = self._journal_heads.pop(incident_id, None) or layout.load_journal_head(self._etcd.get(head_key))
        for _ in range(MAX_ATTEMPTS):
            if token < head.token:
                raise LeaseLost(
                    f"incident {incident_id}: fencing token {token} is older than {head.token}: "
                    "another leader has taken over this runbook"
                )
            entry = JournalEntry(incident_id, head.seq + 1, at, step, state, detail, token)
            entry_key, value = self.keys.journal_entry(incident_id, entry.seq), layout.dump_journal_entry(entry)
            top = max(head.token, token)
            result = self._etcd.commit(
                [exists(incident_key), modified_at(head_key, head.revision), created_at(entry_key, 0)],
                [put_op(entry_key, value), put_op(head_key, layout.dump({"seq": entry.seq, "token": top}))],
                [get_op(incident_key, keys_only=True), get_op(head_key)],
                (entry_key, value),
            )
            if result.succeeded:
                self._journal_heads[incident_id] = layout.JournalHead(entry.seq, top, result.revision)
                return entry
            if result.known and result.first(0) is None:
                raise NotFound(f"no incident {incident_id!r} in {self.url}")
            head = layout.load_journal_head(result.first(1) if result.known else self._etcd.get(head_key))
        raise self._gave_up(f"journal of {incident_id}")

    @serialised
    def _select_journal(self, incident_id: str) -> list[JournalEntry]:
        directory = self.keys.journal_dir(incident_id)
        return [layout.load_journal_entry(incident_id, kv) for kv in self._etcd.scan(directory, prefix_end(directory))]

    # --- audit ----------------------------------------------------------------------------------------------------

    @serialised
    def _append_audit(self, make_entry: Callable[[int, str], AuditEntry]) -> AuditEntry:
        head_key = self.keys.audit_head
        head, revision = self._audit_head or layout.load_audit_head(self._etcd.get(head_key))
        self._audit_head = None
        for _ in range(MAX_ATTEMPTS):
            last_seq, last_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
            entry = make_entry(last_seq + 1, last_hash)
            entry_key, value = self.keys.audit_entry(entry.seq), layout.dump_audit_entry(entry)
            result = self._etcd.commit(
                [modified_at(head_key, revision), created_at(entry_key, 0)],
                [put_op(entry_key, value), put_op(head_key, layout.dump({"seq": entry.seq, "hash": entry.hash}))],
                [get_op(head_key)],
                (entry_key, value),
            )
            if result.succeeded:
                self._audit_head = AuditHead(entry.seq, entry.hash), result.revision
                return entry
            head, revision = layout.load_audit_head(result.first(0) if result.known else self._etcd.get(head_key))
        raise self._gave_up("audit log")

    @serialised
    def _load_audit(self, after_seq: int | None) -> tuple[AuditHead | None, list[AuditRow]]:
        head_kv, revision = self._etcd.read(self.keys.audit_head)
        head = layout.read_audit_head(head_kv)
        if after_seq is None:
            return head, []
        start = self.keys.audit_entry(after_seq + 1) if after_seq >= 0 else self.keys.audit_dir
        rows = [layout.load_audit_row(self.keys.audit_dir, kv)
                for kv in self._etcd.scan(start, self.keys.audit_end, revision=revision)]
        return head, rows

    # --- controller state -----------------------------------------------------------------------------------------

    @serialised
    def _select_state(self, key: str) -> tuple[str, int] | None:
        kv = self._etcd.get(self.keys.state(key))
        return None if kv is None else (kv.value.decode(errors="replace"), kv.version)

    @serialised
    def _put_state(self, key: str, value_json: str, expected_version: int | None) -> int:
        state_key, value = self.keys.state(key), value_json.encode()
        expected = 0 if expected_version is None else expected_version
        if expected < 1 and expected_version is not None:  # etcd says version 0 for "absent": never a match here
            raise self._state_conflict(key, expected_version, self._etcd.get(state_key))
        for _ in range(MAX_ATTEMPTS):
            result = self._etcd.commit(
                [version_is(state_key, expected)], [put_op(state_key, value)], [get_op(state_key)], (state_key, value)
            )
            if result.succeeded:
                return result.confirmed.version if result.confirmed else expected + 1
            if result.known:
                raise self._state_conflict(key, expected_version, result.first(0))
        raise self._gave_up(f"state {key!r}")

    @staticmethod
    def _state_conflict(key: str, expected_version: int | None, kv: KV | None) -> Conflict:
        found = None if kv is None else kv.version
        return Conflict(f"state {key!r}: expected version {expected_version}, found {found}: someone else wrote it")
