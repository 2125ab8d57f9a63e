"""`POST /v1/peers` on real replica processes: a replica told at run time where the engine's other replicas run
finds its primary there, copies from it, keeps the list across a restart, and a promotion asks the new peers.

The runbook this stands for: after `failover replace` moved a replica to a new machine, the orchestrator tells every
replica the engine's control URLs now; a standby started with flags that name only addresses that are gone (here a
port where nothing listens) never finds its primary until then. The epoch rule holds as for every control call: a
list sent at an epoch below the replica's, or below the one that set its list, is refused and changes nothing;
without the token, nothing changes either.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.core.errors import EngineError, StaleEpoch
from orchestrator.core.model import Phase, Role
from orchestrator.engine.base import PromoteRefused
from orchestrator.engine.client import HttpEngineClient
from orchestrator.engine.replica.journal import ControlCorrupt, ControlState
from orchestrator.testbed.ports import free_port
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec
from orchestrator.testbed.world import wait_until

pytestmark = pytest.mark.slow  # starts replica processes

GONE = f"http://127.0.0.1:{free_port('127.0.0.1')}"  # the old address: nothing listens there
LOST = {"p": GONE}  # a standby whose flags name its primary at the old address, and no other peer


@pytest.fixture(scope="module")
def cluster(make_cluster: Callable[..., ReplicaCluster]) -> ReplicaCluster:
    """p (aws, primary) and g (gcp) replicate synchronously and know only each other; n, s and x know no live
    replica (x never copies from a standby: `--no-peer-catch-up`)."""
    return make_cluster([
        ReplicaSpec("p", "aws", primary=True, peers=("g",)),
        ReplicaSpec("g", "gcp", peers=("p",)),
        ReplicaSpec("n", "azure", peers=(), via=LOST),
        ReplicaSpec("s", "azure", peers=(), via=LOST),
        ReplicaSpec("x", "azure", peers=(), via=LOST, extra_args=("--no-peer-catch-up",)),
    ])


@pytest.fixture(scope="module")
def client(cluster: ReplicaCluster) -> Iterator[HttpEngineClient]:
    with cluster.client(attempts=2, backoff=0.05, control_timeout=10.0) as engine:
        yield engine


def order(client: HttpEngineClient, cluster: ReplicaCluster, coid: str) -> int:
    answer = client.submit_order(cluster.url("p"), client_order_id=coid, account="acct", market="M", side="buy",
                                 price="10", qty="1")
    assert answer.accepted and answer.seq is not None, answer
    return answer.seq


def test_peers_set_at_run_time_are_polled_and_followed(client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    last = max(order(client, cluster, f"before-{n}") for n in range(3))
    told = client.peers(cluster.url("n"))
    assert (told["source"], told["peers"], told["peers_epoch"]) == ("flags", [GONE], None)
    assert client.status(cluster.replica("n")).last_seq == 0  # it knows no live replica: nothing to copy from

    answer = client.set_peers(cluster.replica("n"), 0, [cluster.url("p"), cluster.url("g") + "/"])
    assert (answer["source"], answer["peers"], answer["peers_epoch"]) == ("control", [cluster.url("p"),
                                                                                       cluster.url("g")], 0)
    waited = wait_until(lambda: client.status(cluster.replica("n")).last_seq >= last, "n to copy p's journal")
    status = client.status(cluster.replica("n"))
    assert (status.role, status.following) == (Role.STANDBY, cluster.url("p"))
    wait_until(lambda: "n" in (cluster.status("p")["standbys"] or {}), "p to count n as an acknowledging standby")
    print(f"n caught up {last} entries {waited:.2f}s after its peers were set")


def test_the_list_survives_a_restart(client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    client.set_peers(cluster.replica("n"), 0, [cluster.url("p"), cluster.url("g")])
    cluster.restart("n")  # its flags still name only the old address
    kept = client.peers(cluster.url("n"))
    assert (kept["source"], kept["peers"]) == ("control", [cluster.url("p"), cluster.url("g")])
    seq = order(client, cluster, "after-restart")
    wait_until(lambda: client.status(cluster.replica("n")).last_seq >= seq, "n to copy an order after its restart")
    assert client.status(cluster.replica("n")).following == cluster.url("p")


def test_a_stale_epoch_is_refused_and_changes_nothing(client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    s = cluster.replica("s")
    client.set_peers(s, 7, [cluster.url("g")])
    with pytest.raises(StaleEpoch):
        client.set_peers(s, 6, [GONE])  # an older leader's list, below the one that set it
    kept = client.peers(cluster.url("s"))
    assert (kept["peers"], kept["peers_epoch"], kept["epoch"]) == ([cluster.url("g")], 7, 0)  # checked, not stamped

    client.set_phase(s, Phase.HALTED, None, 9)  # the replica's own epoch is a floor too
    with pytest.raises(StaleEpoch):
        client.set_peers(s, 8, [GONE])
    refused = httpx.post(cluster.url("s") + "/v1/peers", json={"epoch": 8, "peers": [GONE]}, timeout=10.0,
                         headers={"Authorization": f"Bearer {cluster.token}"})
    assert (refused.status_code, refused.json()["reason"], refused.json()["epoch"]) == (409, "stale_epoch", 9)
    assert client.peers(cluster.url("s"))["peers"] == [cluster.url("g")]
    client.set_peers(s, 9, [cluster.url("g"), cluster.url("p")])  # at the epoch it carries: accepted
    assert client.peers(cluster.url("s"))["peers_epoch"] == 9


def test_without_the_token_nothing_changes(client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    before = client.peers(cluster.url("s"))
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        refused = httpx.post(cluster.url("s") + "/v1/peers", json={"epoch": 10**6, "peers": [GONE]},
                             headers=headers, timeout=10.0)
        assert (refused.status_code, refused.json()["reason"]) == (401, "unauthorized")
    assert httpx.get(cluster.url("s") + "/v1/peers", timeout=10.0).status_code == 401  # it maps the network
    with HttpEngineClient(token="not-the-token") as stranger, pytest.raises(EngineError, match="unauthorized"):
        stranger.set_peers(cluster.replica("s"), 10**6, [GONE])
    assert client.peers(cluster.url("s")) == before


def test_a_promotion_asks_the_new_peers(client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    """x knows no live replica and copies from no standby: without its new list, a promotion would find nobody
    ahead of it and make an empty primary. Told g's address, it asks g first and refuses: behind g."""
    seq = order(client, cluster, "before-promotion")
    cluster.wait_caught_up(["g"], seq)
    x = cluster.replica("x")
    client.set_peers(x, 0, [cluster.url("g")])
    with pytest.raises(PromoteRefused) as refused:
        client.promote(x, 1)
    assert (refused.value.peer, refused.value.last_seq) == (cluster.url("g"), 0)
    assert refused.value.peer_seq >= seq
    assert client.status(x).role is Role.STANDBY


def test_a_control_state_with_a_bad_peer_list_refuses_to_load(tmp_path: Path) -> None:
    """The list is part of the control state: one the replica cannot read stops it at start, naming the file."""
    path = tmp_path / "control.json"
    state = ControlState(path)
    state.commit(role=Role.STANDBY, peers=("http://10.0.0.1:8700",), peers_epoch=3)
    loaded = ControlState.load(path)
    assert (loaded.peers, loaded.peers_epoch, loaded.role) == (("http://10.0.0.1:8700",), 3, Role.STANDBY)
    path.write_text(json.dumps({"epoch": 3, "role": "standby", "peers": "http://10.0.0.1:8700"}), encoding="utf-8")
    with pytest.raises(ControlCorrupt, match=f"{path}: not a control state \\(peers must be a list of URLs\\)"):
        ControlState.load(path)
