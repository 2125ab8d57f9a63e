"""The one interface every state store backend implements (patroni `AbstractDCS` style).

A public method does the bookkeeping — it validates its arguments, normalises `detail` mappings, refuses secrets,
builds ids and hashes — and then calls one abstract `_hook`. A hook receives values that are already valid and
only has to store or fetch them; its docstring says what must happen atomically and what it must raise. So a new
backend (etcd) is a set of small storage functions, and every rule the controller relies on lives in one place.

Backends translate their driver's exceptions into `StoreError` at their own boundary; the errors defined here are
the few that callers need to tell apart.
"""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from orchestrator.core.model import Observation, Status
from orchestrator.errors import StoreError
from orchestrator.store import audit_anchor
from orchestrator.store.audit_chain import Anchor, Tampered, head_problem, verify_chain
from orchestrator.store.outbox import OutboxStore
from orchestrator.store.records import (
    GENESIS_HASH,
    AuditEntry,
    AuditHead,
    AuditReport,
    AuditRow,
    Conflict,
    Incident,
    IncidentStatus,
    JournalEntry,
    JournalState,
    Lease,
    NotFound,
    audit_hash,
    canonical_json,
    check_duration,
    check_name,
    check_time,
    load_detail,
    new_incident_id,
    normalise_detail,
)

__all__ = ["Conflict", "NotFound", "StateStore", "Tampered"]

log = logging.getLogger(__name__)
_UNSET: Any = object()


ObservationRow = tuple[float, str, str, str, str]
"""`(at, subject, source, status, detail)` as stored."""


