"""Arrival order on SQLite (see arrivals.py): observation row ids that never come back, and heartbeats.

Why a counter: without AUTOINCREMENT, SQLite gives a new row `max(id) + 1`, so pruning the newest row (an
observation whose writer's clock ran behind looks old) would hand its id, and ids below a reader's cursor, to the
next rows, and the reader would never see them. The `counters` table remembers the last id given; inserts number
their rows from it. Heartbeats take their arrival marker from a counter of their own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from orchestrator.store.arrivals import ArrivalStore
from orchestrator.store.records import Heartbeat, ObservationRow, canonical_json, load_detail

SCHEMA = """
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE heartbeats (identity TEXT PRIMARY KEY, wall REAL NOT NULL, detail TEXT NOT NULL,
    arrival INTEGER NOT NULL)
"""


def statements() -> Iterator[str]:
    """The statements of SCHEMA, for the schema migration that adds them."""
    yield from (part.strip() for part in SCHEMA.split(";") if part.strip())


def next_ids(conn: sqlite3.Connection, name: str, count: int, floor: int = 0) -> int:
    """Reserve `count` numbers of counter `name` (inside the caller's write transaction); return the first. The
    counter never goes below `floor` (ids already used before the counter existed)."""
    row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    last = max(floor, 0 if row is None else int(row[0]))
    conn.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                 "value = excluded.value", (name, last + count))
    return last + 1


def last_observation_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(id) FROM observations").fetchone()
    counter = conn.execute("SELECT value FROM counters WHERE name = 'observations'").fetchone()
    return max(0 if row[0] is None else int(row[0]), 0 if counter is None else int(counter[0]))


def insert_observations(conn: sqlite3.Connection, rows: Sequence[ObservationRow]) -> None:
    """Insert `rows` numbered from the counter, in the order given (arrival order within a batch)."""
    first = next_ids(conn, "observations", len(rows), floor=last_observation_id(conn))
    conn.executemany("INSERT INTO observations (id, at, subject, source, status, detail) VALUES (?, ?, ?, ?, ?, ?)",
                     [(first + index, *row) for index, row in enumerate(rows)])


class SqliteArrivals(ArrivalStore):
    """The arrival hooks of SqliteStore, which provides the transactions."""

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _select_observations_after(self, cursor: int, limit: int) -> tuple[list[ObservationRow], int]:
        with self._read() as conn:
            found = conn.execute("SELECT id, at, subject, source, status, detail FROM observations WHERE id > ? "
                                 "ORDER BY id LIMIT ?", (cursor, limit)).fetchall()
        return [(at, subject, source, status, detail) for _, at, subject, source, status, detail in found], (
            found[-1][0] if found else cursor)

    def _observations_end(self) -> int:
        with self._read() as conn:
            return last_observation_id(conn)

    def _put_heartbeat(self, identity: str, wall: float, detail: dict[str, Any]) -> None:
        with self._write() as conn:
            arrival = next_ids(conn, "heartbeats", 1)
            conn.execute("INSERT INTO heartbeats (identity, wall, detail, arrival) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (identity) DO UPDATE SET wall = excluded.wall, detail = excluded.detail, "
                         "arrival = excluded.arrival", (identity, wall, canonical_json(detail), arrival))

    def _select_heartbeats(self) -> list[Heartbeat]:
        with self._read() as conn:
            rows = conn.execute("SELECT identity, wall, detail, arrival FROM heartbeats").fetchall()
        return [Heartbeat(identity, wall, load_detail(detail, f"heartbeat of {identity}"), arrival)
                for identity, wall, detail, arrival in rows]
