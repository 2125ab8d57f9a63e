"""SIGTERM: the daemon finishes its cycle, releases the lease and exits 0, so a follower leads at once rather
than after the lease TTL. Two daemons on one SQLite store (the single-host case)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.drill.daemons import Daemons
from orchestrator.testbed.world import LOADED_PROBE_INTERVAL, LOADED_PROBE_TIMEOUT, LOADED_PROTECTION, Testbed

pytestmark = pytest.mark.slow
# Long enough that "led before the TTL could have run out" tells a released lease from an expired one even on a
# busy machine, where the leader's last cycle, its exit and the follower's next cycle can take seconds. How fast
# the handover is goes to `make bench` (benchmarks/handover_bench.py), not here.
LEASE_TTL = 40.0


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Daemons]:
    with Testbed(tmp_path / "bed", protection=LOADED_PROTECTION, probe_interval=LOADED_PROBE_INTERVAL,
                 probe_timeout=LOADED_PROBE_TIMEOUT, lease_ttl=f"{LEASE_TTL:g}s") as bed:
        daemons = Daemons(bed.env(), tmp_path)
        try:
            daemons.start("first", "orchestrator")
            daemons.wait_for(lambda: daemons.leaders() == ["first"], 60, "the first daemon to lead")
            daemons.start("second", "gcp-hk")
            daemons.wait_for(lambda: len(daemons.statuses()) == 2, 60, "the second daemon to follow")
            yield daemons
        finally:
            daemons.stop_all()


def test_sigterm_releases_the_lease_and_a_follower_leads_before_the_ttl(two: Daemons) -> None:
    first = two.running[0]
    # A leader renews every cycle, and at least every fifth of the TTL on a thread of its own: a lease that is not
    # released outlives this moment by 0.8 TTL at least. Leading sooner than 0.75 TTL proves it was released.
    began = time.monotonic()
    first.process.terminate()
    assert first.process.wait(timeout=30) == 0
    two.wait_for(lambda: two.leaders() == ["second"], LEASE_TTL * 0.75 - (time.monotonic() - began),
                 "the follower to lead before the first daemon's lease could have expired")
    log = first.log.read_text()
    assert '"event": "daemon.stop"' in log and '"released": true' in log
