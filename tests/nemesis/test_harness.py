"""The harness on real replicas without an orchestrator: a careful manual switchover passes every invariant, and a
careless one (no halt, no fence, the old primary cut off from the new one) is caught by the checker with numbers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nemesis.checker import Announcement, Expect, Observed, check
from nemesis.client import ClientStream
from nemesis.cluster import ProxiedCluster
from nemesis.observe import Monitor, read_replicas
from orchestrator.core.model import Phase
from orchestrator.testbed.proxy import ProxyHub
from orchestrator.testbed.replicas import ReplicaSpec

pytestmark = [pytest.mark.nemesis, pytest.mark.slow]
NAMES = ("spot-aws", "spot-gcp", "spot-azure")


@pytest.fixture
def hub() -> Iterator[ProxyHub]:
    with ProxyHub() as proxies:
        yield proxies


def cluster_of(tmp_path: Path, hub: ProxyHub, *, synchronous: bool = True) -> ProxiedCluster:
    specs = [ReplicaSpec(NAMES[0], "aws", primary=True, synchronous=synchronous),
             ReplicaSpec(NAMES[1], "gcp", synchronous=synchronous),
             ReplicaSpec(NAMES[2], "azure", synchronous=synchronous)]
    return ProxiedCluster(tmp_path / "replicas", specs, hub)


def wait_acks(stream: ClientStream, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(stream.history.acknowledged()) < count:
        assert time.monotonic() < deadline, f"fewer than {count} acknowledgements in {timeout}s"
        time.sleep(0.1)


def announce(phase: str) -> Announcement:
    """What an orchestrator's webhook would have said, at this moment."""
    now = time.time()
    return Announcement(now, now, "phase", f"spot {phase.upper()}", {"phase": phase})


def observed(cluster: ProxiedCluster, stream: ClientStream, monitor: Monitor,
             announcements: list[Announcement]) -> Observed:
    history = stream.stop()
    samples = monitor.stop()
    journals, trades, statuses = read_replicas(cluster)
    return Observed(history.ops(), journals, trades, statuses, samples, announcements, [], {}, time.time())


def test_a_careful_switchover_holds_every_invariant(tmp_path: Path, hub: ProxyHub) -> None:
    with cluster_of(tmp_path, hub) as cluster:
        cluster.start()
        monitor = Monitor(cluster).start()
        stream = ClientStream([cluster.via("client", n) for n in NAMES], cluster.token, seed=7).start()
        wait_acks(stream, 40)
        control = cluster.client()
        aws, gcp, azure = (cluster.replica(n) for n in NAMES)
        said = []
        control.set_phase(aws, Phase.HALTED, None, 1)  # the primary confirms the halt...
        said.append(announce("halted"))  # ...then it is announced
        control.fence(aws, 1)
        for standby in (gcp, azure):
            control.set_phase(standby, Phase.HALTED, None, 1)
        cluster.wait_caught_up([NAMES[1]], control.status(aws).last_seq)
        control.promote(gcp, 1)
        control.set_phase(gcp, Phase.PROTECTION, time.time() + 1, 1)
        said.append(announce("protection"))
        time.sleep(1.0)
        control.set_phase(gcp, Phase.OPEN, None, 1)
        said.append(announce("open"))
        control.close()
        acked_before = len(stream.history.acknowledged())
        wait_acks(stream, acked_before + 30)  # the clients found the new primary by themselves
        verdict = check(observed(cluster, stream, monitor, said), Expect(failovers=(0, 0)))
    assert verdict.reference == "spot-gcp"
    assert verdict.ok, verdict.text()
    assert len(verdict.checked) == 8


def test_a_careless_switchover_is_caught_with_numbers(tmp_path: Path, hub: ProxyHub) -> None:
    """Asynchronous replicas; the standby promoted with no halt and no fence while the old primary cannot see it:
    the old primary goes on acknowledging orders that the new one will never have."""
    with cluster_of(tmp_path, hub, synchronous=False) as cluster:
        cluster.start()
        monitor = Monitor(cluster).start()
        stream = ClientStream([cluster.via("client", n) for n in NAMES], cluster.token, seed=8).start()
        wait_acks(stream, 20)
        cluster.link("spot-aws", "spot-gcp").drop()  # the old primary never learns it was deposed
        cluster.link("spot-aws", "spot-azure").drop()
        cluster.link("spot-gcp", "spot-aws").drop()  # and the new one copies nothing more from it
        cluster.link("spot-azure", "spot-aws").drop()
        with cluster.client() as control:
            control.promote(cluster.replica("spot-gcp"), 1, force=True)
        wait_acks(stream, len(stream.history.acknowledged()) + 20)
        verdict = check(observed(cluster, stream, monitor, []), Expect(failovers=(0, 0)))
    broken = {v.invariant for v in verdict.violations}
    assert {"acknowledged-durable", "journals-prefix-or-archived", "ends-open-or-needs-human"} <= broken
    lost = next(v for v in verdict.violations if v.invariant == "acknowledged-durable")
    assert "acknowledged requests are not on spot-gcp" in lost.message
    ended = next(v for v in verdict.violations if v.invariant == "ends-open-or-needs-human")
    assert "spot-gcp is primary in phase halted" in ended.message  # promoted, never opened, nobody told
