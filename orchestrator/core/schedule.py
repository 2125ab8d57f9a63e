"""Planned switchovers at a chosen time (issue 15, item 3): the schedule's rules, sans-IO.

Why a schedule at all: a failback onto a repaired site is a choice, best made at a quiet hour with support warned,
not at whatever minute an SRE happens to type `execute`. The schedule lives in the store, so whichever daemon leads
at that hour runs it; these rules say, from the schedule and a time the caller passes, what is due:

- an entry is announced when it is made, then 15 min and 1 min before its time (`LEADS`); a lead already reached
  when the entry was made is covered by the first announcement, and when several leads are reached at once (no
  leader for a while) only the nearest is announced: one message, with the time that is left;
- at its time it starts (`START`), unless a rule blocks it, in which case it waits, and every leader retries;
- an entry that has not started `grace` after its time is missed (`MISS`): it pages, and never runs late silently;
- a started, cancelled, missed or refused entry is kept for the record (the last `KEEP_ENDED` of them).

`STARTING` is the claim a leader makes before it opens the incident, so that a cancel and a start never both win
(each is a compare-and-set of the one document); a leader that dies between claim and incident leaves `STARTING`,
which the next leader resolves (the incident names its schedule, so it is found, or opened then).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import Any

from orchestrator.core.durations import format_duration, parse_duration
from orchestrator.core.errors import ConfigError, UnsafeError
from orchestrator.core.phases import format_instant

MAX_AHEAD = 7 * 86400.0  # further ahead than a week, the topology and the people on call will have changed
DEFAULT_GRACE = 300.0  # how late a scheduled switchover may still start (no leader, target catching up)
LEADS = (900.0, 60.0)  # announcements before the time, in seconds, besides the one when it is scheduled
PLANNED_WINDOW = 0.0
"""The protection window of a planned switchover when none is asked for: none. Nothing is lost in a planned
switchover (the old primary is fenced only after the target holds every acknowledged order), so there is nothing to
recover from: the runbook skips open_protection, re-checks the new primary's health while trading is still halted,
and reopens (`core.runbook.windowless`). `--protect 5m` asks for a window."""
KEEP_ENDED = 20


class State(StrEnum):
    PENDING = "pending"
    STARTING = "starting"  # claimed by a leader, incident not yet confirmed
    STARTED = "started"
    CANCELLED = "cancelled"
    MISSED = "missed"
    REFUSED = "refused"


OPEN = frozenset({State.PENDING, State.STARTING})


@dataclass(frozen=True, slots=True)
class Scheduled:
    """One planned switchover of an engine to `target` at `at` (epoch seconds)."""

    id: str
    engine: str
    target: str
    at: float
    created_at: float
    created_by: str
    source: str = ""  # the primary when it was scheduled (for the announcements; the runbook reads the live one)
    protection: float | None = None  # seconds; None: no window asked for (PLANNED_WINDOW: none)
    grace: float = DEFAULT_GRACE
    reason: str = ""
    state: State = State.PENDING
    announced: tuple[float, ...] = ()  # the leads already announced
    incident: str | None = None
    ended_at: float | None = None
    why: str = ""  # why it was cancelled, missed or refused
    waiting: str = ""  # while due but blocked: the rules that block it (what a miss will say)
    claimed_by: str = ""

    @property
    def is_open(self) -> bool:
        return self.state in OPEN

    @property
    def window(self) -> float:
        """The protection window the switchover's runbook gets."""
        return PLANNED_WINDOW if self.protection is None else self.protection

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "engine": self.engine, "target": self.target, "at": self.at,
                "created_at": self.created_at, "created_by": self.created_by, "source": self.source,
                "protection": self.protection, "grace": self.grace, "reason": self.reason, "state": self.state.value,
                "announced": list(self.announced), "incident": self.incident, "ended_at": self.ended_at,
                "why": self.why, "waiting": self.waiting, "claimed_by": self.claimed_by}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Scheduled:
        protection, ended = body.get("protection"), body.get("ended_at")
        return cls(str(body["id"]), str(body["engine"]), str(body["target"]), float(body["at"]),
                   float(body["created_at"]), str(body["created_by"]), str(body.get("source") or ""),
                   None if protection is None else float(protection), float(body.get("grace", DEFAULT_GRACE)),
                   str(body.get("reason") or ""), State(body.get("state", "pending")),
                   tuple(float(lead) for lead in body.get("announced") or ()),
                   None if body.get("incident") is None else str(body["incident"]),
                   None if ended is None else float(ended), str(body.get("why") or ""),
                   str(body.get("waiting") or ""), str(body.get("claimed_by") or ""))


