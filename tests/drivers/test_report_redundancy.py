"""The incident report says how long the engine ran a standby short: from the old primary's loss until the rejoin
driver audited it rejoined and acknowledging (`rejoin.done`), in seconds and as UTC and display-zone windows.

Runbook: the primary's site is lost at T0 - 1.5 (the fault the drill recorded); the failover closes at T0 + 31;
the site comes back, its quarantine ends, and `failover rejoin spot-aws` rebuilds the old primary (audited
`rejoin.start` at T0 + 300, `rejoin.done` at T0 + 312.5, acknowledging). Only then are there two acknowledging
standbys again. The store is the real in-memory store, the audit entries are the driver's shape.
"""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from typing import Any

from orchestrator.drivers.report import build_report, render_markdown
from orchestrator.store.memory import MemoryStore
from orchestrator.store.records import IncidentStatus

T0 = 1_671_332_400.0  # 2022-12-18 03:00:00 UTC, 11:00 in Hong Kong
HKT = timezone(timedelta(hours=8))
FAULT_AT = T0 - 1.5


def _incident(store: MemoryStore, **detail: Any) -> str:
    incident = store.create_incident("spot", "failover", "primary down", T0, source="spot-aws", target="spot-gcp",
                                     detail=detail)
    store.update_incident(incident.id, status=IncidentStatus.CLOSED, at=T0 + 31.0)
    return incident.id


def _rejoin(store: MemoryStore, replica: str, started: float, done: float, *, acknowledging: bool = True,
            engine: str = "spot") -> None:
    common = {"engine": engine, "replica": replica, "primary": "spot-gcp", "epoch": 2}
    store.audit("drill", "rejoin.start", {**common, "fence_first": False}, started)
    store.audit("drill", "rejoin.done", {**common, "seconds": done - started, "last_seq": 900, "error": None,
                                         "acknowledging": acknowledging}, done)


def test_the_window_runs_from_the_fault_to_the_end_of_the_rejoin_of_the_old_primary() -> None:
    store = MemoryStore(clock=lambda: T0 + 400)
    incident = _incident(store, fault_at=FAULT_AT)
    _rejoin(store, "spot-azure", T0 + 100, T0 + 110)  # another replica's rebuild restores nothing here
    _rejoin(store, "spot-aws", T0 + 200, T0 + 205, engine="perp")  # another engine's replica of the same name
    _rejoin(store, "spot-aws", T0 + 300, T0 + 312.5)

    report = build_report(store, incident, HKT)

    assert report.redundancy.start == FAULT_AT and report.redundancy.end == T0 + 312.5
    assert report.figures["reduced_redundancy_s"] == 314.0
    assert report.redundancy.source == "fault+audit"
    assert report.redundancy.start_local == "2022-12-18T10:59:58.500+08:00"
    assert report.redundancy.end_local == "2022-12-18T11:05:12.500+08:00"
    document = json.loads(json.dumps(report.to_json()))
    assert document["redundancy"]["seconds"] == 314.0 and document["figures"]["reduced_redundancy_s"] == 314.0
    markdown = render_markdown(report)
    assert "## Reduced redundancy" in markdown and "| reduced_redundancy_s | 314.0 |" in markdown
    assert "| 2022-12-18T02:59:58.500Z | 2022-12-18T03:05:12.500Z | 2022-12-18T10:59:58.500+08:00 | " \
           "2022-12-18T11:05:12.500+08:00 | 314.0 | fault+audit |" in markdown
    events = [item["event"] for item in report.timeline]
    assert events[-2:] == ["rejoin.start", "rejoin.done"]  # the old primary's, audited; the others are not its


def test_a_rejoin_not_yet_acknowledging_leaves_the_window_open_and_the_report_says_so() -> None:
    store = MemoryStore(clock=lambda: T0 + 400)
    incident = _incident(store)  # no fault recorded: the loss is dated by the incident's opening
    _rejoin(store, "spot-aws", T0 + 300, T0 + 330, acknowledging=False)

    report = build_report(store, incident, HKT)

    assert report.redundancy.start == T0 and report.redundancy.end is None
    assert report.figures["reduced_redundancy_s"] is None
    assert report.redundancy.source == "incident opened"
    markdown = render_markdown(report)
    assert "not restored" in markdown and "`failover rejoin spot-aws`" in markdown


def test_a_rejoin_from_before_the_loss_does_not_end_the_window() -> None:
    store = MemoryStore(clock=lambda: T0 + 400)
    _rejoin(store, "spot-aws", T0 - 600, T0 - 590)  # a rebuild of last week's incident
    incident = _incident(store, fault_at=FAULT_AT)

    report = build_report(store, incident, HKT)

    assert report.redundancy.end is None and report.figures["reduced_redundancy_s"] is None
