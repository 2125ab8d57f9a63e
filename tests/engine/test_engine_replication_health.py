"""A primary that cannot replicate says so in its status (issue 11, hole 6, the replica's side).

Under synchronous replication a primary whose standbys on other clouds cannot reach it answers every probe and
acknowledges nothing. `GET /v1/status` tells the orchestrator: `unreplicated_age_s` (how long its oldest entry
has waited for a standby on another cloud), `replication_timeouts` (writes answered 503), `standbys` (who fetched
last, from which cloud, how far, how long ago); a standby reports `primary_contact_age_s`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.model import Role
from orchestrator.engine.client import HttpEngineClient, OrderAnswer
from orchestrator.engine.replica.node import Node, Settings
from orchestrator.testbed.ports import free_port
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

AT = "2024-05-01T03:00:00.000000Z"


def submit(client: HttpEngineClient, url: str, coid: str) -> OrderAnswer:
    return client.submit_order(url, client_order_id=coid, account="acct", market="M", side="buy", price="10",
                               qty="1")


def grows(cluster: ReplicaCluster, name: str, read: Callable[[dict[str, Any]], float], by: float) -> None:
    """Wait until `read(status)` has grown by `by` seconds from its first reading."""
    first = read(cluster.status(name))
    cluster.wait_for(lambda: read(cluster.status(name)) >= first + by, what=f"{name}'s age to grow by {by}s")


@pytest.mark.slow
def test_a_primary_cut_off_from_its_standbys_says_it_cannot_replicate(
        make_cluster: Callable[..., ReplicaCluster]) -> None:
    """Both standbys reach the primary at an address that refuses (the link is cut); the orchestrator does not."""
    refused = f"http://127.0.0.1:{free_port()}"
    cluster = make_cluster([ReplicaSpec("p", "aws", primary=True, sync_timeout=0.5),
                            ReplicaSpec("g", "gcp", via={"p": refused}),
                            ReplicaSpec("z", "azure", via={"p": refused})])
    with cluster.client(attempts=1) as client:
        status = cluster.status("p")
        assert (status["unreplicated_age_s"], status["replication_timeouts"], status["standbys"]) == (0.0, 0, {})

        answer = submit(client, cluster.url("p"), "cut-off")
        assert (answer.accepted, answer.status_code, answer.reason) == (False, 503, "replication_timeout")
        status = cluster.status("p")
        assert (status["role"], status["phase"]) == ("primary", "open")  # it answers, and looks fine otherwise
        assert status["replication_timeouts"] == 1 and status["replicated_seq"] == 0
        assert status["unreplicated_age_s"] > 0 and status["standbys"] == {}
        grows(cluster, "p", lambda body: float(body["unreplicated_age_s"]), 0.5)
        assert submit(client, cluster.url("p"), "cut-off-2").status_code == 503
        assert cluster.status("p")["replication_timeouts"] == 2

        for name in ("g", "z"):
            standby = cluster.status(name)
            assert (standby["role"], standby["primary_contact_age_s"], standby["standbys"]) == ("standby", None, None)
            assert standby["unreplicated_age_s"] is None


@pytest.mark.slow
def test_a_healthy_pair_then_a_lost_standby(make_cluster: Callable[..., ReplicaCluster]) -> None:
    cluster = make_cluster([ReplicaSpec("p", "aws", primary=True, sync_timeout=0.5), ReplicaSpec("g", "gcp")])
    with cluster.client(attempts=1) as client:
        assert submit(client, cluster.url("p"), "held").accepted
        cluster.wait_for(lambda: cluster.status("g")["primary_contact_age_s"] is not None, what="g's first fetch")
        status = cluster.status("p")
        assert (status["unreplicated_age_s"], status["replication_timeouts"]) == (0.0, 0)
        assert set(status["standbys"]) == {"g"}
        assert (status["standbys"]["g"]["cloud"], status["standbys"]["g"]["seq"]) == ("gcp", status["last_seq"])
        assert status["standbys"]["g"]["age_s"] >= 0
        assert cluster.status("g")["primary_contact_age_s"] >= 0

        cluster.stop("g")
        try:
            assert submit(client, cluster.url("p"), "lonely").status_code == 503
            grows(cluster, "p", lambda body: float(body["unreplicated_age_s"]), 0.5)
            grows(cluster, "p", lambda body: float(body["standbys"]["g"]["age_s"]), 0.5)
            assert cluster.status("p")["replication_timeouts"] == 1
        finally:
            cluster.start("g")
        cluster.wait_replicated("p")
        assert cluster.status("p")["unreplicated_age_s"] == 0.0


# --- the bookkeeping, on a clock we hold ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_unreplicated_age_counts_from_the_oldest_entry_no_standby_on_another_cloud_holds(tmp_path: Path) -> None:
    clock = Clock()
    node = Node(Settings(replica_id="p", data_dir=tmp_path, cloud="aws", initial_role=Role.PRIMARY, token="t"),
                monotonic=clock)
    assert node.status()["unreplicated_age_s"] == 0.0
    node.submit("margin", {"account": "a", "amount": "1", "request_id": "1"})  # seq 1 at t=100
    clock.now = 101.0
    node.submit("margin", {"account": "a", "amount": "1", "request_id": "2"})  # seq 2 at t=101
    clock.now = 102.5
    assert node.status()["unreplicated_age_s"] == 2.5
    assert node.check_fetch("same-cloud", "aws", 2, node.journal.hash_at(2) or "") is None
    assert node.status()["unreplicated_age_s"] == 2.5  # a copy on the same cloud does not count
    assert node.check_fetch("g", "gcp", 1, node.journal.hash_at(1) or "") is None
    assert node.status()["unreplicated_age_s"] == 1.5  # now entry 2 (t=101) is the oldest
    clock.now = 103.0
    assert node.check_fetch("g", "gcp", 2, node.journal.hash_at(2) or "") is None
    status = node.status()
    assert status["unreplicated_age_s"] == 0.0
    assert status["standbys"] == {"g": {"cloud": "gcp", "seq": 2, "age_s": 0.0},
                                  "same-cloud": {"cloud": "aws", "seq": 2, "age_s": 0.5}}


def test_a_promoted_standby_counts_what_it_held_from_its_promotion(tmp_path: Path) -> None:
    clock = Clock()
    node = Node(Settings(replica_id="s", data_dir=tmp_path, cloud="gcp", token="t"), monotonic=clock)
    clock.now = 150.0
    node.promote()  # journals a halt: seq 1, unheld by anyone
    clock.now = 152.0
    assert node.status()["unreplicated_age_s"] == 2.0


def test_no_unreplicated_age_when_asynchronous(tmp_path: Path) -> None:
    node = Node(Settings(replica_id="p", data_dir=tmp_path, initial_role=Role.PRIMARY, synchronous=False,
                         token="t"))
    node.submit("margin", {"account": "a", "amount": "1", "request_id": "1"})
    assert node.status()["unreplicated_age_s"] is None
