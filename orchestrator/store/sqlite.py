"""The SQLite state store: one file, safe for a cron run and an operator command at the same time.

Why it is safe with two processes: WAL mode lets readers run beside the one writer; every write is a short
`BEGIN IMMEDIATE` transaction, which takes the write lock up front (waiting up to `BUSY_TIMEOUT` for it) instead
of failing half-way when a read turns into a write; every read-modify-write (journal seq, audit head, lease token,
compare-and-set) happens inside one such transaction. `synchronous=FULL` because a journal entry that is lost on
power failure can make a new leader repeat a runbook step.

The file must be on a local disk: WAL needs shared memory between the processes, which NFS and the like do not
give. Every sqlite3 error leaves this module as a one-line StoreError that names the file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError, LeaseLost, StoreError
from orchestrator.store import sqlite_arrivals, sqlite_outbox
from orchestrator.store.audit_anchor import SUFFIX as ANCHOR_SUFFIX
from orchestrator.store.audit_chain import Tampered, head_problem
from orchestrator.store.base import Conflict, NotFound, ObservationRow, StateStore
from orchestrator.store.records import (
    GENESIS_HASH,
    AuditEntry,
    AuditHead,
    AuditRow,
    Incident,
    IncidentStatus,
    JournalEntry,
    JournalState,
    Lease,
    canonical_json,
    load_detail,
)
from orchestrator.store.sqlite_arrivals import SqliteArrivals
from orchestrator.store.sqlite_outbox import SqliteOutbox

SCHEMA_VERSION = 3  # 1: the tables below; 2: the notification outbox; 3: counters and heartbeats (_MIGRATIONS)
BUSY_TIMEOUT = 5.0  # seconds a writer waits for the lock before giving up with StoreError

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE observations (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, subject TEXT NOT NULL, source TEXT NOT NULL,
    status TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX observations_at ON observations (at);
CREATE INDEX observations_pair ON observations (subject, source, at);
CREATE TABLE observation_pairs (subject TEXT NOT NULL, source TEXT NOT NULL, PRIMARY KEY (subject, source))
    WITHOUT ROWID;
CREATE TABLE incidents (
    id TEXT PRIMARY KEY, engine TEXT NOT NULL, opened_at REAL NOT NULL, status TEXT NOT NULL, kind TEXT NOT NULL,
    source TEXT, target TEXT, reason TEXT NOT NULL, updated_at REAL NOT NULL, closed_at REAL,
    detail TEXT NOT NULL);
CREATE INDEX incidents_opened ON incidents (opened_at, id);
CREATE UNIQUE INDEX incidents_one_open ON incidents (engine) WHERE status <> 'closed';
CREATE TABLE journal (
    incident_id TEXT NOT NULL REFERENCES incidents (id), seq INTEGER NOT NULL, at REAL NOT NULL,
    step TEXT NOT NULL, state TEXT NOT NULL, detail TEXT NOT NULL, token INTEGER NOT NULL,
    PRIMARY KEY (incident_id, seq)) WITHOUT ROWID;
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY, at REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE audit_head (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT, token INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL);
"""

_INCIDENT_COLUMNS = "id, engine, opened_at, status, kind, source, target, reason, updated_at, closed_at, detail"
_OBSERVATION_COLUMNS = "at, subject, source, status, detail"


