"""The incident report times its halt and protection windows by the engine's own phase entries, not by when the
orchestrator journaled its steps, and lists the impact per account for compensation.

Runbook of the regression (issue 15, item 5): the new primary reopens; the orchestrator journals the reopen step a
few seconds later (its store was slow: a three-member etcd that had lost one member). A trade matched in between
is a trade of open trading, but the report timed the protection window by the journaled step, so the trade fell
inside it. Here the store is the real in-memory store; the engine's phase entries are as `record_engine_phases`
captures them at close.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, timedelta, timezone
from typing import Any

from orchestrator.core.runbook import Step, StepState
from orchestrator.drivers.report import build_report, render_csv, render_markdown
from orchestrator.store.memory import MemoryStore
from orchestrator.store.records import IncidentStatus

T0 = 1_671_332_400.0  # 2022-12-18 03:00:00 UTC
HKT = timezone(timedelta(hours=8))

# (step, seconds after T0 when the orchestrator journaled it done)
STEPS = [(Step.HALT, 2.0), (Step.PROMOTE, 4.0), (Step.OPEN_PROTECTION, 5.5), (Step.REOPEN, 30.0),
         (Step.CLOSE_INCIDENT, 31.0)]
# the new primary's phase entries: the halt replicated from the old primary, its own on promotion, protection, open
PHASES = [{"seq": 40, "at": T0 + 1.6, "phase": "halted", "until": None},
          {"seq": 41, "at": T0 + 3.9, "phase": "halted", "until": None},
          {"seq": 42, "at": T0 + 5.2, "phase": "protection", "until": T0 + 25.2},
          {"seq": 60, "at": T0 + 25.3, "phase": "open", "until": None}]
TRADE_AT = T0 + 27.0  # matched after the engine reopened, before the reopen step was journaled


def _incident(store: MemoryStore, detail: dict[str, Any]) -> str:
    incident = store.create_incident("spot", "failover", "primary down", T0, source="spot-aws",
                                     target="spot-gcp", detail={"fault_at": T0 - 1.5, **detail})
    for step, after in STEPS:
        store.append_journal(incident.id, step.value, StepState.STARTED, T0 + after - 0.1)
        store.append_journal(incident.id, step.value, StepState.DONE, T0 + after)
    store.update_incident(incident.id, status=IncidentStatus.CLOSED, at=T0 + 31.0)
    return incident.id


def test_a_trade_after_the_engine_reopened_is_outside_the_protection_window() -> None:
    store = MemoryStore(clock=lambda: T0 + 40)
    report = build_report(store, _incident(store, {"engine_phases": {"replica": "spot-gcp", "entries": PHASES}}),
                          HKT)

    assert report.protection.end == T0 + 25.3
    assert not report.protection.start <= TRADE_AT < report.protection.end  # type: ignore[operator]
    assert report.protection.start == T0 + 5.2 and report.protection.source == "engine"
    assert report.figures["protection_s"] == 20.1
    assert report.halted.start == T0 + 1.6 and report.halted.end == T0 + 5.2  # the engine's, not the steps'
    assert report.halted.source == "engine"


def test_without_the_engine_entries_the_runbook_times_the_windows_and_the_report_says_so() -> None:
    store = MemoryStore(clock=lambda: T0 + 40)
    report = build_report(store, _incident(store, {}), HKT)

    assert (report.protection.start, report.protection.end) == (T0 + 5.5, T0 + 30.0)
    assert report.protection.source == "runbook"
    assert "protection window: timed by the runbook's journal (runbook), not by the engine's phase entries" \
        in report.impact_notes


def test_a_missing_engine_boundary_falls_back_to_the_runbook_for_that_end_only() -> None:
    store = MemoryStore(clock=lambda: T0 + 40)
    unfinished = PHASES[:3]  # captured before the engine reopened (its journal read ended there)
    report = build_report(store, _incident(store, {"engine_phases": {"entries": unfinished}}), HKT)

    assert (report.protection.start, report.protection.end) == (T0 + 5.2, T0 + 30.0)
    assert report.protection.source == "engine+runbook"


def _stats(halted: dict[str, dict[str, int]], protection: dict[str, dict[str, int]]) -> dict[str, Any]:
    return {"refused": {}, "refused_by_phase": {"halted": halted, "protection": protection,
                                                "open": {"acct-9": {"would_cross": 50}}}}


def test_impact_lists_each_account_refused_by_reason_in_each_window_and_the_unexecuted_tail() -> None:
    before = {"spot-gcp": _stats({"acct-1": {"halted": 2}}, {}), "spot-aws": _stats({}, {})}
    after = {"spot-gcp": _stats({"acct-1": {"halted": 5}, "acct-2": {"not_primary": 1}},
                                {"acct-1": {"post_only required": 7}, "acct-3": {"market orders refused": 2}}),
             "spot-aws": _stats({"acct-2": {"halted": 4}}, {})}
    tail = {"replica": "spot-aws", "checked": True, "common_seq": 39, "count": 3, "entries": [
        {"seq": 40, "at": "2022-12-18T03:00:01.000000Z", "kind": "order", "client_order_id": "o-40",
         "account": "acct-2"},
        {"seq": 41, "at": "2022-12-18T03:00:02.500000Z", "kind": "order", "client_order_id": "o-41",
         "account": "acct-2"},
        {"seq": 42, "at": "2022-12-18T03:00:02.000000Z", "kind": "phase", "phase": "halted"}]}
    store = MemoryStore(clock=lambda: T0 + 40)
    report = build_report(store, _incident(store, {
        "engine_phases": {"entries": PHASES}, "stats_at_halt": before, "stats_at_close": after,
        "diverged": tail}), HKT)

    got = [(r["account"], r["outcome"], r["window"], r["reason"], r["orders"]) for r in report.impact]
    assert got == [
        ("acct-1", "refused", "halted", "halted", 3),
        ("acct-1", "refused", "protection", "post_only required", 7),
        ("acct-2", "refused", "halted", "halted", 4),
        ("acct-2", "refused", "halted", "not_primary", 1),
        ("acct-3", "refused", "protection", "market orders refused", 2),
        ("acct-2", "not executed", "diverged tail", "order in spot-aws's unacknowledged tail", 2),
    ]
    protection_row = report.impact[1]
    assert protection_row["window_start_utc"] == "2022-12-18T03:00:05.200Z"
    assert protection_row["window_end_utc"] == "2022-12-18T03:00:25.300Z"
    assert protection_row["window_end_local"] == "2022-12-18T11:00:25.300+08:00"
    assert report.impact[-1]["client_order_ids"] == ["o-40", "o-41"]
    assert report.impact[-1]["window_end_utc"] == "2022-12-18T03:00:02.500Z"
    assert report.impact_notes == []  # both windows by the engine, refusals counted per account

    text = render_markdown(report)
    assert "| acct-1 | refused | protection | post_only required | 7 |  |" in text
    assert "| protection | 2022-12-18T03:00:05.200Z | 2022-12-18T03:00:25.300Z | 2022-12-18T11:00:05.200+08:00 | " \
           "2022-12-18T11:00:25.300+08:00 | engine |" in text
    # the engine's phase changes stand in the timeline beside the steps journaled after them
    assert "| 2022-12-18 03:00:25 UTC (11:00:25 UTC+08:00) | engine open | new primary journal seq 60 |" in text
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert len(rows) == 6 and rows[-1]["client_order_ids"] == "o-40 o-41" and rows[0]["orders"] == "3"
    assert report.to_json()["impact"][0]["account"] == "acct-1"


def test_counters_without_accounts_are_named_as_the_limit_of_the_impact_section() -> None:
    store = MemoryStore(clock=lambda: T0 + 40)
    old_engine = {"spot-gcp": {"refused": {"halted": 9}}}
    report = build_report(store, _incident(store, {"engine_phases": {"entries": PHASES},
                                                   "stats_at_halt": {}, "stats_at_close": old_engine}), HKT)

    assert report.impact == []
    assert report.figures["orders_refused"] == {"halted": 9}
    assert report.impact_notes == ["refusals per account: not recorded (the engine's counters give no account); "
                                   "the totals by reason are in the figures"]
    assert "no order refused or left unexecuted is recorded per account" in render_markdown(report)


def test_an_account_that_looks_like_a_formula_or_splits_a_table_stays_one_cell() -> None:
    store = MemoryStore(clock=lambda: T0 + 40)
    after = {"spot-gcp": _stats({"=HYPERLINK(1)": {"halted": 1}, "a|b": {"halted": 2}}, {})}
    report = build_report(store, _incident(store, {"engine_phases": {"entries": PHASES},
                                                   "stats_at_close": after}), UTC)

    assert next(csv.DictReader(io.StringIO(render_csv(report))))["account"] == "'=HYPERLINK(1)"
    assert "| a\\|b | refused | halted | halted | 2 |  |" in render_markdown(report)


def test_tails_archived_by_a_rejoin_are_listed_once_beside_the_one_compared_at_close() -> None:
    """`failover rejoin` archives the deposed primary's tail on its disk and records it in the incident
    (`rejoin.tails`); the same tail may also be the one compared at close (`diverged`). Each order once."""
    def entry(seq: int, coid: str, account: str) -> dict[str, Any]:
        return {"seq": seq, "at": f"2022-12-18T03:00:0{seq - 40}.000000Z", "kind": "order",
                "client_order_id": coid, "account": account}

    compared = {"replica": "spot-aws", "checked": True, "common_seq": 40, "count": 1,
                "entries": [entry(41, "o-41", "acct-5")]}
    rejoin = {"replica": "spot-aws", "primary": "spot-gcp", "tails": [
        {"file": "archive/tail-after-40-ab.jsonl", "common_seq": 40, "count": 3, "orders": 2,
         "entries": [entry(41, "o-41", "acct-5"), entry(42, "o-42", "acct-6")]}]}
    store = MemoryStore(clock=lambda: T0 + 40)
    report = build_report(store, _incident(store, {"engine_phases": {"entries": PHASES}, "diverged": compared,
                                                   "rejoin": rejoin}), UTC)

    tail_rows = [(r["account"], r["orders"], r["client_order_ids"]) for r in report.impact
                 if r["outcome"] == "not executed"]
    assert tail_rows == [("acct-5", 1, ["o-41"]), ("acct-6", 1, ["o-42"])]
    assert "diverged tail of spot-aws: 3 entries, 2 listed" in report.impact_notes
