"""The incident report: timeline, halt and protection windows in UTC and display time, and the figures a
postmortem and a support team need (time to detect, halted, new primary, protection; orders refused by reason).

Everything comes from the store (incident, journal, audit), so `failover report` gives the same figures as the
drill that produced the incident, on any machine that can read the store.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import tzinfo
from typing import Any

from orchestrator.core.phases import format_instant
from orchestrator.core.runbook import Step, StepState
from orchestrator.store.base import StateStore
from orchestrator.store.records import Incident, JournalEntry


@dataclass(frozen=True, slots=True)
class Window:
    start: float | None
    end: float | None
    seconds: float | None
    start_text: str = ""
    end_text: str = ""


@dataclass(frozen=True, slots=True)
class IncidentReport:
    incident: str
    engine: str
    kind: str
    status: str
    reason: str
    source: str | None
    target: str | None
    opened_at: float
    closed_at: float | None
    figures: dict[str, Any]
    halted: Window
    protection: Window
    timeline: list[dict[str, Any]] = field(default_factory=list)
    diverged: dict[str, Any] = field(default_factory=dict)  # the old primary's unacknowledged tail (`reconcile`)
    audit_head: str = ""  # `SEQ:HASH` of the audit chain when the report was made: keep it to anchor the log

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _done_at(journal: list[JournalEntry], step: Step) -> float | None:
    return next((e.at for e in journal if e.step == step.value and e.state in (StepState.DONE, StepState.SKIPPED)),
                None)


def _window(start: float | None, end: float | None, display: tzinfo) -> Window:
    seconds = (end - start) if start is not None and end is not None else None
    return Window(start, end, seconds, format_instant(start, display) if start is not None else "",
                  format_instant(end, display) if end is not None else "")


def refused_during(detail: Mapping[str, Any]) -> dict[str, int]:
    """Refusals by reason between the halt and the close, from the replicas' counters snapshotted then."""
    before = detail.get("stats_at_halt") or {}
    after = detail.get("stats_at_close") or {}
    total: Counter[str] = Counter()
    for replica, stats in after.items():
        earlier = before.get(replica, {}).get("refused", {})
        for reason, count in stats.get("refused", {}).items():
            total[reason] += max(0, int(count) - int(earlier.get(reason, 0)))
    return dict(total)


def build_report(store: StateStore, incident_id: str, display: tzinfo) -> IncidentReport:
    incident: Incident = store.incident(incident_id)
    journal = store.journal(incident_id)
    detail = incident.detail
    fault_at = detail.get("fault_at")
    start = float(fault_at) if fault_at is not None else incident.opened_at
    halted_at = _done_at(journal, Step.HALT)
    protected_at = _done_at(journal, Step.OPEN_PROTECTION)
    promoted_at = _done_at(journal, Step.PROMOTE)
    reopened_at = _done_at(journal, Step.REOPEN)
    needs_human = next((e.at for e in journal if e.state == StepState.NEEDS_HUMAN), None)
    halt_end = protected_at or (None if needs_human else incident.closed_at)
    halted = _window(halted_at, halt_end, display)
    protection = _window(protected_at, reopened_at, display)
    orders = dict(detail.get("orders") or {})
    refused = orders.get("refused_by_reason") or refused_during(detail)
    figures = {
        "detection_s": round(incident.opened_at - float(fault_at), 3) if fault_at is not None else None,
        "halt_s": round(halted.seconds, 3) if halted.seconds is not None else None,
        "time_to_new_primary_s": round(promoted_at - start, 3) if promoted_at is not None else None,
        "protection_s": round(protection.seconds, 3) if protection.seconds is not None else None,
        "orders_acknowledged": orders.get("acknowledged"),
        "orders_lost": orders.get("lost"),
        "orders_refused": dict(sorted(refused.items())),
        "trades_during_protection": orders.get("trades_during_protection"),
        "trades_while_halted": orders.get("trades_while_halted"),
    }
    opened = format_instant(incident.opened_at, display)
    timeline: list[dict[str, Any]] = [{"at": incident.opened_at, "when": opened, "event": "opened",
                                       "detail": incident.reason}]
    if fault_at is not None:
        timeline.insert(0, {"at": float(fault_at), "when": format_instant(float(fault_at), display),
                            "event": "fault", "detail": str(detail.get("fault", ""))})
    for entry in journal:
        if entry.state == StepState.STARTED:
            continue
        text = {k: v for k, v in entry.detail.items() if k in ("error", "how", "until", "lag", "reason", "why")}
        timeline.append({"at": entry.at, "when": format_instant(entry.at, display),
                         "event": f"{entry.step} {entry.state}", "detail": json.dumps(text) if text else ""})
    timeline.sort(key=lambda item: float(item["at"]))
    diverged = detail.get("diverged")
    head = store.audit_head()
    return IncidentReport(incident.id, incident.engine, incident.kind, incident.status.value, incident.reason,
                          incident.source, incident.target, incident.opened_at, incident.closed_at, figures,
                          halted, protection, timeline, dict(diverged) if isinstance(diverged, dict) else {},
                          f"{head.seq}:{head.hash}" if head is not None else "")


