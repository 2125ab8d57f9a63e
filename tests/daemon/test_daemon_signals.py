"""SIGTERM: the daemon finishes its cycle, releases the lease and exits 0, so a follower leads at once rather
than after the lease TTL. Two daemons on one SQLite store (the single-host case)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.drill.daemons import Daemons
from orchestrator.drill.testbed import Testbed

pytestmark = pytest.mark.slow
LEASE_TTL = 8.0


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Daemons]:
    with Testbed(tmp_path / "bed", protection="3s", probe_interval="100ms", probe_timeout="80ms",
                 lease_ttl=f"{LEASE_TTL:g}s") as bed:
        daemons = Daemons(bed.env(), tmp_path)
        try:
            daemons.start("first", "orchestrator")
            daemons.wait_for(lambda: daemons.leaders() == ["first"], 30, "the first daemon to lead")
            daemons.start("second", "gcp-hk")
            daemons.wait_for(lambda: len(daemons.statuses()) == 2, 30, "the second daemon to follow")
            yield daemons
        finally:
            daemons.stop_all()


def test_sigterm_releases_the_lease_and_a_follower_leads_before_the_ttl(two: Daemons) -> None:
    first = two.running[0]
    first.process.terminate()
    began = time.monotonic()
    assert first.process.wait(timeout=15) == 0
    waited = two.wait_for(lambda: two.leaders() == ["second"], LEASE_TTL, "the follower to lead")
    assert time.monotonic() - began < LEASE_TTL * 0.75, waited  # released, not expired
    log = first.log.read_text()
    assert '"event": "daemon.stop"' in log and '"released": true' in log
