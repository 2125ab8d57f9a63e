"""The incident report: timeline, halt and protection windows in UTC and display time, and the figures a
postmortem and a support team need (time to detect, halted, new primary, protection; orders refused by reason).

Everything comes from the store (incident, journal, audit), so `failover report` gives the same figures as the
drill that produced the incident, on any machine that can read the store.

The halt and protection windows are the engine's own: the new primary's `phase` journal entries, captured into the
incident when the runbook closes (`record_engine_phases`). The orchestrator journals a step only after the engine
has acted, so a window timed by the runbook ends late: a trade matched after the engine reopened, and before the
reopen step was journaled, would appear inside the protection window. The runbook's times are used only for a
boundary the engine's entries do not give (an incident that never closed, an engine that offers no journal), and
each window says which it is. The impact section (`impact_rows`) lists, per account, what support compensates:
orders refused by reason in each window, and orders in the old primary's archived, diverged tail.

Reduced redundancy (`redundancy_window`): from the old primary's loss (the fault when known, else the incident's
opening) until it was rejoined and acknowledges again (the rejoin driver's `rejoin.done` audit entry for it), the
engine ran with one standby fewer than configured: a second loss in that time would leave no acknowledged copy.
The end comes from the audit log, not from the incident, because the rejoin happens after the incident closed.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol

from orchestrator.core.model import Phase, Replica, ReplicaStatus
from orchestrator.core.phases import format_instant
from orchestrator.core.runbook import Step, StepState
from orchestrator.engine.protocol import from_wire_time
from orchestrator.errors import FailoverError
from orchestrator.store.base import StateStore
from orchestrator.store.records import AuditEntry, Incident, JournalEntry

ENGINE_PHASES = "engine_phases"  # incident detail: the new primary's phase entries, captured at close
PAGE = 5000  # the most entries one `GET /v1/journal` returns
MAX_PAGES = 200  # a capture reads at most this many pages after the incident opened (a million entries)
WINDOWS = (Phase.HALTED.value, Phase.PROTECTION.value)


@dataclass(frozen=True, slots=True)
class Window:
    start: float | None
    end: float | None
    seconds: float | None
    start_text: str = ""
    end_text: str = ""
    source: str = ""  # "engine": both ends from its phase entries; "runbook": from journaled steps; or a mix
    start_local: str = ""  # ISO 8601 in the display zone, for tables and sheets
    end_local: str = ""


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
    impact: list[dict[str, Any]] = field(default_factory=list)  # per account: refused by reason, not executed
    impact_notes: list[str] = field(default_factory=list)  # what the impact rows could not say, and why
    # from the old primary's loss until it was rejoined and acknowledging (end None: not restored yet)
    redundancy: Window = field(default_factory=lambda: Window(None, None, None))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _done_at(journal: list[JournalEntry], step: Step) -> float | None:
    return next((e.at for e in journal if e.step == step.value and e.state in (StepState.DONE, StepState.SKIPPED)),
                None)


def _window(start: float | None, end: float | None, display: tzinfo, source: str = "runbook") -> Window:
    seconds = (end - start) if start is not None and end is not None else None
    return Window(start, end, seconds, format_instant(start, display) if start is not None else "",
                  format_instant(end, display) if end is not None else "", source, _iso(start, display),
                  _iso(end, display))


# --- the engine's phase entries --------------------------------------------------------------------------------


class PhaseReader(Protocol):
    """What a capture needs of the engine: `HttpEngineClient` and the recording engine have both."""

    def status(self, replica: Replica) -> ReplicaStatus: ...
    def journal(self, replica: Replica, after: int = 0, limit: int = PAGE) -> list[dict[str, Any]]: ...


def _entry_at(reader: PhaseReader, replica: Replica, seq: int) -> float:
    page = reader.journal(replica, seq - 1, 1)
    if not page:
        raise FailoverError(f"replica {replica.name}: journal entry {seq} is missing")
    return from_wire_time(str(page[0]["at"]))


def _first_seq_since(reader: PhaseReader, replica: Replica, last_seq: int, since: float) -> int:
    """The first seq journaled at or after `since`, by bisection (about 20 reads for a million entries): a
    journal is long and a capture needs only the incident's end of it."""
    low, high = 1, last_seq + 1
    while low < high:
        middle = (low + high) // 2
        if _entry_at(reader, replica, middle) < since:
            low = middle + 1
        else:
            high = middle
    return low


