"""Prometheus metrics, derived from the controller's events so that every driver reports the same things.

Verdicts, phase per engine, detection latency (first failure seen → `down`), failovers, runbook step durations,
leadership and cycle time. Each daemon has its own registry, so tests can run several in one process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from orchestrator.core.model import Phase, Verdict
from orchestrator.drivers.events import Event, EventKind, Notifier

LATENCY_BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300)
STEP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1200, 3600)


class Metrics(Notifier):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.verdict = Gauge("failover_verdict", "1 for the subject's current verdict", ["subject", "verdict"],
                             registry=r)
        self.phase = Gauge("failover_phase", "1 for the engine's current trading phase", ["engine", "phase"],
                           registry=r)
        self.detection = Histogram("failover_detection_latency_seconds",
                                   "From the first failure seen of a subject to its down/flapping verdict",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.failovers = Counter("failover_failovers", "Failovers started or proposed", ["engine", "kind"],
                                 registry=r)
        self.steps = Histogram("failover_step_duration_seconds", "Runbook step durations", ["step", "state"],
                               buckets=STEP_BUCKETS, registry=r)
        self.pages = Counter("failover_pages", "Times a human was paged", ["engine"], registry=r)
        self.leader = Gauge("failover_leader", "1 while this orchestrator holds the leader lease", registry=r)
        self.cycle = Histogram("failover_cycle_seconds", "Wall time of one controller cycle", registry=r)
        self.cycles = Counter("failover_cycles", "Controller cycles run", ["role"], registry=r)
        self.last_cycle = Gauge("failover_last_cycle_timestamp_seconds", "When the last cycle ended", registry=r)
        self.outbox = Gauge("failover_notifications", "Notifications in the outbox by state (pending: not yet "
                            "delivered; abandoned: gave up after max_attempts)", ["state"], registry=r)
        self.outbox_oldest = Gauge("failover_notifications_oldest_pending_age_seconds",
                                   "Age of the oldest undelivered notification (0 when none)", registry=r)
        self.clock_offset = Gauge("failover_clock_offset_seconds", "This host's clock minus the agreeing majority "
                                  "of the daemons' (from heartbeats; 0 when there is none to judge by)", registry=r)
        self.may_lead = Gauge("failover_clock_may_lead", "0 while this daemon refuses to lead: its clock is the odd "
                              "one out", registry=r)
        self._first_failure: dict[str, float] = {}
        self.current: dict[str, str] = {}  # verdict per subject as of the last verdict event (for /status)

    def publish(self, event: Event) -> None:
        detail = event.detail
        if event.kind is EventKind.VERDICT:
            subject, verdict = str(detail["subject"]), Verdict(str(detail["verdict"]))
            self.current[subject] = verdict.value
            for choice in Verdict:
                self.verdict.labels(subject, choice.value).set(1 if choice is verdict else 0)
            if verdict is Verdict.SUSPECT:
                self._first_failure.setdefault(subject, event.at)
            elif verdict in (Verdict.DOWN, Verdict.FLAPPING):
                start = self._first_failure.pop(subject, event.at)
                self.detection.observe(max(0.0, event.at - start))
            elif verdict is Verdict.HEALTHY:
                self._first_failure.pop(subject, None)
        elif event.kind is EventKind.PHASE and event.engine:
            current = Phase(str(detail["phase"]))
            for option in Phase:
                self.phase.labels(event.engine, option.value).set(1 if option is current else 0)
        elif event.kind is EventKind.ACTION and event.engine and detail.get("kind") in ("failover", "propose"):
            self.failovers.labels(event.engine, str(detail["kind"])).inc()
        elif event.kind is EventKind.STEP:
            self.steps.labels(str(detail.get("step")), str(detail.get("state"))).observe(
                float(detail.get("duration", 0.0)))
        elif event.kind is EventKind.PAGE:
            self.pages.labels(event.engine or "").inc()

    def set_outbox(self, summary: Mapping[str, Any], now: float) -> None:
        self.outbox.labels("pending").set(int(summary.get("pending") or 0))
        self.outbox.labels("abandoned").set(int(summary.get("abandoned") or 0))
        oldest = summary.get("oldest_pending_at")
        self.outbox_oldest.set(max(0.0, now - float(oldest)) if oldest is not None else 0.0)

    def set_phases(self, phases: dict[str, Phase]) -> None:
        for engine, current in phases.items():
            for option in Phase:
                self.phase.labels(engine, option.value).set(1 if option is current else 0)
