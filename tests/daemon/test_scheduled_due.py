"""The leader's look at the planned switchovers (`drivers.scheduled.run_due`), on a virtual clock, with a real
(in-memory) store and the example configuration: spot failed over to GCP last night; AWS was repaired; the failback
to spot-aws is planned for 02:00 Hong Kong time. Support hears of it when it is planned, 15 minutes and 1 minute
before; at 02:00 the leader opens the switchover's incident, unless the target is quarantined (refused, pages) or
lagging (waits, and is missed once the grace period is over: it pages, it never runs late)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.core import schedule as sch
from orchestrator.core.health import Assessment
from orchestrator.core.model import Phase, ReplicaStatus, Role, Topology, Verdict
from orchestrator.core.schedule import Scheduled, State
from orchestrator.drivers.events import EventKind, EventLog
from orchestrator.drivers.modes import ControllerSettings
from orchestrator.drivers.outbox import Channel, OutboxNotifier
from orchestrator.drivers.scheduled import run_due, start_blockers
from orchestrator.drivers.state import load_engine, save_engine
from orchestrator.store.memory import MemoryStore
from providers.traffic import TrafficRouter

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 12, 4, 18, 0, tzinfo=UTC).timestamp()  # 02:00 in Hong Kong
MADE = AT - 6 * 3600
HEALTHY = {subject: Assessment(subject, Verdict.HEALTHY, 0.0) for subject in (
    "aws-hk", "gcp-hk", "azure-hk", "spot-aws", "spot-gcp", "spot-azure")}


def statuses(aws_applied: int = 100) -> dict[str, ReplicaStatus]:
    return {"spot-gcp": ReplicaStatus("spot-gcp", Role.PRIMARY, 7, Phase.OPEN, None, 100, 100),
            "spot-aws": ReplicaStatus("spot-aws", Role.STANDBY, 7, Phase.OPEN, None, aws_applied, aws_applied),
            "spot-azure": ReplicaStatus("spot-azure", Role.STANDBY, 7, Phase.OPEN, None, 100, 100)}


@dataclass
class Leader:
    """What a controller that leads knows (`drivers.scheduled.Leader`)."""

    statuses: Mapping[str, ReplicaStatus] = field(default_factory=statuses)
    token: int = 3
    notifier: EventLog = field(default_factory=EventLog)
    routers: Mapping[str, TrafficRouter] = field(default_factory=dict)
    seq_floor: Mapping[str, int] = field(default_factory=dict)
    options: ControllerSettings = field(default_factory=lambda: ControllerSettings(identity="d-gcp"))


@pytest.fixture
def topology() -> Topology:
    return load_config(ROOT / "configs" / "example.yaml").topology


@pytest.fixture
def store(topology: Topology) -> MemoryStore:
    """spot runs on spot-gcp since last night's failover."""
    opened = MemoryStore()
    save_engine(opened, replace(load_engine(opened, topology, "spot"), primary="spot-gcp", epoch=7))
    return opened


def plan(store: MemoryStore, *, protection: float | None = None, grace: float = sch.DEFAULT_GRACE) -> Scheduled:
    return store.add_schedule(sch.new_entry("SCH-1", "spot", "spot-aws", AT, MADE, "alice@ops", source="spot-gcp",
                                            protection=protection, grace=grace, reason="aws-hk repaired"))


def cycles(store: MemoryStore, topology: Topology, leader: Leader, start: float, end: float,
           every: float = 2.0) -> list[tuple[float, str]]:
    """The leader's cycles from `start` to `end`: (time relative to AT, the look's message) when it did something."""
    said = []
    now = start
    while now <= end:
        outcome = run_due(store, topology, leader, HEALTHY, now)
        if outcome.message:
            said.append((now - AT, outcome.message))
        now += every
    return said


def the(store: MemoryStore) -> Scheduled:
    [entry] = store.schedules()
    return entry