def engine_phases(reader: PhaseReader, replica: Replica, since: float) -> list[dict[str, Any]]:
    """The `phase` entries `replica` journaled at or after `since`, in seq order, as `{seq, at, phase, until}`
    (times in seconds). The new primary's journal holds the whole story: the old primary's halt reached it by
    replication, and it journals its own halt on promotion, its protection and its reopening."""
    after = _first_seq_since(reader, replica, reader.status(replica).last_seq, since) - 1
    found: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        page = reader.journal(replica, after, PAGE)
        for entry in page:
            if entry.get("kind") == "phase":
                data = entry.get("data") or {}
                until = data.get("until")
                found.append({"seq": int(entry["seq"]), "at": from_wire_time(str(entry["at"])),
                              "phase": str(data.get("phase")),
                              "until": None if until is None else from_wire_time(str(until))})
        if len(page) < PAGE:
            break
        after = int(page[-1]["seq"])
    return found


def record_engine_phases(store: StateStore, incident: Incident, reader: PhaseReader, replica: Replica,
                         now: float) -> dict[str, Any]:
    """Capture the new primary's phase entries into the incident, so that the report, made later from the store
    alone, times its windows by the engine. Called when the runbook closes (after the reopen). A replica that does
    not answer leaves the reason instead, and the report falls back to the runbook's times."""
    detail = incident.detail
    fault_at = detail.get("fault_at")
    since = min(incident.opened_at, float(fault_at)) if fault_at is not None else incident.opened_at
    try:
        captured: dict[str, Any] = {"replica": replica.name, "since": since,
                                    "entries": engine_phases(reader, replica, since)}
    except (FailoverError, KeyError, TypeError, ValueError) as error:
        captured = {"replica": replica.name, "since": since, "error": f"journal not read: {error}"}
    store.update_incident(incident.id, detail={ENGINE_PHASES: captured}, at=now)
    return captured


def phase_bounds(entries: Sequence[Mapping[str, Any]], phase: str, after: float | None = None) \
        -> tuple[float | None, float | None]:
    """When the engine entered `phase` (its first entry of that phase, at or after `after` if given) and when it
    left it (its next entry of another phase), as the journal records them; None where it does not."""
    ordered = sorted(entries, key=lambda entry: int(entry["seq"]))
    start_index = next((i for i, entry in enumerate(ordered) if entry["phase"] == phase
                        and (after is None or float(entry["at"]) >= after)), None)
    if start_index is None:
        return None, None
    end = next((float(entry["at"]) for entry in ordered[start_index + 1:] if entry["phase"] != phase), None)
    return float(ordered[start_index]["at"]), end


def _merged(engine: tuple[float | None, float | None], runbook: tuple[float | None, float | None],
            display: tzinfo) -> Window:
    """Each end from the engine where it has one, else from the runbook; `source` says which."""
    start = engine[0] if engine[0] is not None else runbook[0]
    end = engine[1] if engine[1] is not None else runbook[1]
    sources = {"engine" if engine[i] is not None else "runbook" for i in (0, 1)
               if (engine[i] if engine[i] is not None else runbook[i]) is not None}
    return _window(start, end, display, "+".join(sorted(sources)) if sources else "")


def _windows(incident: Incident, journal: list[JournalEntry], display: tzinfo) -> tuple[Window, Window]:
    halted_at = _done_at(journal, Step.HALT)
    protected_at = _done_at(journal, Step.OPEN_PROTECTION)
    reopened_at = _done_at(journal, Step.REOPEN)
    needs_human = next((e.at for e in journal if e.state == StepState.NEEDS_HUMAN), None)
    halt_end = protected_at or (None if needs_human else incident.closed_at)
    captured = incident.detail.get(ENGINE_PHASES) or {}
    entries = captured.get("entries") or []
    halted = phase_bounds(entries, Phase.HALTED.value)
    protection = phase_bounds(entries, Phase.PROTECTION.value, halted[0])
    return (_merged(halted, (halted_at, halt_end), display),
            _merged(protection, (protected_at, reopened_at), display))


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


