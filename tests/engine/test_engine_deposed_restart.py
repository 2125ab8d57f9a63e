"""An old primary started again after a failover it missed, while the standby that missed the halt still follows
the epoch it had (soak seed 2014; issue 11, hole 2's rule).

Runbook of the regression, as the soak played it: primary P (aws) dies; the orchestrator stamps S2 (azure) with the
new epoch E, but S1 (gcp) is frozen through the halt and keeps epoch 0; no replica is primary at E (the promotion
was lost). P is started again on its data directory: primary at epoch 0. Before the fix, P checked only for a
*primary* above its epoch, so it served; S1, at 0, followed it and acknowledged its order; a later halt stamped S1
with E, which vouched S1's journal at E, and S2 copied the order from it: an entry written at 0 after S2 carried E
was in S2's history.

The rules now (the replica's side of `core.runbook.deposed_primaries`): a primary that sees any replica carrying an
epoch above its own is deposed and fences itself (at start, before it serves, and on every poll); a standby takes
the highest epoch any peer carries as its floor, so it neither follows nor copies a primary below it, whether or not
the orchestrator reached it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.core.model import Phase, Role
from orchestrator.engine.client import HttpEngineClient, OrderAnswer
from orchestrator.engine.replica.node import Node, Settings
from orchestrator.engine.replica.replication import Replicator
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

EPOCH = 1_000_001


def node(path: Path, role: Role, epoch: int = 0) -> Node:
    made = Node(Settings(replica_id="me", data_dir=path, cloud="gcp", initial_role=role, token="t"))
    if epoch:
        made.see_epoch(epoch)
    return made


def peer(name: str, role: str, epoch: int, last_seq: int) -> dict[str, Any]:
    return {"replica": name, "role": role, "epoch": epoch, "last_seq": last_seq, "journal_epoch": epoch}


# --- the rules, without processes ----------------------------------------------------------------------------


def test_a_primary_below_an_epoch_a_standby_carries_fences_itself(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            old = node(tmp_path, Role.PRIMARY)
            replication = Replicator(old, client)
            replication.seen = {"http://gcp": peer("gcp", "standby", 0, 45)}
            replication.check_deposed()
            assert old.role is Role.PRIMARY  # a peer at our epoch deposes nobody
            replication.seen["http://azure"] = peer("azure", "standby", EPOCH, 45)
            replication.check_deposed()
            assert (old.role, old.epoch, old.journal_epoch) == (Role.FENCED, 0, 0)

    asyncio.run(scenario())


def test_a_standby_neither_follows_nor_copies_a_primary_below_an_epoch_a_peer_carries(tmp_path: Path) -> None:
    requests: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        return httpx.Response(200, json=[])

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as client:
            unstamped = node(tmp_path, Role.STANDBY)  # frozen through the halt: still at epoch 0
            replication = Replicator(unstamped, client)
            replication.seen = {"http://aws": peer("aws", "primary", 0, 46)}
            assert replication.choose_source() == ("http://aws", True)  # nobody carries more: still ours
            replication.seen["http://azure"] = peer("azure", "standby", EPOCH, 0)
            assert replication.choose_source() is None  # not followed, not copied from; azure has nothing more
            assert not await replication.fetch_once("http://aws", True)
            assert not await replication.fetch_once("http://aws", False)
            replication.seen["http://azure"] = None  # out of sight: what it carried is not forgotten
            assert replication.choose_source() is None
            assert requests == [] and unstamped.epoch == 0  # learned, never persisted: nothing is vouched by it

    asyncio.run(scenario())


# --- real processes ----------------------------------------------------------------------------------------


def submit(client: HttpEngineClient, url: str, coid: str) -> OrderAnswer:
    return client.submit_order(url, client_order_id=coid, account="acct", market="M", side="buy", price="10",
                               qty="1")


def coids(client: HttpEngineClient, url: str) -> set[str]:
    return {str(entry["data"].get("client_order_id")) for entry in client.journal(url)}


def quietly(cluster: ReplicaCluster, condition: Callable[[], bool], seconds: float) -> bool:
    try:
        cluster.wait_for(condition, timeout=seconds, what="a condition")
    except AssertionError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("hears", [True, False], ids=["old-primary-hears-its-peers", "old-primary-hears-nobody"])
def test_an_old_primary_started_again_never_writes_into_a_history_at_the_new_epoch(
        tmp_path: Path, hears: bool) -> None:
    specs = [ReplicaSpec("p", "aws", primary=True, sync_timeout=0.5, peers=None if hears else ()),
             ReplicaSpec("s1", "gcp"), ReplicaSpec("s2", "azure")]
    with ReplicaCluster(tmp_path / "c", specs) as cluster, \
            cluster.client(attempts=1, read_timeout=5.0) as client:
        cluster.start()
        assert all(submit(client, cluster.url("p"), f"before-{i}").accepted for i in range(4))
        cluster.wait_for(lambda: all(cluster.status(n)["last_seq"] == 4 for n in ("s1", "s2")),
                         what="both standbys to hold the acknowledged orders")

        cluster.kill("p")  # lost; the halt reaches s2 only, and nobody is promoted
        assert client.set_phase(cluster.replica("s2"), Phase.HALTED, None, EPOCH).epoch == EPOCH
        # s1 learns of the epoch from s2 within a few peer polls (it says so once); not a condition of the test,
        # which must fail on the unfixed replica rather than wait here for ever
        quietly(cluster, lambda: f"carries epoch {EPOCH}" in cluster.log("s1"), 10)

        cluster.start("p")  # its control state: primary at epoch 0
        answer = submit(client, cluster.url("p"), "zombie")
        assert not answer.accepted, "the old primary acknowledged an order after another replica carried E"
        assert (answer.status_code, answer.reason) in {(409, "fenced"), (503, "replication_timeout")}
        if hears:  # it sees s2 at E: deposed, and it says so in its role (at start, or at its next poll)
            cluster.wait_for(lambda: cluster.status("p")["role"] == "fenced", what="the old primary to fence itself")
            assert cluster.status("p")["journal_epoch"] == 0
        assert not quietly(cluster, lambda: "zombie" in coids(client, cluster.url("s1")), 30 * cluster.peer_interval)

        # the late halt reaches s1 too: its journal is vouched at E from now on, and s2 may copy from it
        assert client.set_phase(cluster.replica("s1"), Phase.HALTED, None, EPOCH).epoch == EPOCH
        assert not quietly(cluster, lambda: any("zombie" in coids(client, cluster.url(n)) for n in ("s1", "s2")),
                           30 * cluster.peer_interval)
        promoted = client.promote(cluster.replica("s2"), EPOCH)
        assert (promoted.role, promoted.epoch) == (Role.PRIMARY, EPOCH)
        assert coids(client, cluster.url("s2")) == {f"before-{i}" for i in range(4)} | {"None"}  # + its halt
