"""Reading by arrival, on every backend: a reader that passes back its cursor gets exactly what reached the store
since its last read, whatever the writers' clocks say; heartbeats carry a store-side arrival marker (issue 11,
hole 7). Read as the leader's loop: read what arrived, judge freshness by arrival, never by a writer's `at`."""

from __future__ import annotations

import threading
import time

import pytest
from test_store_concurrency import run_together

from orchestrator.core.model import Observation, Status
from orchestrator.errors import StoreError
from orchestrator.store import StateStore, open_store

T0 = 1_671_332_412.0


def batch(at: float, source: str, count: int, subject: str = "aws-hk") -> list[Observation]:
    return [Observation(at + i / 1000, subject, source, Status.OK, f"{source}#{i}") for i in range(count)]


def read_all(store: StateStore, cursor: int | None, limit: int) -> tuple[list[Observation], int]:
    found: list[Observation] = []
    while True:
        page, after = store.observations_after(cursor, limit)
        assert cursor is None or after >= cursor, "a cursor went backwards"
        if not page:
            assert after == (cursor or 0) or cursor is None
            return found, after
        assert len(page) <= limit
        found += page
        cursor = after


def test_a_reader_gets_what_arrived_in_arrival_order_whatever_the_clocks(store: StateStore) -> None:
    fast = batch(T0 + 30, "probe:fast-clock", 3)  # a writer 30 s ahead
    slow = batch(T0 - 30, "probe:slow-clock", 2)  # and one 30 s behind, writing after it
    store.record_observations(fast)
    store.record_observations(slow)
    seen, cursor = store.observations_after(None, 100)
    assert seen == fast + slow  # arrival order; `observations(since)` would sort the slow one first
    assert store.observations(0) == slow + fast
    assert store.observations_after(cursor, 100) == ([], cursor)
    late = batch(T0 - 3600, "probe:very-slow", 2)
    store.record_observations(late)
    assert store.observations_after(cursor, 100)[0] == late, "an old `at` is still news: it just arrived"


def test_paging_with_a_limit_loses_and_repeats_nothing(store: StateStore) -> None:
    written = [batch(T0 + n, f"probe:{n}", size) for n, size in enumerate([5, 1, 3, 7])]
    for part in written:
        store.record_observations(part)
    everything = [o for part in written for o in part]
    for limit in (1, 2, 3, 5, 100):
        assert read_all(store, None, limit)[0] == everything, f"limit {limit}"
    middle, cursor = store.observations_after(None, 7)
    rest, _ = read_all(store, cursor, 4)
    assert middle + rest == everything


def test_reading_from_the_end_sees_only_what_comes_next(store: StateStore) -> None:
    store.record_observations(batch(T0, "probe:a", 4))
    cursor = store.observations_cursor()
    assert store.observations_after(cursor, 10) == ([], cursor)
    news = batch(T0 - 100, "probe:b", 2)
    store.record_observations(news)
    assert store.observations_after(cursor, 10)[0] == news
    assert store.observations_cursor() >= cursor


def test_pruning_never_hands_a_readers_positions_to_new_observations(store: StateStore) -> None:
    """The batch that arrived last looks oldest (its writer's clock is behind) and is pruned first: positions must
    not be given out again, or a reader past them would never see what comes next."""
    store.record_observations(batch(T0 + 100, "probe:ok", 3))
    store.record_observations(batch(T0, "probe:behind", 3))
    _, cursor = read_all(store, None, 10)
    assert store.prune_observations(T0 + 50) == 3
    news = batch(T0 + 101, "probe:ok", 2)
    store.record_observations(news)
    assert read_all(store, cursor, 10)[0] == news


def test_what_the_cursor_refuses(store: StateStore) -> None:
    for cursor in (-1, 1.5, "7", True):
        with pytest.raises(StoreError, match="cursor"):
            store.observations_after(cursor, 10)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="limit"):
        store.observations_after(None, 0)


def test_heartbeats_carry_the_writers_clock_and_the_stores_arrival(store: StateStore) -> None:
    assert store.heartbeats() == []
    store.heartbeat("daemon-gcp", T0, {"role": "follower"})
    store.heartbeat("daemon-aws", T0 + 30, {"role": "leader"})  # a clock 30 s fast, stored as it said
    beats = store.heartbeats()
    assert [(b.identity, b.wall, b.detail) for b in beats] == [
        ("daemon-aws", T0 + 30, {"role": "leader"}), ("daemon-gcp", T0, {"role": "follower"})]
    aws, gcp = beats
    assert aws.arrival > gcp.arrival > 0
    store.heartbeat("daemon-gcp", T0 - 1000, {})  # a clock jumping back is still a new beat
    again = {b.identity: b for b in store.heartbeats()}
    assert again["daemon-gcp"].arrival > aws.arrival and again["daemon-gcp"].wall == T0 - 1000
    assert again["daemon-aws"] == aws, "an old beat is unchanged, arrival included"
    with pytest.raises(StoreError, match="secret"):
        store.heartbeat("daemon-aws", T0, {"token": "x"})
    with pytest.raises(StoreError, match="epoch seconds"):
        store.heartbeat("daemon-aws", float("nan"))


@pytest.mark.slow
def test_a_reader_sees_every_observation_of_two_writers_exactly_once(store_url: str) -> None:
    with open_store(store_url) as store:
        incident = store.create_incident("spot", "drill", "arrivals", 1.0)
        start = store.observations_cursor()
    seen: list[Observation] = []
    done = threading.Event()

    def reader() -> None:
        with open_store(store_url) as mine:
            cursor = start
            deadline = time.monotonic() + 120
            while len(seen) < 2000 and time.monotonic() < deadline:
                page, cursor = mine.observations_after(cursor, 150)
                seen.extend(page)
                if not page:
                    time.sleep(0.05)
        done.set()

    thread = threading.Thread(target=reader)
    thread.start()
    run_together(store_url, "append", ["cron", "operator"], incident.id)
    thread.join(timeout=180)
    assert done.is_set()
    keys = [(o.subject, o.detail) for o in seen]
    assert len(keys) == 2000 and len(set(keys)) == 2000, f"{len(keys)} read, {len(set(keys))} distinct"
