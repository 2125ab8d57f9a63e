"""The status page's data: one JSON document per poll, built from what `failover status` reads and what the daemon
knows of itself. Plain data in, plain data out (the route caches it), so it is tested without a server.

Times are epoch seconds for the page's script (which counts the protection window down against its own clock,
corrected by `generated_at`), and pre-formatted in UTC and the display zone for people, so the page never does
time-zone arithmetic of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import tzinfo
from typing import Any

from orchestrator.core.phases import format_instant
from orchestrator.drivers.status import EngineLine, StatusReport
from orchestrator.store.records import Incident, JournalEntry

RECENT_INCIDENTS = 5  # closed incidents listed below the open ones


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(line: Any) -> dict[str, Any]:
    """A status line's fields as a dict, one level deep: `dataclasses.asdict` deep-copies every value, and with 50
    engines that was a third of the page's build."""
    kind = type(line)
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES.setdefault(kind, tuple(f.name for f in fields(line)))
    return {name: getattr(line, name) for name in names}


def _engine(engine: EngineLine, verdicts: Mapping[str, Any], display: tzinfo) -> dict[str, Any]:
    row = _plain(engine)
    row["phase_since"] = _when(engine.phase_since, display)
    row["phase_until"] = _when(engine.phase_until, display)
    row["incident"] = None if engine.incident is None else dict(engine.incident)
    row["replicas"] = [_plain(r) | {"verdict": str(verdicts.get(r.name, r.verdict))} for r in engine.replicas]
    return row


def _when(at: float | None, display: tzinfo) -> dict[str, Any] | None:
    return None if at is None else {"at": at, "text": format_instant(at, display)}


def _incident(incident: Incident, display: tzinfo) -> dict[str, Any]:
    return {"id": incident.id, "engine": incident.engine, "status": incident.status.value, "kind": incident.kind,
            "source": incident.source, "target": incident.target, "reason": incident.reason,
            "opened": _when(incident.opened_at, display), "closed": _when(incident.closed_at, display)}


def _steps(journal: Sequence[JournalEntry]) -> list[dict[str, Any]]:
    """Each step's latest state and when it started and last changed: the page's Gantt rows."""
    steps: dict[str, dict[str, Any]] = {}
    for entry in journal:
        row = steps.setdefault(entry.step, {"step": entry.step, "started": entry.at})
        row.update(state=entry.state.value, at=entry.at)
    return list(steps.values())


PHASE_AFTER_STEP = {"halt": "halted", "open_protection": "protection", "reopen": "open"}


def phase_history(journal: Sequence[JournalEntry], display: tzinfo) -> list[dict[str, Any]]:
    """The trading phases an incident's runbook went through, from its journal: a halt that lasted less than a
    poll is still on the page."""
    changes = []
    for entry in journal:
        phase = PHASE_AFTER_STEP.get(entry.step)
        if phase is not None and entry.state.value == "done":
            changes.append({"phase": phase, "since": _when(entry.at, display)})
    return changes


def page_document(report: StatusReport, daemon: Mapping[str, Any], incidents: Sequence[Incident],
                  journals: Mapping[str, Sequence[JournalEntry]], display: tzinfo, now: float,
                  sites: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """Everything the page shows. `sites` maps each site to its provider and region (from the topology);
    `daemon` is the serving daemon's `/status` document; `journals` the runbook journal of each incident listed."""
    verdicts = daemon.get("verdicts") or {}
    site_rows = [{"name": name, **dict(where), "verdict": str(verdicts.get(name, "unknown"))}
                 for name, where in sites.items()]
    engines = [_engine(engine, verdicts, display) for engine in report.engines]
    listed = [i for i in incidents if i.is_open] + [i for i in incidents if not i.is_open][:RECENT_INCIDENTS]
    return {
        "generated_at": now,
        "generated": format_instant(now, display),
        "config": report.config,
        "daemon": {key: daemon.get(key) for key in ("identity", "leader", "cycles", "last_cycle_at", "error",
                                                     "healthy", "message")},
        "daemons": [_plain(d) | {"wall_text": format_instant(d.wall, display)} for d in report.daemons],
        "sites": site_rows,
        "engines": engines,
        "incidents": [_incident(i, display) | {"steps": _steps(journals.get(i.id, ())),
                                               "phases": phase_history(journals.get(i.id, ()), display)}
                      for i in listed],
        "notifications": dict(report.notifications),
        "quarantines": [_plain(q) | {"ends": _when(q.ends_at, display)} for q in report.quarantines],
    }
