"""Planned switchovers through the store, on every backend (SQLite, a real etcd, memory): what an operator
schedules, another handle (the daemon that leads at the time) reads; a cancel is stored and audited; a cancel and a
leader's claim of the same entry never both succeed."""

from __future__ import annotations

import threading

import pytest

from orchestrator.core import schedule as sch
from orchestrator.core.schedule import Scheduled, State
from orchestrator.errors import ConfigError, StoreError, UnsafeError
from orchestrator.store import StateStore, open_store
from orchestrator.store.schedule import SCHEDULE_KEY

NOW = 1_796_000_000.0


def planned(entry_id: str = "SCH-1", engine: str = "spot", at: float = NOW + 3600) -> Scheduled:
    return sch.new_entry(entry_id, engine, "spot-aws", at, NOW, "alice@ops", source="spot-gcp", reason="failback")


def test_a_scheduled_switchover_is_stored_and_audited(store: StateStore) -> None:
    store.add_schedule(planned())
    [kept] = store.schedules()
    assert kept == planned()
    entry = store.audit_entries()[-1]
    assert (entry.actor, entry.action, entry.at) == ("alice@ops", "schedule.create", NOW)
    assert (entry.detail["id"], entry.detail["target"], entry.detail["at"]) == ("SCH-1", "spot-aws", NOW + 3600)


def test_a_second_open_one_for_the_engine_is_refused_and_nothing_is_written(store: StateStore) -> None:
    store.add_schedule(planned())
    before, audited = store.get_state(SCHEDULE_KEY), len(store.audit_entries())
    with pytest.raises(UnsafeError, match="spot already has a planned switchover, SCH-1"):
        store.add_schedule(planned("SCH-2"))
    assert store.get_state(SCHEDULE_KEY) == before and len(store.audit_entries()) == audited


def test_a_cancel_is_stored_and_audited_with_who_and_why(store: StateStore) -> None:
    store.add_schedule(planned())
    done = store.cancel_schedule(None, "bob@ops", NOW + 60, "market event tonight")
    assert (done.state, done.ended_at) == (State.CANCELLED, NOW + 60)
    assert store.schedules() == [done]
    entry = store.audit_entries()[-1]
    assert (entry.actor, entry.action, entry.at) == ("bob@ops", "schedule.cancel", NOW + 60)
    assert entry.detail == {"schedule": "SCH-1", "engine": "spot", "target": "spot-aws", "at": NOW + 3600,
                            "reason": "market event tonight"}


def test_cancelling_nothing_changes_nothing_and_audits_nothing(store: StateStore) -> None:
    with pytest.raises(ConfigError, match="no planned switchover to cancel"):
        store.cancel_schedule(None, "bob@ops", NOW, "")
    assert store.get_state(SCHEDULE_KEY) is None and store.audit_entries() == []


def test_change_schedule_writes_only_a_real_change(store: StateStore) -> None:
    store.add_schedule(planned())
    version = store.get_state(SCHEDULE_KEY)[1]  # type: ignore[index]
    assert store.change_schedule("SCH-1", lambda e: None) is None
    assert store.change_schedule("SCH-1", lambda e: e) is None
    assert store.change_schedule("SCH-9", lambda e: sch.claimed(e, "d-aws")) is None
    assert store.get_state(SCHEDULE_KEY)[1] == version  # type: ignore[index]
    claimed = store.change_schedule("SCH-1", lambda e: sch.claimed(e, "d-aws"))
    assert claimed is not None and store.schedules() == [claimed] and claimed.state is State.STARTING


def test_a_corrupt_schedule_is_a_store_error_naming_the_key(store: StateStore) -> None:
    store.put_state(SCHEDULE_KEY, {"entries": [{"id": "SCH-1"}]}, None)
    with pytest.raises(StoreError, match="state 'schedule': unreadable schedule"):
        store.schedules()


def test_another_handle_reads_what_was_scheduled(store_url: str) -> None:
    with open_store(store_url) as operator:
        operator.add_schedule(planned())
    with open_store(store_url) as daemon:
        assert [e.id for e in daemon.schedules()] == ["SCH-1"]


def test_a_cancel_and_a_claim_racing_never_both_win(store_url: str) -> None:
    """Twenty rounds: an operator cancels while a leader claims the same entry, each on its own handle."""
    with open_store(store_url) as setup:
        for n in range(20):
            setup.add_schedule(planned(f"SCH-{n}", engine=f"e{n}"))
    outcomes: dict[str, list[str]] = {f"SCH-{n}": [] for n in range(20)}
    errors: list[BaseException] = []

    def cancel_all() -> None:
        try:
            with open_store(store_url) as handle:
                for n in range(20):
                    try:
                        handle.cancel_schedule(f"SCH-{n}", "bob@ops", NOW, "")
                        outcomes[f"SCH-{n}"].append("cancelled")
                    except UnsafeError:
                        pass
        except BaseException as error:
            errors.append(error)

    def claim_all() -> None:
        try:
            with open_store(store_url) as handle:
                for n in range(20):
                    if handle.change_schedule(f"SCH-{n}", lambda e: sch.claimed(e, "d-aws")
                                              if e.state is State.PENDING else None) is not None:
                        outcomes[f"SCH-{n}"].append("claimed")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=cancel_all), threading.Thread(target=claim_all)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert all(len(won) == 1 for won in outcomes.values()), outcomes
    with open_store(store_url) as reader:
        states = {e.id: e.state for e in reader.schedules()}
    for entry_id, won in outcomes.items():
        assert states[entry_id] is (State.CANCELLED if won == ["cancelled"] else State.STARTING)
