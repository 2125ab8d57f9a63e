"""Fencing by epoch through the standbys: `POST /v1/phase` on a standby only stamps the epoch, and a standby never
acknowledges a primary below the highest epoch it has seen. So an old primary nobody can reach (or nobody tried
to) stops acknowledging orders in synchronous mode as soon as every standby on another cloud carries a new epoch.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.core.errors import EngineError, StaleEpoch
from orchestrator.core.model import Phase, Role
from orchestrator.engine.client import HttpEngineClient, OrderAnswer
from orchestrator.engine.replica.journal import Journal
from orchestrator.engine.replica.node import Node, Settings
from orchestrator.engine.replica.replication import Replicator
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

AT = "2024-05-01T03:00:00.000000Z"
PRIMARY_URL = "http://old-primary:1"


# --- the rule, without processes ----------------------------------------------------------------------------


def standby(path: Path) -> Node:
    return Node(Settings(replica_id="s", data_dir=path, cloud="gcp", token="t"))


def test_set_phase_on_a_standby_stamps_the_epoch_only(tmp_path: Path) -> None:
    node = standby(tmp_path)
    assert node.see_epoch(3) is None and node.set_phase(Phase.HALTED, None) is None
    assert (node.epoch, node.ledger.phase, node.journal.last_seq) == (3, Phase.OPEN, 0)
    assert standby(tmp_path).epoch == 3  # persisted
    assert node.see_epoch(2) is not None and node.epoch == 3
    node.fence()
    refused = node.set_phase(Phase.HALTED, None)
    assert refused is not None and refused.reason == "fenced"


def journal_with(path: Path, count: int) -> list[dict[str, Any]]:
    journal = Journal.open(path)
    for index in range(count):
        journal.append([journal.make(AT, 4, "margin", {"account": "a", "amount": "1", "request_id": str(index)})])
    return [entry.to_wire() for entry in journal.entries]


def test_a_standby_neither_acknowledges_nor_copies_a_primary_below_its_epoch(tmp_path: Path) -> None:
    entries = journal_with(tmp_path / "primary.jsonl", 3)
    requests: list[dict[str, str]] = []

    def serve(request: httpx.Request) -> httpx.Response:
        requests.append(dict(request.url.params))
        return httpx.Response(200, json=entries[int(request.url.params["after"]):])

    def primary_at(epoch: int, **extra: Any) -> dict[str, dict[str, Any] | None]:
        body = {"replica": "p", "role": "primary", "epoch": epoch, "last_seq": len(entries)}
        return {PRIMARY_URL: {**body, **extra}}

    async def scenario() -> None:
        node = standby(tmp_path / "s")
        node.see_epoch(5)
        async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as client:
            replication = Replicator(node, client)
            replication.seen = primary_at(4)
            assert replication.choose_source() is None  # not followed, and not copied from either
            assert not await replication.fetch_once(PRIMARY_URL, True)  # the acknowledging fetch is never sent
            assert not await replication.fetch_once(PRIMARY_URL, False)  # nor a catch-up read
            replication.seen = primary_at(5, role="fenced", journal_epoch=4)
            assert replication.choose_source() is None  # fenced at 5, but its journal is still its epoch 4's
            assert requests == [] and node.journal.last_seq == 0

            replication.seen = primary_at(5)  # the same epoch as ours: followed, and so acknowledged
            assert replication.choose_source() == (PRIMARY_URL, True)
            assert await replication.fetch_once(PRIMARY_URL, True)
            assert (requests[-1]["replica"], requests[-1]["after"], node.journal.last_seq) == ("s", "0", 3)

    asyncio.run(scenario())


# --- real processes ----------------------------------------------------------------------------------------

def submit(client: HttpEngineClient, url: str, coid: str, side: str = "buy", post_only: bool = False) \
        -> OrderAnswer:
    return client.submit_order(url, client_order_id=coid, account="acct", market="M", side=side, price="10",
                               qty="1", post_only=post_only)


def coids_by_seq(client: HttpEngineClient, url: str) -> dict[int, str]:
    return {entry["seq"]: entry["data"].get("client_order_id") for entry in client.journal(url)}


@pytest.mark.slow
def test_stamping_a_standby_records_the_epoch_keeps_the_phase_and_survives_sigkill(
        make_cluster: Callable[..., ReplicaCluster]) -> None:
    # p hears nobody: a primary that sees a standby above its epoch fences itself (`test_engine_deposed_restart`),
    # and this test is about what the stamp does on the standby
    cluster = make_cluster([ReplicaSpec("p", "aws", primary=True, sync_timeout=0.5, peers=()),
                            ReplicaSpec("s", "gcp")])
    with cluster.client(attempts=2, backoff=0.05) as client:
        p, s = cluster.replica("p"), cluster.replica("s")
        client.set_phase(p, Phase.PROTECTION, time.time() + 600, 2)
        cluster.wait_caught_up(["s"], client.status(p).last_seq)
        before = client.status(s)
        assert before.phase is Phase.PROTECTION and len(client.journal(cluster.url("s"))) == before.last_seq

        stamped = client.set_phase(s, Phase.OPEN, None, 3)
        assert (stamped.role, stamped.epoch, stamped.phase) == (Role.STANDBY, 3, Phase.PROTECTION)
        assert stamped.phase_until == before.phase_until and stamped.last_seq == before.last_seq
        assert client.status(p).epoch == 2  # the primary was not touched
        assert client.set_phase(s, Phase.HALTED, None, 3).epoch == 3  # the same epoch again: harmless
        response = httpx.post(cluster.url("s") + "/v1/phase", json={"phase": "halted", "epoch": 2},
                              headers={"Authorization": f"Bearer {cluster.token}"})
        assert (response.status_code, response.json()) == (409, {"accepted": False, "reason": "stale_epoch",
                                                                  "epoch": 3})

        # s no longer acknowledges p (epoch 2 < 3); stamping p at 3 too makes it acknowledgeable again
        lonely = submit(client, cluster.url("p"), "while-s-refuses", "sell", post_only=True)
        assert (lonely.accepted, lonely.status_code, lonely.reason) == (False, 503, "replication_timeout")

        cluster.restart("s", hard=True)
        again = client.status(s)
        assert (again.role, again.epoch, again.phase) == (Role.STANDBY, 3, Phase.PROTECTION)
        with pytest.raises(StaleEpoch, match="seen epoch 3"):
            client.set_phase(s, Phase.HALTED, None, 2)
        assert submit(client, cluster.url("p"), "while-s-refuses", "sell", post_only=True).status_code == 503

        client.set_phase(p, Phase.PROTECTION, time.time() + 600, 3)
        cluster.wait_replicated("p")
        retry = submit(client, cluster.url("p"), "while-s-refuses", "sell", post_only=True)
        assert (retry.accepted, retry.seq) == (True, lonely.seq)

        assert client.fence(s, 4).role is Role.FENCED
        with pytest.raises(EngineError, match="409 fenced"):
            client.set_phase(s, Phase.HALTED, None, 5)
        assert client.status(s).epoch == 5


@dataclass(frozen=True, slots=True)
class Sent:
    at: float  # time.monotonic() just before the request left
    coid: str
    answer: OrderAnswer


def stream(client: HttpEngineClient, url: str, worker: int, sent: list[Sent], stop: threading.Event) -> None:
    index = 0
    while not stop.is_set():
        coid = f"w{worker}-{index}"
        at = time.monotonic()
        answer = submit(client, url, coid, "buy" if (index + worker) % 2 else "sell")
        sent.append(Sent(at, coid, answer))
        index += 1


@pytest.mark.slow
def test_standbys_at_a_new_epoch_fence_a_live_primary_nobody_reached(
        make_cluster: Callable[..., ReplicaCluster]) -> None:
    """a (aws) hears nobody (no peers), so it never learns of b's promotion: only the standbys protect us."""
    cluster = make_cluster([ReplicaSpec("a", "aws", primary=True, sync_timeout=0.5, peers=()),
                            ReplicaSpec("b", "gcp"), ReplicaSpec("c", "azure")])
    sent: list[Sent] = []
    stop = threading.Event()
    with cluster.client(attempts=2, backoff=0.05, read_timeout=3.0) as client:
        a, b, c = (cluster.replica(name) for name in "abc")
        workers = [threading.Thread(target=stream, args=(client, cluster.url("a"), n, sent, stop))
                   for n in range(4)]
        for worker in workers:
            worker.start()
        try:
            cluster.wait_for(lambda: sum(s.answer.accepted for s in sent) >= 60, timeout=15,
                             what="60 acknowledged orders")
            epoch = client.status(a).epoch + 1
            assert client.set_phase(b, Phase.HALTED, None, epoch).epoch == epoch
            assert client.set_phase(c, Phase.HALTED, None, epoch).epoch == epoch
            stamped = time.monotonic()
            held = {**coids_by_seq(client, cluster.url("b")), **coids_by_seq(client, cluster.url("c"))}
            cluster.wait_for(lambda: sum(s.at > stamped for s in sent) >= 8, timeout=10,
                             what="orders sent after the stamp")
        finally:
            stop.set()
            for worker in workers:
                worker.join(10)

        acknowledged = [s for s in sent if s.answer.accepted]
        late = [s for s in sent if s.at > stamped]
        assert [s for s in late if s.answer.accepted] == []
        assert {(s.answer.status_code, s.answer.reason) for s in late} == {(503, "replication_timeout")}
        assert [s.coid for s in acknowledged if held.get(s.answer.seq or 0) != s.coid] == []

        # b and c copy nothing a wrote after the stamp (nobody acknowledged it), and a still believes it is primary
        late_coids = {s.coid for s in late}
        with pytest.raises(AssertionError, match="timed out"):
            cluster.wait_for(lambda: any(set(coids_by_seq(client, cluster.url(name)).values()) & late_coids
                                         for name in "bc"), timeout=30 * cluster.peer_interval)
        cluster.wait_for(lambda: cluster.status("b")["last_seq"] == cluster.status("c")["last_seq"],
                         what="b and c to level (each holds what it acknowledged)")
        status = cluster.status("a")
        assert (status["role"], status["epoch"]) == ("primary", epoch - 1)
        assert status["replicated_seq"] < min(s.answer.seq or 0 for s in late)
        for name in "bc":
            assert (cluster.status(name)["role"], cluster.status(name)["epoch"]) == ("standby", epoch)

        promoted = client.promote(b, epoch)
        assert (promoted.role, promoted.phase, promoted.epoch) == (Role.PRIMARY, Phase.HALTED, epoch)
        cluster.wait_for(lambda: cluster.status("c")["following"] == cluster.url("b"), what="c to follow b")
        client.set_phase(b, Phase.OPEN, None, epoch)
        on_b = submit(client, cluster.url("b"), "on-the-new-primary")
        assert on_b.accepted and coids_by_seq(client, cluster.url("c"))[on_b.seq or 0] == "on-the-new-primary"

        on_a = submit(client, cluster.url("a"), "on-the-old-primary")
        assert (on_a.accepted, on_a.status_code, on_a.reason) == (False, 503, "replication_timeout")
        assert client.status(a).role is Role.PRIMARY  # alive, unfenced, unaware, and harmless
        assert cluster.status("a")["replicated_seq"] == status["replicated_seq"]
        assert "on-the-old-primary" not in coids_by_seq(client, cluster.url("c")).values()
