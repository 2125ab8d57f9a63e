"""Admission through HTTP: every request kind in every phase answers what `orchestrator.core.phases` says,
post-only orders never cross, matching happens only while open, and a standby's trades are the primary's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from orchestrator.core.model import Phase
from orchestrator.core.phases import RequestKind, admit
from orchestrator.engine.client import HttpEngineClient, OrderAnswer
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

EPOCH = 1

pytestmark = pytest.mark.slow  # starts replica processes


@pytest.fixture(scope="module")
def cluster(make_cluster: Callable[..., ReplicaCluster]) -> ReplicaCluster:
    return make_cluster([ReplicaSpec("p", "aws", primary=True), ReplicaSpec("s", "gcp")])


@pytest.fixture(scope="module")
def client(cluster: ReplicaCluster) -> Iterator[HttpEngineClient]:
    with cluster.client(attempts=2, backoff=0.05) as engine:
        yield engine


def set_phase(client: HttpEngineClient, cluster: ReplicaCluster, phase: Phase) -> None:
    until = time.time() + 600 if phase is Phase.PROTECTION else None
    status = client.set_phase(cluster.replica("p"), phase, until, EPOCH)
    assert status.phase is phase
    if until is not None:  # float seconds in our code, an ISO-8601 UTC string on the wire, and back
        assert status.phase_until == pytest.approx(until, abs=1e-6)


def limit(client: HttpEngineClient, cluster: ReplicaCluster, coid: str, market: str, side: str, price: str,
          qty: str = "1", **fields: Any) -> OrderAnswer:
    """A limit order whose id is unique to its market (ids are per account, and tests share accounts)."""
    return client.submit_order(cluster.url("p"), client_order_id=f"{market}-{coid}",
                               account=fields.pop("account", "taker"),
                               market=market, side=side, price=price, qty=qty, **fields)


def attempt(client: HttpEngineClient, cluster: ReplicaCluster, kind: RequestKind, market: str) -> OrderAnswer:
    """One request of `kind` that the book would accept: it never crosses unless it is meant to take."""
    url = cluster.url("p")
    if kind is RequestKind.CANCEL:
        return client.cancel(url, client_order_id=f"{market}-rest", account="maker")
    if kind is RequestKind.ADD_MARGIN:
        return client.add_margin(url, account="taker", amount="10")
    if kind is RequestKind.MARKET:
        return client.submit_order(url, client_order_id=f"{market}-x", account="taker", market=market, side="buy",
                                   type="market", qty="1")
    extra: dict[RequestKind, dict[str, Any]] = {
        RequestKind.LIMIT: {}, RequestKind.POST_ONLY: {"post_only": True}, RequestKind.IOC: {"tif": "ioc"},
        RequestKind.FOK: {"tif": "fok"},
    }
    fields = extra[kind]
    price = "100" if kind in (RequestKind.IOC, RequestKind.FOK) else "95"
    return limit(client, cluster, "x", market, "buy", price, **fields)


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("kind", list(RequestKind))
def test_admission_matrix(client: HttpEngineClient, cluster: ReplicaCluster, phase: Phase,
                          kind: RequestKind) -> None:
    market = f"{phase.value}-{kind.value}"
    set_phase(client, cluster, Phase.OPEN)
    assert limit(client, cluster, "ask", market, "sell", "100", account="maker").accepted
    assert limit(client, cluster, "rest", market, "buy", "90", account="maker").accepted
    set_phase(client, cluster, phase)
    answer = attempt(client, cluster, kind, market)
    expected = admit(phase, kind)
    if expected is None:
        assert answer.accepted, answer
    else:
        assert (answer.accepted, answer.status_code, answer.reason) == (False, 409, expected)


@pytest.mark.parametrize("phase", [Phase.OPEN, Phase.PROTECTION])
def test_post_only_that_would_cross_is_refused(client: HttpEngineClient, cluster: ReplicaCluster,
                                               phase: Phase) -> None:
    market = f"cross-{phase.value}"
    set_phase(client, cluster, Phase.OPEN)
    assert limit(client, cluster, "ask", market, "sell", "100", account="maker").accepted
    set_phase(client, cluster, phase)
    crossing = limit(client, cluster, "po-cross", market, "buy", "100", post_only=True)
    assert (crossing.accepted, crossing.reason) == (False, "would_cross")
    assert limit(client, cluster, "po-ok", market, "buy", "99.5", post_only=True).accepted
    set_phase(client, cluster, Phase.OPEN)


def test_matching_only_while_open(client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    market = "matching"
    url = cluster.url("p")
    set_phase(client, cluster, Phase.OPEN)
    assert limit(client, cluster, "ask", market, "sell", "100", "2", account="maker").accepted
    set_phase(client, cluster, Phase.PROTECTION)
    before = len(client.trades(url))
    assert limit(client, cluster, "bid", market, "buy", "99", post_only=True).accepted
    assert len(client.trades(url)) == before
    set_phase(client, cluster, Phase.OPEN)
    taken = limit(client, cluster, "take", market, "buy", "100", "1.5")
    assert taken.accepted
    trades = [trade for trade in client.trades(url) if trade["market"] == market]
    assert [(t["maker"], t["taker"], t["price"], t["qty"], t["seq"]) for t in trades] == [
        ("matching-ask", "matching-take", "100", "1.5", taken.seq)]


def test_standby_has_identical_journal_trades_and_phase(client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    set_phase(client, cluster, Phase.OPEN)
    market = "mirror"
    for index in range(5):
        assert limit(client, cluster, f"a{index}", market, "sell", str(100 + index), "2", account="maker").accepted
    assert limit(client, cluster, "sweep", market, "buy", "104", "7").accepted
    set_phase(client, cluster, Phase.HALTED)
    last = client.status(cluster.replica("p")).last_seq
    cluster.wait_caught_up(["s"], last)
    primary, standby = cluster.url("p"), cluster.url("s")
    assert client.trades(standby) == client.trades(primary)
    assert client.journal(standby) == client.journal(primary)
    assert client.status(cluster.replica("s")).phase is Phase.HALTED
    assert len([t for t in client.trades(primary) if t["market"] == market]) == 4
    refused = limit(client, cluster, "late", market, "buy", "1")
    assert refused.reason == "halted"
    standby_order = client.submit_order(standby, client_order_id="z", account="a", market=market, side="buy",
                                        price="1", qty="1")
    assert standby_order.reason == "not_primary"


def test_stats_count_refusals_by_reason(client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    stats = client.stats(cluster.url("p"))
    assert stats["refused"]["halted"] >= 7
    assert stats["refused"]["would_cross"] == 2
    assert stats["accepted"]["order"] > 0 and stats["accepted"]["phase"] > 0
    assert stats["accepted_total"] == sum(stats["accepted"].values())


def test_stats_count_refusals_by_phase_and_account_for_compensation(
        client: HttpEngineClient, cluster: ReplicaCluster) -> None:
    """The incident report's impact section reads these: who was refused what, in which phase."""
    before = client.stats(cluster.url("p")).get("refused_by_phase", {})
    set_phase(client, cluster, Phase.HALTED)
    for index, account in enumerate(["alice", "alice", "bob"]):
        answer = client.submit_order(cluster.url("p"), client_order_id=f"comp-{index}", account=account,
                                     market="M", side="buy", price="10", qty="1")
        assert not answer.accepted and answer.reason == "halted"
    after = client.stats(cluster.url("p"))["refused_by_phase"]["halted"]
    halted_before = before.get("halted", {})
    assert after["alice"]["halted"] - halted_before.get("alice", {}).get("halted", 0) == 2
    assert after["bob"]["halted"] - halted_before.get("bob", {}).get("halted", 0) == 1
    set_phase(client, cluster, Phase.OPEN)
