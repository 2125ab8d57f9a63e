"""An in-memory `StateStore`: every hook of `orchestrator.store.base` over plain dicts, for the simulator's speed.

Why it exists: a simulated day at one-second probes is 86,400 controller cycles, each of which reads the engine
record, the open incident and the lease. SQLite with `synchronous=FULL` costs milliseconds per write; this costs
microseconds. It is also the store of choice for tests that do not test persistence.

Why it is still a real store: the public methods of `StateStore` (validation, secret refusal, canonical JSON,
audit hashing) run unchanged on top of it, and every hook keeps the atomicity its docstring promises by holding
one lock, so the store contract suite can run against it like any other backend. Nothing survives `close()` or
the process: never use it for an orchestrator that must resume after a crash.

Lease expiry is measured on the store's own clock, which is injectable (`clock=`) so that a simulation on a
virtual clock sees leases expire in virtual time.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError, LeaseLost
from orchestrator.store.base import Conflict, NotFound, ObservationRow, StateStore
from orchestrator.store.outbox import OutboxItem, OutboxStatus, OutboxSummary
from orchestrator.store.records import (
    GENESIS_HASH,
    AuditEntry,
    AuditHead,
    AuditRow,
    Heartbeat,
    Incident,
    JournalEntry,
    JournalState,
    Lease,
    canonical_json,
)

SCHEME = "memory://"


def open_url(url: str) -> MemoryStore:
    """`memory://` or `memory://any-label`: a fresh, empty store each time (the label only names it in messages)."""
    if not url.startswith(SCHEME):
        raise ConfigError(f"store URL {url!r}: write memory:// (optionally memory://label)")
    if "?" in url or "#" in url:
        raise ConfigError(f"store URL {url!r}: options in store URLs are not supported")
    return MemoryStore(url)


@dataclass(slots=True)
class _LeaseSlot:
    holder: str | None
    token: int
    expires_at: float


class MemoryStore(StateStore):
    """A StateStore held in this process's memory; thread-safe, gone when the process ends."""

    def __init__(self, url: str = SCHEME, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(url)
        self._clock = clock
        self._lock = threading.RLock()
        self._observations: list[ObservationRow] = []
        self._arrivals: list[int] = []  # each observation's arrival number, parallel to _observations (ascending)
        self._heartbeats: dict[str, Heartbeat] = {}
        self._arrived = 0  # the last arrival number given, to observations and heartbeats alike
        self._incidents: dict[str, Incident] = {}
        self._open_by_engine: dict[str, str] = {}  # engine -> its one open incident, so lookups are O(1)
        self._by_engine: dict[str, list[str]] = {}  # engine -> its incidents' ids (the controller asks per engine)
        self._journals: dict[str, list[JournalEntry]] = {}
        self._audit: list[AuditRow] = []
        self._audit_head: AuditHead | None = None
        self._leases: dict[str, _LeaseSlot] = {}
        self._state: dict[str, tuple[str, int]] = {}
        self._outbox: dict[int, OutboxItem] = {}  # insertion order is id order
        self._claims: dict[int, tuple[str, float]] = {}  # id -> (holder, claimed until, on the claimer's clock)
        self._last_outbox_id = 0

    def _default_anchor_path(self) -> Path | None:
        """None, whatever the environment says: a memory store starts empty every time, so an anchor file could
        only ever say "re-created". `set_audit_anchor` still works, for tests."""
        return None

    def _close(self) -> None:
        with self._lock:
            self._observations.clear()
            self._arrivals.clear()
            self._journals.clear()

    # --- observations ---------------------------------------------------------------------------------------------

    def _insert_observations(self, rows: Sequence[ObservationRow]) -> None:
        with self._lock:
            self._observations.extend(rows)
            self._arrivals.extend(range(self._arrived + 1, self._arrived + 1 + len(rows)))
            self._arrived += len(rows)

    def _ordered(self) -> list[tuple[int, ObservationRow]]:
        """Rows with their insertion index, ordered by time then insertion (a stable sort keeps the latter)."""
        return sorted(enumerate(self._observations), key=lambda pair: pair[1][0])

    def _select_observations(self, since: float, subjects: Sequence[str] | None) -> list[ObservationRow]:
        wanted = None if subjects is None else set(subjects)
        with self._lock:
            return [row for _, row in self._ordered() if row[0] >= since and (wanted is None or row[1] in wanted)]

    def _select_latest_observations(self, limit: int, since: float | None) -> list[ObservationRow]:
        with self._lock:
            per_pair: dict[tuple[str, str], list[tuple[int, ObservationRow]]] = {}
            for index, row in self._ordered():
                if since is None or row[0] >= since:
                    per_pair.setdefault((row[1], row[2]), []).append((index, row))
        kept = [pair for rows in per_pair.values() for pair in rows[-limit:]]
        kept.sort(key=lambda pair: (pair[1][0], pair[0]))
        return [row for _, row in kept]

    def _delete_observations(self, before: float) -> int:
        with self._lock:
            kept = [(row, n) for row, n in zip(self._observations, self._arrivals, strict=True) if row[0] >= before]
            gone = len(self._observations) - len(kept)
            self._observations = [row for row, _ in kept]
            self._arrivals = [n for _, n in kept]
            return gone

    def _select_observations_after(self, cursor: int, limit: int) -> tuple[list[ObservationRow], int]:
        with self._lock:
            first = bisect.bisect_right(self._arrivals, cursor)
            rows = self._observations[first : first + limit]
            return rows, (self._arrivals[first + len(rows) - 1] if rows else cursor)

    def _observations_end(self) -> int:
        with self._lock:
            return self._arrived

    def _put_heartbeat(self, identity: str, wall: float, detail: dict[str, Any]) -> None:
        with self._lock:
            self._arrived += 1
            self._heartbeats[identity] = Heartbeat(identity, wall, detail, self._arrived)

    def _select_heartbeats(self) -> list[Heartbeat]:
        with self._lock:
            return list(self._heartbeats.values())

    # --- incidents ------------------------------------------------------------------------------------------------

    def _insert_incident(self, incident: Incident) -> None:
        with self._lock:
            if incident.id in self._incidents:
                raise Conflict(f"incident {incident.id} already exists")
            if incident.is_open:
                other = self._open_by_engine.get(incident.engine)
                if other is not None:
                    raise Conflict(f"engine {incident.engine} already has an open incident: {other}")
                self._open_by_engine[incident.engine] = incident.id
            self._incidents[incident.id] = incident
            self._by_engine.setdefault(incident.engine, []).append(incident.id)

    def _update_incident(self, incident_id: str, change: Callable[[Incident], Incident]) -> Incident:
        with self._lock:
            old = self._incidents.get(incident_id)
            if old is None:
                raise NotFound(f"no incident {incident_id!r} in {self.url}")
            new = change(old)
            self._incidents[incident_id] = new
            if not new.is_open and self._open_by_engine.get(new.engine) == incident_id:
                del self._open_by_engine[new.engine]
            return new

    def _select_incident(self, incident_id: str) -> Incident | None:
        with self._lock:
            return self._incidents.get(incident_id)

    def _select_incidents(self, engine: str | None, open_only: bool, limit: int | None) -> list[Incident]:
        with self._lock:
            if open_only and engine is not None:  # the controller's hot path: one dict lookup
                found = self._open_by_engine.get(engine)
                chosen = [] if found is None else [self._incidents[found]]
            elif engine is not None:  # one engine's incidents, not every incident's (docs/mass-failover.md)
                every = (self._incidents[ident] for ident in self._by_engine.get(engine, ()))
                chosen = [incident for incident in every if not open_only or incident.is_open]
            else:
                chosen = [incident for incident in self._incidents.values() if not open_only or incident.is_open]
        chosen.sort(key=lambda incident: (incident.opened_at, incident.id), reverse=True)
        return chosen if limit is None else chosen[:limit]

    # --- journal --------------------------------------------------------------------------------------------------

    def _append_journal(
        self, incident_id: str, step: str, state: JournalState, at: float, detail: dict[str, Any], token: int
    ) -> JournalEntry:
        with self._lock:
            if incident_id not in self._incidents:
                raise NotFound(f"no incident {incident_id!r} in {self.url}")
            journal = self._journals.setdefault(incident_id, [])
            top = max((entry.token for entry in journal), default=0)
            if token < top:
                raise LeaseLost(
                    f"incident {incident_id}: fencing token {token} is older than {top}: "
                    "another leader has taken over this runbook"
                )
            entry = JournalEntry(incident_id, len(journal) + 1, at, step, state, detail, token)
            journal.append(entry)
            return entry

    def _select_journal(self, incident_id: str) -> list[JournalEntry]:
        with self._lock:
            return list(self._journals.get(incident_id, ()))

    # --- audit ----------------------------------------------------------------------------------------------------

    def _append_audit(self, make_entry: Callable[[int, str], AuditEntry]) -> AuditEntry:
        with self._lock:
            head = self._audit_head
            entry = make_entry((head.seq if head else 0) + 1, head.hash if head else GENESIS_HASH)
            self._audit.append(AuditRow(entry.seq, entry.at, entry.actor, entry.action,
                                        canonical_json(entry.detail), entry.prev_hash, entry.hash))
            self._audit_head = AuditHead(entry.seq, entry.hash)
            return entry

    def _load_audit(self, after_seq: int | None) -> tuple[AuditHead | None, list[AuditRow]]:
        with self._lock:
            rows = [] if after_seq is None else [row for row in self._audit if row.seq > after_seq]
            return self._audit_head, rows

    # --- leases ---------------------------------------------------------------------------------------------------

    def _acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        with self._lock:
            now = self._clock()
            slot = self._leases.get(name)
            if slot is None:
                token = 1
            else:
                live = slot.holder is not None and slot.expires_at > now
                if live and slot.holder != holder:
                    return None
                token = slot.token if live else slot.token + 1
            self._leases[name] = _LeaseSlot(holder, token, now + ttl)
            return Lease(name, holder, token, now + ttl)

    def _renew_lease(self, lease: Lease, ttl: float) -> Lease:
        with self._lock:
            slot = self._leases.get(lease.name)
            if slot is None or slot.holder != lease.holder or slot.token != lease.token:
                raise LeaseLost(f"lease {lease.name!r} (token {lease.token}) is no longer held by {lease.holder}")
            slot.expires_at = self._clock() + ttl
            return Lease(lease.name, lease.holder, lease.token, slot.expires_at)

    def _release_lease(self, lease: Lease) -> None:
        with self._lock:
            slot = self._leases.get(lease.name)
            if slot is not None and slot.holder == lease.holder and slot.token == lease.token:
                slot.holder, slot.expires_at = None, 0.0

    def _select_lease(self, name: str) -> Lease | None:
        with self._lock:
            slot = self._leases.get(name)
            if slot is None or slot.holder is None or slot.expires_at <= self._clock():
                return None
            return Lease(name, slot.holder, slot.token, slot.expires_at)

    # --- controller state -----------------------------------------------------------------------------------------

    def _select_state(self, key: str) -> tuple[str, int] | None:
        with self._lock:
            return self._state.get(key)

    def _put_state(self, key: str, value_json: str, expected_version: int | None) -> int:
        with self._lock:
            found = self._state.get(key)
            current = None if found is None else found[1]
            if current != expected_version:
                raise Conflict(
                    f"state {key!r}: expected version {expected_version}, found {current}: someone else wrote it"
                )
            version = 1 if current is None else current + 1
            self._state[key] = (value_json, version)
            return version

    # --- outbox ---------------------------------------------------------------------------------------------------

    def _insert_notification(self, channel: str, body: dict[str, Any], at: float, max_attempts: int) -> int:
        with self._lock:
            self._last_outbox_id += 1
            ident = self._last_outbox_id
            self._outbox[ident] = OutboxItem(ident, channel, body, at, OutboxStatus.PENDING, 0, max_attempts, at,
                                             None, None, None)
            return ident

    def _claim_holder(self, ident: int, now: float | None) -> str | None:
        """The holder of the item's claim if it is live at `now` (any claim not yet ended when `now` is None)."""
        claim = self._claims.get(ident)
        return claim[0] if claim is not None and (now is None or claim[1] > now) else None

    def _due(self, now: float, limit: int) -> list[OutboxItem]:
        due = [item for item in self._outbox.values()
               if item.status is OutboxStatus.PENDING and item.next_attempt_at is not None
               and item.next_attempt_at <= now and self._claim_holder(item.id, now) is None]
        return due[:limit]

    def _select_due_notifications(self, now: float, limit: int) -> list[OutboxItem]:
        with self._lock:
            return self._due(now, limit)

    def _claim_notifications(self, now: float, limit: int, holder: str, ttl: float) -> list[OutboxItem]:
        with self._lock:
            due = self._due(now, limit)
            for item in due:
                self._claims[item.id] = (holder, now + ttl)
            return [replace(item, claimed_by=holder) for item in due]

    def _update_notification(
        self, item_id: int, change: Callable[[OutboxItem], OutboxItem], holder: str | None, now: float
    ) -> OutboxItem:
        with self._lock:
            old = self._outbox.get(item_id)
            if old is None:
                raise NotFound(f"no notification {item_id} in {self.url}")
            other = self._claim_holder(item_id, now)
            if holder is not None and other not in (None, holder):
                raise Conflict(f"notification {item_id} is claimed by {other}, not {holder}")
            new = change(replace(old, claimed_by=other))
            self._outbox[item_id] = new
            self._claims.pop(item_id, None)
            return new

    def _with_claim(self, item: OutboxItem) -> OutboxItem:
        return replace(item, claimed_by=self._claim_holder(item.id, None))

    def _select_notification(self, item_id: int) -> OutboxItem | None:
        with self._lock:
            found = self._outbox.get(item_id)
            return None if found is None else self._with_claim(found)

    def _select_notifications(self, status: OutboxStatus | None, limit: int | None) -> list[OutboxItem]:
        with self._lock:
            chosen = [self._with_claim(item) for item in self._outbox.values() if status in (None, item.status)]
        return chosen if limit is None else chosen[:limit]

    def _outbox_summary(self) -> OutboxSummary:
        with self._lock:
            items = list(self._outbox.values())
        pending = [item.created_at for item in items if item.status is OutboxStatus.PENDING]
        return OutboxSummary(len(pending), sum(item.status is OutboxStatus.ABANDONED for item in items),
                             sum(item.status is OutboxStatus.DELIVERED for item in items),
                             min(pending, default=None))

    def _delete_notifications(self, before: float, abandoned: bool) -> int:
        def goes(item: OutboxItem) -> bool:
            if item.status is OutboxStatus.DELIVERED:
                return item.delivered_at is not None and item.delivered_at < before
            return abandoned and item.status is OutboxStatus.ABANDONED and (item.last_attempt_at or 0) < before

        with self._lock:
            gone = [ident for ident, item in self._outbox.items() if goes(item)]
            for ident in gone:
                del self._outbox[ident]
            return len(gone)
