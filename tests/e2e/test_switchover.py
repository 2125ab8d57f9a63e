"""`failover execute` against three real replica processes while orders stream in (the engine issue's acceptance)."""

from __future__ import annotations

import subprocess
import sys
import time

from orchestrator.core.model import Phase, Role
from orchestrator.drill.orders import OrderStream, missing_or_moved, trades_by_phase
from orchestrator.drill.testbed import Testbed


def failover(bed: Testbed, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env or bed.env(), capture_output=True,
                          text=True, timeout=120, check=False)


def test_switchover_under_load_keeps_every_acknowledged_order(bed: Testbed) -> None:
    assert bed.replicas is not None
    client = bed.replicas.client()
    replicas = [bed.replicas.replica(n) for n in ("spot-aws", "spot-gcp", "spot-azure")]
    stream = OrderStream(client, replicas, rate=60, seed=1).start()
    time.sleep(1.5)
    result = failover(bed, "execute", "--target", "spot-gcp", "--yes")
    time.sleep(1.0)
    ledger = stream.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "closed" in result.stdout

    new = client.status(bed.replicas.replica("spot-gcp"))
    assert (new.role, new.phase) == (Role.PRIMARY, Phase.OPEN)
    assert len(ledger.acknowledged) > 50
    journal = client.journal(bed.replicas.replica("spot-gcp"))
    assert missing_or_moved(ledger, journal) == {}  # every acknowledged request, at the same seq

    trades = client.trades(bed.replicas.replica("spot-gcp"))
    phases = [str(e["data"]["phase"]) for e in journal if e["kind"] == "phase"]
    assert phases[-3:] == ["halted", "protection", "open"]
    by_phase = trades_by_phase(journal, trades)
    assert by_phase["open"] > 0  # the stream did trade, before the halt and after the reopen
    assert by_phase["halted"] == by_phase["protection"] == 0
    assert ledger.refused["halted"] + ledger.refused["fenced"] + ledger.refused["not_primary"] > 0

    old = bed.replicas.replica("spot-aws")
    answer = client.submit_order(old, client_order_id="late", account="acct-0", market="BTC-USDT", side="buy",
                                 qty="1", price="50000", type="limit")
    assert (answer.accepted, answer.status_code, answer.reason) == (False, 409, "fenced")


def test_primary_killed_mid_stream_then_failover_loses_nothing(bed: Testbed) -> None:
    assert bed.replicas is not None
    client = bed.replicas.client()
    replicas = [bed.replicas.replica(n) for n in ("spot-aws", "spot-gcp", "spot-azure")]
    stream = OrderStream(client, replicas, rate=60, seed=2).start()
    time.sleep(1.5)
    bed.replicas.kill("spot-aws")  # SIGKILL: the data centre is gone
    time.sleep(0.5)
    result = failover(bed, "execute", "--target", "spot-gcp", "--yes")
    time.sleep(1.0)
    ledger = stream.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(ledger.acknowledged) > 50
    journal = client.journal(bed.replicas.replica("spot-gcp"))
    assert missing_or_moved(ledger, journal) == {}
    azure = client.journal(bed.replicas.replica("spot-azure"))
    assert missing_or_moved(ledger, azure) == {}  # the other standby follows the new primary
