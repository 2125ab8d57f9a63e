"""A daemon outlives its store: losing etcd between a cycle and the reads after it fails that cycle, not the daemon.

Seen in CI at load 14: the leader's cycle succeeded, etcd lost quorum, and the outbox summary read for /metrics
raised out of the loop; the daemon released its lease and exited, so it could never lead again when etcd came back.
"""

from __future__ import annotations

from types import SimpleNamespace

from orchestrator.core.errors import StoreError
from orchestrator.drivers.controller import CycleResult
from orchestrator.drivers.daemon import Daemon
from orchestrator.drivers.metrics import Metrics


class StoreGoneAfterTheCycle:
    """The controller's store as etcd without quorum looks once the cycle has committed."""

    def outbox_summary(self) -> dict[str, int]:
        raise StoreError("etcd 127.0.0.1:2379: no member answered in time")


class LeadingController:
    def __init__(self) -> None:
        self.store = StoreGoneAfterTheCycle()
        self.topology = SimpleNamespace(engines={})
        self.options = SimpleNamespace(identity="d-test", remote_observations=False)
        self.lease = None
        self.cycles = 0
        self.leases_dropped = 0

    def run_cycle(self) -> CycleResult:
        self.cycles += 1
        return CycleResult(at=float(self.cycles), leader=True, message="all healthy")

    def drop_lease(self) -> None:
        self.leases_dropped += 1


def test_a_store_lost_after_the_cycle_fails_the_cycle_and_the_daemon_goes_on() -> None:
    controller = LeadingController()
    daemon = Daemon(controller, Metrics(), interval=0.0, listen=None)  # type: ignore[arg-type]
    for _ in range(3):
        assert daemon.cycle_once() is None
    assert controller.cycles == 3 and controller.leases_dropped == 3  # it kept cycling, and stopped acting each time
    assert "no member answered" in daemon.state.error
    assert daemon.metrics.leader._value.get() == 0  # type: ignore[attr-defined]
