"""The process nemeses on their own: a skewed wall clock in a child, a full disk under a replica (both ways),
a standby put back on a stale copy of its data directory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nemesis.cluster import ProxiedCluster, disk_mode
from nemesis.world import skew_env
from orchestrator.core.errors import EngineError
from orchestrator.testbed.proxy import ProxyHub
from orchestrator.testbed.replicas import ReplicaSpec

pytestmark = pytest.mark.nemesis
SPECS = [ReplicaSpec("spot-aws", "aws", primary=True), ReplicaSpec("spot-gcp", "gcp")]


@pytest.fixture
def hub() -> Iterator[ProxyHub]:
    with ProxyHub() as proxies:
        yield proxies


def test_a_skewed_child_sees_only_its_wall_clock_moved() -> None:
    probe = ("import json, time, datetime, asyncio; t = time.monotonic(); asyncio.run(asyncio.sleep(0.2)); "
             "print(json.dumps({'time': time.time(), 'ns': time.time_ns() / 1e9, "
             "'now': datetime.datetime.now(datetime.UTC).timestamp(), 'slept': time.monotonic() - t}))")
    before = time.time()
    out = subprocess.run([sys.executable, "-c", probe], env={**skew_env(30), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True, timeout=60).stdout
    after = time.time()
    seen = json.loads(out)
    for key in ("time", "ns", "now"):
        assert before + 30 <= seen[key] <= after + 30, key
    assert seen["slept"] >= 0.2  # asyncio's waits still run on the true monotonic clock


def order(cluster: ProxiedCluster, n: int) -> bool:
    with cluster.client(read_timeout=3.0, attempts=1) as client:
        try:
            return client.submit_order(cluster.replica("spot-aws"), client_order_id=f"o{n}", account="a",
                                       market="BTC-USDT", side="buy", qty="1", price="1").accepted
        except EngineError:
            return False


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["tmpfs", "rlimit"])
def test_a_full_disk_stops_the_replica_before_it_acknowledges_what_it_could_not_save(
        tmp_path: Path, hub: ProxyHub, mode: str) -> None:
    if mode == "tmpfs" and disk_mode() != "tmpfs":
        pytest.skip("mounting a tmpfs is not permitted here: the file-size limit stands in for it")
    small = ("spot-aws",) if mode == "tmpfs" else ()
    with ProxiedCluster(tmp_path / "c", SPECS, hub, small_disk=small) as cluster:
        cluster.start()
        assert order(cluster, 0)
        how = cluster.fill_disk("spot-aws")
        assert how == ("tmpfs full" if mode == "tmpfs" else "file-size limit")
        answers = [order(cluster, n) for n in range(1, 60) if cluster.running("spot-aws")]
        cluster.wait_for(lambda: not cluster.running("spot-aws"), 30, "the replica to stop")
        assert answers[-1] is False and cluster.replicas["spot-aws"].process is not None
        assert cluster.replicas["spot-aws"].process.returncode == 70
        text = (cluster.data_dir("spot-aws") / "journal.jsonl").read_text()
        saved = [json.loads(line)["seq"] for line in text.split("\n")[:-1]]  # a torn last line never counts
        assert saved == list(range(1, len(saved) + 1)) and sum(answers) <= len(saved) - 1
        cluster.free_disk("spot-aws")
        cluster.start("spot-aws")
        assert cluster.status("spot-aws")["last_seq"] == len(saved)


@pytest.mark.slow
def test_a_standby_restored_from_a_stale_copy_starts_behind_and_catches_up(tmp_path: Path, hub: ProxyHub) -> None:
    with ProxiedCluster(tmp_path / "c", SPECS, hub) as cluster:
        cluster.start()
        assert order(cluster, 0)
        cluster.wait_caught_up(["spot-gcp"], 1)
        cluster.snapshot("spot-gcp")
        assert all(order(cluster, n) for n in range(1, 6))
        cluster.wait_caught_up(["spot-gcp"], 6)
        cluster.link("spot-gcp", "spot-aws").drop()  # so that it is seen behind before it catches up
        assert cluster.restore("spot-gcp")
        assert cluster.status("spot-gcp")["last_seq"] == 1
        cluster.link("spot-gcp", "spot-aws").heal()
        cluster.wait_caught_up(["spot-gcp"], 6)


@pytest.mark.slow
def test_a_stale_copy_is_never_put_back_under_a_replica_promoted_since(tmp_path: Path, hub: ProxyHub) -> None:
    """The fault is a stale *standby*: a replica promoted after its copy was taken is left as it is, however recent
    the promotion (soak seed 2014: the promotion came a second before the restore, and the monitor's last sample
    still said standby; the restore demoted the new primary to a standby at epoch 0)."""
    with ProxiedCluster(tmp_path / "c", SPECS, hub) as cluster, cluster.client(attempts=1) as client:
        cluster.start()
        assert order(cluster, 0)
        cluster.wait_caught_up(["spot-gcp"], 1)
        cluster.snapshot("spot-gcp")
        promoted = client.promote(cluster.replica("spot-gcp"), 1)
        assert promoted.role.value == "primary"
        assert cluster.restore("spot-gcp") is False
        after = cluster.status("spot-gcp")
        assert (after["role"], after["epoch"], after["last_seq"]) == ("primary", 1, promoted.last_seq)
