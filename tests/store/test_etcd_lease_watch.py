"""Watching the leader lease on etcd (`EtcdStore.wait_for_lease_change`): a follower hears that the lease is free as
etcd frees it, instead of polling once a cycle, and a watch never frees anything itself.

- a free lease answers at once; a held one that its holder renews keeps the watcher waiting (renewals are puts,
  which etcd filters out of the watch);
- a holder that stops renewing (killed) wakes the watcher only once etcd has expired its lease, on etcd's clock:
  the key is gone then, the next taker gets a greater token, and the old holder can no longer renew;
- a release wakes the watcher at once;
- no member to watch is a StoreError, one line naming the members.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from orchestrator.core.errors import LeaseLost, StoreError
from orchestrator.store import open_store
from orchestrator.store.etcd import EtcdStore
from orchestrator.store.etcd_client import EtcdClient
from orchestrator.testbed.ports import free_port
from orchestrator.testbed.world import GENEROUS

pytestmark = [pytest.mark.etcd]
TTL = 2.0  # seconds: above etcd's minimum TTL with the test cluster's 500 ms election timeout


@pytest.fixture
def handles(request: pytest.FixtureRequest) -> Iterator[tuple[EtcdStore, EtcdStore]]:
    """Two handles on one fresh etcd prefix: the holder's and the watcher's (two daemons' stores)."""
    base = request.getfixturevalue("etcd_url")
    url = f"{base}/lease-watch-{request.node.name}-{time.monotonic_ns()}"
    with open_store(url) as holder, open_store(url) as watcher:
        assert isinstance(holder, EtcdStore) and isinstance(watcher, EtcdStore)
        yield holder, watcher


def test_a_free_lease_answers_at_once(handles: tuple[EtcdStore, EtcdStore]) -> None:
    _, watcher = handles
    assert watcher.wait_for_lease_change("leader", GENEROUS) is True


def test_renewals_keep_the_watcher_waiting(handles: tuple[EtcdStore, EtcdStore]) -> None:
    holder, watcher = handles
    lease = holder.acquire_lease("leader", "d-holder", TTL)
    assert lease is not None
    stop = threading.Event()
    renewed: list[float] = []

    def keep() -> None:
        current = lease
        while not stop.wait(0.3):
            current = holder.renew_lease(current, TTL)
            renewed.append(time.monotonic())

    keeper = threading.Thread(target=keep)
    keeper.start()
    try:
        assert watcher.wait_for_lease_change("leader", 2 * TTL) is False
    finally:
        stop.set()
        keeper.join()
    assert len(renewed) >= 2  # it was renewed while watched, and no renewal woke the watcher
    assert watcher.current_lease("leader") is not None


def test_a_killed_holder_wakes_the_watcher_only_once_etcd_expired_its_lease(
        handles: tuple[EtcdStore, EtcdStore]) -> None:
    holder, watcher = handles
    sent = time.monotonic()
    lease = holder.acquire_lease("leader", "d-killed", TTL)
    assert lease is not None  # and never renewed: the holder is gone

    assert watcher.wait_for_lease_change("leader", GENEROUS) is True
    woke = time.monotonic()

    assert woke - sent >= TTL  # etcd's clock, never sooner than the TTL after the holder's grant was sent
    assert watcher.current_lease("leader") is None
    taken = watcher.acquire_lease("leader", "d-successor", TTL)
    assert taken is not None and taken.token > lease.token
    with pytest.raises(LeaseLost):
        holder.renew_lease(lease, TTL)


def test_a_release_wakes_the_watcher(handles: tuple[EtcdStore, EtcdStore]) -> None:
    holder, watcher = handles
    lease = holder.acquire_lease("leader", "d-leaving", 30.0)
    assert lease is not None
    answers: list[bool] = []
    waiting = threading.Thread(target=lambda: answers.append(watcher.wait_for_lease_change("leader", GENEROUS)))
    waiting.start()
    holder.release_lease(lease)
    waiting.join(timeout=GENEROUS + 5)
    assert answers == [True]
    assert watcher.acquire_lease("leader", "d-next", TTL) is not None


def test_no_member_to_watch_is_a_store_error() -> None:
    port = free_port()
    client = EtcdClient([("127.0.0.1", port)])
    with pytest.raises(StoreError, match=rf"etcd 127\.0\.0\.1:{port}: no member accepted a watch"):
        client.wait_deleted(b"/failover/leases/leader", 0, GENEROUS)
    client.close()
