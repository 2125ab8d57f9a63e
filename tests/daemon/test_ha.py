"""Three daemons on a three-member etcd (the HA issue's acceptance): one acts; its death in the middle of a
failover hands the runbook to another within the lease TTL plus a cycle; etcd quorum loss stops everyone acting."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.config import load_config
from orchestrator.core.model import Phase, Role
from orchestrator.drill.daemons import Daemons
from orchestrator.drill.orders import OrderStream, missing_or_moved
from orchestrator.drill.testbed import Testbed
from orchestrator.store import open_store
from orchestrator.store.etcd_cluster import EtcdCluster

pytestmark = [pytest.mark.slow, pytest.mark.etcd]
LEASE_TTL = 3.0
INTERVAL = 0.1


@dataclass
class HA:
    bed: Testbed
    daemons: Daemons


@pytest.fixture
def ha(tmp_path: Path, etcd: EtcdCluster) -> Iterator[HA]:
    store = f"{etcd.url}/t-{uuid.uuid4().hex[:8]}"
    with Testbed(tmp_path / "bed", store=store, protection="3s", probe_interval="100ms", probe_timeout="80ms",
                 extra={"daemon": {"listen": "127.0.0.1:0", "lease_ttl": f"{LEASE_TTL:g}s"}}) as bed:
        daemons = Daemons(bed.env(), tmp_path)
        try:
            yield HA(bed, daemons)
        finally:
            daemons.stop_all()


def start_three(ha: HA, env: dict[str, str] | None = None) -> Daemons:
    daemons = ha.daemons
    for name, vantage in (("d-aws", "aws-hk"), ("d-gcp", "gcp-hk"), ("d-azure", "azure-hk")):
        daemons.start(name, vantage, env)
    daemons.wait_for(lambda: len(daemons.leaders()) == 1 and all(d.status() for d in daemons.running), 30,
                     "one leader")
    return daemons


def test_exactly_one_acts_and_a_killed_leader_hands_over_mid_failover(ha: HA, tmp_path: Path) -> None:
    bed = ha.bed
    assert bed.replicas is not None
    daemons = start_three(ha, {"FAILOVER_FAILPOINT": "promote:before",
                               "FAILOVER_FAILPOINT_ONCE": str(tmp_path / "died")})
    time.sleep(1.0)
    assert len(daemons.leaders()) == 1
    followers = [d for d in daemons.running if d.status()["leader"] is False]  # type: ignore[index]
    assert len(followers) == 2

    client = bed.replicas.client()
    stream = OrderStream(client, [bed.replicas.replica(n) for n in ("spot-aws", "spot-gcp", "spot-azure")],
                         rate=40, seed=3).start()
    time.sleep(1.0)
    bed.lose_aws()  # the primary's data centre goes dark

    # the failpoint creates its marker file, then SIGKILLs its own process: wait for the death itself
    daemons.wait_for(lambda: any(not d.alive for d in daemons.running), 30, "the leader to die at promote")
    assert (tmp_path / "died").exists()
    dead = next(d for d in daemons.running if not d.alive)
    assert dead.process.wait(timeout=5) == -9
    loaded = load_config(bed.config_path)
    with open_store(loaded.store_url) as store:
        daemons.wait_for(lambda: (i := store.open_incident("spot")) is None or i.status.value == "closed", 60,
                    "the new leader to finish the runbook")
        [incident] = store.incidents()
        journal = store.journal(incident.id)
    stream.stop()

    assert incident.status.value == "closed"
    assert incident.detail.get("adopted_by") not in (None, dead.name)
    tokens = sorted({e.token for e in journal})
    assert len(tokens) == 2  # the first leader, then its successor
    last_old = max(e.at for e in journal if e.token == tokens[0])
    first_new = min(e.at for e in journal if e.token == tokens[1])
    assert first_new - last_old <= LEASE_TTL + INTERVAL + 2.0  # TTL + one cycle (+ process scheduling slack)
    done = [e.step for e in journal if e.state in ("done", "skipped")]
    assert done == [s for s in dict.fromkeys(done)] and len(done) == 11

    new = client.status(bed.replicas.replica(incident.target or ""))
    assert (new.role, new.phase) == (Role.PRIMARY, Phase.OPEN)
    assert missing_or_moved(stream.ledger, client.journal(bed.replicas.replica(incident.target or ""))) == {}

    bed.restore_aws()  # the old primary comes back: it must not accept a write as a second primary
    time.sleep(1.5)
    answer = client.submit_order(bed.replicas.replica("spot-aws"), client_order_id="zombie", account="acct-0",
                                 market="BTC-USDT", side="buy", qty="1", price="1", type="limit")
    assert answer.accepted is False
    primaries = [n for n in ("spot-aws", "spot-gcp", "spot-azure")
                 if client.status(bed.replicas.replica(n)).role is Role.PRIMARY]
    assert primaries == [incident.target]

    leader = next(d for d in daemons.running if d.alive and d.status()["leader"])  # type: ignore[index]
    metrics = {f.name: f for f in text_string_to_metric_families(leader.get("/metrics").text)}
    assert metrics["failover_leader"].samples[0].value == 1
    phase = {s.labels["phase"]: s.value for s in metrics["failover_phase"].samples if s.labels["engine"] == "spot"}
    assert phase == {"open": 1, "halted": 0, "protection": 0}
    assert any(s.value > 0 for s in metrics["failover_step_duration_seconds"].samples
               if s.name.endswith("_count"))
    assert leader.get("/healthz").status_code == 200


def test_etcd_quorum_lost_stops_everyone_then_one_leads_again(ha: HA, etcd: EtcdCluster) -> None:
    daemons = start_three(ha)
    etcd.stop_member(1)
    etcd.stop_member(2)
    try:
        daemons.wait_for(lambda: daemons.leaders() == [] and all(s["error"] for s in daemons.statuses().values()),
                         20, "every daemon to stop acting and report the store error")
        assert all(d.get("/healthz").status_code == 503 for d in daemons.running)
    finally:
        etcd.restart_member(1)
        etcd.restart_member(2)
    daemons.wait_for(lambda: len(daemons.leaders()) == 1, 30, "one leader again")
