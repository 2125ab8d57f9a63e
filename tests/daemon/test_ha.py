"""Three daemons on a three-member etcd (the HA issue's acceptance): one acts; its death in the middle of a
failover hands the runbook to another, which finishes it; etcd quorum loss stops everyone acting. How soon the
runbook is handed over (the lease TTL plus a cycle, on an idle machine) is measured by `make bench`
(benchmarks/handover_bench.py): a busy machine delays it, and that is not a failure of the hand-over."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.config import load_config
from orchestrator.core.errors import EngineError
from orchestrator.core.model import Phase, Role
from orchestrator.core.runbook import STEPS
from orchestrator.drill.daemons import DaemonProcess, Daemons
from orchestrator.drill.orders import OrderStream, missing_or_moved
from orchestrator.store import open_store
from orchestrator.testbed.etcd import EtcdCluster
from orchestrator.testbed.world import (
    LOADED_PROBE_INTERVAL,
    LOADED_PROBE_TIMEOUT,
    LOADED_PROTECTION,
    Testbed,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.etcd]
LEASE_TTL = 3.0


@dataclass
class HA:
    bed: Testbed
    daemons: Daemons


@pytest.fixture
def ha(tmp_path: Path, etcd: EtcdCluster) -> Iterator[HA]:
    store = f"{etcd.url}/t-{uuid.uuid4().hex[:8]}"
    with Testbed(tmp_path / "bed", store=store, protection=LOADED_PROTECTION, probe_interval=LOADED_PROBE_INTERVAL,
                 probe_timeout=LOADED_PROBE_TIMEOUT,
                 extra={"daemon": {"listen": "127.0.0.1:0", "lease_ttl": f"{LEASE_TTL:g}s"}}) as bed:
        daemons = Daemons(bed.env(), tmp_path)
        try:
            yield HA(bed, daemons)
        finally:
            daemons.stop_all()


def start_three(ha: HA, env: dict[str, str] | None = None) -> Daemons:
    """Three daemons, one per cloud; returns once exactly one of them leads and the other two follow."""
    daemons = ha.daemons
    for name, vantage in (("d-aws", "aws-hk"), ("d-gcp", "gcp-hk"), ("d-azure", "azure-hk")):
        daemons.start(name, vantage, env)
    daemons.wait_for(lambda: leader_flags(daemons) == [False, False, True], 60, "one leader and two followers")
    return daemons


def fetch(daemon: DaemonProcess, path: str) -> httpx.Response:
    """A GET with the patience of a busy machine (`DaemonProcess` gives up after 0.5 s or 2 s)."""
    return httpx.get(f"http://127.0.0.1:{daemon.port}{path}", timeout=30.0)


def status(daemon: DaemonProcess) -> dict[str, Any] | None:
    """/status, or None while the daemon does not answer (starting, or gone)."""
    try:
        body: dict[str, Any] = fetch(daemon, "/status").json()
    except (httpx.HTTPError, ValueError):
        return None
    return body


def leader_flags(daemons: Daemons) -> list[bool] | None:
    """Each running daemon's `leader` flag, sorted; None while one of them does not answer."""
    statuses = [status(d) for d in daemons.running if d.alive]
    if any(s is None for s in statuses):
        return None
    return sorted(bool(s["leader"]) for s in statuses if s is not None)