def test_announced_15_and_1_minutes_before_and_started_at_the_time(store: MemoryStore, topology: Topology) -> None:
    plan(store)
    leader = Leader()
    said = cycles(store, topology, leader, AT - 3600, AT + 10)
    assert [at for at, _ in said] == [-900.0, -60.0, 0.0]
    reminders = [e for e in leader.notifier.events if e.kind is EventKind.INCIDENT and "lead" in e.detail]
    assert [(e.at - AT, e.detail["lead"]) for e in reminders] == [(-900.0, 900.0), (-60.0, 60.0)]
    assert reminders[0].message == (
        "[spot] in 15m: planned switchover of spot from spot-gcp to spot-aws: trading halts briefly, no protection "
        "window, at 2026-12-04 18:00:00 UTC (2026-12-05 02:00:00 UTC+08:00) (SCH-1)")

    entry = the(store)
    assert (entry.state, entry.ended_at) == (State.STARTED, AT)
    incident = store.incident(entry.incident or "")
    assert (incident.kind, incident.status.value, incident.source, incident.target) == (
        "switchover", "running", "spot-gcp", "spot-aws")
    assert incident.detail["schedule"] == "SCH-1" and incident.detail["protection"] == sch.PLANNED_WINDOW
    assert incident.detail["epoch"] == 3 * 10**6 + 1  # above everything seen, in the leader's token range
    actions = [(a.actor, a.action) for a in store.audit_entries()]
    assert actions == [("alice@ops", "schedule.create"), ("d-gcp", "incident.running"), ("d-gcp", "schedule.started")]
    assert run_due(store, topology, leader, HEALTHY, AT + 60).message == ""  # started once


def test_an_asked_protection_window_is_the_runbooks(store: MemoryStore, topology: Topology) -> None:
    plan(store, protection=300.0)
    run_due(store, topology, Leader(), HEALTHY, AT)
    assert store.incident(the(store).incident or "").detail["protection"] == 300.0


def test_a_quarantined_target_is_refused_at_the_time_and_pages(store: MemoryStore, topology: Topology) -> None:
    plan(store)
    store.observe_quarantines({"aws-hk": ("down", "zone impaired again")}, AT - 120, 7200.0)  # a relapse
    leader = Leader()
    outcome = run_due(store, topology, leader, HEALTHY, AT)
    assert outcome.refused == (("SCH-1", "quarantined: site aws-hk of spot-aws is in quarantine"),)
    assert the(store).state is State.REFUSED and store.incidents() == []
    [page] = [e for e in leader.notifier.events if e.kind is EventKind.PAGE]
    assert page.message.startswith("[spot] planned switchover to spot-aws at 2026-12-04 18:00:00 UTC (2026-12-05 "
                                   "02:00:00 UTC+08:00) refused (SCH-1): quarantined")
    assert store.audit_entries()[-1].action == "schedule.refused"


def test_a_lagging_target_waits_and_starts_once_caught_up(store: MemoryStore, topology: Topology) -> None:
    plan(store)
    leader = Leader(statuses=statuses(aws_applied=90))
    said = cycles(store, topology, leader, AT, AT + 20)
    assert said[0] == (0.0, "SCH-1: waiting (target lag must not exceed max_lag_on_failover)")
    assert the(store).state is State.PENDING and store.incidents() == []
    leader.statuses = statuses()
    assert run_due(store, topology, leader, HEALTHY, AT + 30).started == (("SCH-1", store.incidents()[0].id),)


def test_still_lagging_after_the_grace_period_it_is_missed_and_pages(store: MemoryStore, topology: Topology) -> None:
    plan(store, grace=120.0)
    leader = Leader(statuses=statuses(aws_applied=90))
    said = cycles(store, topology, leader, AT, AT + 130, every=5.0)
    assert said[-1] == (120.0, "SCH-1: missed")
    assert all("waiting" in message for _, message in said[:-1])
    entry = the(store)
    assert (entry.state, entry.why) == (State.MISSED, "blocked until the grace period ended: target lag must not "
                                                      "exceed max_lag_on_failover")
    [page] = [e for e in leader.notifier.events if e.kind is EventKind.PAGE]
    assert "missed (SCH-1)" in page.message and store.incidents() == []
    assert store.audit_entries()[-1].action == "schedule.missed"