class StateStore(OutboxStore):
    """Durable state shared by every run of the orchestrator: observations, incidents and their runbook journal,
    the audit log, leases with fencing tokens, and small versioned documents for the controller."""

    url: str

    def __init__(self, url: str) -> None:
        self.url = url
        self._closed = False
        self._anchor_path: Path | None = _UNSET

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    # --- lifecycle ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the backend's connection. Idempotent; any later call raises StoreError."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _open_guard(self) -> None:
        if self._closed:
            raise StoreError(f"state store {self.url} is closed")

    # --- observations ---------------------------------------------------------------------------------------------

    def record_observations(self, observations: Sequence[Observation]) -> int:
        """Store a batch in one write (thousands per cycle are normal). Returns how many were stored."""
        self._open_guard()
        rows: list[ObservationRow] = []
        for obs in observations:
            try:
                status = Status(obs.status)
            except ValueError:
                raise StoreError(f"observation of {obs.subject!r}: unknown status {obs.status!r}") from None
            if not isinstance(obs.detail, str):
                raise StoreError(f"observation of {obs.subject!r}: detail must be a string")
            at = check_time(obs.at, "observation time")
            rows.append((at, check_name(obs.subject, "subject"), check_name(obs.source, "source"), status, obs.detail))
        if rows:
            self._insert_observations(rows)
        return len(rows)

    def observations(self, since: float, subjects: Collection[str] | None = None) -> list[Observation]:
        """Observations at or after `since`, of `subjects` only if given, ordered by time then insertion."""
        self._open_guard()
        wanted = None if subjects is None else sorted(set(subjects))
        if wanted == []:
            return []
        return [_observation(row) for row in self._select_observations(check_time(since, "since"), wanted)]

    def latest_observations(self, limit_per_pair: int, since: float | None = None) -> list[Observation]:
        """The last `limit_per_pair` observations of every (subject, source) pair, ordered by time then insertion.

        Enough to rebuild the health evaluator's consecutive-failure and quorum state at the start of a cron run
        without reading the whole retention window.
        """
        self._open_guard()
        if isinstance(limit_per_pair, bool) or not isinstance(limit_per_pair, int) or limit_per_pair < 1:
            raise StoreError(f"limit_per_pair must be a positive integer, got {limit_per_pair!r}")
        floor = None if since is None else check_time(since, "since")
        return [_observation(row) for row in self._select_latest_observations(limit_per_pair, floor)]

    def prune_observations(self, before: float) -> int:
        """Delete observations older than `before` (the caller's retention cutoff). Returns how many went."""
        self._open_guard()
        return self._delete_observations(check_time(before, "before"))

    # --- incidents ------------------------------------------------------------------------------------------------

    def create_incident(
        self,
        engine: str,
        kind: str,
        reason: str,
        at: float,
        source: str | None = None,
        target: str | None = None,
        status: IncidentStatus | str = IncidentStatus.OPEN,
        detail: Mapping[str, Any] | None = None,
    ) -> Incident:
        """Open an incident. Raises Conflict if the engine already has one that is not closed: two overlapping
        cron runs must not both start a failover of the same engine."""
        self._open_guard()
        at = check_time(at, "incident time")
        status = _incident_status(status)
        check_name(engine, "engine")
        incident = Incident(
            id=new_incident_id(engine, at),
            engine=engine,
            opened_at=at,
            status=status,
            kind=check_name(kind, "incident kind"),
            source=None if source is None else check_name(source, "incident source"),
            target=None if target is None else check_name(target, "incident target"),
            reason=str(reason),
            updated_at=at,
            closed_at=at if status is IncidentStatus.CLOSED else None,
            detail=normalise_detail(detail, f"incident of {engine}"),
        )
        self._insert_incident(incident)
        return incident

    def update_incident(
        self,
        incident_id: str,
        *,
        at: float,
        status: IncidentStatus | str | None = None,
        target: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Incident:
        """Change status and/or target, and merge `detail` (top-level keys) into the stored detail, atomically.

        A closed incident stays closed (Conflict): a new failure gets a new incident, so history stays readable.
        """
        self._open_guard()
        at = check_time(at, "update time")
        new_status = None if status is None else _incident_status(status)
        new_target = None if target is None else check_name(target, "incident target")
        patch = normalise_detail(detail, f"incident {incident_id}")

        def change(old: Incident) -> Incident:
            if not old.is_open and new_status not in (None, IncidentStatus.CLOSED):
                raise Conflict(f"incident {old.id} is closed; it cannot become {new_status}")
            final = old.status if new_status is None else new_status
            closing = final is IncidentStatus.CLOSED and old.closed_at is None
            return Incident(
                id=old.id,
                engine=old.engine,
                opened_at=old.opened_at,
                status=final,
                kind=old.kind,
                source=old.source,
                target=old.target if new_target is None else new_target,
                reason=old.reason,
                updated_at=at,
                closed_at=at if closing else old.closed_at,
                detail={**old.detail, **patch},
            )

        return self._update_incident(incident_id, change)

    def incident(self, incident_id: str) -> Incident:
        """One incident by id; NotFound if there is none."""
        self._open_guard()
        found = self._select_incident(incident_id)
        if found is None:
            raise NotFound(f"no incident {incident_id!r} in {self.url}")
        return found

    def incidents(
        self, engine: str | None = None, open_only: bool = False, limit: int | None = None
    ) -> list[Incident]:
        """Incidents newest first (by opening time), of one engine if given, only not-closed ones if asked."""
        self._open_guard()
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise StoreError(f"limit must be a non-negative integer, got {limit!r}")
        return self._select_incidents(engine, open_only, limit)

    def open_incident(self, engine: str) -> Incident | None:
        """The engine's incident that is not closed, if any (there is at most one)."""
        found = self.incidents(engine, open_only=True, limit=1)
        return found[0] if found else None

    # --- runbook journal ------------------------------------------------------------------------------------------

    def append_journal(
        self,
        incident_id: str,
        step: str,
        state: JournalState | str,
        at: float,
        detail: Mapping[str, Any] | None = None,
        token: int = 0,
    ) -> JournalEntry:
        """Append a runbook step's state to the incident's journal; seq is 1, 2, 3... per incident.

        `token` is the fencing token of the writer's lease. A token lower than one already used in this journal
        means the writer was deposed: LeaseLost, and nothing is written.
        """
        self._open_guard()
        try:
            journal_state = JournalState(state)
        except ValueError:
            raise StoreError(f"journal state must be one of {', '.join(JournalState)}, got {state!r}") from None
        if isinstance(token, bool) or not isinstance(token, int) or token < 0:
            raise StoreError(f"fencing token must be a non-negative integer, got {token!r}")
        return self._append_journal(
            incident_id,
            check_name(step, "step"),
            journal_state,
            check_time(at, "journal time"),
            normalise_detail(detail, f"journal of {incident_id}"),
            token,
        )

    def journal(self, incident_id: str) -> list[JournalEntry]:
        """The incident's journal in seq order (empty for an incident without one)."""
        self._open_guard()
        return self._select_journal(incident_id)

    # --- audit log ------------------------------------------------------------------------------------------------

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

    # --- leases ---------------------------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take the lease for `ttl` seconds. None while another holder's lease is live. Re-acquiring one's own live
        lease extends it and keeps its token; every other acquisition gets a token greater than any before."""
        self._open_guard()
        name, holder = check_name(name, "lease name"), check_name(holder, "holder")
        return self._acquire_lease(name, holder, check_duration(ttl, "lease ttl"))

    def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Extend our lease to now + `ttl`. LeaseLost if someone else holds it, or took and released it since."""
        self._open_guard()
        return self._renew_lease(lease, check_duration(ttl, "lease ttl"))

    def release_lease(self, lease: Lease) -> None:
        """Give the lease up if it is still ours (same holder and token); otherwise do nothing."""
        self._open_guard()
        self._release_lease(lease)

    def current_lease(self, name: str) -> Lease | None:
        """The live lease of that name, or None if nobody holds it now."""
        self._open_guard()
        return self._select_lease(check_name(name, "lease name"))

    # --- controller state -----------------------------------------------------------------------------------------

    def get_state(self, key: str) -> tuple[dict[str, Any], int] | None:
        """The document stored under `key` and its version (1 after the first put), or None."""
        self._open_guard()
        found = self._select_state(check_name(key, "state key"))
        if found is None:
            return None
        text, version = found
        return load_detail(text, f"state {key!r}"), version

    def put_state(self, key: str, value: Mapping[str, Any], expected_version: int | None) -> int:
        """Compare-and-set: write if the stored version is `expected_version` (None: the key must not exist).
        Returns the new version; Conflict if another writer got there first."""
        self._open_guard()
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise StoreError(f"expected_version must be an integer or None, got {expected_version!r}")
        text = canonical_json(normalise_detail(value, f"state {key!r}"))
        return self._put_state(check_name(key, "state key"), text, expected_version)

    # --- hooks: observations --------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _insert_observations(self, rows: Sequence[ObservationRow]) -> None:
        """Insert all rows in one atomic write (all or none), remembering insertion order for equal times."""

    @abc.abstractmethod
    def _select_observations(self, since: float, subjects: Sequence[str] | None) -> list[ObservationRow]:
        """Rows with `at >= since` (and subject in `subjects` if given), ordered by at, then insertion."""

    @abc.abstractmethod
    def _select_latest_observations(self, limit: int, since: float | None) -> list[ObservationRow]:
        """The last `limit` rows (by at, then insertion) of each (subject, source), optionally only `at >= since`,
        returned ordered by at, then insertion. Must not cost a scan of the whole table per pair."""

    @abc.abstractmethod
    def _delete_observations(self, before: float) -> int:
        """Delete rows with `at < before` in one atomic write; return the count."""

    # --- hooks: incidents -----------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _insert_incident(self, incident: Incident) -> None:
        """Atomically: raise Conflict if the id exists, or if the incident is open and its engine already has an
        open (not closed) incident — name that incident in the message; otherwise store it."""

    @abc.abstractmethod
    def _update_incident(self, incident_id: str, change: Callable[[Incident], Incident]) -> Incident:
        """Read the incident, apply `change` (pure; it may raise StoreError to refuse), store and return the result,
        all atomically against concurrent updates. NotFound if there is no such incident."""

    @abc.abstractmethod
    def _select_incident(self, incident_id: str) -> Incident | None:
        """The incident, or None."""

    @abc.abstractmethod
    def _select_incidents(self, engine: str | None, open_only: bool, limit: int | None) -> list[Incident]:
        """Incidents ordered by opened_at descending (ties: id descending), filtered and limited as asked."""

    # --- hooks: journal -------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _append_journal(
        self, incident_id: str, step: str, state: JournalState, at: float, detail: dict[str, Any], token: int
    ) -> JournalEntry:
        """Atomically: NotFound if the incident does not exist; LeaseLost if `token` is lower than the highest
        token in its journal; else store the entry with seq = last seq + 1 (1 for the first) and return it."""

    @abc.abstractmethod
    def _select_journal(self, incident_id: str) -> list[JournalEntry]:
        """The incident's entries in seq order."""

    # --- hooks: audit ---------------------------------------------------------------------------------------------

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

    # --- hooks: leases --------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Atomically, on the store's own clock: if a live lease of another holder exists return None; if the live
        lease is `holder`'s, extend it to now + ttl keeping its token; otherwise grant it to `holder` with a token
        greater than every token ever issued for `name` (even released or expired ones)."""

    @abc.abstractmethod
    def _renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Atomically: if the stored lease still has `lease`'s holder and token (even if it has expired: nobody
        took it in between), set its expiry to now + ttl and return it; otherwise raise LeaseLost."""

    @abc.abstractmethod
    def _release_lease(self, lease: Lease) -> None:
        """Atomically: if the stored lease still has `lease`'s holder and token, end it now; never reset the token
        counter. Do nothing otherwise."""

    @abc.abstractmethod
    def _select_lease(self, name: str) -> Lease | None:
        """The lease if it is held and not expired on the store's clock, else None."""

    # --- hooks: controller state ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def _select_state(self, key: str) -> tuple[str, int] | None:
        """The stored JSON text and version, or None."""

    @abc.abstractmethod
    def _put_state(self, key: str, value_json: str, expected_version: int | None) -> int:
        """Atomic compare-and-set: store if the current version equals `expected_version` (None: key absent),
        with version + 1 (1 for a new key) and return it; otherwise raise Conflict naming both versions."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release connections; called once."""


def _observation(row: ObservationRow) -> Observation:
    at, subject, source, status, detail = row
    return Observation(at=at, subject=subject, source=source, status=Status(status), detail=detail)


def _audit_entry(row: AuditRow) -> AuditEntry:
    detail = load_detail(row.detail_json, f"audit entry {row.seq}")
    return AuditEntry(row.seq, row.at, row.actor, row.action, detail, row.prev_hash, row.hash)


def _incident_status(status: IncidentStatus | str) -> IncidentStatus:
    try:
        return IncidentStatus(status)
    except ValueError:
        raise StoreError(
            f"incident status must be one of {', '.join(IncidentStatus)}, got {status!r}"
        ) from None

