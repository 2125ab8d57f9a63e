"""The simulated order flow and a small price-time order book.

Why an order flow at all: the figures that matter to an exchange — acknowledged orders lost, trades while halted or
in protection, how many replicas accepted writes as primary at once — only exist if clients keep sending orders
through the whole incident, to wherever the DNS record points, including the kinds the protection window must
refuse (market, IOC, FOK, plain limits, post-only orders that would cross).

Why so small: a simulated day is ~170,000 orders per engine. The book has a handful of integer price levels around
a fixed mid so that orders cross often (trades happen) and the book stays bounded; it is enough to tell a trade
from a resting order, which is all the figures need. It is not a matching engine.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable

from orchestrator.core.phases import RequestKind

MID = 1000
SPREAD = 5  # limit prices are MID-SPREAD .. MID+SPREAD
MAX_RESTING = 400  # past this, the flow cancels instead of adding (keeps the book, and the sim, cheap)

# How often each kind is sent: every kind of docs/design.md §5, plus crossing post-only orders (drawn as POST_ONLY).
KINDS: tuple[tuple[RequestKind, float], ...] = (
    (RequestKind.LIMIT, 0.30),
    (RequestKind.POST_ONLY, 0.20),
    (RequestKind.MARKET, 0.08),
    (RequestKind.IOC, 0.08),
    (RequestKind.FOK, 0.04),
    (RequestKind.CANCEL, 0.20),
    (RequestKind.ADD_MARGIN, 0.10),
)
_CUMULATIVE = tuple(sum(weight for _, weight in KINDS[: i + 1]) for i in range(len(KINDS)))


Order = tuple[RequestKind, bool, int, int]
"""(kind, buy, price, qty): a plain tuple, because ~170,000 of them are drawn per simulated day."""


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw: Knuth's product method for small means, a rounded normal for large ones."""
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    return knuth(rng.random, math.exp(-mean))


def knuth(random_: Callable[[], float], limit: float) -> int:
    """Knuth's product method with `limit = exp(-mean)` worked out by the caller: the world draws one count per
    engine per tick (864,000 a day for ten engines) with the same mean, so it computes the exponential once. The
    same draws as `poisson` for a mean of at most 50."""
    count, product = 0, random_()
    while product > limit:
        count += 1
        product *= random_()
    return count


def pick_kind(rng: random.Random) -> RequestKind:
    """A request kind drawn from the order mix (`KINDS`): the simulator's and the drill's clients send the same."""
    pick = rng.random()
    for (candidate, _), bound in zip(KINDS, _CUMULATIVE, strict=True):
        if pick < bound:
            return candidate
    return KINDS[-1][0]


def draw(rng: random.Random, resting: int) -> Order:
    """One client request; about half the post-only orders are priced to cross the book."""
    return drawer(rng)(resting)


_BOUNDS = tuple(zip(_CUMULATIVE, (kind for kind, _ in KINDS), strict=True))


def drawer(rng: random.Random) -> Callable[[int], Order]:
    """`draw` with everything it looks up bound once: the world draws ~170,000 orders per engine per simulated day.
    The draws are `pick_kind`'s and then `draw`'s, in the same order (a seed's order stream is part of its result)."""
    random_ = rng.random
    bounds, last = _BOUNDS, KINDS[-1][0]
    limit, post_only, cancel, mid = RequestKind.LIMIT, RequestKind.POST_ONLY, RequestKind.CANCEL, MID
    scale = SPREAD + 1

    def one(resting: int) -> Order:
        pick, kind = random_(), last
        for bound, candidate in bounds:
            if pick < bound:
                kind = candidate
                break
        if resting > MAX_RESTING and (kind is limit or kind is post_only):
            kind = cancel
        buy = random_() < 0.5
        offset = int(random_() * scale)
        price = mid - offset if buy else mid + offset
        if kind is post_only and random_() < 0.5:
            price = mid + offset if buy else mid - offset  # on the wrong side of the mid: likely to cross
        return kind, buy, price, 1 + int(random_() * 10)

    return one


