"""The copy of the audit head kept outside the store: one small file, replaced atomically after every append.

Why a file outside the store: the chain inside the store proves only that it agrees with itself. Whoever can
rewrite the store can rewrite it whole (every row and the head), delete it, or truncate it to nothing, and a new
empty store verifies perfectly. The anchor file remembers how far the chain had got and with which hash; a store
that no longer passes through that head was rewritten, cut short or re-created, and `verify_audit` says so. (Whoever
can also rewrite this file defeats it; a head copied into a ticket or a notification, checked with
`failover audit verify --expect-head`, is the answer to that.)

Why it only moves forward along one chain: the anchor is evidence. It moves to a new head only if that head's chain
passes through the head it holds (the new entry's prev_hash, or the stored hash at the anchored seq); a store that
was re-created or rewritten leaves the anchor where it was, so the evidence survives every later append. Two
processes appending at once take a lock on the directory, so the anchor never moves backwards either.

The file is one line of canonical JSON: `{"hash": "<64 hex>", "seq": 57, "store": "<store url>"}`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from orchestrator.store.audit_chain import HASH_DIGITS, Tampered
from orchestrator.store.records import AuditHead, canonical_json

__all__ = ["ENV", "SUFFIX", "advance_anchor", "read_anchor", "write_anchor"]

ENV = "FAILOVER_AUDIT_HEAD_FILE"
"""Environment variable naming the anchor file (any backend); without it SQLite keeps `<db file>.audit-head`."""
SUFFIX = ".audit-head"
_MAX_BYTES = 4096
_HASH = re.compile(f"[0-9a-f]{{{HASH_DIGITS}}}")


def read_anchor(path: Path) -> AuditHead | None:
    """The anchored head; None if there is no file. Tampered (one line naming the file) if it cannot be read as
    one: a garbled anchor is as suspicious as a garbled row."""
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise Tampered(f"the anchor file {path} is unreadable: {error.strerror or error}") from None
    if len(data) > _MAX_BYTES:
        raise Tampered(f"the anchor file {path} is unreadable: over {_MAX_BYTES} bytes")
    try:
        doc = json.loads(data)
    except ValueError:
        raise Tampered(f"the anchor file {path} is unreadable: not JSON") from None
    seq, digest = (doc.get("seq"), doc.get("hash")) if isinstance(doc, dict) else (None, None)
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise Tampered(f"the anchor file {path} is unreadable: no positive integer seq")
    if not isinstance(digest, str) or not _HASH.fullmatch(digest):
        raise Tampered(f"the anchor file {path} is unreadable: no {HASH_DIGITS}-digit hex hash")
    return AuditHead(seq, digest)


def write_anchor(path: Path, head: AuditHead, store_url: str) -> None:
    """Replace the file with `head`, atomically (a reader sees the old head or the new one, never half of one)
    and durably (fsync of the file, then of the directory, before returning). OSError if it cannot."""
    text = canonical_json({"seq": head.seq, "hash": head.hash, "store": store_url}) + "\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _sync_directory(path.parent)


def advance_anchor(
    path: Path, head: AuditHead, prev_hash: str, stored_hash: Callable[[int], str | None], store_url: str
) -> str:
    """Move the anchor to `head` (just appended, its entry's prev_hash given) if the chain it ends passes through
    the anchored head. Returns "" when the anchor holds `head` or a later head of the same chain, else why it was
    left alone (one line). `stored_hash(seq)` reads the hash stored at a seq, for an anchor more than one entry
    behind (another process's append whose anchor write was lost). OSError if the file cannot be written."""
    with _directory_lock(path.parent):
        try:
            current = read_anchor(path)
        except Tampered as error:
            return f"{error}; it was left as it is"
        if current is not None:
            if current.seq >= head.seq:
                same = current.seq > head.seq or current.hash == head.hash
                return "" if same else _diverged(path, current)
            known = prev_hash if current.seq == head.seq - 1 else stored_hash(current.seq)
            if known != current.hash:
                return _diverged(path, current)
        write_anchor(path, head, store_url)
        return ""


def _diverged(path: Path, current: AuditHead) -> str:
    return (f"entry {current.seq}: its hash differs from the anchor file {path}: the chain was rewritten or the "
            "store re-created; the anchor was left as it is")


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive flock on the directory: appenders in several processes (and threads) take turns, so the
    anchor is read and replaced by one of them at a time. No lock file is left behind."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
