"""Automatic rejoin end to end (`policy.auto_rejoin`), against the real testbed: moto and the GCP/Azure fakes, three
real replicas over HTTP, a SQLite store, and the real controller in cron mode cycling in this process.

The runbook it checks: AWS's data centre goes dark; the engine fails over to GCP; AWS comes back and its old primary
fences itself. With the policy on, the leader rebuilds it as a standby of the new primary by itself, but only once
aws-hk is out of quarantine and the replica has needed a rebuild for `after`; the three replicas end in sync and
the rejoined one acknowledges a new order. While aws-hk is quarantined nothing is rebuilt there (until `failover
release`); with the policy off nothing is rebuilt at all.

Each cycle is `Controller.run_cycle`, which calls `run_auto_rejoin` as the leader, after the running runbooks.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import load_config
from orchestrator.core.model import Role
from orchestrator.drivers.auto_rejoin import AutoRejoin
from orchestrator.drivers.controller import CycleResult
from orchestrator.drivers.modes import Mode
from orchestrator.drivers.state import load_engine
from orchestrator.drivers.wiring import build_controller, build_edges
from orchestrator.store.auto_rejoin import auto_rejoin_book
from orchestrator.testbed.world import LOADED_PROBE_INTERVAL, LOADED_PROBE_TIMEOUT, LOADED_PROTECTION, Testbed

DEADLINE = 600.0  # cycles on a busy machine: a deadline, not a number of cycles
PAUSE = 0.4  # between cycles: the probe interval
pytestmark = [pytest.mark.slow, pytest.mark.timeout(4 * DEADLINE + 300)]


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Testbed]:
    with Testbed(tmp_path / "bed", protection=LOADED_PROTECTION, probe_interval=LOADED_PROBE_INTERVAL,
                 probe_timeout=LOADED_PROBE_TIMEOUT, extra={"daemon": {"listen": "127.0.0.1:0", "lease_ttl": "5s"}}
                 ) as testbed:
        yield testbed


class Leader:
    """The cron job's controller, one cycle at a time."""

    def __init__(self, bed: Testbed) -> None:
        loaded = load_config(bed.config_path)
        self.policy = loaded.topology.policy.auto_rejoin
        self.edges = build_edges(loaded)
        self.controller = build_controller(Mode.CRON, loaded, self.edges, identity="check@auto-rejoin-e2e")
        self.store = self.edges.store
        self.last: CycleResult | None = None

    def cycle(self) -> CycleResult:
        result = self.last = self.controller.run_cycle()
        return result

    def until(self, holds: Callable[[], Any], what: str, each: Callable[[], None] = lambda: None) -> Any:
        began = time.monotonic()
        while time.monotonic() - began < DEADLINE:
            self.cycle()
            each()
            found = holds()
            if found:
                return found
            time.sleep(PAUSE)
        raise AssertionError(f"no cycle saw {what} within {DEADLINE:.0f}s")

    def close(self) -> None:
        try:
            self.controller.release()
        finally:
            self.edges.close()


def configure(bed: Testbed, quarantine: str, auto_rejoin: dict[str, Any] | None) -> None:
    data = bed.config()
    data["policy"]["quarantine"] = quarantine
    if auto_rejoin is not None:
        data["policy"]["auto_rejoin"] = auto_rejoin
    bed.config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def failover(bed: Testbed, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=bed.env(), capture_output=True,
                          text=True, timeout=300, check=False)


def audit(leader: Leader, prefix: str) -> list[Any]:
    return [entry for entry in leader.store.audit_entries() if entry.action.startswith(prefix)]


def old_primary_back_fenced(bed: Testbed, leader: Leader) -> None:
    """AWS dark until the engine runs on GCP, then back: its old primary answers, fenced."""
    cluster = bed.replicas
    assert cluster is not None
    leader.until(lambda: leader.last is not None and leader.last.message == "all healthy", "a healthy start")
    bed.lose_aws()
    topology = leader.controller.topology
    leader.until(lambda: load_engine(leader.store, topology, "spot").primary == "spot-gcp", "spot-gcp promoted")
    assert "aws-hk" in leader.store.quarantines()
    bed.restore_aws()
    client = cluster.client()
    leader.until(lambda: client.status(cluster.replica("spot-aws")).role is Role.FENCED, "spot-aws back, fenced")


