"""Planned switchovers, kept in the store so that whichever daemon leads at the chosen time runs them.

Like the quarantine book (`store.quarantine`), the schedule is one versioned document (`schedule`) changed only by
compare-and-set on top of `get_state`/`put_state`, which every backend already makes atomic (SQLite: a
transaction; etcd: a transaction on the key's mod revision; memory: a lock): so no backend needs code of its own,
and an operator's cancel and a leader's claim of the same entry never both succeed. The rules are
`core.schedule`'s; this module reads the document, applies them and writes it back, retrying on a conflict.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.core import schedule as sch
from orchestrator.core.schedule import Scheduled
from orchestrator.errors import StoreError
from orchestrator.store.records import Conflict

__all__ = ["SCHEDULE_KEY", "ScheduleStore"]

SCHEDULE_KEY = "schedule"
ATTEMPTS = 20  # compare-and-set rounds: the writers are a leader's cycle and an operator or two


class ScheduleStore(abc.ABC):
    """The planned switchovers of a store; `StateStore` mixes it in."""

    @abc.abstractmethod
    def get_state(self, key: str) -> tuple[dict[str, Any], int] | None: ...

    @abc.abstractmethod
    def put_state(self, key: str, value: Mapping[str, Any], expected_version: int | None) -> int: ...

    @abc.abstractmethod
    def audit(self, actor: str, action: str, detail: Mapping[str, Any], at: float) -> Any: ...

    def schedules(self) -> list[Scheduled]:
        """Every entry kept, open or ended, in the order they were made."""
        return self._schedule_book()[0]

    def add_schedule(self, entry: Scheduled) -> Scheduled:
        """Store a new planned switchover and audit it (`schedule.create`, by its `created_by`). UnsafeError
        (exit 3) while its engine already has an open one; the audit entry is written only once it is stored."""
        self._change_schedules(lambda book: sch.add(book, entry))
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

        self._change_schedules(change)
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

        self._change_schedules(apply)
        return result[0]

    def _schedule_book(self) -> tuple[list[Scheduled], int | None]:
        found = self.get_state(SCHEDULE_KEY)
        if found is None:
            return [], None
        value, version = found
        try:
            book = [Scheduled.from_json(body) for body in value.get("entries") or ()]
        except (KeyError, TypeError, ValueError) as error:
            raise StoreError(f"state {SCHEDULE_KEY!r}: unreadable schedule ({error!r})") from None
        return book, version

    def _change_schedules(self, change: Callable[[list[Scheduled]], list[Scheduled]]) -> list[Scheduled]:
        for _ in range(ATTEMPTS):
            book, version = self._schedule_book()
            after = change(list(book))
            if after == book:
                return after
            try:
                self.put_state(SCHEDULE_KEY, {"entries": [e.to_json() for e in after]}, version)
            except Conflict:
                continue
            return after
        raise StoreError(f"state {SCHEDULE_KEY!r}: still changing after {ATTEMPTS} attempts; try again")
