"""A leader dies with its runbook running; a follower daemon takes it over as soon as the store lets it, no sooner.

The runbook: the old leader ("d-old") opens a failover and dies before its first step (its lease is neither renewed
nor released, as after a kill -9: it expires by itself). The follower, a real `Daemon` on its own thread with a real
controller, watches the leader key (etcd) or looks at the lease between cycles (SQLite). What must hold:

- it takes the lease only once the old one has lapsed (never sooner than the TTL after the old leader's last
  keepalive; on etcd, on etcd's clock), and the old leader's lease cannot be renewed afterwards;
- it resumes the runbook from the journal at once, before it probes a single round as leader: the step reads what
  it acts on itself, so waiting for a probe round (a dark replica costs its timeouts) only delays the failover.

How soon, in seconds, is `make bench`'s (benchmarks/handover_bench.py); here only the order of things is checked.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import load_config
from orchestrator.core.errors import LeaseLost
from orchestrator.core.runbook import STEPS
from orchestrator.drivers.controller import Controller
from orchestrator.drivers.daemon import Daemon
from orchestrator.drivers.metrics import Metrics
from orchestrator.drivers.modes import Mode
from orchestrator.drivers.wiring import Edges, build_controller, build_edges
from orchestrator.store.records import JournalEntry
from orchestrator.testbed.etcd import EtcdCluster
from orchestrator.testbed.world import (
    GENEROUS,
    LOADED_PROBE_INTERVAL,
    LOADED_PROBE_TIMEOUT,
    LOADED_PROTECTION,
    Testbed,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.etcd]
LEASE_TTL = 3.0
INTERVAL = 0.4


@pytest.fixture(params=["etcd", "sqlite"])
def bed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Testbed]:
    """The testbed on etcd (followers watch the leader key) or on SQLite (followers look between cycles)."""
    store = None
    if request.param == "etcd":
        etcd: EtcdCluster = request.getfixturevalue("etcd")
        store = f"{etcd.url}/t-{uuid.uuid4().hex[:8]}"
    with Testbed(tmp_path / "bed", store=store, protection=LOADED_PROTECTION, probe_interval=LOADED_PROBE_INTERVAL,
                 probe_timeout=LOADED_PROBE_TIMEOUT, lease_ttl=f"{LEASE_TTL:g}s") as testbed:
        yield testbed


class Daemonised:
    """A controller of a daemon in this process, over edges of its own, that notes when it talked to etcd about
    the lease and when it began each cycle (and whether that cycle led)."""

    def __init__(self, bed: Testbed, identity: str, vantage: str) -> None:
        loaded = load_config(bed.config_path)
        self.edges: Edges = build_edges(loaded, vantage=vantage)
        self.controller: Controller = build_controller(Mode.DAEMON, loaded, self.edges, identity=identity,
                                                       vantage=vantage)
        self.keepalives: list[float] = []  # when each acquisition or renewal that succeeded was sent
        self.won_at: float | None = None  # when an acquisition that created the key had answered
        # (began, led) per cycle: whether the cycle that began then ran as the leader (its result says). A probe
        # round that merely began while the lease was held is not one: the watcher thread may win the lease while a
        # follower's cycle is under way, and that cycle still probes and ends as a follower (a CI rehearsal).
        self.rounds: list[tuple[float, bool]] = []
        run_cycle = self.controller.run_cycle

        def noted_cycle() -> Any:
            began = time.time()
            result = run_cycle()
            self.rounds.append((began, bool(result.leader)))
            return result

        self.controller.run_cycle = noted_cycle  # type: ignore[method-assign]
        store: Any = self.edges.store
        store.acquire_lease = self._noted(store.acquire_lease, won=True)
        store.renew_lease = self._noted(store.renew_lease, won=False)

    def _noted(self, call: Callable[..., Any], *, won: bool) -> Callable[..., Any]:
        def noted(*args: Any) -> Any:
            sent = time.time()
            lease = call(*args)
            if lease is not None:
                self.keepalives.append(sent)
                if won and self.won_at is None:
                    self.won_at = time.time()
            return lease

        return noted

    def close(self) -> None:
        self.edges.close()


def journal_of(bed: Testbed, store: Any) -> list[JournalEntry]:
    incident = store.open_incident(bed.engine)
    return store.journal(incident.id) if incident is not None else []


def test_a_follower_resumes_a_dead_leaders_runbook_once_etcd_expired_its_lease_before_probing(bed: Testbed) -> None:
    old = Daemonised(bed, "d-old", "azure-hk")
    new = Daemonised(bed, "d-new", "gcp-hk")
    daemon = Daemon(new.controller, Metrics(), interval=INTERVAL, listen=None)
    runner = threading.Thread(target=daemon.run, name="d-new", daemon=True)
    try:
        # the old leader leads; the new daemon follows it, probing and judging as every follower does
        wait_until(lambda: old.controller.run_cycle().leader, "d-old to lead")
        runner.start()
        wait_until(lambda: daemon.state.last is not None and not daemon.state.last.leader
                   and "d-old" in daemon.state.last.message, "d-new to follow d-old")

        # the old leader opens a failover and dies before its first step: its lease is left to etcd's clock
        _, record = old.controller.snapshot(bed.engine)
        old.controller.open_failover(bed.engine, "spot-aws", "spot-gcp", "the leader dies with it running", record)
        held = old.controller.lease
        assert held is not None
        old.controller.drop_lease()

        store = new.edges.store
        wait_until(lambda: journal_of(bed, store), "d-new's first journal entry", timeout=GENEROUS)
        first = journal_of(bed, store)[0]

        # no sooner than etcd allows: the old lease lapsed on etcd's clock, and it cannot be renewed any more
        assert new.won_at is not None and first.token == new.controller.token > held.token
        assert new.won_at >= max(old.keepalives) + LEASE_TTL
        with pytest.raises(LeaseLost):
            old.edges.store.renew_lease(held, LEASE_TTL)

        # and at once: the runbook moved before the new leader began a cycle (a probe round) of its own
        as_leader = [began for began, leading in new.rounds if leading]
        assert not as_leader or min(as_leader) > first.at, (
            f"d-new probed as leader at {min(as_leader):.3f}, before resuming the runbook at {first.at:.3f}")
        assert (first.step, first.state) == (STEPS[0].value, "started")  # from the journal's start: nothing ran
    finally:
        daemon.stop()
        runner.join(timeout=GENEROUS)
        new.close()
        old.close()
