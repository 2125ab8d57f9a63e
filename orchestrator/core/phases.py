"""Trading phases of one engine: a table of transitions and a table of admissions (docs/design.md §5).

Everything that decides whether a phase may change, or whether a request may enter in a phase, lives in this file
and nowhere else (as in h11's `_state.py`). The tables are data; `transition` looks them up; a move the table does
not hold raises `IllegalTransition` and the caller's state is untouched, because states are immutable.

    open ──halt──> halted ──protect──> protection ──reopen (window elapsed)──> open
      │                                  │   ▲
      └──────────protect─────────────────┘   └─extend / halt (relapse)─
    halted|protection ──force_open (operator)──> open
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.core.errors import IllegalTransition
from orchestrator.core.model import Phase


class PhaseEvent(StrEnum):
    HALT = "halt"
    PROTECT = "protect"
    EXTEND = "extend"
    REOPEN = "reopen"
    FORCE_OPEN = "force_open"


TRANSITIONS: dict[Phase, dict[PhaseEvent, Phase]] = {
    Phase.OPEN: {
        PhaseEvent.HALT: Phase.HALTED,
        PhaseEvent.PROTECT: Phase.PROTECTION,
    },
    Phase.HALTED: {
        PhaseEvent.HALT: Phase.HALTED,
        PhaseEvent.PROTECT: Phase.PROTECTION,
        PhaseEvent.FORCE_OPEN: Phase.OPEN,
    },
    Phase.PROTECTION: {
        PhaseEvent.HALT: Phase.HALTED,
        PhaseEvent.EXTEND: Phase.PROTECTION,
        PhaseEvent.REOPEN: Phase.OPEN,
        PhaseEvent.FORCE_OPEN: Phase.OPEN,
    },
}

# Events that set the end of the protection window and so must carry `until`.
_NEEDS_UNTIL = frozenset({PhaseEvent.PROTECT, PhaseEvent.EXTEND})


class RequestKind(StrEnum):
    """What a client asks of an engine, as far as admission is concerned."""

    LIMIT = "limit"  # a resting limit order that is not post-only
    POST_ONLY = "post_only"
    MARKET = "market"
    IOC = "ioc"
    FOK = "fok"
    CANCEL = "cancel"
    ADD_MARGIN = "add_margin"


# ADMISSION[phase][kind]: True admits; a string is the refusal reason the engine answers with.
ADMISSION: dict[Phase, dict[RequestKind, bool | str]] = {
    Phase.OPEN: {kind: True for kind in RequestKind},
    Phase.PROTECTION: {
        RequestKind.LIMIT: "protection: post_only required",
        RequestKind.POST_ONLY: True,  # the engine still refuses one that would cross: "would_cross"
        RequestKind.MARKET: "protection: market orders refused",
        RequestKind.IOC: "protection: ioc orders refused",
        RequestKind.FOK: "protection: fok orders refused",
        RequestKind.CANCEL: True,
        RequestKind.ADD_MARGIN: True,
    },
    Phase.HALTED: {kind: "halted" for kind in RequestKind},
}

MATCHING: dict[Phase, bool] = {Phase.OPEN: True, Phase.PROTECTION: False, Phase.HALTED: False}

DEFAULT_PROTECTION_ALLOW: tuple[str, ...] = ("cancel", "post_only", "add_margin")


def classify(order_type: str, tif: str = "gtc", post_only: bool = False) -> RequestKind:
    """Map an order's fields to its admission kind; market beats tif, tif beats post-only."""
    if order_type == "market":
        return RequestKind.MARKET
    if tif == "ioc":
        return RequestKind.IOC
    if tif == "fok":
        return RequestKind.FOK
    return RequestKind.POST_ONLY if post_only else RequestKind.LIMIT


def admit(phase: Phase, kind: RequestKind, protection_allow: tuple[str, ...] = DEFAULT_PROTECTION_ALLOW) -> str | None:
    """None when `kind` may enter in `phase`, else the refusal reason.

    In protection the configured `allow` list can only narrow the table, never widen it: a market order stays
    refused whatever a configuration says, because matching is off.
    """
    verdict = ADMISSION[phase][kind]
    if verdict is not True:
        return str(verdict)
    if phase is Phase.PROTECTION and kind.value not in protection_allow:
        return f"protection: {kind.value} not allowed"
    return None


