"""`failover execute` against three real replica processes while orders stream in (the engine issue's acceptance)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from orchestrator.core.model import Phase, Role
from orchestrator.drill.orders import OrderStream, missing_or_moved, trades_by_phase
from orchestrator.testbed.world import Testbed, wait_until

BEFORE, AFTER = 30, 20  # orders acknowledged before the switchover starts, and by the new primary after it


def failover(bed: Testbed, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=env or bed.env(), capture_output=True,
                          text=True, timeout=120, check=False)


@contextmanager
def streaming(bed: Testbed, seed: int) -> Iterator[OrderStream]:
    """Orders of every kind at 60 a second against whichever replica is primary, stopped however the test ends."""
    assert bed.replicas is not None
    replicas = [bed.replicas.replica(n) for n in ("spot-aws", "spot-gcp", "spot-azure")]
    stream = OrderStream(bed.replicas.client(), replicas, rate=60, seed=seed).start()
    try:
        yield stream
    finally:
        stream.stop()


def more_acknowledged(stream: OrderStream, count: int, what: str) -> None:
    """Wait until the stream has `count` more acknowledgements than now, however slowly the machine runs."""
    start = len(stream.ledger.acknowledged)
    wait_until(lambda: len(stream.ledger.acknowledged) >= start + count, f"{count} more acknowledged orders {what}")


def test_switchover_under_load_keeps_every_acknowledged_order(bed: Testbed) -> None:
    assert bed.replicas is not None
    client = bed.replicas.client()
    with streaming(bed, seed=1) as stream:
        more_acknowledged(stream, BEFORE, "before the switchover")
        result = failover(bed, "execute", "--target", "spot-gcp", "--yes")
        assert result.returncode == 0, result.stdout + result.stderr
        more_acknowledged(stream, AFTER, "after the switchover")
    ledger = stream.ledger
    assert "closed" in result.stdout

    new = client.status(bed.replicas.replica("spot-gcp"))
    assert (new.role, new.phase) == (Role.PRIMARY, Phase.OPEN)
    assert len(ledger.acknowledged) > 50
    journal = client.journal(bed.replicas.replica("spot-gcp"))
    assert missing_or_moved(ledger, journal) == {}  # every acknowledged request, at the same seq

    trades = client.trades(bed.replicas.replica("spot-gcp"))
    phases = [(int(e["seq"]), str(e["data"]["phase"])) for e in journal if e["kind"] == "phase"]
    assert [phase for _, phase in phases[-3:]] == ["halted", "protection", "open"]
    reopened_at = phases[-1][0]
    assert max(ledger.acknowledged.values()) > reopened_at  # the new primary took orders after the reopen
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
    with streaming(bed, seed=2) as stream:
        more_acknowledged(stream, BEFORE, "before the kill")
        bed.replicas.kill("spot-aws")  # SIGKILL: the data centre is gone
        missed = stream.ledger.unknown + stream.ledger.refused["no_primary"]
        wait_until(lambda: stream.ledger.unknown + stream.ledger.refused["no_primary"] > missed,
                   "the stream to find the primary gone")
        result = failover(bed, "execute", "--target", "spot-gcp", "--yes")
        assert result.returncode == 0, result.stdout + result.stderr
        more_acknowledged(stream, AFTER, "after the failover")
    ledger = stream.ledger
    assert len(ledger.acknowledged) > 50
    journal = client.journal(bed.replicas.replica("spot-gcp"))
    assert missing_or_moved(ledger, journal) == {}
    azure = bed.replicas.replica("spot-azure")  # the other standby follows the new primary, at its own pace
    wait_until(lambda: missing_or_moved(ledger, client.journal(azure)) == {}, "spot-azure to hold every order")
