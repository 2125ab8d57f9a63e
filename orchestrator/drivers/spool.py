"""Records the store could not take, kept on local disk until a command can open it again.

The emergency brake (`failover halt`) reaches the engines first and records afterwards. When the store is down
(etcd unreachable, its disk full), the audit entry and the engine record of that halt are appended here, one JSON
line each, and replayed into the store by the next command that opens it; what was replayed is removed. A
replayed audit entry is written when it reaches the store, and carries the time of the halt and the spool id (so a
replay interrupted after the audit append is not appended twice).

Where: `$FAILOVER_SPOOL`, else `$XDG_STATE_HOME/failover/spool.jsonl` (default `~/.local/state/failover/`), mode
0600 in a 0700 directory. Each line names the store URL it belongs to: a spool never leaks into another store.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.core.model import Phase, Topology
from orchestrator.core.phases import PhaseState
from orchestrator.drivers.state import load_engine, save_engine
from orchestrator.store.base import Conflict, StateStore

SPOOL_ENV = "FAILOVER_SPOOL"
RECENT_AUDIT = 500  # audit entries searched for a spool id already replayed


@dataclass(frozen=True, slots=True)
class Spooled:
    """One halt the store did not hear of: its audit entry and the engine record it implies."""

    store: str
    at: float
    actor: str
    action: str
    detail: dict[str, Any]
    engine: str
    epoch: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")) + "\n"


def spool_path() -> Path:
    explicit = os.environ.get(SPOOL_ENV)
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "failover" / "spool.jsonl"


def append(record: Spooled, path: Path | None = None) -> Path:
    """Queue one record (fsynced: the store is down, this line is the only trace). Raises OSError."""
    path = path or spool_path()
    with _locked(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, record.line().encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def pending(store_url: str, path: Path | None = None) -> list[Spooled]:
    path = path or spool_path()
    if not path.exists():
        return []
    return [r for r in _read(path)[0] if r.store == store_url]


def replay(store: StateStore, store_url: str, topology: Topology, now: float, path: Path | None = None) -> int:
    """Write every record queued for this store into it, oldest first, removing each once written; returns how
    many. A record that fails stays queued (with those after it) for the next run."""
    path = path or spool_path()
    if not path.exists():
        return 0
    done = 0
    with _locked(path):
        records, unreadable = _read(path)
        for record in [r for r in records if r.store == store_url]:
            _apply(store, topology, record, now)
            records.remove(record)
            _rewrite(path, records, unreadable)
            done += 1
    return done


def _apply(store: StateStore, topology: Topology, record: Spooled, now: float) -> None:
    if _already_audited(store, record.id):
        return
    detail = {**record.detail, "spooled": record.id, "happened_at": record.at}
    if record.engine in topology.engines:
        detail["engine_record"] = _record_halt(store, topology, record)
    store.audit(record.actor, record.action, detail, max(now, record.at))


def _record_halt(store: StateStore, topology: Topology, record: Spooled) -> str:
    """The engine record learns of the halt unless someone has since written a newer epoch (their word is later)."""
    for _ in range(5):
        current = load_engine(store, topology, record.engine)
        if current.epoch >= record.epoch:
            return "superseded by a newer epoch"
        try:
            save_engine(store, replace(current, epoch=record.epoch, phase=PhaseState(Phase.HALTED, record.at)))
            return "halted"
        except Conflict:
            continue
    return "not written: the record kept changing"


def _already_audited(store: StateStore, spool_id: str) -> bool:
    head = store.audit_head()
    if head is None:
        return False
    recent = store.audit_entries(after_seq=max(0, head.seq - RECENT_AUDIT))
    return any(entry.detail.get("spooled") == spool_id for entry in recent)


def _read(path: Path) -> tuple[list[Spooled], list[str]]:
    """The records, and the lines that are not records (kept as they are: never drop what we cannot read)."""
    records, unreadable = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            records.append(Spooled(**json.loads(line)))
        except (ValueError, TypeError):
            unreadable.append(line)
    return records, unreadable


def _rewrite(path: Path, records: list[Spooled], unreadable: list[str]) -> None:
    if not records and not unreadable:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.writelines([*(line + "\n" for line in unreadable), *(r.line() for r in records)])
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer at a time across processes (a halt appending while another command replays)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