@dataclass(frozen=True, slots=True)
class PhaseState:
    """The phase of one engine, since when, and (in protection) until when."""

    phase: Phase = Phase.OPEN
    since: float = 0.0
    until: float | None = None


@dataclass(frozen=True, slots=True)
class PhaseChange:
    engine: str
    before: PhaseState
    after: PhaseState
    event: PhaseEvent
    at: float
    reason: str = ""


def transition(
    state: PhaseState, event: PhaseEvent, now: float, until: float | None = None
) -> PhaseState:
    """The state after `event` at `now`; raises IllegalTransition (and changes nothing) if the table forbids it.

    `reopen` is also refused before the protection window has elapsed: only `force_open`, an operator's
    explicit choice, skips the window.
    """
    target = TRANSITIONS[state.phase].get(event)
    if target is None:
        allowed = ", ".join(sorted(TRANSITIONS[state.phase])) or "nothing"
        raise IllegalTransition(f"cannot {event.value} while {state.phase.value} (allowed: {allowed})")
    if event in _NEEDS_UNTIL:
        if until is None or until <= now:
            raise IllegalTransition(f"{event.value} needs an end time after now")
    elif event is PhaseEvent.REOPEN and state.until is not None and now < state.until:
        remaining = state.until - now
        raise IllegalTransition(f"protection window has {remaining:.0f}s left; reopen refused (use force)")
    if target is Phase.PROTECTION:
        since = state.since if state.phase is Phase.PROTECTION else now
        return PhaseState(Phase.PROTECTION, since, until)
    if target is state.phase:
        return state
    return PhaseState(target, now, None)


def mirror(state: PhaseState, event: PhaseEvent, now: float, until: float | None = None) -> PhaseState:
    """The record of a change the engine has *already made*, as a step confirmed it: unlike `transition`, nothing is
    refused, because refusing would leave the record behind the engine (a window that ended before its step was
    confirmed used to leave the record `halted` on an engine trading normally). `transition` guards what an operator
    asks for; `mirror` follows what the engine reports."""
    match event:
        case PhaseEvent.HALT:
            return state if state.phase is Phase.HALTED else PhaseState(Phase.HALTED, now, None)
        case PhaseEvent.PROTECT | PhaseEvent.EXTEND:
            since = state.since if state.phase is Phase.PROTECTION else now
            return PhaseState(Phase.PROTECTION, since, until)
        case PhaseEvent.REOPEN | PhaseEvent.FORCE_OPEN:
            return state if state.phase is Phase.OPEN else PhaseState(Phase.OPEN, now, None)
    raise AssertionError(event)


def parse_timezone(name: str) -> tzinfo:
    """An IANA name (`Asia/Hong_Kong`) or a fixed offset (`+08:00`, `UTC+8`)."""
    text = name.strip()
    if text.upper() in ("UTC", "Z"):
        return UTC
    offset = text.upper().removeprefix("UTC")
    if offset[:1] in ("+", "-"):
        sign = -1 if offset[0] == "-" else 1
        hours, _, minutes = offset[1:].partition(":")
        if hours.isdigit() and (minutes == "" or minutes.isdigit()) and int(hours) <= 14:
            return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))
        raise ValueError(f"{name!r} is not a UTC offset such as +08:00")
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"{name!r} is not an IANA time zone or a UTC offset such as +08:00") from error


def format_instant(at: float, display: tzinfo) -> str:
    """`2022-12-18 03:00:00 UTC (11:00:00 UTC+08:00)`: exact in UTC and in the display zone."""
    moment = datetime.fromtimestamp(at, UTC)
    local = moment.astimezone(display)
    offset = local.strftime("%z")
    label = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    day = "" if local.date() == moment.date() else f"{local:%Y-%m-%d} "
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({day}{local:%H:%M:%S} {label})"


def announce(change: PhaseChange, display: tzinfo) -> str:
    """One line for users and support: what changed, when, and until when, in UTC and display time."""
    after = change.after
    text = f"[{change.engine}] {after.phase.value.upper()} from {format_instant(change.at, display)}"
    if after.phase is Phase.PROTECTION and after.until is not None:
        text += (
            f" until {format_instant(after.until, display)}: only cancel, post-only orders that do not cross"
            " and adding margin are accepted; no matching"
        )
    elif after.phase is Phase.HALTED:
        text += ": no orders accepted, no matching"
    elif after.phase is Phase.OPEN:
        text += ": normal trading"
    if change.reason:
        text += f" ({change.reason})"
    return text