def test_no_leader_until_after_the_grace_period_is_a_miss_not_a_late_run(store: MemoryStore,
                                                                          topology: Topology) -> None:
    plan(store)
    outcome = run_due(store, topology, Leader(), HEALTHY, AT + sch.DEFAULT_GRACE + 1)
    assert outcome.missed == ("SCH-1",) and store.incidents() == []
    assert the(store).why == "no leader started it within the grace period"


def test_a_cancelled_one_never_runs(store: MemoryStore, topology: Topology) -> None:
    plan(store)
    store.cancel_schedule("SCH-1", "bob@ops", AT - 600, "market event")
    assert cycles(store, topology, Leader(), AT - 900, AT + 400) == [] and store.incidents() == []


def test_an_incident_in_flight_holds_it(store: MemoryStore, topology: Topology) -> None:
    plan(store)
    store.create_incident("spot", "failover", "proposed", AT - 5, source="spot-gcp", target="spot-azure",
                          status="proposed")
    outcome = run_due(store, topology, Leader(), HEALTHY, AT)
    assert outcome.waiting == (("SCH-1", "no failover while one is in flight"),)


def test_a_leader_that_died_after_opening_the_incident_is_confirmed_not_repeated(store: MemoryStore,
                                                                                  topology: Topology) -> None:
    plan(store)
    store.change_schedule("SCH-1", lambda e: sch.claimed(e, "d-aws"))
    opened = store.create_incident("spot", "switchover", "planned", AT, source="spot-gcp", target="spot-aws",
                                   status="running", detail={"schedule": "SCH-1"})
    outcome = run_due(store, topology, Leader(), HEALTHY, AT + 3)
    assert outcome.started == (("SCH-1", opened.id),) and len(store.incidents()) == 1
    assert the(store).state is State.STARTED


def test_a_leader_that_died_after_its_claim_is_finished_by_the_next(store: MemoryStore, topology: Topology) -> None:
    plan(store)
    store.change_schedule("SCH-1", lambda e: sch.claimed(e, "d-aws"))
    outcome = run_due(store, topology, Leader(), HEALTHY, AT + 3)
    [incident] = store.incidents()
    assert outcome.started == (("SCH-1", incident.id),) and incident.detail["schedule"] == "SCH-1"


def test_the_checks_that_refuse_scheduling_name_a_lagging_or_quarantined_target(store: MemoryStore,
                                                                                 topology: Topology) -> None:
    """`execute --at` refuses with these (exit 3); the leader repeats them at the time."""
    assert start_blockers(store, topology, statuses(), HEALTHY, "spot", "spot-aws", AT) == []
    assert start_blockers(store, topology, statuses(aws_applied=90), HEALTHY, "spot", "spot-aws", AT) == [
        "target lag must not exceed max_lag_on_failover"]
    store.observe_quarantines({"aws-hk": ("down", "dark")}, AT - 60, 7200.0)
    assert start_blockers(store, topology, statuses(aws_applied=90), HEALTHY, "spot", "spot-aws", AT) == [
        "quarantined: site aws-hk of spot-aws is in quarantine", "target lag must not exceed max_lag_on_failover"]
    assert start_blockers(store, topology, statuses(), HEALTHY, "spot", "spot-gcp", AT) == [
        "target must not be the current primary"]


def test_reminders_and_the_start_go_out_through_the_webhook_outbox(store: MemoryStore, topology: Topology) -> None:
    """The announcements are the outbox's (one store write each, delivered by the sender, never waited on)."""
    plan(store)
    outbox = OutboxNotifier(store, [Channel("webhook-0", "http://127.0.0.1:9/hook", 1.0, 3)])
    leader = Leader()
    leader.notifier = outbox  # type: ignore[assignment]
    cycles(store, topology, leader, AT - 1000, AT)
    texts = [item.body["text"] for item in store.claim_notifications(AT + 1, 50, "sender", 60.0)]
    assert [text.split(":")[0] for text in texts] == ["[spot] in 15m", "[spot] in 1m",
                                                      "[spot] planned switchover spot-gcp -> spot-aws started (SCH-1, "
                                                      f"incident {the(store).incident})"]
    assert all("2026-12-04 18:00:00 UTC (2026-12-05 02:00:00 UTC+08:00)" in text for text in texts[:2])