# ---- when ------------------------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"\+\s*(.+)")


def parse_when(text: str, now: float, option: str = "--at") -> float:
    """`2026-12-05T02:00:00+08:00` (ISO 8601 with a zone: a bare local time means different instants on different
    daemons), `...Z`, or `+30m` from now; refused in the past or more than MAX_AHEAD ahead. ConfigError (exit 2)."""
    cleaned = text.strip()
    shown = cleaned if len(cleaned) <= 40 else cleaned[:30] + "..."
    relative = _RELATIVE.fullmatch(cleaned)
    if relative is not None:
        try:
            at = now + parse_duration(relative.group(1))
        except ValueError as error:
            raise ConfigError(f"{option} {shown}: {error}") from None
    else:
        at = _instant(cleaned, shown, option)
    if at <= now:
        raise ConfigError(f"{option} {shown}: in the past (now is {_utc(now)}); a switchover now is "
                          "`failover execute` without --at")
    if at - now > MAX_AHEAD:
        raise ConfigError(f"{option} {shown}: more than {format_duration(MAX_AHEAD)} ahead (latest "
                          f"{_utc(now + MAX_AHEAD)})")
    return at


def _instant(text: str, shown: str, option: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{option} {shown}: expected an ISO 8601 time with a zone (2026-12-05T02:00:00+08:00, "
                          "...Z) or a delay such as +30m") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ConfigError(f"{option} {shown}: no time zone; add one (Z, +08:00) so every daemon reads the same "
                          "instant")
    return moment.timestamp()


def _utc(at: float) -> str:
    return f"{datetime.fromtimestamp(at, UTC):%Y-%m-%dT%H:%M:%SZ}"


def schedule_id(engine: str, at: float, suffix: str) -> str:
    """`SCH-20261205-180000-spot-ab12`: the switchover's time (UTC), the engine, a random suffix from the caller."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", engine).strip("_") or "engine"
    return f"SCH-{datetime.fromtimestamp(at, UTC):%Y%m%d-%H%M%S}-{slug}-{suffix}"


def new_entry(entry_id: str, engine: str, target: str, at: float, now: float, actor: str, *, source: str = "",
              protection: float | None = None, grace: float = DEFAULT_GRACE, reason: str = "") -> Scheduled:
    """A pending entry; the leads already reached now are covered by the announcement made when scheduling."""
    reached = tuple(lead for lead in LEADS if at - now <= lead)
    return Scheduled(entry_id, engine, target, at, now, actor, source, protection, grace, reason,
                     announced=reached)


# ---- the book --------------------------------------------------------------------------------------------------

Book = Sequence[Scheduled]


def add(book: Book, entry: Scheduled) -> list[Scheduled]:
    """The book with `entry`; UnsafeError (exit 3) while the engine already has an open one: two planned
    switchovers of one engine would each be planned against a primary the other changes."""
    for other in book:
        if other.engine == entry.engine and other.is_open:
            raise UnsafeError(f"refused: {entry.engine} already has a planned switchover, {other.id} to "
                              f"{other.target} at {_utc(other.at)}; cancel it first (failover cancel {other.id})")
    return prune([*book, entry])


def prune(book: Book) -> list[Scheduled]:
    """Every open entry, and the last KEEP_ENDED ended ones."""
    ended = sorted((e for e in book if not e.is_open), key=lambda e: (e.ended_at or e.at, e.id))
    keep = {e.id for e in ended[-KEEP_ENDED:]}
    return [e for e in book if e.is_open or e.id in keep]


def pick(book: Book, entry_id: str | None, engine: str | None = None) -> Scheduled:
    """The entry `failover cancel [ID]` means: by id, or the only open one (of `engine` if given)."""
    if entry_id is not None:
        found = [e for e in book if e.id == entry_id]
        if not found:
            raise ConfigError(f"schedule {entry_id}: no such planned switchover")
        return found[0]
    candidates = [e for e in book if e.is_open and (engine is None or e.engine == engine)]
    if not candidates:
        raise ConfigError("no planned switchover to cancel" + (f" for {engine}" if engine else ""))
    if len(candidates) > 1:
        raise ConfigError(f"several planned switchovers ({', '.join(e.id for e in candidates)}); name one")
    return candidates[0]


def cancel(book: Book, entry_id: str | None, now: float, why: str, engine: str | None = None) \
        -> tuple[list[Scheduled], Scheduled]:
    """The book with the entry cancelled, and the entry. Only a pending entry can be: one a leader has claimed
    is starting (UnsafeError, exit 3: halt it or let it run), one that ended is history (ConfigError, exit 2)."""
    entry = pick(book, entry_id, engine)
    if entry.state is State.STARTING:
        raise UnsafeError(f"refused: {entry.id} is starting (claimed by {entry.claimed_by}); follow its incident "
                          "with `failover status`, or stop trading with `failover halt`")
    if entry.state is not State.PENDING:
        raise ConfigError(f"schedule {entry.id}: already {entry.state.value}; nothing to cancel")
    done = replace(entry, state=State.CANCELLED, ended_at=now, why=why)
    return prune([done if e.id == entry.id else e for e in book]), done


# ---- what is due -------------------------------------------------------------------------------------------------


class Due(StrEnum):
    ANNOUNCE = "announce"
    START = "start"
    MISS = "miss"


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Due
    entry: Scheduled
    lead: float | None = None  # ANNOUNCE: the lead announced


def review(book: Book, now: float) -> list[Decision]:
    """What a leader must do now for each open entry: at most one decision per entry."""
    decisions = []
    for entry in book:
        if not entry.is_open:
            continue
        if now >= entry.at + entry.grace:
            decisions.append(Decision(Due.MISS, entry))
        elif now >= entry.at or entry.state is State.STARTING:
            decisions.append(Decision(Due.START, entry))
        else:
            reached = [lead for lead in LEADS if entry.at - now <= lead and lead not in entry.announced]
            if reached:
                decisions.append(Decision(Due.ANNOUNCE, entry, min(reached)))
    return decisions


def announced(entry: Scheduled, now: float) -> Scheduled:
    """The entry with every lead reached at `now` marked announced."""
    reached = {lead for lead in LEADS if entry.at - now <= lead}
    return replace(entry, announced=tuple(sorted(set(entry.announced) | reached, reverse=True)))


def claimed(entry: Scheduled, by: str) -> Scheduled:
    return replace(entry, state=State.STARTING, claimed_by=by)


def started(entry: Scheduled, incident: str, now: float) -> Scheduled:
    return replace(entry, state=State.STARTED, incident=incident, ended_at=now, waiting="")


def ended(entry: Scheduled, state: State, now: float, why: str) -> Scheduled:
    """Missed or refused: `why` is what the page says."""
    return replace(entry, state=state, ended_at=now, why=why)


def waiting(entry: Scheduled, why: str) -> Scheduled:
    return replace(entry, waiting=why)


def miss_reason(entry: Scheduled) -> str:
    if entry.waiting:
        return f"blocked until the grace period ended: {entry.waiting}"
    return "no leader started it within the grace period"


# ---- what people are told --------------------------------------------------------------------------------------


def _what(entry: Scheduled) -> str:
    source = f" from {entry.source}" if entry.source else ""
    window = ("no protection window" if entry.protection is None
              else f"then a {format_duration(entry.protection)} protection window")
    return f"planned switchover of {entry.engine}{source} to {entry.target}: trading halts briefly, {window}"


def scheduled_message(entry: Scheduled, display: tzinfo) -> str:
    reason = f" ({entry.reason})" if entry.reason else ""
    return (f"[{entry.engine}] {_what(entry)}, at {format_instant(entry.at, display)}{reason}; "
            f"{entry.id}, cancel with `failover cancel {entry.id}`")


def reminder_message(entry: Scheduled, now: float, display: tzinfo) -> str:
    left = format_duration(max(0.0, round(entry.at - now)))
    return f"[{entry.engine}] in {left}: {_what(entry)}, at {format_instant(entry.at, display)} ({entry.id})"


def cancelled_message(entry: Scheduled, actor: str, display: tzinfo) -> str:
    why = f": {entry.why}" if entry.why else ""
    return (f"[{entry.engine}] cancelled by {actor}: the planned switchover to {entry.target} at "
            f"{format_instant(entry.at, display)} ({entry.id}) will not happen{why}")


def page_message(entry: Scheduled, display: tzinfo) -> str:
    """Missed or refused: trading stays where it is, and a human decides."""
    return (f"[{entry.engine}] planned switchover to {entry.target} at {format_instant(entry.at, display)} "
            f"{entry.state.value} ({entry.id}): {entry.why}; trading continues on the current primary")
