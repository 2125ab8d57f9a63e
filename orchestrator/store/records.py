"""What the state store holds: frozen records, and the pure helpers every backend shares.

Times are floats: seconds since the Unix epoch, UTC, always passed in by the caller (the daemon's wall clock, the
simulator's virtual one) — except lease expiry, which the store measures on its own clock.

The helpers here are the part of "serialisation" that must be identical across backends, because two backends
(or two versions of one) must agree byte for byte: the canonical JSON that the audit hash covers, the normalised
form of a `detail` mapping, the refusal of anything that looks like a secret, and the incident id format.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from orchestrator.core.runbook import StepState
from orchestrator.errors import StoreError

GENESIS_HASH = "0" * 64
"""`prev_hash` of the first audit entry."""


class IncidentStatus(StrEnum):
    """Where an incident stands. Every status but `closed` counts as open: at most one per engine."""

    OPEN = "open"
    PROPOSED = "proposed"
    RUNNING = "running"
    NEEDS_HUMAN = "needs_human"
    CLOSED = "closed"


JournalState = StepState
"""What happened to one runbook step: the core's step-machine states (started, done, failed, ...)."""


@dataclass(frozen=True, slots=True)
class Incident:
    """One failure of one engine, from detection to the end of its runbook. `detail` is JSON; do not mutate it."""

    id: str
    engine: str
    opened_at: float
    status: IncidentStatus
    kind: str
    source: str | None
    target: str | None
    reason: str
    updated_at: float
    closed_at: float | None
    detail: Mapping[str, Any]

    @property
    def is_open(self) -> bool:
        return self.status is not IncidentStatus.CLOSED


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One line of an incident's runbook journal. `token` is the fencing token of the writer's lease."""

    incident_id: str
    seq: int
    at: float
    step: str
    state: JournalState
    detail: Mapping[str, Any]
    token: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One link of the append-only audit chain: `hash` covers every other field, `prev_hash` included."""

    seq: int
    at: float
    actor: str
    action: str
    detail: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The last seq and hash, stored apart from the entries so that a deleted tail is detectable."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit entry as stored, `detail` still JSON text: verification must survive a row edited into garbage."""

    seq: int
    at: float
    actor: str
    action: str
    detail_json: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The outcome of `verify_audit`. `problem` is one sentence, empty when `ok`."""

    ok: bool
    entries: int
    first_bad_seq: int | None
    problem: str


@dataclass(frozen=True, slots=True)
class Lease:
    """A named lock held by `holder` until `expires_at` (store clock). `token` only grows, per lease name."""

    name: str
    holder: str
    token: int
    expires_at: float


# --- validation and normalisation -------------------------------------------------------------------------------

_SECRET_KEY = re.compile(
    r"(^|_)(password|passwd|passphrase|secret|token|private_?key|credentials?|api_?key|access_?key|auth"
    r"|authorization|bearer|cookie)($|_)"
)
# Names that match the pattern above but are known to hold no secret. Fencing tokens are counters, not credentials.
_NOT_SECRET_KEYS = frozenset({"fencing_token", "lease_token", "token_count", "auth_method"})
_SECRET_VALUE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|^Bearer\s+\S|\bAKIA[0-9A-Z]{16}\b")


# Where a secret lives is not a secret: `control_token_file`, `token_env`.
_NOT_SECRET_SUFFIXES = ("_file", "_path", "_env")


def _looks_secret_key(key: str) -> bool:
    norm = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower().replace("-", "_")
    if norm in _NOT_SECRET_KEYS or norm.endswith(_NOT_SECRET_SUFFIXES):
        return False
    return _SECRET_KEY.search(norm) is not None


def refuse_secrets(value: Any, where: str, path: str = "") -> None:
    """Raise StoreError if `value` holds a key or a string that looks like a secret.

    The store keeps everything forever (the audit log cannot even be edited), so a secret that gets in cannot be
    taken out. Better to refuse the write loudly and let the caller drop the field.
    """
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise StoreError(f"{where}: key {path}{key!r} is not a string")
            if _looks_secret_key(key):
                raise StoreError(f"{where}: refusing key {path}{key!r}: it looks like a secret")
            refuse_secrets(item, where, f"{path}{key}.")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            refuse_secrets(item, where, f"{path}{index}.")
    elif isinstance(value, str) and _SECRET_VALUE.search(value):
        raise StoreError(f"{where}: refusing value at {path.rstrip('.') or 'top'}: it looks like a secret")


def canonical_json(value: Any) -> str:
    """The one JSON spelling of a value: sorted keys, no spaces, UTF-8, no NaN. The audit hash covers this."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def normalise_detail(detail: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """Check a `detail` mapping (JSON only, no secrets) and return it as it will read back from the store.

    Tuples become lists and keys are sorted now, not on the next read, so that the record a write returns equals
    the record a later read returns — and hashes computed at write time still hold at verify time.
    """
    if detail is None:
        return {}
    if not isinstance(detail, Mapping):
        raise StoreError(f"{where}: detail must be a mapping, not {type(detail).__name__}")
    refuse_secrets(detail, where)
    try:
        loaded: dict[str, Any] = json.loads(canonical_json(dict(detail)))
    except (TypeError, ValueError) as error:
        raise StoreError(f"{where}: detail is not plain JSON: {error}") from None
    return loaded


def load_detail(text: str, where: str) -> dict[str, Any]:
    """Parse a stored `detail`; a row that is not a JSON object is corruption, reported as a StoreError."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise StoreError(f"{where}: stored detail is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise StoreError(f"{where}: stored detail is not a JSON object")
    return value