def _diverged_lines(diverged: Mapping[str, Any]) -> list[str]:
    lines = ["", "## Unacknowledged entries of the old primary (archived, not replayed)", ""]
    if not diverged:
        return [*lines, "not checked"]
    if not diverged.get("checked"):
        return [*lines, f"not yet compared: {diverged.get('why', 'unknown')}"]
    count = int(diverged.get("count") or 0)
    if count == 0:
        return [*lines, f"none: {diverged.get('replica')} holds nothing beyond the new primary's history"]
    lines.append(f"{count} entries of {diverged.get('replica')} after seq {diverged.get('common_seq')} were never "
                 "acknowledged to a client; each order's outcome is \"not executed\". Reconcile with the clients:")
    lines += ["", "| seq | at | kind | client_order_id | account | side | type | price | qty |",
              "|---|---|---|---|---|---|---|---|---|"]
    for entry in diverged.get("entries") or []:
        cells = [entry.get(key, "") for key in ("seq", "at", "kind", "client_order_id", "account", "side", "type",
                                               "price", "qty")]
        lines.append("| " + " | ".join("" if cell is None else str(cell) for cell in cells) + " |")
    return lines


def render_markdown(report: IncidentReport) -> str:
    f = report.figures
    lines = [
        f"# Incident {report.incident}: {report.engine} {report.kind} ({report.status})",
        "",
        f"- **Reason:** {report.reason}",
        f"- **From** {report.source} **to** {report.target}",
        f"- **Trading halted:** {report.halted.start_text or 'n/a'} → {report.halted.end_text or 'n/a'}"
        + (f" ({report.halted.seconds:.1f} s)" if report.halted.seconds is not None else ""),
        f"- **Recovery-protection window:** {report.protection.start_text or 'n/a'} → "
        f"{report.protection.end_text or 'n/a'}"
        + (f" ({report.protection.seconds:.1f} s)" if report.protection.seconds is not None else ""),
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for key in ("detection_s", "halt_s", "time_to_new_primary_s", "protection_s", "orders_acknowledged",
                "orders_lost", "trades_during_protection", "trades_while_halted"):
        value = f.get(key)
        lines.append(f"| {key} | {'n/a' if value is None else value} |")
    lines += ["", "## Orders refused, by reason", ""]
    refused = f.get("orders_refused") or {}
    if refused:
        lines += ["| reason | orders |", "|---|---|"] + [f"| {k} | {v} |" for k, v in refused.items()]
    else:
        lines.append("none recorded")
    lines += _diverged_lines(report.diverged)
    lines += ["", "## Timeline", "", "| when | event | detail |", "|---|---|---|"]
    lines += [f"| {item['when']} | {item['event']} | {item['detail']} |" for item in report.timeline]
    if report.audit_head:
        lines += ["", f"Audit log head when this report was made: `{report.audit_head}` (keep it: "
                  "`failover audit verify --expect-head` checks the log against it)."]
    return "\n".join(lines) + "\n"
