"""Planned switchovers, kept in the store so that whichever daemon leads at the chosen time runs them.

Like the quarantine book (`store.quarantine`), the schedule is one versioned document (`schedule`) changed only by
compare-and-set (`store.documents`), so an operator's cancel and a leader's claim of the same entry never both
succeed. The rules are `core.schedule`'s; this module says how the document is written down.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.core import schedule as sch
from orchestrator.core.schedule import Scheduled
from orchestrator.store.documents import Document, DocumentStore

__all__ = ["SCHEDULE", "SCHEDULE_KEY", "ScheduleStore"]

SCHEDULE_KEY = "schedule"
SCHEDULE: Document[list[Scheduled]] = Document(
    SCHEDULE_KEY, "schedule", lambda value: [Scheduled.from_json(body) for body in value.get("entries") or ()],
    lambda book: {"entries": [entry.to_json() for entry in book]})


class ScheduleStore(DocumentStore):
    """The planned switchovers of a store; `StateStore` mixes it in."""

    def schedules(self) -> list[Scheduled]:
        """Every entry kept, open or ended, in the order they were made."""
        return SCHEDULE.read(self)[0]

    def add_schedule(self, entry: Scheduled) -> Scheduled:
        """Store a new planned switchover and audit it (`schedule.create`, by its `created_by`). UnsafeError
        (exit 3) while its engine already has an open one; the audit entry is written only once it is stored."""
        SCHEDULE.change(self, lambda book: sch.add(book, entry))
        self.audit(entry.created_by, "schedule.create", entry.to_json(), entry.created_at)
        return entry

    def cancel_schedule(self, entry_id: str | None, actor: str, now: float, reason: str = "",
                        engine: str | None = None) -> Scheduled:
        """Cancel a pending entry (by id, or the only open one) and audit who did it (`schedule.cancel`)."""
        done: list[Scheduled] = []

        def change(book: list[Scheduled]) -> list[Scheduled]:
            after, cancelled = sch.cancel(book, entry_id, now, reason, engine)
            done[:] = [cancelled]
            return after

        SCHEDULE.change(self, change)
        self.audit(actor, "schedule.cancel", {"schedule": done[0].id, "engine": done[0].engine,
                                              "target": done[0].target, "at": done[0].at, "reason": reason}, now)
        return done[0]

    def change_schedule(self, entry_id: str, change: Callable[[Scheduled], Scheduled | None]) -> Scheduled | None:
        """Apply `change` to one entry atomically. `change` sees the entry as stored now and returns it changed,
        or None to leave the book alone (someone else got there first: cancelled, claimed, ended); the result is
        the entry as stored after, or None when nothing was written or there is no such entry."""
        result: list[Scheduled | None] = [None]

        def apply(book: list[Scheduled]) -> list[Scheduled]:
            result[0] = None
            found = next((e for e in book if e.id == entry_id), None)
            after = None if found is None else change(found)
            if found is None or after is None or after == found:
                return book
            result[0] = after
            return sch.prune([after if e.id == entry_id else e for e in book])

        SCHEDULE.change(self, apply)
        return result[0]