def test_exactly_one_acts_and_a_killed_leader_hands_over_mid_failover(ha: HA, tmp_path: Path) -> None:
    bed = ha.bed
    assert bed.replicas is not None
    daemons = start_three(ha, {"FAILOVER_FAILPOINT": "promote:before",
                               "FAILOVER_FAILPOINT_ONCE": str(tmp_path / "died")})

    client = bed.replicas.client()
    stream = OrderStream(client, [bed.replicas.replica(n) for n in ("spot-aws", "spot-gcp", "spot-azure")],
                         rate=40, seed=3).start()
    try:
        wait_until(lambda: len(stream.ledger.acknowledged) >= 20, "20 acknowledged orders before the fault")
        bed.lose_aws()  # the primary's data centre goes dark

        # the failpoint creates its marker file, then SIGKILLs its own process: wait for the death itself
        daemons.wait_for(lambda: any(not d.alive for d in daemons.running), 120, "the leader to die at promote")
        assert (tmp_path / "died").exists()
        dead = next(d for d in daemons.running if not d.alive)
        assert dead.process.wait(timeout=5) == -9
        loaded = load_config(bed.config_path)
        with open_store(loaded.store_url) as store:
            daemons.wait_for(lambda: (i := store.open_incident("spot")) is None or i.status.value == "closed", 180,
                             "the new leader to finish the runbook")
            [incident] = store.incidents()
            journal = store.journal(incident.id)
    finally:
        stream.stop()

    assert incident.status.value == "closed"
    assert incident.detail.get("adopted_by") not in (None, dead.name)
    tokens = sorted({e.token for e in journal})
    assert len(tokens) == 2  # the first leader, then its successor
    last_old = max(e.at for e in journal if e.token == tokens[0])
    first_new = min(e.at for e in journal if e.token == tokens[1])
    assert first_new > last_old  # the successor wrote only after the dead leader's last entry
    done = [e.step for e in journal if e.state in ("done", "skipped")]
    assert done == [s for s in dict.fromkeys(done)] and len(done) == len(STEPS)

    new = client.status(bed.replicas.replica(incident.target or ""))
    assert (new.role, new.phase) == (Role.PRIMARY, Phase.OPEN)
    assert missing_or_moved(stream.ledger, client.journal(bed.replicas.replica(incident.target or ""))) == {}

    bed.restore_aws()  # the old primary comes back: it must not accept a write as a second primary
    wait_until(lambda: answers(client, bed.replicas.replica("spot-aws")), "the thawed old primary to answer")
    answer = client.submit_order(bed.replicas.replica("spot-aws"), client_order_id="zombie", account="acct-0",
                                 market="BTC-USDT", side="buy", qty="1", price="1", type="limit")
    assert answer.accepted is False
    primaries = [n for n in ("spot-aws", "spot-gcp", "spot-azure")
                 if client.status(bed.replicas.replica(n)).role is Role.PRIMARY]
    assert primaries == [incident.target]

    wait_until(lambda: leader_flags(daemons) == [False, True], "the two survivors to agree on a leader")
    leader = next(d for d in daemons.running if d.alive and (status(d) or {}).get("leader"))
    metrics = {f.name: f for f in text_string_to_metric_families(fetch(leader, "/metrics").text)}
    assert metrics["failover_leader"].samples[0].value == 1
    phase = {s.labels["phase"]: s.value for s in metrics["failover_phase"].samples if s.labels["engine"] == "spot"}
    assert phase == {"open": 1, "halted": 0, "protection": 0}
    assert any(s.value > 0 for s in metrics["failover_step_duration_seconds"].samples
               if s.name.endswith("_count"))
    assert fetch(leader, "/healthz").status_code == 200


def test_etcd_quorum_lost_stops_everyone_then_one_leads_again(ha: HA, etcd: EtcdCluster) -> None:
    daemons = start_three(ha)
    etcd.stop_member(1)
    etcd.stop_member(2)
    try:
        daemons.wait_for(lambda: leader_flags(daemons) == [False, False, False]
                         and all((status(d) or {}).get("error") for d in daemons.running),
                         60, "every daemon to stop acting and report the store error")
        assert all(fetch(d, "/healthz").status_code == 503 for d in daemons.running)
    finally:
        etcd.restart_member(1)
        etcd.restart_member(2)
    daemons.wait_for(lambda: leader_flags(daemons) == [False, False, True], 60, "one leader again")


def answers(client: Any, replica: Any) -> bool:
    try:
        client.status(replica)
    except EngineError:
        return False
    return True
