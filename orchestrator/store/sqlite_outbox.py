"""The outbox on SQLite (see outbox.py): one table, every hook one short transaction.

Claims are two columns of the item, the holder and the time the claim ends (`now + claim_ttl` on the claimer's
clock: one host, one clock). An item is due when it is pending, its next attempt time has come and its claim, if
any, has ended. AUTOINCREMENT keeps ids growing even after the newest items were pruned.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from orchestrator.store.outbox import OutboxItem, OutboxStatus, OutboxStore, OutboxSummary
from orchestrator.store.records import Conflict, NotFound, canonical_json, load_detail

SCHEMA = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, body TEXT NOT NULL, created_at REAL NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL, next_attempt_at REAL,
    last_attempt_at REAL, last_error TEXT, delivered_at REAL, claim_holder TEXT, claim_until REAL);
CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
"""

_COLUMNS = ("id, channel, body, created_at, status, attempts, max_attempts, next_attempt_at, last_attempt_at, "
            "last_error, delivered_at, claim_holder, claim_until")
_DUE = "status = 'pending' AND next_attempt_at <= ? AND (claim_until IS NULL OR claim_until <= ?)"


class SqliteOutbox(OutboxStore):
    """The outbox hooks of SqliteStore, which provides the transactions."""

    url: str

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _insert_notification(self, channel: str, body: dict[str, Any], at: float, max_attempts: int) -> int:
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO outbox (channel, body, created_at, status, attempts, max_attempts, next_attempt_at) "
                "VALUES (?, ?, ?, 'pending', 0, ?, ?)",
                (channel, canonical_json(body), at, max_attempts, at),
            )
            return int(cursor.lastrowid or 0)

    def _select_due_notifications(self, now: float, limit: int) -> list[OutboxItem]:
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE {_DUE} ORDER BY id LIMIT ?",
                                (now, now, limit)).fetchall()
        return [_item(row, now) for row in rows]

    def _claim_notifications(self, now: float, limit: int, holder: str, ttl: float) -> list[OutboxItem]:
        with self._write() as conn:  # the write lock is taken at BEGIN: nobody else selects these meanwhile
            rows = conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE {_DUE} ORDER BY id LIMIT ?",
                                (now, now, limit)).fetchall()
            conn.executemany("UPDATE outbox SET claim_holder = ?, claim_until = ? WHERE id = ?",
                             [(holder, now + ttl, row[0]) for row in rows])
        return [_claimed(_item(row, now), holder) for row in rows]

    def _update_notification(
        self, item_id: int, change: Callable[[OutboxItem], OutboxItem], holder: str | None, now: float
    ) -> OutboxItem:
        with self._write() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                raise NotFound(f"no notification {item_id} in {self.url}")
            old = _item(row, now)
            if holder is not None and old.claimed_by not in (None, holder):
                raise Conflict(f"notification {item_id} is claimed by {old.claimed_by}, not {holder}")
            new = change(old)
            conn.execute(
                "UPDATE outbox SET status = ?, attempts = ?, next_attempt_at = ?, last_attempt_at = ?, "
                "last_error = ?, delivered_at = ?, claim_holder = NULL, claim_until = NULL WHERE id = ?",
                (new.status, new.attempts, new.next_attempt_at, new.last_attempt_at, new.last_error,
                 new.delivered_at, item_id),
            )
            return new

    def _select_notification(self, item_id: int) -> OutboxItem | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else _item(row, None)

    def _select_notifications(self, status: OutboxStatus | None, limit: int | None) -> list[OutboxItem]:
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE (? IS NULL OR status = ?) ORDER BY id LIMIT ?",
                                (status, status, -1 if limit is None else limit)).fetchall()
        return [_item(row, None) for row in rows]

    def _outbox_summary(self) -> OutboxSummary:
        with self._read() as conn:
            found = {status: (count, oldest) for status, count, oldest in conn.execute(
                "SELECT status, COUNT(*), MIN(created_at) FROM outbox GROUP BY status")}
        pending, oldest = found.get(OutboxStatus.PENDING, (0, None))
        return OutboxSummary(pending, found.get(OutboxStatus.ABANDONED, (0, None))[0],
                             found.get(OutboxStatus.DELIVERED, (0, None))[0], oldest)

    def _delete_notifications(self, before: float, abandoned: bool) -> int:
        with self._write() as conn:
            return int(conn.execute(
                "DELETE FROM outbox WHERE (status = 'delivered' AND delivered_at < ?) "
                "OR (? AND status = 'abandoned' AND last_attempt_at < ?)",
                (before, abandoned, before),
            ).rowcount)


def _item(row: tuple[Any, ...], now: float | None) -> OutboxItem:
    """The item; its claim's holder if the claim is live at `now` (any recorded claim when `now` is None)."""
    (ident, channel, body, created_at, status, attempts, max_attempts, next_attempt_at, last_attempt_at,
     last_error, delivered_at, claim_holder, claim_until) = row
    live = claim_holder is not None and claim_until is not None and (now is None or claim_until > now)
    return OutboxItem(ident, channel, load_detail(body, f"notification {ident}"), created_at, OutboxStatus(status),
                      attempts, max_attempts, next_attempt_at, last_attempt_at, last_error, delivered_at,
                      claim_holder if live else None)


def _claimed(item: OutboxItem, holder: str) -> OutboxItem:
    return replace(item, claimed_by=holder)


def statements() -> Iterator[str]:
    """The statements of SCHEMA, for the schema migration that adds the outbox."""
    yield from (part.strip() for part in SCHEMA.split(";") if part.strip())
