"""What reached the store, in the order it arrived: observations by cursor, and writers' heartbeats.

Why arrival order and not timestamps: an observation's `at` is its writer's wall clock. With one daemon's clock
30 s fast, a reader that asks for "observations since my now - 10 intervals" drops every observation of the slow
hosts, or takes stale ones of the fast host for fresh (issue 11, hole 7). The store itself orders what it receives
(SQLite: row ids; etcd: a batch sequence kept with compare-and-set; memory: a counter), so a reader that passes
back the cursor it was given gets exactly what arrived since its last read, whatever anyone's clock says.

Why heartbeats: to report and bound clock offsets, each writer stores its wall clock now and then; the store marks
each beat's arrival. A reader that saw a beat's `arrival` change between two of its reads knows the beat was
written between them, so the writer's offset against the reader's clock lies within
[beat.wall - read_after, beat.wall - read_before]: a bound measured on one clock only.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

from orchestrator.core.model import Observation
from orchestrator.errors import StoreError
from orchestrator.store.records import (
    Heartbeat,
    ObservationRow,
    check_name,
    check_time,
    normalise_detail,
    observation_of,
)

__all__ = ["ArrivalStore"]


class ArrivalStore(abc.ABC):
    """Arrival-ordered reads of a store; `StateStore` mixes it in."""

    @abc.abstractmethod
    def _open_guard(self) -> None: ...

    def observations_after(self, cursor: int | None, limit: int) -> tuple[list[Observation], int]:
        """Up to `limit` observations that reached the store after `cursor` (None or 0: from the oldest kept), in
        arrival order, and the cursor to pass next time (unchanged when nothing arrived). A cursor is the store's
        own position: an integer that only grows, meaningful to this store only. Observations pruned before they
        were read are skipped."""
        self._open_guard()
        start = 0 if cursor is None else cursor
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise StoreError(f"an observation cursor must be a non-negative integer, got {cursor!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise StoreError(f"limit must be a positive integer, got {limit!r}")
        rows, after = self._select_observations_after(start, limit)
        return [observation_of(row) for row in rows], after

    def observations_cursor(self) -> int:
        """The cursor at the end now: reading from it returns only what arrives from now on."""
        self._open_guard()
        return self._observations_end()

    def heartbeat(self, identity: str, wall: float, detail: Mapping[str, Any] | None = None) -> None:
        """Store `identity`'s beat: its wall clock now (`wall`) and a small detail (its role, its version, its
        own view of others' offsets). Replaces its previous beat; the store marks the arrival."""
        self._open_guard()
        self._put_heartbeat(check_name(identity, "heartbeat identity"), check_time(wall, "heartbeat wall time"),
                            normalise_detail(detail, f"heartbeat of {identity}"))

    def heartbeats(self) -> list[Heartbeat]:
        """Every writer's last beat, by identity."""
        self._open_guard()
        return sorted(self._select_heartbeats(), key=lambda beat: beat.identity)

    # --- hooks ----------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _select_observations_after(self, cursor: int, limit: int) -> tuple[list[ObservationRow], int]:
        """Rows stored after position `cursor` in arrival order, at most `limit`, and the position after the last
        one returned (`cursor` itself when none). Positions only grow, even across pruning."""

    @abc.abstractmethod
    def _observations_end(self) -> int:
        """The position after the last row stored so far."""

    @abc.abstractmethod
    def _put_heartbeat(self, identity: str, wall: float, detail: dict[str, Any]) -> None:
        """Replace `identity`'s beat, with an arrival marker greater than every marker given before."""

    @abc.abstractmethod
    def _select_heartbeats(self) -> list[Heartbeat]:
        """Every stored beat."""