def open_url(url: str) -> SqliteStore:
    """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db` (SQLAlchemy's spelling)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigError(f"store URL {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db")
    path = url[len(prefix) :]
    if not path or path.endswith("/"):
        raise ConfigError(f"store URL {url!r} names no database file")
    if "?" in path or "#" in path:
        raise ConfigError(f"store URL {url!r}: options in store URLs are not supported")
    return SqliteStore(Path(path), url)


# What each schema version adds to the one before; a file of an older version is brought up to date when opened.
_MIGRATIONS: dict[int, Callable[[], Iterator[str]]] = {
    2: sqlite_outbox.statements,
    3: sqlite_arrivals.statements,
}


class SqliteStore(StateStore, SqliteOutbox, SqliteArrivals):
    """A StateStore in one SQLite file; one connection per object, shared by its threads under a lock."""

    def __init__(self, path: Path, url: str | None = None) -> None:
        super().__init__(url or f"sqlite:///{path}")
        self.path = path
        self._lock = threading.Lock()
        with self._errors("cannot open"):
            self._conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        try:
            self._prepare()
        except BaseException:
            self._conn.close()
            raise

    # --- plumbing -------------------------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str = "failed") -> Iterator[None]:
        """Translate sqlite3 errors into one-line StoreErrors naming the file; let ours through."""
        try:
            yield
        except sqlite3.Error as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            if message == "unable to open database file":
                message = _why_unopenable(self.path)
            raise StoreError(f"state store {self.path}: {doing}: {message}") from error

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction, the write lock taken at BEGIN; rolled back on any exception."""
        self._open_guard()
        with self._lock, self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: all SELECTs inside see one snapshot (WAL), and no writer is blocked."""
        self._open_guard()
        with self._lock, self._errors():
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")

    def _prepare(self) -> None:
        """Set the connection up and create (or check) the schema, once per open."""
        with self._errors("cannot open"):
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            self._switch_to_wal()
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
        with self._read() as conn:
            tables = _tables(conn)
        if not tables:
            with self._write() as conn:  # create it, unless another process did since we looked
                tables = _tables(conn)
                if not tables:
                    _create_schema(conn)
                    return
        if "schema_version" not in tables:
            raise StoreError(f"state store {self.path}: the file is an SQLite database of something else")
        with self._read() as conn:
            version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        if isinstance(version, int) and 1 <= version < SCHEMA_VERSION:
            self._migrate()
        elif version != SCHEMA_VERSION:
            raise StoreError(
                f"state store {self.path}: schema version {version} is not the supported {SCHEMA_VERSION}"
            )

    def _migrate(self) -> None:
        """Bring an older file up to SCHEMA_VERSION in one transaction (another process may be doing the same:
        the version is read again under the write lock)."""
        with self._write() as conn:
            version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]():
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (step,))

    def _switch_to_wal(self) -> None:
        """WAL mode is a property of the file, set by the first opener. Changing it ignores busy_timeout, so two
        processes creating a fresh file at once would see "database is locked": retry until BUSY_TIMEOUT."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
                if mode != "wal":
                    mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        if mode != "wal":
            raise StoreError(f"state store {self.path}: cannot switch to WAL mode (got {mode})")

    def _close(self) -> None:
        with self._lock, self._errors("close"):
            self._conn.close()

    def _default_anchor_path(self) -> Path | None:
        """`$FAILOVER_AUDIT_HEAD_FILE`, else `<db file>.audit-head` beside the database: a truncated, deleted or
        re-created file leaves the anchor behind to say so."""
        return super()._default_anchor_path() or self.path.with_name(self.path.name + ANCHOR_SUFFIX)

    # --- observations ---------------------------------------------------------------------------------------------

    def _insert_observations(self, rows: Sequence[ObservationRow]) -> None:
        pairs = sorted({(subject, source) for _, subject, source, _, _ in rows})
        with self._write() as conn:
            sqlite_arrivals.insert_observations(conn, rows)
            conn.executemany("INSERT OR IGNORE INTO observation_pairs (subject, source) VALUES (?, ?)", pairs)

    def _select_observations(self, since: float, subjects: Sequence[str] | None) -> list[ObservationRow]:
        query = f"SELECT {_OBSERVATION_COLUMNS} FROM observations WHERE at >= ?"
        params: tuple[Any, ...] = (since,)
        if subjects is not None:
            query += " AND subject IN (SELECT value FROM json_each(?))"
            params += (canonical_json(list(subjects)),)
        with self._read() as conn:
            return conn.execute(query + " ORDER BY at, id", params).fetchall()

    def _select_latest_observations(self, limit: int, since: float | None) -> list[ObservationRow]:
        # One short index range read per known pair (observation_pairs), not a window over the whole table.
        query = f"""
            SELECT {", ".join("o." + c for c in _OBSERVATION_COLUMNS.split(", "))}
            FROM observation_pairs p, observations o
            WHERE o.id IN (
                SELECT x.id FROM observations x
                WHERE x.subject = p.subject AND x.source = p.source AND x.at >= ?
                ORDER BY x.at DESC, x.id DESC LIMIT ?)
            ORDER BY o.at, o.id"""
        with self._read() as conn:
            return conn.execute(query, (-1.0 if since is None else since, limit)).fetchall()

    def _delete_observations(self, before: float) -> int:
        with self._write() as conn:
            count = conn.execute("DELETE FROM observations WHERE at < ?", (before,)).rowcount
            conn.execute(
                """DELETE FROM observation_pairs WHERE NOT EXISTS (SELECT 1 FROM observations o
                   WHERE o.subject = observation_pairs.subject AND o.source = observation_pairs.source)"""
            )
            return count

    # --- incidents ------------------------------------------------------------------------------------------------

    def _insert_incident(self, incident: Incident) -> None:
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM incidents WHERE id = ?", (incident.id,)).fetchone():
                raise Conflict(f"incident {incident.id} already exists")
            if incident.is_open:
                row = conn.execute(
                    "SELECT id FROM incidents WHERE engine = ? AND status <> 'closed'", (incident.engine,)
                ).fetchone()
                if row:
                    raise Conflict(f"engine {incident.engine} already has an open incident: {row[0]}")
            conn.execute(
                f"INSERT INTO incidents ({_INCIDENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _incident_row(incident),
            )

    def _update_incident(self, incident_id: str, change: Callable[[Incident], Incident]) -> Incident:
        with self._write() as conn:
            row = conn.execute(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)).fetchone()
            if row is None:
                raise NotFound(f"no incident {incident_id!r} in {self.url}")
            new = change(_incident(row))
            conn.execute(
                """UPDATE incidents SET status = ?, target = ?, updated_at = ?, closed_at = ?, detail = ?
                   WHERE id = ?""",
                (new.status, new.target, new.updated_at, new.closed_at, canonical_json(new.detail), new.id),
            )
            return new

    def _select_incident(self, incident_id: str) -> Incident | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return None if row is None else _incident(row)

    def _select_incidents(self, engine: str | None, open_only: bool, limit: int | None) -> list[Incident]:
        query = f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE (? IS NULL OR engine = ?)"
        if open_only:
            query += " AND status <> 'closed'"
        query += " ORDER BY opened_at DESC, id DESC LIMIT ?"
        with self._read() as conn:
            rows = conn.execute(query, (engine, engine, -1 if limit is None else limit)).fetchall()
        return [_incident(row) for row in rows]

    # --- journal --------------------------------------------------------------------------------------------------

    def _append_journal(
        self, incident_id: str, step: str, state: JournalState, at: float, detail: dict[str, Any], token: int
    ) -> JournalEntry:
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM incidents WHERE id = ?", (incident_id,)).fetchone():
                raise NotFound(f"no incident {incident_id!r} in {self.url}")
            last_seq, top_token = conn.execute(
                "SELECT COALESCE(MAX(seq), 0), COALESCE(MAX(token), 0) FROM journal WHERE incident_id = ?",
                (incident_id,),
            ).fetchone()
            if token < top_token:
                raise LeaseLost(
                    f"incident {incident_id}: fencing token {token} is older than {top_token}: "
                    "another leader has taken over this runbook"
                )
            entry = JournalEntry(incident_id, last_seq + 1, at, step, state, detail, token)
            conn.execute(
                "INSERT INTO journal (incident_id, seq, at, step, state, detail, token) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (incident_id, entry.seq, at, step, state, canonical_json(detail), token),
            )
            return entry

    def _select_journal(self, incident_id: str) -> list[JournalEntry]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT seq, at, step, state, detail, token FROM journal WHERE incident_id = ? ORDER BY seq",
                (incident_id,),
            ).fetchall()
        return [
            JournalEntry(incident_id, seq, at, step, JournalState(state), load_detail(detail, "journal"), token)
            for seq, at, step, state, detail, token in rows
        ]

    # --- audit ----------------------------------------------------------------------------------------------------

    def _append_audit(self, make_entry: Callable[[int, str], AuditEntry]) -> AuditEntry:
        with self._write() as conn:
            _check_audit_tables(conn)
            head = conn.execute("SELECT seq, hash FROM audit_head WHERE one = 1").fetchone()
            if head is not None and head_problem(AuditHead(*head)):
                raise Tampered(f"state store {self.path}: {head_problem(AuditHead(*head))}")
            last_seq, last_hash = head if head else (0, GENESIS_HASH)
            entry = make_entry(last_seq + 1, last_hash)
            conn.execute(
                "INSERT INTO audit (seq, at, actor, action, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (entry.seq, entry.at, entry.actor, entry.action, canonical_json(entry.detail), entry.prev_hash,
                 entry.hash),
            )
            conn.execute(
                "INSERT INTO audit_head (one, seq, hash) VALUES (1, ?, ?) "
                "ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                (entry.seq, entry.hash),
            )
            return entry

    def _load_audit(self, after_seq: int | None) -> tuple[AuditHead | None, list[AuditRow]]:
        with self._read() as conn:
            _check_audit_tables(conn)
            head = conn.execute("SELECT seq, hash FROM audit_head WHERE one = 1").fetchone()
            rows = [] if after_seq is None else conn.execute(
                "SELECT seq, at, actor, action, detail, prev_hash, hash FROM audit WHERE seq > ? ORDER BY seq",
                (after_seq,),
            ).fetchall()
        return (None if head is None else AuditHead(*head)), [AuditRow(*row) for row in rows]

    # --- leases ---------------------------------------------------------------------------------------------------

    def _acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        with self._write() as conn:
            now = time.time()
            row = conn.execute("SELECT holder, token, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
            if row is None:
                token = 1
            else:
                old_holder, old_token, expires_at = row
                live = old_holder is not None and expires_at > now
                if live and old_holder != holder:
                    return None
                token = old_token if live else old_token + 1
            conn.execute(
                "INSERT INTO leases (name, holder, token, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) "
                "DO UPDATE SET holder = excluded.holder, token = excluded.token, expires_at = excluded.expires_at",
                (name, holder, token, now + ttl),
            )
            return Lease(name, holder, token, now + ttl)

    def _renew_lease(self, lease: Lease, ttl: float) -> Lease:
        with self._write() as conn:
            now = time.time()
            updated = conn.execute(
                "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND token = ?",
                (now + ttl, lease.name, lease.holder, lease.token),
            ).rowcount
            if not updated:
                raise LeaseLost(f"lease {lease.name!r} (token {lease.token}) is no longer held by {lease.holder}")
            return Lease(lease.name, lease.holder, lease.token, now + ttl)

    def _release_lease(self, lease: Lease) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE leases SET holder = NULL, expires_at = 0 WHERE name = ? AND holder = ? AND token = ?",
                (lease.name, lease.holder, lease.token),
            )

    def _select_lease(self, name: str) -> Lease | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT holder, token, expires_at FROM leases WHERE name = ? AND holder IS NOT NULL AND expires_at > ?",
                (name, time.time()),
            ).fetchone()
        return None if row is None else Lease(name, row[0], row[1], row[2])

    # --- controller state -----------------------------------------------------------------------------------------

    def _select_state(self, key: str) -> tuple[str, int] | None:
        with self._read() as conn:
            row = conn.execute("SELECT value, version FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def _put_state(self, key: str, value_json: str, expected_version: int | None) -> int:
        with self._write() as conn:
            row = conn.execute("SELECT version FROM state WHERE key = ?", (key,)).fetchone()
            current = None if row is None else row[0]
            if current != expected_version:
                raise Conflict(
                    f"state {key!r}: expected version {expected_version}, found {current}: someone else wrote it"
                )
            version = 1 if current is None else current + 1
            conn.execute(
                "INSERT INTO state (key, value, version) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version",
                (key, value_json, version),
            )
            return version


def _why_unopenable(path: Path) -> str:
    """SQLite says "unable to open database file" for every reason; a human needs the actual one."""
    if path.is_dir():
        return "it is a directory"
    parent = path.parent
    if not parent.is_dir():
        return f"directory {parent} does not exist"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return "no permission to read and write the file"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"no permission to create files in {parent}"
    return "unable to open database file"


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


_AUDIT_COLUMNS = {"audit": {"seq", "at", "actor", "action", "detail", "prev_hash", "hash"},
                  "audit_head": {"one", "seq", "hash"}}


def _check_audit_tables(conn: sqlite3.Connection) -> None:
    """Tampered if a table of the audit log, or one of its columns, is gone: someone edited the file's schema."""
    for table, wanted in _AUDIT_COLUMNS.items():
        found = {row[1] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))}
        if not found:
            raise Tampered(f"the {table} table is missing: the store file was edited")
        if not wanted <= found:
            raise Tampered(f"the {table} table lacks {', '.join(sorted(wanted - found))}: the store file was edited")


