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
from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from orchestrator.core.model import Observation, Status
from orchestrator.errors import StoreError
from orchestrator.store.arrivals import ArrivalStore
from orchestrator.store.audit_chain import Tampered
from orchestrator.store.audit_store import AuditStore
from orchestrator.store.outbox import OutboxStore
from orchestrator.store.quarantine import QuarantineStore
from orchestrator.store.records import (
    Conflict,
    Incident,
    IncidentStatus,
    JournalEntry,
    JournalState,
    Lease,
    NotFound,
    ObservationRow,
    canonical_json,
    check_duration,
    check_name,
    check_time,
    load_detail,
    new_incident_id,
    normalise_detail,
    observation_of,
)
from orchestrator.store.schedule import ScheduleStore
from orchestrator.store.topology_record import TopologyRecordStore

__all__ = ["Conflict", "NotFound", "ObservationRow", "StateStore", "Tampered"]



class StateStore(AuditStore, OutboxStore, ArrivalStore, QuarantineStore, ScheduleStore, TopologyRecordStore):
    """Durable state shared by every run of the orchestrator: observations, incidents and their runbook journal,
    the audit log, leases with fencing tokens, small versioned documents for the controller, and the quarantined
    sites (kept in one of those documents)."""

    url: str

    def __init__(self, url: str) -> None:
        self.url = url
        self._closed = False

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
        return [observation_of(row) for row in self._select_observations(check_time(since, "since"), wanted)]

    def latest_observations(self, limit_per_pair: int, since: float | None = None) -> list[Observation]:
        """The last `limit_per_pair` observations of every (subject, source) pair, ordered by time then insertion.

        Enough to rebuild the health evaluator's consecutive-failure and quorum state at the start of a cron run
        without reading the whole retention window.
        """
        self._open_guard()
        if isinstance(limit_per_pair, bool) or not isinstance(limit_per_pair, int) or limit_per_pair < 1:
            raise StoreError(f"limit_per_pair must be a positive integer, got {limit_per_pair!r}")
        floor = None if since is None else check_time(since, "since")
        return [observation_of(row) for row in self._select_latest_observations(limit_per_pair, floor)]

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

    # --- leases ---------------------------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take the lease for `ttl` seconds. None while another holder's lease is live. Re-acquiring one's own live
        lease extends it and keeps its token; every other acquisition gets a token greater than any before."""
        self._open_guard()
        name, holder = check_name(name, "lease name"), check_name(holder, "holder")
        return self._acquire_lease(name, holder, check_duration(ttl, "lease ttl"))

    def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Extend our lease to now + `ttl`. LeaseLost if someone else holds it, or took and released it since, or
        (etcd) if it expired: renew well inside the TTL."""
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

    # --- hooks: leases --------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Atomically, with expiry on the store's own clock (SQLite: its host's; memory: its injected clock; etcd:
        the etcd lease's TTL, never a wall clock): if a live lease of another holder exists return None; if the
        live lease is `holder`'s, extend it to now + ttl keeping its token; otherwise grant it to `holder` with a
        token greater than every token ever issued for `name` (even released or expired ones)."""

    @abc.abstractmethod
    def _renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Atomically: if the stored lease still has `lease`'s holder and token, set its expiry to now + ttl and
        return it; otherwise raise LeaseLost. A lease that expired but that nobody took may be renewed (SQLite,
        memory) or be gone with its expiry (etcd: LeaseLost); either way there is never a second holder."""

    @abc.abstractmethod
    def _release_lease(self, lease: Lease) -> None:
        """Atomically: if the stored lease still has `lease`'s holder and token, end it now; never reset the token
        counter. Do nothing otherwise."""

    @abc.abstractmethod
    def _select_lease(self, name: str) -> Lease | None:
        """The lease if it is held and not expired on the store's clock, else None. Its `expires_at` is for
        display (see records.Lease)."""

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


def _incident_status(status: IncidentStatus | str) -> IncidentStatus:
    try:
        return IncidentStatus(status)
    except ValueError:
        raise StoreError(
            f"incident status must be one of {', '.join(IncidentStatus)}, got {status!r}"
        ) from None

