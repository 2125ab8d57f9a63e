"""`record_engine_phases` against real replica processes: what the runbook captures at close is the new primary's
own phase entries from the incident on, and the report made afterwards from the store alone times its windows by
them. A trade matched after the engine reopened and before the reopen step was journaled is outside the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.model import Phase, Replica, ReplicaStatus
from orchestrator.core.runbook import Step, StepState
from orchestrator.drivers.report import build_report, record_engine_phases
from orchestrator.engine.client import HttpEngineClient
from orchestrator.engine.protocol import from_wire_time
from orchestrator.store.memory import MemoryStore
from orchestrator.store.records import IncidentStatus
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

EPOCH = 1_000_001


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaCluster]:
    bed = ReplicaCluster(Path(tmp_path_factory.mktemp("cluster")), [ReplicaSpec("p", "aws", primary=True),
                                                                    ReplicaSpec("s", "gcp")])
    bed.start()
    try:
        yield bed
    finally:
        bed.close()


@pytest.fixture(scope="module")
def client(cluster: ReplicaCluster) -> Iterator[HttpEngineClient]:
    with cluster.client(attempts=3, backoff=0.1) as engine:
        yield engine


class Counting:
    """The real client, counting journal reads (a capture must not read a long journal whole)."""

    def __init__(self, client: HttpEngineClient) -> None:
        self.client, self.reads = client, 0

    def status(self, replica: Replica) -> ReplicaStatus:
        return self.client.status(replica)

    def journal(self, replica: Replica, after: int = 0, limit: int = 5000) -> list[dict[str, Any]]:
        self.reads += 1
        return self.client.journal(replica, after, limit)


def _order(client: HttpEngineClient, url: str, coid: str, side: str, price: str, **extra: Any) -> None:
    answer = client.submit_order(url, client_order_id=coid, account=f"acct-{side}", market="BTC-USD",
                                 side=side, price=price, qty="1", **extra)
    assert answer.accepted, answer


def _phase(client: HttpEngineClient, replica: Replica, phase: Phase, until: float | None = None) -> None:
    assert client.set_phase(replica, phase, until, EPOCH).phase is phase


def _later(than: float) -> float:
    """A time strictly after `than` on this machine's clock (the replica's too)."""
    while time.time() <= than:
        time.sleep(0.01)
    return time.time()


def test_the_captured_engine_phases_put_a_trade_after_the_reopen_outside_the_window(
        cluster: ReplicaCluster, client: HttpEngineClient) -> None:
    primary, url = cluster.replica("p"), cluster.url("p")
    for n in range(40):  # history before the incident: bisected over, not read
        _order(client, url, f"old-{n}", "sell", str(200 + n))
    _phase(client, primary, Phase.HALTED)
    _phase(client, primary, Phase.OPEN)  # an earlier halt, before this incident: not in its windows
    opened = _later(time.time())
    store = MemoryStore()
    incident = store.create_incident("spot", "failover", "primary down", opened, source="spot-aws",
                                     target="spot-gcp")
    _phase(client, primary, Phase.HALTED)
    _phase(client, primary, Phase.PROTECTION, time.time() + 600)
    _order(client, url, "maker-1", "sell", "100", post_only=True)
    _phase(client, primary, Phase.OPEN)
    _order(client, url, "taker-1", "buy", "100")  # the trade, matched in open trading
    trade = client.trades(url)[-1]
    assert trade["taker"] == "taker-1"
    reopen_journaled = _later(from_wire_time(trade["at"]))  # the orchestrator's step lands after the trade
    for step, at in ((Step.OPEN_PROTECTION, opened), (Step.REOPEN, reopen_journaled)):
        store.append_journal(incident.id, step.value, StepState.DONE, at)

    reader = Counting(client)
    captured = record_engine_phases(store, incident, reader, primary, _later(reopen_journaled))
    store.update_incident(incident.id, status=IncidentStatus.CLOSED, at=_later(reopen_journaled))

    assert [entry["phase"] for entry in captured["entries"]] == ["halted", "protection", "open"]
    assert reader.reads <= 10  # bisection over ~45 entries, then one page
    opened_again = next(e for e in client.journal(url) if e["kind"] == "phase" and e["seq"] ==
                        captured["entries"][-1]["seq"])
    report = build_report(store, incident.id, UTC)
    assert report.protection.end == from_wire_time(opened_again["at"]) and report.protection.source == "engine"
    assert report.protection.start is not None and report.protection.end is not None
    assert not report.protection.start <= from_wire_time(trade["at"]) < report.protection.end
    assert report.protection.end < reopen_journaled


def test_a_replica_that_does_not_answer_leaves_the_reason_and_the_runbook_times_the_window(
        unused_replica: Callable[[], Replica]) -> None:
    store = MemoryStore()
    incident = store.create_incident("spot", "failover", "primary down", time.time(), source="a", target="b")
    with HttpEngineClient(attempts=1, connect_timeout=0.3, read_timeout=0.5) as dead:
        captured = record_engine_phases(store, incident, dead, unused_replica(), time.time())

    assert captured["error"].startswith("journal not read: replica gone at http://127.0.0.1:")
    assert store.incident(incident.id).detail["engine_phases"] == captured
    store.append_journal(incident.id, Step.OPEN_PROTECTION.value, StepState.DONE, incident.opened_at + 1)
    store.append_journal(incident.id, Step.REOPEN.value, StepState.DONE, incident.opened_at + 2)
    report = build_report(store, incident.id, UTC)
    assert report.protection.end == incident.opened_at + 2 and report.protection.source == "runbook"


@pytest.fixture
def unused_replica() -> Callable[[], Replica]:
    import socket

    from orchestrator.core.model import Replica as ReplicaModel

    def make() -> Replica:
        with socket.socket() as probe:  # a port nobody listens on once closed
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return ReplicaModel(name="gone", engine="spot", site="aws-a", instance="i-gone",
                            control_url=f"http://127.0.0.1:{port}")

    return make