# --- impact, per account ------------------------------------------------------------------------------------------

IMPACT_COLUMNS = ("account", "outcome", "window", "reason", "orders", "window_start_utc", "window_end_utc",
                  "window_start_local", "window_end_local", "client_order_ids")


def _iso(at: float | None, zone: tzinfo) -> str:
    if at is None:
        return ""
    text = datetime.fromtimestamp(at, UTC).astimezone(zone).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def refused_by_account(detail: Mapping[str, Any]) -> Counter[tuple[str, str, str]]:
    """Refusals per (account, phase, reason) in the halted and protection phases, from the engine's counters
    (`refused_by_phase` in `GET /v1/stats`: the engine counts each refusal under the phase it was in, so the split
    is the engine's, not our snapshots' timing) snapshotted before the halt and at close. A replica restarted in
    between counts from zero: what it refused before the restart is lost, never negative."""
    before = detail.get("stats_before_halt") or detail.get("stats_at_halt") or {}
    after = detail.get("stats_at_close") or {}
    total: Counter[tuple[str, str, str]] = Counter()
    for replica, stats in after.items():
        by_phase = stats.get("refused_by_phase") or {}
        earlier = (before.get(replica) or {}).get("refused_by_phase") or {}
        for phase in WINDOWS:
            for account, reasons in (by_phase.get(phase) or {}).items():
                prior = (earlier.get(phase) or {}).get(account) or {}
                for reason, count in reasons.items():
                    total[(account, phase, reason)] += max(0, int(count) - int(prior.get(reason, 0)))
    return +total


def _counted_by_account(detail: Mapping[str, Any]) -> bool:
    return any("refused_by_phase" in (stats or {}) for stats in (detail.get("stats_at_close") or {}).values())


