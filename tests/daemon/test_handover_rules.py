"""When a daemon between two cycles takes a running runbook over (`Daemon.take_over`), and when it must not.

The hand-over itself, with real daemons, replicas and etcd, is tests/daemon/test_handover_resume.py; here the rules
around it, each against a controller that holds or lacks what the rule is about:

- after a cycle as follower, holding the lease (the watcher won it): every running runbook is advanced with that
  cycle's verdicts, and a proposed one (waiting for a human's approval) is not;
- after a cycle as leader: nothing (its own next cycle advances its runbooks);
- a probe agent, or a daemon whose clock is the odd one out, never takes over, even holding the lease;
- no lease and a watcher running: no campaign here (the watcher campaigns the moment the lease is freed);
- a store that fails mid-take-over stops the daemon acting, as a failed cycle does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.core import runbook as rb
from orchestrator.core.errors import StoreError
from orchestrator.drivers.controller import CycleResult
from orchestrator.drivers.daemon import Daemon
from orchestrator.drivers.metrics import Metrics
from orchestrator.drivers.runbook import Progress
from orchestrator.store.records import IncidentStatus

VERDICTS: dict[str, Any] = {"aws-hk": "down (as the follower's last cycle judged it)"}


@dataclass
class Store:
    incidents_open: list[Any]
    fails: bool = False
    leases_read: int = 0

    def incidents(self, open_only: bool = False) -> list[Any]:
        if self.fails:
            raise StoreError("etcd 127.0.0.1:2379: no member answered in time")
        return self.incidents_open

    def current_lease(self, name: str) -> None:
        self.leases_read += 1


@dataclass
class Driver:
    advanced: list[tuple[str, Any]] = field(default_factory=list)

    def advance(self, incident_id: str, verdicts: Any) -> Progress:
        self.advanced.append((incident_id, verdicts))
        return Progress(incident_id, rb.Status.WAIT, None, "advanced")


class Controller:
    """What take_over reads of a controller, set to the case at hand."""

    def __init__(self, store: Store, *, lease: bool, observe_only: bool = False, may_lead: bool = True) -> None:
        self.store = store
        self.lease = SimpleNamespace(token=7) if lease else None
        self.token = 7
        self.behaviour = SimpleNamespace(observe_only=observe_only)
        self.clock_verdict = SimpleNamespace(may_lead=may_lead)
        self.options = SimpleNamespace(identity="d-test")
        self.driver = Driver()
        self.campaigns = 0
        self.dropped = 0

    def still_leader(self) -> bool:
        return self.lease is not None

    def runbook(self) -> Driver:
        return self.driver

    def _lead(self) -> bool:
        self.campaigns += 1
        return False

    def drop_lease(self) -> None:
        self.dropped += 1
        self.lease = None


def incident(name: str, status: IncidentStatus) -> Any:
    return SimpleNamespace(id=name, status=status)


def daemon_after(controller: Controller, *, led: bool) -> Daemon:
    daemon = Daemon(controller, Metrics(), interval=0.4, listen=None)  # type: ignore[arg-type]
    daemon.state.last = CycleResult(at=1.0, leader=led, message="following; the leader is nobody",
                                    verdicts=VERDICTS)
    return daemon


def running_and_proposed() -> Store:
    return Store([incident("INC-running", IncidentStatus.RUNNING), incident("INC-proposed", IncidentStatus.PROPOSED)])


def test_a_follower_holding_the_lease_resumes_running_runbooks_with_its_last_verdicts() -> None:
    controller = Controller(running_and_proposed(), lease=True)
    progress = daemon_after(controller, led=False).take_over()
    assert controller.driver.advanced == [("INC-running", VERDICTS)]  # the proposed one waits for its approval
    assert [p.incident for p in progress] == ["INC-running"]


def test_after_a_cycle_as_leader_the_cycle_itself_advances() -> None:
    controller = Controller(running_and_proposed(), lease=True)
    assert daemon_after(controller, led=True).take_over() == []
    assert controller.driver.advanced == []


@pytest.mark.parametrize("who", [{"observe_only": True}, {"may_lead": False}], ids=["probe agent", "odd clock"])
def test_who_may_not_lead_never_takes_over_even_holding_the_lease(who: dict[str, bool]) -> None:
    controller = Controller(running_and_proposed(), lease=True, **who)
    assert daemon_after(controller, led=False).take_over() == []
    assert controller.driver.advanced == [] and controller.campaigns == 0


def test_with_a_watcher_running_a_free_lease_is_still_taken_between_cycles() -> None:
    """The watcher rests an interval after a watch that returned at once; a lease freed then was won by the next
    cycle's own campaign, which probed a round before resuming the runbook (a CI rehearsal under load). So the
    daemon looks between cycles whether or not a watcher runs."""
    store = running_and_proposed()
    controller = Controller(store, lease=False)
    daemon = daemon_after(controller, led=False)
    daemon._watcher = SimpleNamespace()  # type: ignore[assignment]
    assert daemon.take_over() == []
    assert store.leases_read == 1 and controller.campaigns == 1


def test_without_a_watcher_a_free_lease_is_taken_between_cycles() -> None:
    store = running_and_proposed()
    controller = Controller(store, lease=False)
    daemon_after(controller, led=False).take_over()
    assert store.leases_read == 1 and controller.campaigns == 1  # read first; lost the race here, so nothing ran
    assert controller.driver.advanced == []


def test_a_store_that_fails_mid_take_over_stops_the_daemon_acting() -> None:
    store = running_and_proposed()
    store.fails = True
    controller = Controller(store, lease=True)
    daemon = daemon_after(controller, led=False)
    assert daemon.take_over() == []
    assert controller.dropped == 1 and controller.lease is None
    assert "no member answered" in daemon.state.error
