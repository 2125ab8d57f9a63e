"""`failover execute` against three real replica processes while orders stream in (the engine issue's acceptance)."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime

from orchestrator.config import load_config
from orchestrator.core.model import Phase, Role
from orchestrator.drill.orders import OrderStream, missing_or_moved
from orchestrator.drill.testbed import Testbed
from orchestrator.store import open_store


def failover(bed: Testbed, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env or bed.env(), capture_output=True,
                          text=True, timeout=120, check=False)


def epoch_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def done_at(bed: Testbed, step: str) -> float:
    loaded = load_config(bed.config_path)
    with open_store(loaded.store_url) as store:
        [incident] = store.incidents()
        return next(e.at for e in store.journal(incident.id) if e.step == step and e.state == "done")


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

    halted, reopened = done_at(bed, "halt"), done_at(bed, "reopen")
    trades = client.trades(bed.replicas.replica("spot-gcp"))
    assert any(epoch_seconds(t["at"]) < halted for t in trades)  # the stream did trade while open
    assert [t for t in trades if halted <= epoch_seconds(t["at"]) <= reopened] == []
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
