"""The automatic rejoin's book: which replicas need a rebuild, since when, and which rejoin the leader started.

Kept in the store (one versioned document, `auto_rejoin`, changed by compare-and-set like the quarantine book and
the schedule: `store.documents`) so that the clock of `policy.auto_rejoin.after` survives a restart, a cron run's
exit and a new leader, and so that a rejoin a leader started and then died in the middle of is followed, not started
twice, by the next one. The rules (when an entry starts, waits, is tried, retried or dropped) are
`drivers.auto_rejoin`'s; this module only says how the book is written down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.store.documents import Document, StateDocuments

__all__ = ["AUTO_REJOIN_KEY", "Pending", "StateDocuments", "auto_rejoin_book", "save_auto_rejoin"]

AUTO_REJOIN_KEY = "auto_rejoin"
WAITING, REJOINING = "waiting", "rejoining"


@dataclass(frozen=True, slots=True)
class Pending:
    """One replica that needs a rebuild: since when (first seen needing it), why, and where its rejoin stands.

    `state` is `waiting` (the next attempt is due at `due`) or `rejoining` (a rejoin to `primary` at `epoch` was
    started at `started_at`; the replica's own record says how far it is)."""

    engine: str
    replica: str
    need: str  # fenced | deposed | diverged
    since: float
    due: float
    state: str = WAITING
    attempts: int = 0
    primary: str | None = None
    primary_url: str | None = None
    epoch: int | None = None
    started_at: float | None = None
    error: str | None = None  # why the last attempt did not succeed
    blocked: str | None = None  # why the due attempt waits (quarantine, an incident, ...), for `status` and logs

    def to_json(self) -> dict[str, Any]:
        return {"engine": self.engine, "replica": self.replica, "need": self.need, "since": self.since,
                "due": self.due, "state": self.state, "attempts": self.attempts, "primary": self.primary,
                "primary_url": self.primary_url, "epoch": self.epoch, "started_at": self.started_at,
                "error": self.error, "blocked": self.blocked}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Pending:
        epoch, started = body.get("epoch"), body.get("started_at")
        state = str(body.get("state") or WAITING)
        if state not in (WAITING, REJOINING):
            raise ValueError(f"state {state!r}")
        return cls(str(body["engine"]), str(body["replica"]), str(body["need"]), float(body["since"]),
                   float(body["due"]), state, int(body.get("attempts") or 0),
                   _text(body.get("primary")), _text(body.get("primary_url")),
                   None if epoch is None else int(epoch), None if started is None else float(started),
                   _text(body.get("error")), _text(body.get("blocked")))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


AUTO_REJOIN: Document[dict[str, Pending]] = Document(
    AUTO_REJOIN_KEY, "automatic rejoin book",
    lambda value: {name: Pending.from_json(body) for name, body in (value.get("replicas") or {}).items()},
    lambda book: {"replicas": {name: entry.to_json() for name, entry in sorted(book.items())}})


def auto_rejoin_book(store: StateDocuments) -> tuple[dict[str, Pending], int | None]:
    """Every replica the book tracks (by replica name), and the document's version (None: never written)."""
    return AUTO_REJOIN.read(store)


def save_auto_rejoin(store: StateDocuments, changes: Mapping[str, Pending | None]) -> dict[str, Pending]:
    """Write `changes` (replica -> its entry, None to drop it) onto the book as stored now, by compare-and-set; if
    someone wrote in between, their entries for the other replicas are kept and ours applied again. Returns the book
    as written."""
    def apply(book: dict[str, Pending]) -> dict[str, Pending]:
        after = {name: entry for name, entry in book.items() if name not in changes}
        after.update({name: entry for name, entry in changes.items() if entry is not None})
        return after

    return AUTO_REJOIN.change(store, apply)
