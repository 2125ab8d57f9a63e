"""`failover daemon`: the controller cycle on an interval, with a read-only HTTP endpoint and JSON logs.

Several daemons (one per cloud) share an etcd store; exactly one holds the leader lease and acts, the others keep
probing from their own vantage point and write what they see, which the leader reads as independent sources.
SIGTERM (or SIGINT) lets the current cycle finish — a runbook step in flight completes and is journaled — then
releases the lease so another daemon takes over at once instead of after the TTL.

A leader that dies instead is replaced as soon as etcd lets anyone replace it (docs/handover.md): each follower
watches the leader key on a thread of its own and campaigns the moment etcd deletes it (its lease expired on etcd's
clock), and the winner resumes a running runbook from the journal before its first probe round as leader, with
the verdicts of the cycle it just finished as a follower. Taking the lease is still the controller's create-if-
absent, so nothing here lets a successor act while the old leader's lease lives.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orchestrator.core.errors import FailoverError, StoreError
from orchestrator.drivers.controller import LEADER_LEASE, Controller, CycleResult
from orchestrator.drivers.daemon_http import Handler, StatusServer
from orchestrator.drivers.gc_tuning import tune_gc
from orchestrator.drivers.metrics import Metrics
from orchestrator.drivers.runbook import Progress
from orchestrator.drivers.state import load_engine
from orchestrator.store.records import IncidentStatus

log = structlog.get_logger("failover.daemon")

WATCH_SPAN = 5.0  # seconds one watch of the leader key stays open before it is opened again


@runtime_checkable
class LeaseWatch(Protocol):
    """A store that can say when a lease is freed as it happens (etcd: a watch on the key); others are polled
    once a cycle."""

    def wait_for_lease_change(self, name: str, timeout: float) -> bool: ...


def configure_json_logs() -> None:
    """One JSON object per line on stderr: what log shippers and `jq` expect."""
    import logging
    import sys

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


@dataclass

class DaemonState:
    last: CycleResult | None = None
    last_end: float = 0.0
    error: str = ""
    cycles: int = 0


class Daemon:
    def __init__(self, controller: Controller, metrics: Metrics, *, interval: float,
                 listen: str | None = "127.0.0.1:9464", listen_public: bool = False, retention: float = 86400.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.controller = controller
        self.metrics = metrics
        self.interval = interval
        self.listen = listen
        self.listen_public = listen_public
        self.retention = retention
        self.monotonic = monotonic
        self.state = DaemonState()
        self.stopping = threading.Event()
        self.server: StatusServer | None = None
        self.pages: dict[str, Handler] = {}  # more read-only routes beside ours (the status page: orchestrator.web)
        self._last_prune = 0.0
        self.unheard: list[str] = []
        self._wake = threading.Event()  # cut the pause between cycles short: stopping, or the lease is ours
        self._campaigning = threading.Lock()  # the watcher's campaign, and the release at shutdown, one at a time
        self._watcher: threading.Thread | None = None
        self._watch_error = ""  # the watcher's last failure, said once

    # ---- loop -----------------------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())

    def stop(self) -> None:
        """Finish the current cycle, then release the lease and return from `run`."""
        self.stopping.set()
        self._wake.set()

    def run(self, max_cycles: int | None = None) -> int:
        tune_gc()
        self.serve_http()
        log.info("daemon.start", identity=self.controller.options.identity, interval=self.interval,
                 listen=self.address)
        self.watch_leader()
        try:
            while not self.stopping.is_set():
                started = self.monotonic()
                self.take_over()
                self.cycle_once()
                if max_cycles is not None and self.state.cycles >= max_cycles:
                    break
                self._wake.wait(max(0.0, self.interval - (self.monotonic() - started)))
                self._wake.clear()
        finally:
            self.shutdown()
        return 0

    # ---- hand-over ------------------------------------------------------------------------------------------

    def take_over(self) -> list[Progress]:
        """Between two cycles: if we hold the lease (the watcher won it) or can take it now, and the last cycle
        followed, resume every running runbook at once, before the first cycle as leader probes a whole round.

        Why not wait for that cycle: it probes every replica (a dark one costs its timeouts) and only then
        advances the runbook, while the runbook's next step needs none of it: each step reads what it acts on
        itself (the replicas' statuses, the cloud's facts), and the verdicts it is given are those of the cycle
        that just ended, as fresh as the old leader's were. The cycle that follows does the rest (decide, enforce,
        the next steps). A failure is the cycle's kind of failure: we stop acting and the next cycle tries again."""
        last, controller = self.state.last, self.controller
        if last is None or last.leader or self.state.error or not self._may_lead():
            return []  # a leader's own cycle advances its runbooks; with no verdicts yet, the cycle comes first
        try:
            if controller.lease is None and not self._campaign_between_cycles():
                return []
            if not controller.still_leader():
                return []
            running = [i for i in controller.store.incidents(open_only=True) if i.status is IncidentStatus.RUNNING]
            if not running:
                return []
            driver = controller.runbook()
            progress = [driver.advance(incident.id, last.verdicts) for incident in running]
        except FailoverError as error:
            controller.drop_lease()
            self.state.error = str(error)
            log.error("takeover.failed", error=str(error), kind=type(error).__name__)
            return []
        log.info("takeover", token=controller.token, resumed=[p.incident for p in progress],
                 progress=[f"{p.status.value} {p.step or ''}".strip() for p in progress])
        return progress

    def _campaign_between_cycles(self) -> bool:
        """A follower looks at the lease between cycles and takes it when it is free (a read first: the take itself
        is a write), so that a lease won here is followed by the runbooks' resumption, not by a probe round. Where
        the store can be watched (etcd), the watcher usually campaigns the moment the lease is freed; but it may be
        between two watches then (it rests an interval after a watch that returned at once), and the cycle's own
        campaign would then win and probe first (seen in a CI rehearsal under load): so look here too."""
        with self._campaigning:
            if self.controller.lease is not None:
                return True
            if self.controller.store.current_lease(LEADER_LEASE) is not None:
                return False
            return self._campaign()

    def _may_lead(self) -> bool:
        """The rules a cycle leads by: a probe agent never leads; a daemon whose clock is the odd one out does not
        (its cycle releases a lease it holds, and until then nothing here acts on it)."""
        return not self.controller.behaviour.observe_only and self.controller.clock_verdict.may_lead

    def _campaign(self) -> bool:
        """Take the leader lease if it is free and we may lead: what a cycle does first, under the same rules."""
        if not self._may_lead():
            return False
        return self.controller.lease is not None or self.controller._lead()

    def watch_leader(self) -> None:
        """Follow the leader key on a thread of its own when the store can watch it (etcd)."""
        store = self.controller.store
        if self.controller.behaviour.observe_only or not isinstance(store, LeaseWatch) or self._watcher is not None:
            return
        self._watcher = threading.Thread(target=self._watch, args=(store,), name="leader-watch", daemon=True)
        self._watcher.start()

    def _watch(self, store: LeaseWatch) -> None:
        """While we follow: wait for etcd to delete the leader key, then campaign at once and wake the loop, which
        resumes the runbook at the end of the cycle in progress. Never faster than etcd: the key is deleted only
        once the old leader's etcd lease has expired (or it released it), and the campaign creates it only if
        absent. A watch that returns at once (the key is free but we may not lead, etcd unreachable) waits a
        cycle's interval before the next, so this thread never spins."""
        while not self.stopping.is_set():
            began = self.monotonic()
            if self.controller.lease is None:
                try:
                    store.wait_for_lease_change(LEADER_LEASE, WATCH_SPAN)
                    with self._campaigning:
                        won = not self.stopping.is_set() and self.controller.lease is None and self._campaign()
                except FailoverError as error:
                    if str(error) != self._watch_error:  # once per kind of failure, not once per interval
                        log.warning("leader_watch.failed", error=str(error))
                    self._watch_error, won = str(error), False
                else:
                    self._watch_error = ""
                if won:
                    log.info("leader.won", token=self.controller.token, how="watch")
                    self._wake.set()
            if self.monotonic() - began < self.interval:
                self.stopping.wait(self.interval)

    def cycle_once(self) -> CycleResult | None:
        """One cycle and its bookkeeping. A store that fails anywhere in it (the cycle, or the reads for metrics
        after it: the store may go away between the two) fails the cycle, never the daemon: it stops acting and
        keeps trying, so that it can lead again when the store comes back."""
        began = self.monotonic()
        try:
            return self._cycle(began)
        except FailoverError as error:
            self.controller.drop_lease()  # cannot reach the store: assume we are no longer leader, stop acting
            self.state.error = str(error)
            self.metrics.leader.set(0)
            log.error("cycle.failed", error=str(error), kind=type(error).__name__)
            return None

    def _cycle(self, began: float) -> CycleResult:
        previous = self.state.last
        result = self.controller.run_cycle()
        self.state.error = ""
        self.state.last = result
        self.state.cycles += 1
        self.state.last_end = time.time()
        self.metrics.cycle.observe(self.monotonic() - began)
        self.metrics.cycles.labels("leader" if result.leader else "follower").inc()
        self.metrics.leader.set(1 if result.leader else 0)
        self.metrics.last_cycle.set(self.state.last_end)
        if result.leader:
            self.metrics.set_phases({name: load_engine(self.controller.store, self.controller.topology, name).phase
                                     .phase for name in self.controller.topology.engines})
            self.metrics.set_outbox(self.controller.store.outbox_summary(), result.at)
        if previous is None or previous.message != result.message or previous.leader != result.leader:
            log.info("cycle", message=result.message, leader=result.leader, acted=result.acted)
        self._watch_sources(result.at)
        verdict = self.controller.clock_verdict
        self.metrics.clock_offset.set(verdict.offset or 0.0)
        self.metrics.may_lead.set(1 if verdict.may_lead else 0)
        self._prune(result.at)
        return result

    def _watch_sources(self, now: float) -> None:
        """Say which configured vantage points we hear nothing from, once they have had time to speak, and
        whenever that changes: decisions are then being made without them."""
        if self.state.cycles < 10 or not self.controller.options.remote_observations:
            return
        unheard = self.controller.unheard_vantage_points(now)
        if unheard != self.unheard:
            log.warning("vantage.unheard", vantage_points=unheard,
                        hint="is `failover daemon --observe-only --vantage SITE` running there?")
        self.unheard = unheard

    def _prune(self, now: float) -> None:
        if self.controller.lease is None or now - self._last_prune < 300:
            return
        self._last_prune = now
        try:
            self.controller.store.prune_observations(now - self.retention)
        except StoreError as error:
            log.warning("prune.failed", error=str(error))

    def shutdown(self) -> None:
        with self._campaigning:  # no campaign of the watcher's may follow the release
            self.stopping.set()
        try:
            self.controller.release()
            log.info("daemon.stop", released=True)
        except FailoverError as error:
            log.warning("daemon.stop", released=False, error=str(error))
        if self.server is not None:
            self.server.stop()
            self.server = None

    # ---- read-only HTTP -------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        if self.server is None:
            return ""
        host, port = self.server.address
        return f"{host}:{port}"

    def status_document(self) -> dict[str, Any]:
        last = self.state.last
        return {
            "identity": self.controller.options.identity,
            "leader": bool(last and last.leader) and self.controller.lease is not None and not self.state.error,
            "cycles": self.state.cycles,
            "last_cycle_at": last.at if last else None,
            "message": last.message if last else "",
            "error": self.state.error,
            # verdicts as they change, not only at the end of a cycle that may be busy running a runbook step
            "verdicts": dict(self.metrics.current) or {s: a.verdict.value for s, a in
                                                       (last.verdicts if last else {}).items()},
            "healthy": self.healthy(),
            "clock": {key: value for key, value in self.controller.describe().items() if key != "token"},
            "unheard_vantage_points": self.unheard,
        }

    def healthy(self) -> bool:
        return not self.state.error and time.time() - self.state.last_end <= 3 * self.interval + 5

    def serve_http(self) -> None:
        if not self.listen:
            return
        host, _, port = self.listen.rpartition(":")
        routes: dict[str, Handler] = {
            **self.pages,  # ours below win over a page's route of the same path
            "/metrics": lambda: (200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST),
            "/healthz": lambda: (200 if self.healthy() else 503,
                                 json.dumps({"ok": self.healthy()}).encode(), "application/json"),
            "/status": lambda: (200, json.dumps(self.status_document()).encode(), "application/json"),
        }
        self.server = StatusServer(host.strip("[]") or "127.0.0.1", int(port), routes, allow_remote=self.listen_public,
                                   report=lambda line: log.warning("http", detail=line))
        self.server.start()
