"""One engine's clients and book (`EngineFlow`), and what their requests meet at one target (a `Taker`).

Why takers: a simulated day is ~170,000 requests per engine, in stretches of about two (one per engine per tick).
What a request meets at a target — refused whatever it is (no route, unreachable, not primary), or admitted by the
target's phase, matched or rested in the book, acknowledged only if a standby on another cloud takes it — changes
only when the world's conditions do, so the world builds one taker per target when they change (`World._taker`) and
calls it for each stretch. Each request is drawn whatever happens to it, so that a seed's order stream does not
depend on the orchestrator's policy. Refusal order as the reference replica's: role, phase admission, book
(`unknown_order`, `would_cross`), then replication.

The acknowledged entries of one stretch are consecutive ids at consecutive seqs, so the journals, the receivers'
copies and the record of what was acknowledged are extended once per stretch, to exactly what appending them one by
one would have left.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.core.model import Phase
from orchestrator.core.phases import MATCHING, RequestKind
from orchestrator.sim.orders import Book, Order
from orchestrator.sim.replica import SimReplica

Taker = Callable[[int], int]
"""Takes one stretch's `count` requests to one target; 1 if the target acknowledged any (it wrote as primary)."""


class Ledger:
    """One engine's entry ids, given out in order, and (for asynchronous replication, which copies only what is
    old enough) when each was written. Ids are unique within an engine's histories, which is all a journal's prefix
    check needs; per engine, so that what one engine acknowledges in a day is a few runs of consecutive ids at
    consecutive seqs (`EngineFlow.acked`), not one run per stretch."""

    __slots__ = ("clock", "entries", "timed", "times")

    def __init__(self, clock: Callable[[], float], *, timed: bool) -> None:
        self.clock, self.timed = clock, timed
        self.entries = 0
        self.times: array[float] = array("d")

    def take(self, count: int) -> int:
        """`count` new ids; the first of them."""
        first = self.entries
        self.entries += count
        if self.timed:
            self.times.extend([self.clock()] * count)
        return first


@dataclass
class EngineFlow:
    """One engine's clients and its book, and what they saw."""

    name: str
    replicas: list[SimReplica]
    dns: tuple[str, str, str, float] | None  # (cloud, zone id, record, ttl)
    book: Book
    by_address: dict[str, SimReplica]
    ledger: Ledger
    acknowledged: int = 0
    trades: int = 0
    trades_in_protection: int = 0
    trades_while_halted: int = 0
    trades_off_phase: int = 0  # trades by a replica whose own phase forbids matching (never expected)
    max_primaries: int = 0  # the most replicas that acknowledged writes within one stretch (one tick)
    max_writable: int = 0  # the most replicas that could have (see World._sample)
    acked: array[int] = field(default_factory=lambda: array("q"))  # (first entry id, its seq, count) per run
    refused: Counter[str] = field(default_factory=Counter)
    standbys: list[tuple[float, int]] = field(default_factory=list)  # (since, acknowledging standbys): World
    cache: tuple[int, dict[str, bool], dict[str, list[SimReplica]]] | None = None  # see World._live
    takers: dict[str | None, Taker] = field(default_factory=dict)  # per target while `cache` holds: World._taker
    route: tuple[Sequence[tuple[float, str]], int, Taker] | None = None  # (DNS history, its length, taker): _spread


def refusing(flow: EngineFlow, reason: str, draw: Callable[[int], Order]) -> Taker:
    """Every request refused with `reason`; nothing is admitted, so the book does not change."""
    def take(count: int) -> int:
        size = len(flow.book.resting)
        for _ in range(count):
            draw(size)
        flow.refused[reason] += count
        return 0

    return take


def accepting(flow: EngineFlow, target: SimReplica, receivers: list[SimReplica], *,
              admission: Mapping[RequestKind, str | None], acknowledge: bool, draw: Callable[[int], Order],
              ledger: Ledger, lag: Mapping[str, float], announced: Mapping[str, Phase],
              until: Mapping[str, float | None], clock: Callable[[], float]) -> Taker:
    """Requests to a primary that answers: admitted by its phase, against the book, acknowledged if it can
    (synchronous replication: a receiver on another cloud), journaled at the target and its receivers."""
    book, refused = flow.book, flow.refused
    resting, crosses, cancel_oldest, execute = book.resting, book.crosses, book.cancel_oldest, book.execute
    cancel, post_only, add_margin = RequestKind.CANCEL, RequestKind.POST_ONLY, RequestKind.ADD_MARGIN
    matching = MATCHING[target.phase]
    copying = [(standby, standby.name not in lag) for standby in receivers]

    def take(count: int) -> int:
        taken = 0
        for _ in range(count):
            kind, buy, price, qty = draw(len(resting))
            reason = admission[kind]
            if reason is None:
                if kind is cancel and not resting:
                    reason = "unknown_order"
                elif kind is post_only and crosses(buy, price):
                    reason = "would_cross"
                elif not acknowledge:
                    reason = "replication_timeout"
            if reason is not None:
                refused[reason] += 1
                continue
            taken += 1
            if kind is cancel:
                cancel_oldest()
            elif kind is not add_margin:
                trades = execute(kind, buy, price, qty, matching)
                if trades:
                    count_trades(flow, announced[flow.name], matching, trades, until[flow.name], clock())
        if not taken:
            return 0
        # the stretch's acknowledged entries: new ids, written by the target at its next seqs and copied by its
        # synchronous receivers, as the reference replica journals them
        first, seq, log = ledger.take(taken), target.n, target.log
        if len(log) != seq:
            log = target.log = log[:seq]  # another replica extended this history: ours forks here
        log.extend(range(first, first + taken))
        n = target.n = target.applied = seq + taken
        for standby, applies in copying:
            standby.log, standby.n = log, n
            if applies:
                standby.applied = n
        flow.acknowledged += taken
        acked = flow.acked
        if acked and acked[-3] + acked[-1] == first and acked[-2] + acked[-1] == seq + 1:
            acked[-1] += taken  # the run goes on: the next ids at the next seqs
        else:
            acked.extend((first, seq + 1, taken))
        return 1

    return take


def count_trades(flow: EngineFlow, announced: Phase, matches: bool, trades: int, until: float | None = None,
                 now: float = 0.0) -> None:
    """Trades, counted against the phase the exchange had announced, and against the replica's own phase.

    A protection window is announced with its end (`until`): a trade after that end is not inside the announced
    window, even before the reopen is announced (the orchestrator can say "open" only once the engine has
    reopened, a moment, a status read, later: seen 3 s in exchange-10 seed 1 with simulated call latencies). The
    replica's own phase is the stricter check (`trades_off_phase`): it never matches in protection."""
    flow.trades += trades
    if announced is Phase.PROTECTION and (until is None or now < until):
        flow.trades_in_protection += trades
    elif announced is Phase.HALTED:
        flow.trades_while_halted += trades
    if not matches:
        flow.trades_off_phase += trades


def lost(flow: EngineFlow, replica: SimReplica) -> int:
    """Acknowledged entries absent from `replica`'s journal."""
    log, n, missing, acked = replica.log, replica.n, 0, flow.acked
    for index in range(0, len(acked), 3):  # `count` entries with consecutive ids, at consecutive seqs
        first, seq, count = acked[index], acked[index + 1], acked[index + 2]
        held = max(0, min(count, n - seq + 1))
        missing += count - held
        if held and log[seq - 1: seq - 1 + held] != array("q", range(first, first + held)):
            missing += sum(1 for k in range(held) if log[seq - 1 + k] != first + k)
    return missing
