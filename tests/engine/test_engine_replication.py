"""Synchronous replication with real processes: nothing is acknowledged unless a standby on another cloud holds
it, and after the primary is SIGKILLed mid-stream the promoted standby holds every acknowledged order at the
same seq, while the other standby switches to the new primary on its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from orchestrator.core.errors import EngineError
from orchestrator.core.model import Phase, Role
from orchestrator.engine.client import HttpEngineClient, OrderAnswer
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

pytestmark = pytest.mark.slow  # starts replica processes


@pytest.fixture(scope="module")
def cluster(make_cluster: Callable[..., ReplicaCluster]) -> ReplicaCluster:
    """A primary and a standby on aws, a standby on gcp: only the gcp one can acknowledge."""
    return make_cluster([ReplicaSpec("p", "aws", primary=True, sync_timeout=0.5), ReplicaSpec("a", "aws"),
                         ReplicaSpec("g", "gcp")])


@pytest.fixture(scope="module")
def client(cluster: ReplicaCluster) -> Iterator[HttpEngineClient]:
    with cluster.client(attempts=2, backoff=0.05) as engine:
        yield engine


def submit(client: HttpEngineClient, url: str, coid: str, side: str = "buy", price: str = "10") -> OrderAnswer:
    return client.submit_order(url, client_order_id=coid, account="acct", market="M", side=side, price=price,
                               qty="1")


def coids_by_seq(client: HttpEngineClient, url: str) -> dict[int, str]:
    return {entry["seq"]: entry["data"].get("client_order_id") for entry in client.journal(url)}


def test_every_acknowledged_order_is_already_on_the_other_cloud(client: HttpEngineClient,
                                                                cluster: ReplicaCluster) -> None:
    for index in range(20):
        answer = submit(client, cluster.url("p"), f"sync-{index}", "buy" if index % 2 else "sell", "10")
        assert answer.accepted and answer.seq is not None
        held = coids_by_seq(client, cluster.url("g"))  # at once: no waiting, it must be there already
        assert held[answer.seq] == f"sync-{index}"
    last = client.status(cluster.replica("p")).last_seq
    cluster.wait_caught_up(["a", "g"], last)
    assert client.trades(cluster.url("g")) == client.trades(cluster.url("p")) != []


def test_no_acknowledgement_without_a_standby_on_another_cloud(client: HttpEngineClient,
                                                                 cluster: ReplicaCluster) -> None:
    cluster.stop("g")
    try:
        started = time.monotonic()
        answer = submit(client, cluster.url("p"), "lonely")
        assert (answer.accepted, answer.status_code, answer.reason) == (False, 503, "replication_timeout")
        assert 0.4 < time.monotonic() - started < 3
        cluster.wait_caught_up(["a"], answer.seq or 0)  # the same-cloud standby has it, and that is not enough
        assert client.stats(cluster.url("p"))["refused"]["replication_timeout"] == 1
    finally:
        cluster.start("g")
    cluster.wait_replicated("p")
    retry = submit(client, cluster.url("p"), "lonely")  # the client's reconciliation: retry the same id
    assert (retry.accepted, retry.seq) == (True, answer.seq)
    assert coids_by_seq(client, cluster.url("g"))[retry.seq or 0] == "lonely"


def test_a_killed_standby_recovers_its_journal_and_book(client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    for index in range(5):
        assert submit(client, cluster.url("p"), f"recover-{index}", "sell" if index % 2 else "buy").accepted
    cluster.restart("g", hard=True)
    last = client.status(cluster.replica("p")).last_seq
    cluster.wait_caught_up(["g"], last)
    assert client.journal(cluster.url("g")) == client.journal(cluster.url("p"))
    assert client.trades(cluster.url("g")) == client.trades(cluster.url("p"))


def test_a_lagging_standby_catches_up_from_a_fenced_primary_then_takes_over(
        client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    """The runbook halts the old primary at the new epoch, then fences it, before waiting for the target to catch
    up: that must still work. (Fenced at 1 without the halt, its journal is vouched at 0 only, and a standby that
    has seen epoch 1 rightly copies nothing from it: see `engine.replica.replication`.)"""
    cluster.pause("a")
    try:
        for index in range(3):
            assert submit(client, cluster.url("p"), f"lagging-{index}").accepted  # g, on gcp, acknowledges
        client.set_phase(cluster.replica("p"), Phase.HALTED, None, 1)  # the runbook's halt, the primary first
        fenced = client.fence(cluster.replica("p"), 1)
        assert fenced.role is Role.FENCED
    finally:
        cluster.resume("a")
    cluster.wait_caught_up(["a"], fenced.last_seq)
    promoted = client.promote(cluster.replica("a"), 1)
    assert (promoted.role, promoted.last_seq) == (Role.PRIMARY, fenced.last_seq)  # it holds the halt already
    cluster.wait_for(lambda: cluster.status("g")["following"] == cluster.url("a"), what="g to follow a")
    client.set_phase(cluster.replica("a"), Phase.OPEN, None, 1)
    answer = submit(client, cluster.url("a"), "on-the-new-primary")
    assert answer.accepted and coids_by_seq(client, cluster.url("g"))[answer.seq or 0] == "on-the-new-primary"
    assert submit(client, cluster.url("p"), "on-the-old-one").reason == "fenced"


def stream(client: HttpEngineClient, url: str, worker: int, acknowledged: dict[str, int],
           stop: threading.Event) -> None:
    """Crossing orders as fast as answers come, until the primary stops answering."""
    index = 0
    while not stop.is_set():
        coid = f"w{worker}-{index}"
        try:
            answer = submit(client, url, coid, "buy" if (index + worker) % 2 else "sell", "10")
        except EngineError:
            return  # connection lost mid-request: outcome unknown, never counted as acknowledged
        if answer.accepted:
            assert answer.seq is not None
            acknowledged[coid] = answer.seq
        index += 1


def test_sigkill_primary_mid_stream_then_promote_loses_nothing_acknowledged(
        make_cluster: Callable[..., ReplicaCluster]) -> None:
    cluster = make_cluster([ReplicaSpec("p", "aws", primary=True), ReplicaSpec("g", "gcp"),
                            ReplicaSpec("z", "azure")])
    acknowledged: dict[str, int] = {}
    stop = threading.Event()
    with cluster.client(attempts=2, backoff=0.05, read_timeout=3.0) as client:
        workers = [threading.Thread(target=stream, args=(client, cluster.url("p"), n, acknowledged, stop))
                   for n in range(4)]
        for worker in workers:
            worker.start()
        cluster.wait_for(lambda: len(acknowledged) >= 150, timeout=20, what="150 acknowledged orders")
        cluster.kill("p")
        stop.set()
        for worker in workers:
            worker.join(10)
        assert len(acknowledged) >= 150

        # with no primary left, the standby that is behind copies the missing entries from the other one
        cluster.wait_for(lambda: cluster.status("g")["last_seq"] == cluster.status("z")["last_seq"],
                         what="the standbys to level")
        target, other = "g", "z"
        promoted = client.promote(cluster.replica(target), 1)
        assert (promoted.role, promoted.phase) == (Role.PRIMARY, Phase.HALTED)

        held = coids_by_seq(client, cluster.url(target))
        missing = {coid: seq for coid, seq in acknowledged.items() if held.get(seq) != coid}
        assert missing == {}

        # the other standby follows the new primary by itself, so synchronous orders are acknowledged again
        client.set_phase(cluster.replica(target), Phase.OPEN, None, 1)
        after = submit(client, cluster.url(target), "after-failover")
        assert after.accepted
        cluster.wait_for(lambda: cluster.status(other)["following"] == cluster.url(target), what="switch")
        cluster.wait_caught_up([other], after.seq or 0)
        assert client.journal(cluster.url(other)) == client.journal(cluster.url(target))
        assert client.trades(cluster.url(other)) == client.trades(cluster.url(target))