def _create_schema(conn: sqlite3.Connection) -> None:
    """Create every table inside the caller's transaction (executescript would commit it early)."""
    for statement in _split_sql(_SCHEMA):
        conn.execute(statement)
    for step in sorted(_MIGRATIONS):
        for statement in _MIGRATIONS[step]():
            conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


def _split_sql(script: str) -> list[str]:
    """Statements of `_SCHEMA`; a trigger's body keeps its inner semicolons."""
    statements, current = [], ""
    for part in script.split(";"):
        current += part + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                statements.append(current.strip())
            current = ""
    return statements


def _incident_row(incident: Incident) -> tuple[Any, ...]:
    return (
        incident.id, incident.engine, incident.opened_at, incident.status, incident.kind, incident.source,
        incident.target, incident.reason, incident.updated_at, incident.closed_at, canonical_json(incident.detail),
    )


def _incident(row: sqlite3.Row | tuple[Any, ...]) -> Incident:
    ident, engine, opened_at, status, kind, source, target, reason, updated_at, closed_at, detail = row
    return Incident(
        id=ident, engine=engine, opened_at=opened_at, status=IncidentStatus(status), kind=kind, source=source,
        target=target, reason=reason, updated_at=updated_at, closed_at=closed_at,
        detail=load_detail(detail, f"incident {ident}"),
    )