def in_sync(bed: Testbed) -> bool:
    """Three replicas at one seq and one hash: gcp primary, the other two standbys following it."""
    assert bed.replicas is not None
    client, cluster = bed.replicas.client(), bed.replicas
    heads, follow = set(), cluster.url("spot-gcp").rstrip("/")
    for name in ("spot-aws", "spot-gcp", "spot-azure"):
        status = client.status(cluster.replica(name))
        if (status.role is Role.PRIMARY) != (name == "spot-gcp"):
            return False
        if name != "spot-gcp" and (status.following or "").rstrip("/") != follow:
            return False
        page = client.journal(cluster.replica(name), status.last_seq - 1, 1) if status.last_seq else []
        heads.add((status.last_seq, str(page[0].get("hash")) if page else ""))
    return len(heads) == 1


def test_with_the_policy_on_the_old_primary_is_rebuilt_once_out_of_quarantine_and_after_the_wait(
        bed: Testbed) -> None:
    assert bed.replicas is not None
    configure(bed, quarantine="20s", auto_rejoin={"enabled": True, "after": "10s", "retry": "5s"})
    leader = Leader(bed)
    try:
        old_primary_back_fenced(bed, leader)
        ends: list[float] = []

        def note_quarantine() -> None:
            found = leader.store.quarantines().get("aws-hk")
            end = found.ends_at(20.0) if found is not None else None
            if end is not None:
                ends.append(end)

        leader.until(lambda: audit(leader, "auto_rejoin.done"), "the automatic rejoin done", note_quarantine)
        [start] = audit(leader, "auto_rejoin.start")
        assert ends and start.at >= ends[-1], (start.at, ends[-1:])  # after the quarantine ended
        assert start.detail["waited"] >= 10.0 and start.detail["replica"] == "spot-aws"  # and after `after`
        assert all(entry.at >= ends[-1] for entry in audit(leader, "rejoin."))  # nothing earlier
        [done] = audit(leader, "rejoin.done")
        assert done.detail["acknowledging"] is True and done.detail["primary"] == "spot-gcp"
        assert auto_rejoin_book(leader.store)[0] == {}

        client, cluster = bed.replicas.client(), bed.replicas
        answer = client.submit_order(cluster.replica("spot-gcp"), client_order_id="after-auto-rejoin",
                                     account="a-1", market="BTC-USDT", side="buy", qty="1", price="100")
        assert answer.accepted, answer
        leader.until(lambda: in_sync(bed) and client.status(cluster.replica("spot-aws")).last_seq >= answer.seq,
                     "three replicas in sync, the new order on the rejoined one")
        assert client.status(cluster.replica("spot-aws")).role is Role.STANDBY
    finally:
        leader.close()


def test_a_quarantined_site_is_not_rebuilt_until_its_quarantine_is_released(bed: Testbed) -> None:
    assert bed.replicas is not None
    configure(bed, quarantine="2h", auto_rejoin={"enabled": True, "after": "5s", "retry": "5s"})
    leader = Leader(bed)
    try:
        old_primary_back_fenced(bed, leader)

        def held_long_enough() -> bool:  # due for a while (past `after` and a retry), and still only waiting
            entry = auto_rejoin_book(leader.store)[0].get("spot-aws")
            return (entry is not None and entry.blocked == "site aws-hk is in quarantine"
                    and leader.controller.clock() >= entry.due + 10.0)

        leader.until(held_long_enough, "spot-aws due and held back by the quarantine")
        assert audit(leader, "rejoin.") == [] and audit(leader, "auto_rejoin.") == []
        assert bed.replicas.client().status(bed.replicas.replica("spot-aws")).role is Role.FENCED

        released = failover(bed, "release", "aws-hk", "--reason", "checked with AWS")
        assert released.returncode == 0, released.stderr
        leader.until(lambda: audit(leader, "auto_rejoin.done"), "the automatic rejoin after the release")
        leader.until(lambda: in_sync(bed), "three replicas in sync")
    finally:
        leader.close()


def test_with_the_policy_off_nothing_is_rebuilt(bed: Testbed) -> None:
    assert bed.replicas is not None
    configure(bed, quarantine="5s", auto_rejoin=None)
    leader = Leader(bed)
    try:
        assert leader.policy == AutoRejoin()  # off unless asked for
        old_primary_back_fenced(bed, leader)
        began = leader.controller.clock()

        def long_past_its_time() -> bool:  # the quarantine over, no incident, and three times `after` (5m) ... in
            # seconds a test can wait: 30 s of cycles after both, when an `after: 5s` policy would have acted
            quiet = leader.store.quarantines() == {} and leader.store.open_incident("spot") is None
            return quiet and leader.controller.clock() >= began + 30.0

        leader.until(long_past_its_time, "the quarantine over and 30 s of cycles")
        assert audit(leader, "rejoin.") == [] and audit(leader, "auto_rejoin.") == []
        assert leader.store.get_state("auto_rejoin") is None
        assert bed.replicas.client().status(bed.replicas.replica("spot-aws")).role is Role.FENCED
    finally:
        leader.close()
