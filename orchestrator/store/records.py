"""What the state store holds: frozen records, and the pure helpers every backend shares.

Times are floats: seconds since the Unix epoch, UTC, always passed in by the caller (the daemon's wall clock, the
simulator's virtual one) — except lease expiry, which the store measures on its own clock (see Lease).

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from orchestrator.core.model import Observation, Status
from orchestrator.core.runbook import StepState
from orchestrator.errors import EXIT_BAD_INPUT, EXIT_UNSAFE, StoreError

GENESIS_HASH = "0" * 64
"""`prev_hash` of the first audit entry."""


class NotFound(StoreError):
    """The incident (or other record) asked for does not exist. Usually a mistyped id on the command line."""

    exit_code = EXIT_BAD_INPUT


class Conflict(StoreError):
    """A compare-and-set lost, or a uniqueness rule refused a write: someone else acted first. Re-read, re-decide."""

    exit_code = EXIT_UNSAFE


class IncidentStatus(StrEnum):
    """Where an incident stands. Every status but `closed` counts as open: at most one per engine."""

    OPEN = "open"
    PROPOSED = "proposed"
    RUNNING = "running"
    NEEDS_HUMAN = "needs_human"
    CLOSED = "closed"


JournalState = StepState
"""What happened to one runbook step: the core's step-machine states (started, done, failed, ...)."""


ObservationRow = tuple[float, str, str, str, str]
"""`(at, subject, source, status, detail)` as stored."""


def observation_of(row: ObservationRow) -> Observation:
    at, subject, source, status, detail = row
    return Observation(at=at, subject=subject, source=source, status=Status(status), detail=detail)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The last beat of one writer (a daemon, a probe agent): its wall clock when it wrote, what it said, and
    `arrival`, a marker the store set when the beat arrived (SQLite and memory: a counter; etcd: the key's
    mod_revision). A reader that sees `arrival` change between two reads knows a new beat arrived in between, and
    so can bound the writer's clock offset against its own clock without trusting either."""

    identity: str
    wall: float
    detail: Mapping[str, Any]
    arrival: int


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
    """The last seq and hash, stored apart from the entries so that a deleted tail is detectable.

    `str(head)` is the anchor text, `SEQ:HASH`: what incident reports and notifications carry, what
    `failover audit verify --expect-head` takes back. An expected head may carry a shortened hash (a prefix).
    """

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @property
    def short(self) -> str:
        """`SEQ:` and the first 16 hex digits: enough to recognise a head in one line of text."""
        return f"{self.seq}:{self.hash[:16]}"


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit entry as stored, `detail` still JSON text: verification must survive a row edited into garbage.

    The types are what a well-formed row holds; a row edited by hand may hold anything (NULL, a BLOB, text where a
    number was), so verification checks every field before using it. `problem` is set by a backend that could not
    even split the stored entry into fields (one sentence naming the entry)."""

    seq: int
    at: float
    actor: str
    action: str
    detail_json: str
    prev_hash: str
    hash: str
    problem: str = ""


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The outcome of `verify_audit`. `problem` is one sentence, empty when `ok`; `first_bad_seq` is None when the
    problem is not one entry's (an unreadable anchor, a missing one).

    `head` is the store's head as verified (None for an empty log), `anchor_file` the copy of the head kept outside
    the store (None when this store keeps none), `checked` the heads the chain was checked against (the anchor
    file's, an expected one), spelled `SEQ:HASH16`."""

    ok: bool
    entries: int
    first_bad_seq: int | None
    problem: str
    head: AuditHead | None = None
    anchor_file: str | None = None
    checked: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Lease:
    """A named lock held by `holder`. `token` only grows, per lease name.

    The store decides expiry on its own clock: SQLite on its host's, memory on its injected clock, etcd by the etcd
    lease's TTL (no wall clock at all). `expires_at` says when, for display: on SQLite and in memory it is the
    store's clock; on etcd it is the clock of the host that read it (the holder's at grant or renewal) plus the
    TTL left. A holder times its own validity with a monotonic clock from before its renewal, never with this.
    So two records of one lease are equal when name, holder and token are, whatever their `expires_at`."""

    name: str
    holder: str
    token: int
    expires_at: float = field(compare=False)


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
    """Parse a stored `detail`; a row that is not a JSON object of what `canonical_json` can write (no NaN, no
    infinities, no absurd nesting) is corruption, reported as one StoreError line."""
    if not isinstance(text, str):
        raise StoreError(f"{where}: stored detail is {describe(text)}, not text")
    try:
        value = strict_json(text)
    except ValueError as error:
        raise StoreError(f"{where}: stored detail is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise StoreError(f"{where}: stored detail is not a JSON object")
    return value


def strict_json(text: str | bytes) -> Any:
    """`json.loads` refusing what canonical JSON cannot hold (NaN, Infinity, 1e999) and nesting deep enough to
    exhaust the stack. ValueError with a one-line reason."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except _NotJson:
        raise
    except ValueError as error:
        raise ValueError(str(error).splitlines()[0] if str(error) else "unreadable") from None


class _NotJson(ValueError):
    """Something Python's json module reads but JSON (and so canonical_json) does not allow."""


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"{text[:20]} is not a finite number")
    return value


def describe(value: object) -> str:
    """What kind of value a stored field holds, in the words of a one-line report (never the value itself: it may
    be megabytes, or hold a line break)."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        return "a BLOB"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "infinite"
        return "a number with a fraction" if not value.is_integer() else "a number"
    return type(value).__name__


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
