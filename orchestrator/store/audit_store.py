"""The audit half of `StateStore`: the append-only, hash-chained log and its anchor outside the store.

A public method does the bookkeeping (validation, secret refusal, hashing, moving the anchor), the backend's two
hooks store and load. Verification itself is pure (audit_chain.py), the anchor file is audit_anchor.py.
"""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import StoreError
from orchestrator.store import audit_anchor
from orchestrator.store.audit_chain import Anchor, Tampered, head_problem, verify_chain
from orchestrator.store.records import (
    GENESIS_HASH,
    AuditEntry,
    AuditHead,
    AuditReport,
    AuditRow,
    audit_hash,
    check_name,
    check_time,
    load_detail,
    normalise_detail,
)

__all__ = ["AuditStore"]

log = logging.getLogger(__name__)
_UNSET: Any = object()


class AuditStore(abc.ABC):
    """The audit log of a store; `StateStore` mixes it in."""

    url: str
    _anchor_path: Path | None = _UNSET

    @abc.abstractmethod
    def _open_guard(self) -> None: ...

    def audit(self, actor: str, action: str, detail: Mapping[str, Any], at: float) -> AuditEntry:
        """Append to the hash-chained audit log, then move the anchor file (if this store keeps one) to the new
        head. Refuses (StoreError) a detail that looks like it holds a secret.

        The entry is committed before the anchor moves: a crash in between leaves the anchor one entry behind,
        which verification accepts (the chain still passes through it). An anchor that cannot be written, or that
        holds a head this chain does not pass through, is logged and left alone: the append itself stands, and
        `verify_audit` reports the disagreement."""
        self._open_guard()
        actor = check_name(actor, "audit actor")
        action = check_name(action, "audit action")
        clean = normalise_detail(detail, f"audit {action}")
        at = check_time(at, "audit time")

        def make_entry(seq: int, prev_hash: str) -> AuditEntry:
            digest = audit_hash(seq, at, actor, action, clean, prev_hash)
            return AuditEntry(seq, at, actor, action, clean, prev_hash, digest)

        entry = self._append_audit(make_entry)
        self._advance_anchor(entry)
        return entry

    def audit_entries(self, after_seq: int = 0) -> list[AuditEntry]:
        """Audit entries with seq > `after_seq`, in order. Does not verify them: that is `verify_audit`."""
        self._open_guard()
        _, rows = self._load_audit(after_seq)
        return [_audit_entry(row) for row in rows]

    def audit_head(self) -> AuditHead | None:
        """The last seq and hash (None for an empty log). `str(head)` is `SEQ:HASH`, the text to publish in
        incident reports and notifications; `failover audit verify --expect-head SEQ:HASH` checks it later."""
        self._open_guard()
        head, _ = self._load_audit(None)
        if head is not None and head_problem(head):
            raise Tampered(head_problem(head))
        return head

    @property
    def audit_anchor_path(self) -> Path | None:
        """Where this store keeps the copy of its audit head outside itself, or None. Chosen, first to last: the
        path given to `set_audit_anchor` (or `open_store(..., audit_anchor=)`), `$FAILOVER_AUDIT_HEAD_FILE`, the
        backend's default (SQLite: `<db file>.audit-head`; etcd and memory: none)."""
        if self._anchor_path is _UNSET:
            self._anchor_path = self._default_anchor_path()
        return self._anchor_path

    def set_audit_anchor(self, path: Path | str | None) -> None:
        """Keep the anchor at `path` (None: keep none), instead of the environment's or the backend's choice."""
        self._anchor_path = None if path is None else Path(path)

    def verify_audit(self, expect: AuditHead | None = None) -> AuditReport:
        """Check the whole chain (`failover audit verify`): the first broken link, or ok. The chain must also pass
        through the anchor file's head (if this store keeps one) and through `expect` (a head kept elsewhere; its
        hash may be a prefix). Never raises for a damaged log: every damage is a report with `ok` False."""
        self._open_guard()
        path = self.audit_anchor_path
        label = None if path is None else f"the anchor file {path}"
        try:
            head, rows = self._load_audit(0)
            anchored = None if path is None else audit_anchor.read_anchor(path)
        except Tampered as error:
            return AuditReport(False, 0, None, str(error), anchor_file=None if path is None else str(path))
        anchors = [] if anchored is None or label is None else [Anchor(label, anchored)]
        if expect is not None:
            anchors.append(Anchor(f"the expected head {expect.short}", expect))
        report = verify_chain(head, rows, anchors)
        if report.ok and path is not None and anchored is None and rows:
            report = AuditReport(False, len(rows), None, (
                f"the anchor file {path} is missing while the store holds {len(rows)} entries: it was removed, or "
                "the store was moved here (a store older than anchoring: `failover audit head --write-anchor`)"))
        return AuditReport(report.ok, report.entries, report.first_bad_seq, report.problem, report.head,
                           None if path is None else str(path), report.checked)

    def anchor_audit_head(self) -> AuditHead | None:
        """Write the current head to the anchor file now (a store older than anchoring, or a new anchor path).
        Verifies the chain first; Tampered (exit 3) if it does not verify or does not pass through the head the
        anchor file already holds: evidence is never overwritten. StoreError if this store keeps no anchor."""
        self._open_guard()
        path = self.audit_anchor_path
        if path is None:
            raise StoreError(f"state store {self.url} keeps no audit anchor: set {audit_anchor.ENV}")
        head, rows = self._load_audit(0)
        report = verify_chain(head, rows)
        if not report.ok:
            raise Tampered(report.problem)
        if head is None:
            return None
        previous = rows[-2].hash if len(rows) > 1 else GENESIS_HASH
        why = self._move_anchor(path, head, previous, rows)
        if why:
            raise Tampered(why)
        return head

    def _advance_anchor(self, entry: AuditEntry) -> None:
        path = self.audit_anchor_path
        if path is None:
            return
        try:
            why = self._move_anchor(path, AuditHead(entry.seq, entry.hash), entry.prev_hash, None)
        except (OSError, StoreError) as error:
            why = f"the anchor file {path} could not be written: {getattr(error, 'strerror', None) or error}"
        if why:
            log.warning("audit entry %d of %s: %s", entry.seq, self.url, why)

    def _move_anchor(self, path: Path, head: AuditHead, prev_hash: str, rows: Sequence[AuditRow] | None) -> str:
        def stored_hash(seq: int) -> str | None:
            found = rows if rows is not None else self._load_audit(seq - 1)[1]
            return next((row.hash for row in found if row.seq == seq), None)

        return audit_anchor.advance_anchor(path, head, prev_hash, stored_hash, self.url)

    def _default_anchor_path(self) -> Path | None:
        """The anchor path when none was set: `$FAILOVER_AUDIT_HEAD_FILE`. Backends with a natural place for it
        (SQLite: beside the file) override this."""
        named = os.environ.get(audit_anchor.ENV, "").strip()
        return Path(named) if named else None

    # --- hooks --------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _append_audit(self, make_entry: Callable[[int, str], AuditEntry]) -> AuditEntry:
        """Atomically: read the head (last seq and hash; 0 and 64 zeros when empty), call
        `make_entry(last_seq + 1, last_hash)`, store the entry and the new head, return the entry. Two concurrent
        appends must never both build on the same head."""

    @abc.abstractmethod
    def _load_audit(self, after_seq: int | None) -> tuple[AuditHead | None, list[AuditRow]]:
        """One consistent snapshot: the stored head (None if never written) and the rows with seq > `after_seq`
        in seq order, exactly as stored (no rows at all if `after_seq` is None). Must not fail on a corrupt row or
        head: hand them over as stored (or set `AuditRow.problem`); raise Tampered for what cannot be read at all
        (a table that is gone, a head that is not a record)."""


def _audit_entry(row: AuditRow) -> AuditEntry:
    detail = load_detail(row.detail_json, f"audit entry {row.seq}")
    return AuditEntry(row.seq, row.at, row.actor, row.action, detail, row.prev_hash, row.hash)