def check_time(at: float, what: str) -> float:
    """Epoch seconds: a finite, non-negative number. A bool or a datetime here is a caller's bug."""
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or at < 0:
        raise StoreError(f"{what} must be epoch seconds (a finite number >= 0), got {at!r}")
    return float(at)


def check_name(value: str, what: str) -> str:
    """A non-empty single-line string: names end up in ids, keys and one-line messages."""
    if not isinstance(value, str) or not value or value != value.strip() or "\n" in value:
        raise StoreError(f"{what} must be a non-empty one-line string without edge spaces, got {value!r}")
    return value


def check_duration(seconds: float, what: str) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < math.inf:
        raise StoreError(f"{what} must be a positive number of seconds, got {seconds!r}")
    return float(seconds)


# --- ids and hashes ---------------------------------------------------------------------------------------------


def new_incident_id(engine: str, at: float) -> str:
    """`INC-20221218-030012-spot-ab12`: sorts by opening time (UTC), names the engine, and a random suffix keeps
    two incidents of one engine opened in the same second apart."""
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", engine).strip("_") or "engine"
    return f"INC-{stamp}-{slug}-{secrets.token_hex(2)}"


def audit_hash(seq: int, at: float, actor: str, action: str, detail: Mapping[str, Any], prev_hash: str) -> str:
    """sha256 over the canonical JSON of `[seq, at, actor, action, detail, prev_hash]`, hex."""
    payload = canonical_json([seq, at, actor, action, dict(detail), prev_hash])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def verify_chain(head: AuditHead | None, rows: list[AuditRow]) -> AuditReport:
    """Walk the chain from genesis; the first broken link names the first bad seq.

    Catches an edited row (its hash no longer matches its content), a deleted or reordered row (a seq gap, or a
    `prev_hash` that is not the previous row's hash), and a deleted tail (the separately stored head points past
    the last row). It cannot catch a rewrite of the whole chain and its head: publish `audit_head()` elsewhere
    (a notification, a ticket) to anchor it.
    """
    prev_hash, expected = GENESIS_HASH, 1
    for row in rows:
        problem = _check_link(row, expected, prev_hash)
        if problem:
            return AuditReport(False, len(rows), expected, problem)
        prev_hash, expected = row.hash, expected + 1
    last = expected - 1
    if head is None:
        if last:
            return AuditReport(False, len(rows), 1, f"the audit head is missing while {last} entries exist")
        return AuditReport(True, 0, None, "")
    if head.seq > last:
        return AuditReport(
            False, len(rows), last + 1, f"entries {last + 1}..{head.seq} are missing: the tail was deleted"
        )
    if head.seq < last:
        return AuditReport(False, len(rows), head.seq + 1, f"entries after the head (seq {head.seq}) were added")
    if head.hash != prev_hash:
        return AuditReport(False, len(rows), last, f"entry {last}: its hash does not match the stored head")
    return AuditReport(True, len(rows), None, "")


def _check_link(row: AuditRow, expected: int, prev_hash: str) -> str:
    if row.seq != expected:
        return f"entry {expected} is missing (next stored entry is {row.seq}): deleted or reordered"
    try:
        detail = load_detail(row.detail_json, f"audit entry {row.seq}")
    except StoreError as error:
        return str(error)
    if audit_hash(row.seq, row.at, row.actor, row.action, detail, row.prev_hash) != row.hash:
        return f"entry {row.seq}: its hash does not match its content: the entry was edited"
    if row.prev_hash != prev_hash:
        return f"entry {row.seq}: prev_hash does not match entry {row.seq - 1}: the chain was altered"
    return ""
