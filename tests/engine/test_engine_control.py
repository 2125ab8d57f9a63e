"""Control calls over HTTP: the bearer token, the epoch rule (across restarts), fencing, promotion while behind,
and how `HttpEngineClient` turns each failure into our errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.core.errors import EngineError, StaleEpoch
from orchestrator.core.model import Phase, Replica, Role
from orchestrator.engine.base import PromoteRefused
from orchestrator.engine.client import HttpEngineClient
from orchestrator.engine.replica.cli import main
from orchestrator.testbed.ports import free_port
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

pytestmark = pytest.mark.slow  # starts replica processes


@pytest.fixture(scope="module")
def cluster(make_cluster: Callable[..., ReplicaCluster]) -> ReplicaCluster:
    """z copies only from a primary, so that once p is dead it stays behind g for as long as the test needs. The
    standbys wait up to 10 s for their peers' status before a promotion: the refusals tested here depend on hearing
    a live peer, which a loaded machine may take more than the default second to answer."""
    patient = ("--promote-poll-timeout", "10")
    return make_cluster([ReplicaSpec("p", "aws", primary=True), ReplicaSpec("g", "gcp", extra_args=patient),
                         ReplicaSpec("z", "azure", extra_args=("--no-peer-catch-up", *patient))])


@pytest.fixture(scope="module")
def client(cluster: ReplicaCluster) -> Iterator[HttpEngineClient]:
    with cluster.client(attempts=2, backoff=0.05) as engine:
        yield engine


def order(client: HttpEngineClient, url: str, coid: str, side: str = "buy", price: str = "10") -> int | None:
    answer = client.submit_order(url, client_order_id=coid, account="acct", market="M", side=side, price=price,
                                 qty="1")
    return answer.seq if answer.accepted else None


def snapshot(client: HttpEngineClient, cluster: ReplicaCluster, name: str) -> tuple[object, ...]:
    status = client.status(cluster.replica(name))
    return status, len(client.journal(cluster.url(name)))


def test_mutating_calls_need_the_token_and_change_nothing_without_it(
        client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    before = snapshot(client, cluster, "p")
    url = cluster.url("p")
    bodies = {"/v1/phase": {"phase": "halted", "epoch": 99}, "/v1/fence": {"epoch": 99},
              "/v1/promote": {"epoch": 99}, "/v1/margin": {"account": "a", "amount": "1"},
              "/v1/orders": {"client_order_id": "t", "account": "a", "market": "M", "side": "buy",
                             "type": "limit", "price": "1", "qty": "1"},
              "/v1/cancel": {"client_order_id": "t", "account": "a"}}
    for path, body in bodies.items():
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {cluster.token}"}):
            response = httpx.post(url + path, json=body, headers=headers)
            assert (response.status_code, response.json()) == (401, {"accepted": False, "reason": "unauthorized"})
    assert snapshot(client, cluster, "p") == before
    with HttpEngineClient(token="wrong", attempts=1) as intruder, \
            pytest.raises(EngineError, match="unauthorized: check the control token"):
        intruder.fence(cluster.replica("p"), 99)
    assert client.stats(url)["refused"]["unauthorized"] >= 19
    assert all(cluster.token not in cluster.log(name) for name in ("p", "g", "z"))


def test_token_from_file_and_environment(cluster: ReplicaCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    with HttpEngineClient(token_file=cluster.token_file) as by_file:
        assert by_file.add_margin(cluster.url("p"), account="f", amount="1").accepted
    monkeypatch.setenv("FAILOVER_CONTROL_TOKEN", cluster.token)
    with HttpEngineClient() as by_env:
        assert by_env.add_margin(cluster.url("p"), account="e", amount="1", request_id="r1").accepted
        repeat = by_env.add_margin(cluster.url("p"), account="e", amount="1", request_id="r1")
        assert repeat.accepted and repeat.seq == by_env.add_margin(cluster.url("p"), account="e", amount="1",
                                                                   request_id="r1").seq


def test_stale_epoch_is_refused_and_remembered_across_a_restart(
        client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    primary = cluster.replica("p")
    assert client.set_phase(primary, Phase.OPEN, None, 5).epoch == 5
    response = httpx.post(cluster.url("p") + "/v1/phase", json={"phase": "halted", "epoch": 4},
                          headers={"Authorization": f"Bearer {cluster.token}"})
    assert (response.status_code, response.json()) == (409, {"accepted": False, "reason": "stale_epoch",
                                                              "epoch": 5})
    cluster.restart("p", hard=True)
    with pytest.raises(StaleEpoch, match="seen epoch 5"):
        client.set_phase(primary, Phase.HALTED, None, 4)
    with pytest.raises(StaleEpoch):
        client.fence(primary, 4)
    status = client.status(primary)
    assert (status.epoch, status.phase, status.role) == (5, Phase.OPEN, Role.PRIMARY)
    assert client.set_phase(primary, Phase.OPEN, None, 5).epoch == 5  # the same epoch again is a harmless retry


def test_promotion_at_an_epoch_a_live_primary_already_holds_is_refused(
        client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    with pytest.raises(StaleEpoch, match=f"primary {cluster.url('p')} holds epoch 5"):
        client.promote(cluster.replica("g"), 5)
    assert client.status(cluster.replica("g")).role is Role.STANDBY


def test_unreachable_replica_is_an_engine_error_naming_it() -> None:
    nowhere = Replica("spot-gone", "spot", "aws-hk", "i-0", f"http://127.0.0.1:{free_port()}")
    with HttpEngineClient(token="t", attempts=3, backoff=0.01, connect_timeout=0.2) as client:
        with pytest.raises(EngineError, match=r"spot-gone at http://127\.0\.0\.1:\d+/v1/status: unreachable"):
            client.status(nowhere)
        with pytest.raises(EngineError, match="after 3 attempts"):
            client.promote(nowhere, 1)


def test_promote_refused_while_behind_unless_forced(client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    assert order(client, cluster.url("p"), "before") is not None
    cluster.wait_caught_up(["g", "z"], client.status(cluster.replica("p")).last_seq)
    cluster.pause("z")
    acknowledged = [order(client, cluster.url("p"), f"while-z-sleeps-{index}") for index in range(3)]
    assert None not in acknowledged  # g, on another cloud, holds them
    cluster.kill("p")
    cluster.resume("z")
    with pytest.raises(PromoteRefused) as refused:
        client.promote(cluster.replica("z"), 10)
    assert refused.value.peer_seq == client.status(cluster.replica("g")).last_seq > refused.value.last_seq
    assert client.status(cluster.replica("z")).role is Role.STANDBY
    promoted = client.promote(cluster.replica("z"), 10, force=True)
    assert (promoted.role, promoted.phase, promoted.epoch) == (Role.PRIMARY, Phase.HALTED, 10)
    # g holds entries z never had: it must refuse to follow z rather than mix two histories.
    cluster.wait_for(lambda: "diverged" in (cluster.status("g")["error"] or ""), what="g to see divergence")
    assert cluster.status("g")["role"] == "standby"


def test_fence_stops_writes_at_once_and_for_good(client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    z = cluster.replica("z")
    client.set_phase(z, Phase.OPEN, None, 10)
    assert client.fence(z, 11).role is Role.FENCED
    answer = client.submit_order(z, client_order_id="after-fence", account="a", market="M", side="buy",
                                 price="1", qty="1")
    assert (answer.accepted, answer.status_code, answer.reason) == (False, 409, "fenced")
    assert client.cancel(z, client_order_id="before", account="acct").reason == "fenced"
    with pytest.raises(EngineError, match="409 fenced"):
        client.set_phase(z, Phase.HALTED, None, 11)
    assert client.fence(z, 11).role is Role.FENCED  # a repeated fence is harmless
    cluster.restart("z")
    assert client.status(z).role is Role.FENCED
    with pytest.raises(EngineError, match="fenced"):
        client.promote(z, 12)


def test_replica_refuses_to_start_without_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("FAILOVER_CONTROL_TOKEN", raising=False)
    assert main(["serve", "--id", "x", "--port", str(free_port()), "--data", str(tmp_path)]) == 2
    assert "no control token" in capsys.readouterr().err


def test_promotion_at_a_higher_epoch_deposes_a_live_primary(make_cluster: Callable[..., ReplicaCluster]) -> None:
    pair = make_cluster([ReplicaSpec("old", "aws", primary=True), ReplicaSpec("new", "gcp")])
    with pair.client(attempts=1) as client:
        assert order(client, pair.url("old"), "before") is not None
        assert client.promote(pair.replica("new"), 1).role is Role.PRIMARY
        pair.wait_for(lambda: pair.status("old")["role"] == "fenced", what="the old primary to fence itself")
        assert order(client, pair.url("old"), "after") is None
        assert "deposed" in pair.log("old")
