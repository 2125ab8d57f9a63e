"""The reference engine's state machine: price-time order books, accounts' margin and the trading phase.

`Ledger.apply(entry)` is the only way the state changes, and it depends on nothing but the entry and the state:
no clock, no randomness, no I/O. Replaying a journal therefore gives the same books and the same trades on every
replica and after every restart, which is what lets a standby take over with identical state. `Ledger.check_*`
decide, before an entry is written, whether a request may become one; they never change anything.

Admission per phase is `orchestrator.core.phases` (`classify`, `admit`, `MATCHING`), not re-decided here; this
module adds only what needs the book: a post-only order that would cross is refused (`would_cross`), a FOK order
that cannot fill entirely is accepted and killed, and a market or IOC remainder is killed.
Self-trades are allowed (a test partner has no use for self-trade prevention).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from orchestrator.core.model import Phase
from orchestrator.core.phases import DEFAULT_PROTECTION_ALLOW, MATCHING, RequestKind, admit, classify
from orchestrator.engine.protocol import Reason
from orchestrator.engine.replica.journal import Entry


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request cannot become a journal entry, and the HTTP status that says so."""

    reason: str
    status_code: int = 409


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The request was already journaled: the answer is the original entry's sequence number."""

    seq: int


Check = Refusal | Duplicate | None  # None: write the entry


@dataclass(slots=True)
class Order:
    seq: int
    account: str
    client_order_id: str
    market: str
    side: str
    price: Decimal | None
    qty: Decimal
    kind: RequestKind
    request: Mapping[str, Any]
    remaining: Decimal = Decimal(0)
    state: str = "open"  # open | filled | cancelled | killed
    cancel_seq: int | None = None


@dataclass(frozen=True, slots=True)
class Trade:
    seq: int  # the taker's journal entry
    at: str
    market: str
    price: Decimal
    qty: Decimal
    maker: Order
    taker: Order

    def to_wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "market": self.market, "price": _text(self.price),
                "qty": _text(self.qty), "maker": self.maker.client_order_id, "taker": self.taker.client_order_id,
                "maker_account": self.maker.account, "taker_account": self.taker.account,
                "maker_seq": self.maker.seq, "side": self.taker.side}


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f")


class _Side:
    """One side of one book: price levels in a sorted list, FIFO queues at each level."""

    def __init__(self, best_is_highest: bool) -> None:
        self.best_is_highest = best_is_highest
        self.prices: list[Decimal] = []
        self.levels: dict[Decimal, deque[Order]] = {}

    def add(self, order: Order) -> None:
        assert order.price is not None
        if order.price not in self.levels:
            bisect.insort(self.prices, order.price)
            self.levels[order.price] = deque()
        self.levels[order.price].append(order)

    def remove(self, order: Order) -> None:
        assert order.price is not None
        level = self.levels[order.price]
        level.remove(order)
        if not level:
            self._drop(order.price)

    def _drop(self, price: Decimal) -> None:
        del self.levels[price]
        self.prices.remove(price)

    def in_priority(self) -> Iterator[Order]:
        for price in reversed(self.prices) if self.best_is_highest else list(self.prices):
            yield from self.levels[price]

    def pop_filled(self, order: Order) -> None:
        """Remove `order`, which is at the front of its level and has nothing left."""
        assert order.price is not None
        level = self.levels[order.price]
        level.popleft()
        if not level:
            self._drop(order.price)


def _crosses(taker_side: str, limit: Decimal | None, maker_price: Decimal) -> bool:
    if limit is None:  # a market order takes any price
        return True
    return maker_price <= limit if taker_side == "buy" else maker_price >= limit


class Book:
    def __init__(self) -> None:
        self.sides = {"buy": _Side(best_is_highest=True), "sell": _Side(best_is_highest=False)}

    def opposite(self, side: str) -> _Side:
        return self.sides["sell" if side == "buy" else "buy"]

    def would_cross(self, side: str, price: Decimal | None) -> bool:
        best = next(self.opposite(side).in_priority(), None)
        return best is not None and best.price is not None and _crosses(side, price, best.price)

    def fillable(self, side: str, price: Decimal | None, qty: Decimal) -> bool:
        available = Decimal(0)
        for maker in self.opposite(side).in_priority():
            assert maker.price is not None
            if not _crosses(side, price, maker.price):
                break
            available += maker.remaining
            if available >= qty:
                return True
        return False

    def match(self, taker: Order, at: str) -> list[Trade]:
        trades: list[Trade] = []
        book_side = self.opposite(taker.side)
        while taker.remaining > 0:
            maker = next(book_side.in_priority(), None)
            if maker is None or maker.price is None or not _crosses(taker.side, taker.price, maker.price):
                break
            qty = min(taker.remaining, maker.remaining)
            taker.remaining -= qty
            maker.remaining -= qty
            trades.append(Trade(taker.seq, at, taker.market, maker.price, qty, maker, taker))
            if maker.remaining == 0:
                maker.state = "filled"
                book_side.pop_filled(maker)
        if taker.remaining == 0:
            taker.state = "filled"
        return trades