def archived_tails(detail: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every diverged tail the incident knows, each as the `diverged` record's shape: the one compared at close
    (`diverged`) and those the replica archived itself when it was rejoined (`rejoin.tails`). The same tail can be
    in both; its entries are listed once (`_tail_rows` keeps one per replica and seq)."""
    tails: list[dict[str, Any]] = []
    diverged = detail.get("diverged")
    if isinstance(diverged, Mapping) and diverged.get("checked"):
        tails.append(dict(diverged))
    rejoin = detail.get("rejoin")
    if isinstance(rejoin, Mapping):
        for tail in rejoin.get("tails") or []:
            tails.append({**tail, "replica": rejoin.get("replica"), "checked": True})
    return tails


def _tail_rows(tails: Sequence[Mapping[str, Any]], display: tzinfo) -> list[dict[str, Any]]:
    """The archived tails' orders, cancels and margin requests per (account, replica, kind): never executed."""
    seen: dict[tuple[str, int], Mapping[str, Any]] = {}
    for tail in tails:
        for entry in tail.get("entries") or []:
            if entry.get("account"):
                seen.setdefault((str(tail.get("replica")), int(entry.get("seq") or 0)), entry)
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for (replica, _), entry in sorted(seen.items()):
        groups.setdefault((str(entry["account"]), replica, str(entry.get("kind"))), []).append(entry)
    rows = []
    for (account, replica, kind), entries in sorted(groups.items()):
        times = [from_wire_time(str(entry["at"])) for entry in entries if entry.get("at")]
        start, end = (min(times), max(times)) if times else (None, None)
        ids = [str(entry.get("client_order_id") or entry.get("request_id") or f"seq {entry.get('seq')}")
               for entry in entries]
        rows.append({"account": account, "outcome": "not executed", "window": "diverged tail",
                     "reason": f"{kind} in {replica}'s unacknowledged tail", "orders": len(ids),
                     "window_start_utc": _iso(start, UTC), "window_end_utc": _iso(end, UTC),
                     "window_start_local": _iso(start, display), "window_end_local": _iso(end, display),
                     "client_order_ids": ids})
    return rows


def impact_rows(detail: Mapping[str, Any], windows: Mapping[str, Window], display: tzinfo) \
        -> tuple[list[dict[str, Any]], list[str]]:
    """One row per account, outcome, window and reason (columns `IMPACT_COLUMNS`), and what could not be said."""
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    for (account, phase, reason), count in sorted(refused_by_account(detail).items()):
        window = windows[phase]
        rows.append({"account": account, "outcome": "refused", "window": phase, "reason": reason, "orders": count,
                     "window_start_utc": _iso(window.start, UTC), "window_end_utc": _iso(window.end, UTC),
                     "window_start_local": _iso(window.start, display),
                     "window_end_local": _iso(window.end, display), "client_order_ids": []})
    if not _counted_by_account(detail):
        notes.append("refusals per account: not recorded (the engine's counters give no account); the totals by "
                     "reason are in the figures")
    tails = archived_tails(detail)
    rows += _tail_rows(tails, display)
    for tail in tails:
        if int(tail.get("count") or 0) > len(tail.get("entries") or []):
            notes.append(f"diverged tail of {tail.get('replica')}: {tail.get('count')} entries, "
                         f"{len(tail.get('entries') or [])} listed")
    diverged = detail.get("diverged")
    if isinstance(diverged, Mapping) and diverged and not diverged.get("checked") and not tails:
        notes.append(f"diverged tail: not yet compared ({diverged.get('why', 'unknown')})")
    for name, window in windows.items():
        if window.source and window.source != "engine":
            notes.append(f"{name} window: timed by the runbook's journal ({window.source}), not by the engine's "
                         "phase entries")
    return rows, notes


def _rejoins_of(store: StateStore, incident: Incident, since: float) -> list[AuditEntry]:
    """The rejoin driver's audit entries for the incident's old primary, at or after `since`."""
    return [entry for entry in store.audit_entries() if entry.action.startswith("rejoin.") and entry.at >= since
            and entry.detail.get("replica") == incident.source and entry.detail.get("engine") == incident.engine]


def redundancy_window(incident: Incident, rejoins: Sequence[AuditEntry], display: tzinfo) -> Window:
    """How long the engine ran a standby short: from the old primary's loss to the end of the first rejoin of it
    that left it acknowledging (`rejoin.done` with `acknowledging`); end None while none has."""
    fault_at = incident.detail.get("fault_at")
    start = float(fault_at) if fault_at is not None else incident.opened_at
    end = next((entry.at for entry in rejoins if entry.action == "rejoin.done"
                and entry.detail.get("acknowledging")), None)
    return _window(start, end, display, ("fault" if fault_at is not None else "incident opened")
                   + ("+audit" if end is not None else ""))


def build_report(store: StateStore, incident_id: str, display: tzinfo) -> IncidentReport:
    incident: Incident = store.incident(incident_id)
    journal = store.journal(incident_id)
    detail = incident.detail
    fault_at = detail.get("fault_at")
    start = float(fault_at) if fault_at is not None else incident.opened_at
    promoted_at = _done_at(journal, Step.PROMOTE)
    halted, protection = _windows(incident, journal, display)
    rejoins = _rejoins_of(store, incident, start) if incident.source else []
    redundancy = redundancy_window(incident, rejoins, display)
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
        "reduced_redundancy_s": round(redundancy.seconds, 3) if redundancy.seconds is not None else None,
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
    captured = detail.get(ENGINE_PHASES) or {}
    for phase in captured.get("entries") or []:
        timeline.append({"at": float(phase["at"]), "when": format_instant(float(phase["at"]), display),
                         "event": f"engine {phase['phase']}",
                         "detail": f"{captured.get('replica', 'new primary')} journal seq {phase['seq']}"})
    for audited in rejoins:
        timeline.append({"at": audited.at, "when": format_instant(audited.at, display), "event": audited.action,
                         "detail": f"{audited.detail.get('replica')} to {audited.detail.get('primary')} (audit)"})
    timeline.sort(key=lambda item: float(item["at"]))
    diverged = detail.get("diverged")
    head = store.audit_head()
    tail = dict(diverged) if isinstance(diverged, dict) else {}
    rows, notes = impact_rows(detail, {Phase.HALTED.value: halted, Phase.PROTECTION.value: protection}, display)
    return IncidentReport(incident.id, incident.engine, incident.kind, incident.status.value, incident.reason,
                          incident.source, incident.target, incident.opened_at, incident.closed_at, figures,
                          halted, protection, timeline, tail, f"{head.seq}:{head.hash}" if head is not None else "",
                          rows, notes, redundancy)


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
        lines.append(_md_row(cells))
    return lines


def _md_row(cells: Sequence[Any]) -> str:
    """A table row; a `|` in a client's account or order id would otherwise split its cell."""
    return "| " + " | ".join("" if cell is None else str(cell).replace("|", "\\|") for cell in cells) + " |"


def _redundancy_lines(report: IncidentReport) -> list[str]:
    window = report.redundancy
    lines = ["", "## Reduced redundancy (one standby fewer than configured)", ""]
    if window.start is None:
        return [*lines, "not known"]
    lines += ["| from (UTC) | to (UTC) | from (display zone) | to (display zone) | seconds | timed by |",
              "|---|---|---|---|---|---|",
              "| " + " | ".join([_iso(window.start, UTC), _iso(window.end, UTC) or "not restored",
                                 window.start_local, window.end_local or "not restored",
                                 "n/a" if window.seconds is None else f"{window.seconds:.1f}", window.source]) + " |"]
    if window.end is None:
        lines += ["", f"{report.source} has not been rejoined as an acknowledging standby (`failover rejoin "
                  f"{report.source}`): the engine still runs a standby short"]
    return lines


def _impact_lines(report: IncidentReport) -> list[str]:
    lines = ["", "## Impact, per account (for compensation)", "",
             "| window | from (UTC) | to (UTC) | from (display zone) | to (display zone) | timed by |",
             "|---|---|---|---|---|---|"]
    for name, window in (("halted", report.halted), ("protection", report.protection)):
        cells = [name, _iso(window.start, UTC), _iso(window.end, UTC), window.start_local, window.end_local,
                 window.source or "n/a"]
        lines.append("| " + " | ".join(cell or "n/a" for cell in cells) + " |")
    lines.append("")
    if report.impact:
        lines += ["| account | outcome | window | reason | orders | client_order_id |", "|---|---|---|---|---|---|"]
        lines += [_md_row([row["account"], row["outcome"], row["window"], row["reason"], row["orders"],
                           " ".join(row["client_order_ids"])]) for row in report.impact]
    else:
        lines.append("no order refused or left unexecuted is recorded per account")
    lines += [f"- {note}" for note in report.impact_notes]
    return lines


def render_csv(report: IncidentReport) -> str:
    """The impact rows, one per account, outcome, window and reason (`IMPACT_COLUMNS`), for support's sheets."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(IMPACT_COLUMNS)
    for row in report.impact:
        writer.writerow([_cell(" ".join(row[key]) if key == "client_order_ids" else row[key])
                         for key in IMPACT_COLUMNS])
    return out.getvalue()


def _cell(value: Any) -> Any:
    """Accounts and order ids come from clients: one that starts like a formula is quoted, so a spreadsheet shows
    it instead of running it."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


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
                "orders_lost", "trades_during_protection", "trades_while_halted", "reduced_redundancy_s"):
        value = f.get(key)
        lines.append(f"| {key} | {'n/a' if value is None else value} |")
    lines += ["", "## Orders refused, by reason", ""]
    refused = f.get("orders_refused") or {}
    if refused:
        lines += ["| reason | orders |", "|---|---|"] + [f"| {k} | {v} |" for k, v in refused.items()]
    else:
        lines.append("none recorded")
    lines += _redundancy_lines(report)
    lines += _impact_lines(report)
    lines += _diverged_lines(report.diverged)
    lines += ["", "## Timeline", "", "| when | event | detail |", "|---|---|---|"]
    lines += [f"| {item['when']} | {item['event']} | {item['detail']} |" for item in report.timeline]
    if report.audit_head:
        lines += ["", f"Audit log head when this report was made: `{report.audit_head}` (keep it: "
                  "`failover audit verify --expect-head` checks the log against it)."]
    return "\n".join(lines) + "\n"
