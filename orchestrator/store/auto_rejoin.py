"""The automatic rejoin's book: which replicas need a rebuild, since when, and which rejoin the leader started.

Kept in the store (one versioned document, `auto_rejoin`, on `get_state`/`put_state` like the quarantine book and the
schedule) so that the clock of `policy.auto_rejoin.after` survives a restart, a cron run's exit and a new leader,
and so that a rejoin a leader started and then died in the middle of is followed, not started twice, by the next
one. Every backend's `put_state` is already a compare-and-set, so no backend needs code of its own, and this module
needs no change to `StateStore`: it works on any object with those two methods. The rules (when an entry starts,
waits, is tried, retried or dropped) are `drivers.auto_rejoin`'s; this module only reads the book and writes the
entries a cycle changed back onto what is stored now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.errors import StoreError
from orchestrator.store.records import Conflict

__all__ = ["AUTO_REJOIN_KEY", "Pending", "StateDocuments", "auto_rejoin_book", "save_auto_rejoin"]

AUTO_REJOIN_KEY = "auto_rejoin"
ATTEMPTS = 20  # compare-and-set rounds: the writers are the leader's cycle (and, briefly, a deposed one)
WAITING, REJOINING = "waiting", "rejoining"


class StateDocuments(Protocol):
    """The two calls of `StateStore` this book is kept with."""

    def get_state(self, key: str) -> tuple[dict[str, Any], int] | None: ...

    def put_state(self, key: str, value: Mapping[str, Any], expected_version: int | None) -> int: ...


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


def auto_rejoin_book(store: StateDocuments) -> tuple[dict[str, Pending], int | None]:
    """Every replica the book tracks (by replica name), and the document's version (None: never written)."""
    found = store.get_state(AUTO_REJOIN_KEY)
    if found is None:
        return {}, None
    value, version = found
    try:
        book = {name: Pending.from_json(body) for name, body in (value.get("replicas") or {}).items()}
    except (KeyError, TypeError, ValueError) as error:
        raise StoreError(f"state {AUTO_REJOIN_KEY!r}: unreadable automatic rejoin book ({error!r})") from None
    return book, version


def save_auto_rejoin(store: StateDocuments, changes: Mapping[str, Pending | None]) -> dict[str, Pending]:
    """Write `changes` (replica -> its entry, None to drop it) onto the book as stored now, by compare-and-set; if
    someone wrote in between, their entries for the other replicas are kept and ours applied again. Returns the book
    as written."""
    for _ in range(ATTEMPTS):
        book, version = auto_rejoin_book(store)
        after = {name: entry for name, entry in book.items() if name not in changes}
        after.update({name: entry for name, entry in changes.items() if entry is not None})
        if after == book and version is not None:
            return after
        try:
            store.put_state(AUTO_REJOIN_KEY, {"replicas": {n: e.to_json() for n, e in sorted(after.items())}},
                            version)
        except Conflict:
            continue
        return after
    raise StoreError(f"state {AUTO_REJOIN_KEY!r}: still changing after {ATTEMPTS} attempts")