@dataclass
class Ledger:
    """Everything the journal determines: phase, books, orders by (account, client_order_id), margin, trades."""

    protection_allow: tuple[str, ...] = DEFAULT_PROTECTION_ALLOW
    phase: Phase = Phase.OPEN
    phase_until: str | None = None
    applied_seq: int = 0
    books: dict[str, Book] = field(default_factory=dict)
    orders: dict[tuple[str, str], Order] = field(default_factory=dict)
    margin: dict[str, Decimal] = field(default_factory=dict)
    margin_requests: dict[tuple[str, str], int] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)

    def book(self, market: str) -> Book:
        return self.books.setdefault(market, Book())

    def check_order(self, request: Mapping[str, Any]) -> Check:
        previous = self.orders.get((request["account"], request["client_order_id"]))
        if previous is not None:
            return Duplicate(previous.seq) if previous.request == request else Refusal(Reason.DUPLICATE)
        kind = classify(request["type"], request["tif"], request["post_only"])
        refused = admit(self.phase, kind, self.protection_allow)
        if refused is not None:
            return Refusal(refused)
        price = None if request["price"] is None else Decimal(request["price"])
        if kind is RequestKind.POST_ONLY and self.book(request["market"]).would_cross(request["side"], price):
            return Refusal(Reason.WOULD_CROSS)
        return None

    def check_cancel(self, request: Mapping[str, Any]) -> Check:
        order = self.orders.get((request["account"], request["client_order_id"]))
        if order is not None and order.cancel_seq is not None:
            return Duplicate(order.cancel_seq)
        refused = admit(self.phase, RequestKind.CANCEL, self.protection_allow)
        if refused is not None:
            return Refusal(refused)
        if order is None:
            return Refusal(Reason.UNKNOWN_ORDER, 422)
        if order.state != "open":
            return Refusal(Reason.ORDER_CLOSED)
        return None

    def check_margin(self, request: Mapping[str, Any]) -> Check:
        request_id = request.get("request_id")
        if request_id is not None and (request["account"], request_id) in self.margin_requests:
            return Duplicate(self.margin_requests[(request["account"], request_id)])
        refused = admit(self.phase, RequestKind.ADD_MARGIN, self.protection_allow)
        return None if refused is None else Refusal(refused)

    def apply(self, entry: Entry) -> list[Trade]:
        """Apply the next entry; raises ValueError on an entry out of order (a bug, never a user error)."""
        if entry.seq != self.applied_seq + 1:
            raise ValueError(f"entry {entry.seq} applied after {self.applied_seq}")
        trades: list[Trade] = []
        if entry.kind == "order":
            trades = self._apply_order(entry)
        elif entry.kind == "cancel":
            order = self.orders[(entry.data["account"], entry.data["client_order_id"])]
            self.book(order.market).sides[order.side].remove(order)
            order.state, order.cancel_seq = "cancelled", entry.seq
        elif entry.kind == "margin":
            account = entry.data["account"]
            self.margin[account] = self.margin.get(account, Decimal(0)) + Decimal(entry.data["amount"])
            if entry.data.get("request_id") is not None:
                self.margin_requests[(account, entry.data["request_id"])] = entry.seq
        elif entry.kind == "phase":
            self.phase, self.phase_until = Phase(entry.data["phase"]), entry.data["until"]
        self.applied_seq = entry.seq
        self.trades.extend(trades)
        return trades

    def _apply_order(self, entry: Entry) -> list[Trade]:
        data = entry.data
        kind = classify(data["type"], data["tif"], data["post_only"])
        price = None if data["price"] is None else Decimal(data["price"])
        qty = Decimal(data["qty"])
        order = Order(entry.seq, data["account"], data["client_order_id"], data["market"], data["side"], price,
                      qty, kind, data, remaining=qty)
        self.orders[(order.account, order.client_order_id)] = order
        book = self.book(order.market)
        trades: list[Trade] = []
        matching = MATCHING[self.phase] and kind is not RequestKind.POST_ONLY
        if kind is RequestKind.FOK and not book.fillable(order.side, price, qty):
            matching = False
        if matching:
            trades = book.match(order, entry.at)
        if order.remaining > 0:
            if kind in (RequestKind.LIMIT, RequestKind.POST_ONLY):
                book.sides[order.side].add(order)
            else:
                order.state = "killed"  # market, IOC and FOK never rest
        return trades

    def state_hash(self) -> str:
        """SHA-256 of everything later entries depend on: phase, every resting order in priority order (its seq,
        account, client_order_id, price and what is left of it), margin by account. Two ledgers that applied the
        same journal have the same hash; a rejoin compares it with its primary's snapshot (`rejoin`), a check of
        the replay on top of the journal's chain."""
        books = {market: {side: [[order.seq, order.account, order.client_order_id,
                                  None if order.price is None else _text(order.price), _text(order.remaining)]
                                 for order in book.sides[side].in_priority()]
                          for side in ("buy", "sell")} for market, book in sorted(self.books.items())}
        state = {"applied_seq": self.applied_seq, "phase": str(self.phase), "until": self.phase_until,
                 "books": books, "margin": {account: _text(amount) for account, amount in sorted(self.margin.items())}}
        return hashlib.sha256(json.dumps(state, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def levels(self, depth: int) -> dict[str, dict[str, list[list[str]]]]:
        """The books as people read them: per market and side, up to `depth` price levels (best first), each
        `[price, total quantity resting]`."""
        found: dict[str, dict[str, list[list[str]]]] = {}
        for market, book in sorted(self.books.items()):
            sides: dict[str, list[list[str]]] = {}
            for name, side in book.sides.items():
                prices = list(reversed(side.prices)) if side.best_is_highest else list(side.prices)
                sides[name] = [[_text(price), _text(sum((order.remaining for order in side.levels[price]),
                                                        Decimal(0)))] for price in prices[:depth]]
            found[market] = sides
        return found

    def trades_after(self, seq: int, limit: int) -> list[Trade]:
        start = bisect.bisect_right(self.trades, seq, key=lambda trade: trade.seq)
        return self.trades[start : start + limit]
