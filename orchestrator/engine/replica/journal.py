"""What a replica keeps on disk: the append-only journal and its control state (highest epoch, role).

Journal: JSON lines in `DATA/journal.jsonl`, one entry each, written, flushed and fsync'd before anyone is told
about them (an order is acknowledged, a standby may fetch it). Each entry carries the SHA-256 of its predecessor's
hash and its own content, so two replicas can tell in one comparison whether one journal is a prefix of the other:
a standby that holds entries the primary never had (an unacknowledged tail of a dead primary) is *diverged* and
must not count as a copy. On start the file is read back; a partial last line, which is all a crash between
`write` and `fsync` can leave, is cut off; anything else that does not parse or chain is corruption and stops
the replica instead of serving a wrong book.

Control state: `DATA/control.json`, replaced atomically (temporary file, fsync, rename, fsync of the directory), so
the highest epoch seen and a fence survive restarts: a restarted replica must still refuse an old orchestrator.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from orchestrator.core.model import Role

GENESIS = ""  # the "previous hash" of entry 1
KINDS = frozenset({"order", "cancel", "margin", "phase"})


class JournalCorrupt(Exception):
    """The journal on disk is damaged before its last line; the replica must not start on it."""


class ControlCorrupt(Exception):
    """`control.json` does not hold a control state; the replica must not guess its epoch or role."""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def chain_hash(prev: str, seq: int, at: str, epoch: int, kind: str, data: Mapping[str, Any]) -> str:
    content = _canonical({"seq": seq, "at": at, "epoch": epoch, "kind": kind, "data": data})
    return hashlib.sha256((prev + content).encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal entry; `data` is the validated request body (order, cancel, margin) or the phase set."""

    seq: int
    at: str
    epoch: int
    kind: str
    data: Mapping[str, Any]
    hash: str

    def to_wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "epoch": self.epoch, "kind": self.kind,
                "data": dict(self.data), "hash": self.hash}

    @classmethod
    def from_wire(cls, body: Any) -> Entry:
        """An entry from JSON; raises ValueError if a field is missing or of the wrong type."""
        if not isinstance(body, dict):
            raise ValueError("a journal entry is an object")
        try:
            entry = cls(seq=body["seq"], at=body["at"], epoch=body["epoch"], kind=body["kind"],
                        data=body["data"], hash=body["hash"])
        except KeyError as error:
            raise ValueError(f"journal entry lacks {error}") from None
        types_ok = (isinstance(entry.seq, int) and isinstance(entry.at, str) and isinstance(entry.epoch, int)
                    and isinstance(entry.data, dict) and isinstance(entry.hash, str))
        if not types_ok or entry.kind not in KINDS:
            raise ValueError(f"journal entry {body.get('seq')!r} has a field of the wrong type")
        return entry

    def follows(self, prev_seq: int, prev_hash: str) -> bool:
        """Whether this entry is the next one after (`prev_seq`, `prev_hash`) and its hash is its content's."""
        expected = chain_hash(prev_hash, self.seq, self.at, self.epoch, self.kind, self.data)
        return self.seq == prev_seq + 1 and self.hash == expected


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """`path` holds `data` whole or keeps what it held: a temporary file, fsync, rename, fsync of the directory."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


@dataclass
class Journal:
    """The entries of one replica, all in memory (a test partner's journal is small) and on disk."""

    path: Path
    entries: list[Entry] = field(default_factory=list)
    truncated_bytes: int = 0  # what recovery cut off, for the start-up log

    @classmethod
    def open(cls, path: Path) -> Journal:
        journal = cls(path)
        journal._recover()
        return journal

    @property
    def last_seq(self) -> int:
        return len(self.entries)

    @property
    def last_hash(self) -> str:
        return self.entries[-1].hash if self.entries else GENESIS

    def hash_at(self, seq: int) -> str | None:
        """The hash of entry `seq` (GENESIS for 0), or None if we do not hold it."""
        if seq == 0:
            return GENESIS
        return self.entries[seq - 1].hash if 0 < seq <= len(self.entries) else None

    def after(self, seq: int, limit: int) -> list[Entry]:
        return self.entries[max(seq, 0) : max(seq, 0) + limit]

    def make(self, at: str, epoch: int, kind: str, data: Mapping[str, Any]) -> Entry:
        """The next entry, chained to the last one; not yet stored."""
        seq = self.last_seq + 1
        return Entry(seq, at, epoch, kind, dict(data), chain_hash(self.last_hash, seq, at, epoch, kind, data))

    def append(self, batch: Sequence[Entry]) -> None:
        """Store `batch` durably, then make it visible. Raises ValueError (storing nothing) if it does not
        chain onto the last entry, and OSError if the disk fails, after which the process must stop."""
        prev_seq, prev_hash = self.last_seq, self.last_hash
        for entry in batch:
            if not entry.follows(prev_seq, prev_hash):
                raise ValueError(f"entry {entry.seq} does not follow entry {prev_seq} of this journal")
            prev_seq, prev_hash = entry.seq, entry.hash
        if not batch:
            return
        data = "".join(_canonical(entry.to_wire()) + "\n" for entry in batch).encode("ascii")
        created = not self.path.exists()
        with self.path.open("ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            _fsync_dir(self.path.parent)
        self.entries.extend(batch)

    def truncate(self, seq: int) -> None:
        """Keep entries 1..`seq` only: the kept lines are written to a new file (fsync'd) that replaces the journal
        atomically, so a crash leaves either the whole old journal or the whole new one. Used only by a rejoin
        (`rejoin`), after the entries beyond `seq` were archived durably: a journal never loses an entry silently."""
        if not 0 <= seq <= self.last_seq:
            raise ValueError(f"cannot keep {seq} entries of a journal of {self.last_seq}")
        if seq == self.last_seq:
            return
        kept = self.entries[:seq]
        write_atomically(self.path, "".join(_canonical(entry.to_wire()) + "\n" for entry in kept).encode("ascii"))
        self.entries = kept

    def _recover(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        complete, partial = lines[:-1], lines[-1]  # text after the last newline never finished its write
        good_bytes = 0
        for number, line in enumerate(complete, start=1):
            try:
                entry = Entry.from_wire(json.loads(line))
                if not entry.follows(self.last_seq, self.last_hash):
                    raise ValueError("does not chain onto the previous entry")
            except (ValueError, RecursionError) as error:  # json.JSONDecodeError is a ValueError
                if number == len(complete) and not partial:
                    break  # a torn last line: it was never acknowledged
                raise JournalCorrupt(f"{self.path}: line {number}: {error}") from None
            self.entries.append(entry)
            good_bytes += len(line) + 1
        if good_bytes != len(raw):
            self.truncated_bytes = len(raw) - good_bytes
            with self.path.open("r+b") as handle:
                handle.truncate(good_bytes)
                os.fsync(handle.fileno())


@dataclass
class ControlState:
    """The highest epoch seen and the role, persisted; `role` is None until first saved (flags decide).

    `journal_epoch` is set when the replica is fenced: the epoch it carried just before, the last one under which
    its journal could grow. A fence often raises the epoch (a deposed primary learns of the new one only when it
    is fenced), and what it wrote before hearing of it must not pass for history written under the new epoch."""

    path: Path
    epoch: int = 0
    role: Role | None = None
    journal_epoch: int | None = None
    must_halt: bool = False  # promoted, and the halt that opens its journal as primary is not yet written
    # the peer list the orchestrator set at run time (`POST /v1/peers`), replacing the command line's `--peer` and
    # `--standby-of`; None until one was set. `peers_epoch` is the epoch of the call that set it: a list sent at a
    # lower one is stale, so an old leader's list never overwrites a newer leader's
    peers: tuple[str, ...] | None = None
    peers_epoch: int = 0

    @classmethod
    def load(cls, path: Path) -> ControlState:
        if not path.exists():
            return cls(path)
        try:
            body = json.loads(path.read_bytes())
            role = None if body.get("role") is None else Role(body["role"])
            epoch, frozen = body["epoch"], body.get("journal_epoch")
            if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0 or \
                    not (frozen is None or (isinstance(frozen, int) and not isinstance(frozen, bool))):
                raise ValueError("epochs must be non-negative integers")
            peers, peers_epoch = _peers(body)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:  # JSONDecodeError too
            detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
            raise ControlCorrupt(f"{path}: not a control state ({detail}); restore it or start on a fresh "
                                 "data directory") from None
        if frozen is None and role is Role.FENCED:
            frozen = epoch  # fenced before this field existed: its epoch then is the best bound we have
        return cls(path, epoch=epoch, role=role, journal_epoch=frozen, must_halt=body.get("must_halt") is True,
                   peers=peers, peers_epoch=peers_epoch)

    _UNSET: ClassVar[Any] = object()

    def commit(self, *, epoch: int | None = None, role: Role | None = None, journal_epoch: Any = _UNSET,
               must_halt: bool | None = None, peers: tuple[str, ...] | None = None,
               peers_epoch: int | None = None) -> None:
        """Persist the changed fields, then make them visible here; OSError (the disk failed) leaves this object as
        it was. In that order, because a replica that believed a change its disk refused would act on it: one whose
        promotion could not be saved took orders as a primary, in the phase its old primary had left (open)."""
        changed = ControlState(
            self.path, self.epoch if epoch is None else epoch, self.role if role is None else role,
            self.journal_epoch if journal_epoch is ControlState._UNSET else journal_epoch,
            self.must_halt if must_halt is None else must_halt,
            self.peers if peers is None else tuple(peers), self.peers_epoch if peers_epoch is None else peers_epoch,
        )
        changed.save()
        self.epoch, self.role, self.journal_epoch = changed.epoch, changed.role, changed.journal_epoch
        self.must_halt = changed.must_halt
        self.peers, self.peers_epoch = changed.peers, changed.peers_epoch

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        body: dict[str, Any] = {"epoch": self.epoch, "role": None if self.role is None else str(self.role)}
        if self.journal_epoch is not None:
            body["journal_epoch"] = self.journal_epoch
        if self.must_halt:
            body["must_halt"] = True
        if self.peers is not None:
            body["peers"] = list(self.peers)
            body["peers_epoch"] = self.peers_epoch
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(_canonical(body))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        _fsync_dir(self.path.parent)


def _peers(body: dict[str, Any]) -> tuple[tuple[str, ...] | None, int]:
    """The persisted peer list and its epoch; ValueError if they are not what `save` writes."""
    peers, epoch = body.get("peers"), body.get("peers_epoch", 0)
    if peers is None:
        return None, 0
    if not isinstance(peers, list) or not all(isinstance(url, str) and url for url in peers):
        raise ValueError("peers must be a list of URLs")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValueError("peers_epoch must be a non-negative integer")
    return tuple(peers), epoch