_FOK, _MARKET, _LIMIT, _POST_ONLY = RequestKind.FOK, RequestKind.MARKET, RequestKind.LIMIT, RequestKind.POST_ONLY


class Book:
    """Price-time priority over integer price levels; each level a FIFO of [order id, remaining qty].

    `resting` holds the orders still resting; `_queue` their ids in the order they came to rest (ids of orders
    filled since are skipped when they reach its front), so that the oldest is found at once: a dict emptied from
    the front, as `resting` alone was, makes every look for its first item step over the slots freed so far. The
    oldest resting order is always the first of its level (a level fills and rests in time order)."""

    __slots__ = ("_queue", "asks", "bids", "next_id", "resting")

    def __init__(self) -> None:
        self.bids: dict[int, deque[list[int]]] = {}
        self.asks: dict[int, deque[list[int]]] = {}
        self.resting: dict[int, tuple[bool, int]] = {}  # order id -> (buy, price)
        self._queue: deque[int] = deque()
        self.next_id = 1

    def crosses(self, buy: bool, price: int) -> bool:
        """Whether a limit order at `price` would take liquidity (post-only orders must not)."""
        if buy:
            return bool(self.asks) and min(self.asks) <= price
        return bool(self.bids) and max(self.bids) >= price

    def has_resting(self) -> bool:
        return bool(self.resting)

    def cancel_oldest(self) -> None:
        queue, resting = self._queue, self.resting
        while queue[0] not in resting:
            queue.popleft()
        order_id = queue.popleft()
        buy, price = resting.pop(order_id)
        side = self.bids if buy else self.asks
        level = side[price]
        if level[0][0] != order_id:  # cannot happen (see the class docstring); said loudly if it ever does
            raise AssertionError(f"order {order_id} is not the first of its level {price}")
        level.popleft()
        if not level:
            del side[price]

    def execute(self, kind: RequestKind, buy: bool, price: int, qty: int, matching: bool) -> int:
        """Apply an admitted order (not a cancel or margin); returns the number of trades (fills). With matching
        off (protection) only non-crossing post-only orders reach here, and they rest. (Taking and resting are
        written out here rather than called: this runs for most of a day's 1.7 million requests.)"""
        if kind is _FOK and not self._fillable(buy, price, qty):
            return 0  # killed: not fully fillable now
        trades = 0
        if matching:
            side = self.asks if buy else self.bids
            limit = None if kind is _MARKET else price
            while qty and side:
                best = min(side) if buy else max(side)
                if limit is not None and (best > limit if buy else best < limit):
                    break
                level = side[best]
                while qty and level:
                    entry = level[0]
                    fill = min(qty, entry[1])
                    qty -= fill
                    entry[1] -= fill
                    trades += 1
                    if entry[1] == 0:
                        level.popleft()
                        del self.resting[entry[0]]
                if not level:
                    del side[best]
        if qty and (kind is _LIMIT or kind is _POST_ONLY):
            self._rest(buy, price, qty)
        return trades

    def _fillable(self, buy: bool, limit: int, qty: int) -> bool:
        """Whether the other side holds `qty` at `limit` or better (counting stops once it does: a book holds
        hundreds of orders, a fill-or-kill order at most ten lots)."""
        side = self.asks if buy else self.bids
        for price, level in side.items():
            if price <= limit if buy else price >= limit:
                for entry in level:
                    qty -= entry[1]
                    if qty <= 0:
                        return True
        return False

    def _rest(self, buy: bool, price: int, qty: int) -> None:
        order_id = self.next_id
        self.next_id += 1
        side = self.bids if buy else self.asks
        side.setdefault(price, deque()).append([order_id, qty])
        self.resting[order_id] = (buy, price)
        self._queue.append(order_id)
