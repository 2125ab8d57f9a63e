"""Where the etcd store keeps what, and how each record is spelled as a value. Pure: no I/O.

Every key lives under the store's prefix (default `/failover`), so several stores can share one cluster:

    <p>/schema                    "1": written once; a prefix holding something else is refused
    <p>/obs/<bucket>/<uuid>       a batch's observations of one 10 s bucket (see etcd_obs)
    <p>/obs-pairs                 the (subject, source) pairs and their bucket spans
    <p>/obs-seq                   {"seq": last batch}: the CAS point of observation batches (arrival order)
    <p>/obs-arr/<seq>             {"batch": uuid, "buckets": [...]}: where batch <seq>'s documents are
    <p>/hb/<identity>             {"wall", "detail"}: a writer's last heartbeat; arrival = the key's mod_revision
    <p>/inc/<incident id>         one incident, JSON
    <p>/open/<engine>             the id of the engine's incident that is not closed (exists iff there is one)
    <p>/jrn/<incident id>/<seq>   one journal entry, seq zero-padded so that key order is seq order
    <p>/jrn-head/<incident id>    {"seq": last seq, "token": highest fencing token}: the CAS point of appends
    <p>/audit/<seq>               one audit entry
    <p>/audit-head                {"seq", "hash"}: the chain head, the CAS point of appends
    <p>/lease/<name>              {"holder", "expires_at", "ttl", "w"} on an etcd lease; token = create revision
    <p>/state/<key>               a controller document; its etcd `version` is the document's version
    <p>/outbox-seq                {"id": last id}: the CAS point of enqueues (ids only grow)
    <p>/outbox/<p|d|a>/<id>       one notification, under its status (pending, delivered, abandoned)
    <p>/outbox-claim/<id>         {"holder", "until", "w"} on an etcd lease: exists exactly while the claim lives

Values are the canonical JSON of records.py, so a human with etcdctl can read them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import StoreError
from orchestrator.store.audit_chain import Tampered, head_problem
from orchestrator.store.etcd_client import KV, prefix_end
from orchestrator.store.records import (
    AuditEntry,
    AuditHead,
    AuditRow,
    Incident,
    IncidentStatus,
    JournalEntry,
    JournalState,
    Lease,
    canonical_json,
    strict_json,
)

SCHEMA = b"1"
_SEQ_DIGITS = 12


class Layout:
    """The keys of one store, as bytes (etcd keys are bytes; names are UTF-8)."""

    def __init__(self, prefix: str) -> None:
        self.root = prefix.encode()
        self.schema = self.root + b"/schema"
        self.obs = self.root + b"/obs/"
        self.obs_end = prefix_end(self.obs)
        self.obs_pairs = self.root + b"/obs-pairs"
        self.obs_seq = self.root + b"/obs-seq"
        self.obs_arrivals = self.root + b"/obs-arr/"
        self.obs_arrivals_end = prefix_end(self.obs_arrivals)
        self.heartbeats = self.root + b"/hb/"
        self.incidents = self.root + b"/inc/"
        self.incidents_end = prefix_end(self.incidents)
        self.open_dir = self.root + b"/open/"
        self.audit_dir = self.root + b"/audit/"
        self.audit_end = prefix_end(self.audit_dir)
        self.audit_head = self.root + b"/audit-head"

    def obs_arrival(self, seq: int) -> bytes:
        return self.obs_arrivals + f"{seq:0{_SEQ_DIGITS}d}".encode()

    def heartbeat(self, identity: str) -> bytes:
        return self.heartbeats + identity.encode()

    def incident(self, incident_id: str) -> bytes:
        return self.incidents + incident_id.encode()

    def open_incident(self, engine: str) -> bytes:
        return self.open_dir + engine.encode()

    def journal_dir(self, incident_id: str) -> bytes:
        return self.root + b"/jrn/" + incident_id.encode() + b"/"

    def journal_entry(self, incident_id: str, seq: int) -> bytes:
        return self.journal_dir(incident_id) + f"{seq:0{_SEQ_DIGITS}d}".encode()

    def journal_head(self, incident_id: str) -> bytes:
        return self.root + b"/jrn-head/" + incident_id.encode()

    def audit_entry(self, seq: int) -> bytes:
        return self.audit_dir + f"{seq:0{_SEQ_DIGITS}d}".encode()

    def lease(self, name: str) -> bytes:
        return self.root + b"/lease/" + name.encode()

    def state(self, key: str) -> bytes:
        return self.root + b"/state/" + key.encode()

    @property
    def outbox_seq(self) -> bytes:
        return self.root + b"/outbox-seq"

    def outbox_dir(self, status: str) -> bytes:
        """The directory of one status: `p`, `d` or `a` (the status's first letter)."""
        return self.root + b"/outbox/" + status[0].encode() + b"/"

    def outbox_item(self, status: str, item_id: int) -> bytes:
        return self.outbox_dir(status) + f"{item_id:0{_SEQ_DIGITS}d}".encode()

    @property
    def outbox_claims(self) -> bytes:
        return self.root + b"/outbox-claim/"

    def outbox_claim(self, item_id: int) -> bytes:
        return self.outbox_claims + f"{item_id:0{_SEQ_DIGITS}d}".encode()


def dump(value: Any) -> bytes:
    return canonical_json(value).encode()


def load(kv: KV, what: str) -> dict[str, Any]:
    """A stored JSON object; StoreError naming the key if it is anything else (corruption, or someone else's key)."""
    try:
        loaded = json.loads(kv.value)
    except ValueError as error:
        raise StoreError(f"etcd key {kv.key.decode(errors='replace')}: {what} is not JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise StoreError(f"etcd key {kv.key.decode(errors='replace')}: {what} is not a JSON object")
    return loaded


def _field(doc: dict[str, Any], kv: KV, what: str, name: str, kind: type | tuple[type, ...]) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise StoreError(f"etcd key {kv.key.decode(errors='replace')}: {what} has no valid {name!r}")
    return value


# --- incidents ----------------------------------------------------------------------------------------------------


def dump_incident(incident: Incident) -> bytes:
    return dump({
        "id": incident.id, "engine": incident.engine, "opened_at": incident.opened_at, "status": incident.status,
        "kind": incident.kind, "source": incident.source, "target": incident.target, "reason": incident.reason,
        "updated_at": incident.updated_at, "closed_at": incident.closed_at, "detail": dict(incident.detail),
    })


def load_incident(kv: KV) -> Incident:
    doc = load(kv, "incident")
    try:
        closed_at = doc["closed_at"]
        return Incident(
            id=str(doc["id"]), engine=str(doc["engine"]), opened_at=float(doc["opened_at"]),
            status=IncidentStatus(doc["status"]), kind=str(doc["kind"]), source=doc["source"],
            target=doc["target"], reason=str(doc["reason"]), updated_at=float(doc["updated_at"]),
            closed_at=None if closed_at is None else float(closed_at),
            detail=_field(doc, kv, "incident", "detail", dict),
        )
    except (KeyError, ValueError, TypeError) as error:
        raise StoreError(f"etcd key {kv.key.decode(errors='replace')}: corrupt incident: {error}") from None


# --- journal ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalHead:
    """The last seq and the highest fencing token of one incident's journal, with the head key's mod revision."""

    seq: int = 0
    token: int = 0
    revision: int = 0  # 0: the head key does not exist yet


def dump_journal_entry(entry: JournalEntry) -> bytes:
    return dump({"seq": entry.seq, "at": entry.at, "step": entry.step, "state": entry.state,
                 "detail": dict(entry.detail), "token": entry.token})


def load_journal_entry(incident_id: str, kv: KV) -> JournalEntry:
    doc = load(kv, "journal entry")
    try:
        return JournalEntry(incident_id, int(doc["seq"]), float(doc["at"]), str(doc["step"]),
                            JournalState(doc["state"]), _field(doc, kv, "journal entry", "detail", dict),
                            int(doc["token"]))
    except (KeyError, ValueError, TypeError) as error:
        raise StoreError(f"etcd key {kv.key.decode(errors='replace')}: corrupt journal entry: {error}") from None


def load_journal_head(kv: KV | None) -> JournalHead:
    if kv is None:
        return JournalHead()
    doc = load(kv, "journal head")
    return JournalHead(_field(doc, kv, "journal head", "seq", int), _field(doc, kv, "journal head", "token", int),
                       kv.mod_revision)


# --- audit --------------------------------------------------------------------------------------------------------


def dump_audit_entry(entry: AuditEntry) -> bytes:
    return dump({"seq": entry.seq, "at": entry.at, "actor": entry.actor, "action": entry.action,
                 "detail": dict(entry.detail), "prev_hash": entry.prev_hash, "hash": entry.hash})


def load_audit_row(directory: bytes, kv: KV) -> AuditRow:
    """The entry as stored, each field as found (verification checks their kinds). Never raises: an entry that
    cannot even be split into fields becomes a row whose `problem` names it, reported at its seq."""
    seq_text = kv.key[len(directory) :].decode(errors="replace")
    seq = int(seq_text) if seq_text.isdigit() else 0
    try:
        doc = strict_json(kv.value)
    except ValueError as error:
        return _unreadable_row(seq, f"entry {seq}: the stored entry is not JSON: {error}")
    if not isinstance(doc, dict):
        return _unreadable_row(seq, f"entry {seq}: the stored entry is not a JSON object")
    detail = doc.get("detail")
    return AuditRow(doc.get("seq"), doc.get("at"), doc.get("actor"), doc.get("action"),  # type: ignore[arg-type]
                    None if detail is None else canonical_json(detail),  # type: ignore[arg-type]
                    doc.get("prev_hash"), doc.get("hash"))  # type: ignore[arg-type]


def _unreadable_row(seq: int, problem: str) -> AuditRow:
    return AuditRow(seq, 0.0, "", "", "", "", "", problem)


def load_audit_head(kv: KV | None) -> tuple[AuditHead | None, int]:
    """The head and its mod revision (0 when there is none yet). Tampered if it is not a head record."""
    head = read_audit_head(kv)
    if head is not None and head_problem(head):
        raise Tampered(f"etcd key {kv.key.decode(errors='replace') if kv else ''}: {head_problem(head)}")
    return head, (kv.mod_revision if kv else 0)


def read_audit_head(kv: KV | None) -> AuditHead | None:
    """The head as stored, its fields as found, for verification to judge. Tampered only if it is not even a
    JSON object."""
    if kv is None:
        return None
    try:
        doc = strict_json(kv.value)
    except ValueError as error:
        raise Tampered(f"the stored head is corrupt: not JSON ({error})") from None
    if not isinstance(doc, dict):
        raise Tampered("the stored head is corrupt: not a JSON object")
    return AuditHead(doc.get("seq"), doc.get("hash"))  # type: ignore[arg-type]


# --- leases -------------------------------------------------------------------------------------------------------


def dump_lease(holder: str, expires_at: float, ttl: float, nonce: str) -> bytes:
    """`expires_at` is the holder's clock plus `ttl`, for a human with etcdctl: expiry itself is the etcd lease's.
    `nonce` makes every write unique, so that a write whose answer was lost can be recognised by reading back."""
    return dump({"holder": holder, "expires_at": expires_at, "ttl": ttl, "w": nonce})


def load_lease(name: str, kv: KV) -> Lease:
    """The lease the key describes; its token is the key's create revision, its expires_at the holder's (display)."""
    doc = load(kv, "lease")
    expires_at = _field(doc, kv, "lease", "expires_at", (int, float))
    return Lease(name, _field(doc, kv, "lease", "holder", str), kv.create_revision, float(expires_at))


def lease_ttl(kv: KV) -> float | None:
    """The TTL the holder asked for when it last wrote the key (None for a key written before it was recorded)."""
    ttl = load(kv, "lease").get("ttl")
    return float(ttl) if isinstance(ttl, int | float) and not isinstance(ttl, bool) else None
