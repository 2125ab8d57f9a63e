"""`failover rejoin REPLICA` through the CLI against three real replicas, a store and the clouds' fakes.

The runbook it checks: after a failover, the old primary is fenced; `failover rejoin` makes it a standby of the new
primary again, audited. When it wrote orders nobody acknowledged, they are archived on its disk, recorded in the
incident that deposed it and printed with each order's client_order_id and account, so support can reconcile.
A rejoin that is not safe is refused with one line and exit 3, and changes nothing; bad input is exit 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from orchestrator.config import load_config
from orchestrator.core.model import Phase, Role
from orchestrator.drivers.state import EngineRecord, load_engine, save_engine
from orchestrator.store import open_store
from orchestrator.store.records import IncidentStatus
from orchestrator.testbed.world import Testbed, wait_until

EPOCH = 1_000_001


def failover(bed: Testbed, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=bed.env(), capture_output=True,
                          text=True, timeout=300, check=False)


def audit_actions(bed: Testbed) -> list[str]:
    with open_store(load_config(bed.config_path).store_url) as store:
        assert store.verify_audit().ok
        return [entry.action for entry in store.audit_entries()]


def test_unsafe_rejoins_are_refused_with_one_line_and_change_nothing(bed: Testbed) -> None:
    assert bed.replicas is not None
    unknown = failover(bed, "rejoin", "spot-nowhere")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "spot-nowhere" in unknown.stderr
    bad = failover(bed, "rejoin", "spot-azure", "--timeout", "soon")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--timeout" in bad.stderr

    primary = failover(bed, "rejoin", "spot-aws")
    assert primary.returncode == 3 and primary.stderr.count("\n") == 1, primary.stderr
    assert "spot-aws is the primary" in primary.stderr
    healthy = failover(bed, "rejoin", "spot-azure")
    assert healthy.returncode == 3 and "--force" in healthy.stderr, healthy.stderr

    with open_store(load_config(bed.config_path).store_url) as store:
        running = store.create_incident("spot", "failover", "a runbook in flight", time.time(), source="spot-aws",
                                        target="spot-gcp", status=IncidentStatus.RUNNING)
    in_flight = failover(bed, "rejoin", "spot-azure", "--force")
    assert in_flight.returncode == 3 and f"incident {running.id}" in in_flight.stderr, in_flight.stderr
    with open_store(load_config(bed.config_path).store_url) as store:
        store.update_incident(running.id, status=IncidentStatus.CLOSED, at=time.time())
        save_engine(store, EngineRecord("spot", "spot-aws", epoch=9))  # an epoch the primary never received
    unknown_epoch = failover(bed, "rejoin", "spot-azure", "--force")
    assert unknown_epoch.returncode == 3 and unknown_epoch.stderr.count("\n") == 1, unknown_epoch.stderr
    assert "epoch unknown" in unknown_epoch.stderr and "9" in unknown_epoch.stderr

    bed.replicas.kill("spot-aws")
    headless = failover(bed, "rejoin", "spot-azure", "--force")
    assert headless.returncode == 3 and "no current primary: spot-aws" in headless.stderr, headless.stderr
    with bed.replicas.client() as client:
        assert client.status(bed.replicas.replica("spot-azure")).role is Role.STANDBY  # nothing changed
    assert audit_actions(bed) == []


def test_old_primary_fenced_by_a_switchover_rejoins_as_an_acknowledging_standby(bed: Testbed) -> None:
    assert bed.replicas is not None
    switched = failover(bed, "execute", "--target", "spot-gcp", "--yes")
    assert switched.returncode == 0, switched.stdout + switched.stderr
    client = bed.replicas.client()
    old = bed.replicas.replica("spot-aws")
    assert client.status(old).role is Role.FENCED

    result = failover(bed, "rejoin", "spot-aws")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rejoined spot-aws" in result.stdout and "acknowledging" in result.stdout
    assert "archived" not in result.stdout  # every entry it held was in the new primary's history
    status = client.status(old)
    assert (status.role, status.following) == (Role.STANDBY, bed.replicas.url("spot-gcp"))
    answer = client.submit_order(bed.replicas.replica("spot-gcp"), client_order_id="after-rejoin", account="a-1",
                                 market="BTC-USDT", side="buy", qty="1", price="100")
    assert answer.accepted
    wait_until(lambda: client.status(old).last_seq == client.status(bed.replicas.replica("spot-gcp")).last_seq,
               "the rejoined replica to hold the new order")
    actions = audit_actions(bed)
    assert actions[-2:] == ["rejoin.start", "rejoin.done"]


def test_diverged_old_primary_rejoins_and_its_unacknowledged_orders_are_listed(bed: Testbed) -> None:
    assert bed.replicas is not None
    cluster, client = bed.replicas, bed.replicas.client()
    aws, gcp, azure = (cluster.replica(f"spot-{cloud}") for cloud in ("aws", "gcp", "azure"))
    for n in range(3):
        assert client.submit_order(aws, client_order_id=f"kept-{n}", account="a-1", market="BTC-USDT",
                                   side="buy", qty="1", price="100").accepted
    cluster.wait_replicated("spot-aws", timeout=60)
    cluster.wait_caught_up(["spot-gcp", "spot-azure"], 3, timeout=60)  # gcp is promoted below: it must hold them
    cluster.kill("spot-gcp")  # the standbys' data centres go dark first ...
    cluster.kill("spot-azure")
    for coid, account in (("zombie-1", "acct-7"), ("zombie-2", "acct-8")):  # ... so nobody acknowledges these
        lost = client.submit_order(aws, client_order_id=coid, account=account, market="BTC-USDT", side="sell",
                                   qty="2", price="120")
        assert lost.reason == "replication_timeout"
    cluster.kill("spot-aws")
    cluster.start("spot-gcp", "spot-azure")  # the failover the runbook would run: stamp, promote, reopen
    client.set_phase(azure, Phase.HALTED, None, EPOCH)
    client.promote(gcp, EPOCH)
    client.set_phase(gcp, Phase.OPEN, None, EPOCH)
    now = time.time()
    with open_store(load_config(bed.config_path).store_url) as store:
        save_engine(store, EngineRecord("spot", "spot-gcp", epoch=EPOCH))
        incident = store.create_incident("spot", "failover", "spot-aws lost", now - 60, source="spot-aws",
                                         target="spot-gcp", status=IncidentStatus.CLOSED,
                                         detail={"diverged": {"replica": "spot-aws", "checked": False,
                                                              "why": "the old primary did not answer"}})
    cluster.start("spot-aws")  # comes back on its data directory, sees epoch EPOCH and fences itself
    assert client.status(aws).role is Role.FENCED

    result = failover(bed, "rejoin", "spot-aws")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 entries after seq 3" in result.stdout
    for coid, account in (("zombie-1", "acct-7"), ("zombie-2", "acct-8")):
        assert any(coid in line and account in line for line in result.stdout.splitlines()), result.stdout
    assert f"recorded in incident {incident.id}" in result.stdout

    with open_store(load_config(bed.config_path).store_url) as store:
        diverged = store.incident(incident.id).detail["diverged"]
        assert (diverged["checked"], diverged["common_seq"], diverged["count"]) == (True, 3, 2)
        assert [e["client_order_id"] for e in diverged["entries"]] == ["zombie-1", "zombie-2"]
        assert load_engine(store, load_config(bed.config_path).topology, "spot").primary == "spot-gcp"
    report = failover(bed, "report", incident.id)
    assert "zombie-1" in report.stdout and "acct-8" in report.stdout
    assert audit_actions(bed)[-3:] == ["rejoin.start", "rejoin.archived", "rejoin.done"]
    assert client.status(aws).role is Role.STANDBY

    again = failover(bed, "rejoin", "spot-aws", "--output", "json")  # a healthy standby now: refused
    assert again.returncode == 3
    forced = failover(bed, "rejoin", "spot-aws", "--force", "--output", "json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["state"] == "done"
