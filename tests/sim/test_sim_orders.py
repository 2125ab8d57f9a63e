"""The order stream a seed sends is the one it always sent, and the book does what a plain book does.

The world's order loop is written for speed (orchestrator/sim/flow.py, sim/orders.py `drawer`, `Book`): requests
drawn through a bound closure, journals extended once per stretch, the book's oldest order found through a queue.
A seed's order stream is part of its result (the same seed must give the same report, from one version of the
simulator to the next), so these tests replay it from the reference written here: the draws in the order
`orders.draw` has always made them, and a book that keeps every resting order in one list.
"""

from __future__ import annotations

import random
from collections import Counter

from sim_helpers import make_scenario

from orchestrator.core.model import Phase, Topology
from orchestrator.core.phases import RequestKind, admit
from orchestrator.sim import Simulation
from orchestrator.sim.orders import _CUMULATIVE, KINDS, MAX_RESTING, MID, SPREAD, Book, drawer, poisson

Order = tuple[RequestKind, bool, int, int]


def reference_draw(rng: random.Random, resting: int) -> Order:
    """One request, drawn as the simulator always drew them: kind, side, price offset, a post-only's side, qty."""
    pick = rng.random()
    kind = next((candidate for (candidate, _), bound in zip(KINDS, _CUMULATIVE, strict=True) if pick < bound),
                KINDS[-1][0])
    if resting > MAX_RESTING and kind in (RequestKind.LIMIT, RequestKind.POST_ONLY):
        kind = RequestKind.CANCEL
    buy = rng.random() < 0.5
    offset = int(rng.random() * (SPREAD + 1))
    price = MID - offset if buy else MID + offset
    if kind is RequestKind.POST_ONLY and rng.random() < 0.5:
        price = MID + offset if buy else MID - offset
    return kind, buy, price, 1 + int(rng.random() * 10)


class PlainBook:
    """Every resting order in one list, oldest first: [id, buy, price, qty]. Slow and obviously right."""

    def __init__(self) -> None:
        self.orders: list[list[int]] = []
        self.next_id = 1

    def crosses(self, buy: bool, price: int) -> bool:
        return any(o[1] != buy and (o[2] <= price if buy else o[2] >= price) for o in self.orders)

    def cancel_oldest(self) -> None:
        self.orders.pop(0)

    def execute(self, kind: RequestKind, buy: bool, price: int, qty: int, matching: bool) -> int:
        limit = None if kind is RequestKind.MARKET else price
        eligible = [o for o in self.orders if o[1] != buy and (limit is None or (o[2] <= limit if buy else
                                                                                 o[2] >= limit))]
        if kind is RequestKind.FOK and sum(o[3] for o in eligible) < qty:
            return 0
        trades = 0
        if matching:  # best price first, then time (the list is in time order and sorted() is stable)
            for order in sorted(eligible, key=lambda o: o[2] if buy else -o[2]):
                if not qty:
                    break
                fill = min(qty, order[3])
                qty, order[3], trades = qty - fill, order[3] - fill, trades + 1
            self.orders = [o for o in self.orders if o[3]]
        if qty and kind in (RequestKind.LIMIT, RequestKind.POST_ONLY):
            self.orders.append([self.next_id, buy, price, qty])
            self.next_id += 1
        return trades


def test_drawer_draws_what_draw_always_drew() -> None:
    ours, theirs = random.Random(7), random.Random(7)
    one = drawer(ours)
    for step in range(50_000):
        resting = (step * 37) % (2 * MAX_RESTING)  # on both sides of the point where limits become cancels
        assert one(resting) == reference_draw(theirs, resting), step
    assert ours.random() == theirs.random()


def test_the_book_trades_and_rests_as_a_plain_book() -> None:
    rng = random.Random(3)
    book, plain = Book(), PlainBook()
    for step in range(20_000):
        kind, buy, price, qty = reference_draw(rng, len(book.resting))
        matching = step % 1000 < 900  # a protection window now and then: nothing matches, post-only orders rest
        if kind is RequestKind.CANCEL:
            assert bool(book.resting) == bool(plain.orders)
            if book.resting:
                book.cancel_oldest()
                plain.cancel_oldest()
        elif kind is RequestKind.POST_ONLY and book.crosses(buy, price):
            assert plain.crosses(buy, price), step
        elif kind is not RequestKind.ADD_MARGIN and (matching or kind is RequestKind.POST_ONLY):
            assert not (kind is RequestKind.POST_ONLY and plain.crosses(buy, price))
            assert book.execute(kind, buy, price, qty, matching) == plain.execute(kind, buy, price, qty, matching)
        resting = sorted((buy_, price_, qty_) for buy_, price_, qty_ in _resting(book))
        assert resting == sorted((bool(o[1]), o[2], o[3]) for o in plain.orders), step


def _resting(book: Book) -> list[tuple[bool, int, int]]:
    return [(side is book.bids, price, entry[1]) for side in (book.bids, book.asks)
            for price, level in side.items() for entry in level]


def test_the_world_sends_the_stream_its_seed_says(sim_topology: Topology) -> None:
    """Ten quiet minutes, one engine, its primary open: every request the world counted (acknowledged, refused
    and why, traded) is the reference's, drawn tick by tick from the seed's order stream."""
    sim = Simulation(make_scenario(sim_topology, duration=600.0, name="orders"), seed=5)
    sim.run()
    flow = sim.world.engines["spot"]

    master = random.Random(5)
    rng = random.Random(master.getrandbits(64))
    plain, refused, acknowledged, trades = PlainBook(), Counter[str](), 0, 0
    allow = sim_topology.protection.allow
    for _ in range(600):
        for _ in range(poisson(rng, sim.scenario.world.order_rate)):
            kind, buy, price, qty = reference_draw(rng, len(plain.orders))
            reason = admit(Phase.OPEN, kind, allow)
            if reason is None and kind is RequestKind.CANCEL and not plain.orders:
                reason = "unknown_order"
            elif reason is None and kind is RequestKind.POST_ONLY and plain.crosses(buy, price):
                reason = "would_cross"
            if reason is not None:
                refused[reason] += 1
                continue
            acknowledged += 1
            if kind is RequestKind.CANCEL:
                plain.cancel_oldest()
            elif kind is not RequestKind.ADD_MARGIN:
                trades += plain.execute(kind, buy, price, qty, True)
    assert (flow.acknowledged, dict(flow.refused), flow.trades) == (acknowledged, dict(refused), trades)
    assert flow.acknowledged > 1000 and trades > 100
    primary = sim.world.replicas["spot-aws"]
    assert primary.n == acknowledged and list(primary.log[: primary.n]) == list(range(acknowledged))
    assert sim.world.lost("spot", "spot-aws") == 0 and sim.world.lost("spot", "spot-gcp") == 0
