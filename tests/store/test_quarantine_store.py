"""The quarantine book through the store, on every backend (SQLite, a real etcd, memory): what one daemon's cycle
records, another handle reads; an operator's release is stored and audited; concurrent writers lose nothing."""

from __future__ import annotations

import threading

import pytest

from orchestrator.errors import ConfigError, StoreError
from orchestrator.store import StateStore, open_store
from orchestrator.store.quarantine import QUARANTINE_KEY

H = 3600.0


def test_a_cycle_quarantines_a_site_and_the_clock_survives_in_the_store(store: StateStore) -> None:
    store.observe_quarantines({"aws-hk": ("down", "dark"), "gcp-hk": ("healthy", "")}, 100.0, 2 * H)
    store.observe_quarantines({"aws-hk": ("healthy", "")}, 200.0, 2 * H)
    [(site, quarantine)] = store.quarantines().items()
    assert (site, quarantine.down_at, quarantine.healthy_since, quarantine.reason) == ("aws-hk", 100.0, 200.0,
                                                                                      "dark")
    store.observe_quarantines({"aws-hk": ("down", "again")}, 300.0, 2 * H)
    assert store.quarantines()["aws-hk"].relapses == 1
    store.observe_quarantines({"aws-hk": ("healthy", "")}, 400.0, 2 * H)
    store.observe_quarantines({"aws-hk": ("healthy", "")}, 400.0 + 2 * H, 2 * H)
    assert store.quarantines() == {}


def test_a_release_is_stored_and_audited(store: StateStore) -> None:
    store.observe_quarantines({"aws-hk": ("down", "dark"), "az-sg": ("down", "dark")}, 100.0, 2 * H)
    ended = store.release_quarantine("aws-hk", "alice@ops", 150.0, reason="provider confirmed the fix")
    assert ended.site == "aws-hk" and set(store.quarantines()) == {"az-sg"}
    entry = store.audit_entries()[-1]
    assert (entry.actor, entry.action, entry.at) == ("alice@ops", "quarantine.release", 150.0)
    assert entry.detail["site"] == "aws-hk" and entry.detail["ended"]["down_at"] == 100.0
    assert entry.detail["reason"] == "provider confirmed the fix"


def test_releasing_a_site_not_in_quarantine_changes_nothing_and_audits_nothing(store: StateStore) -> None:
    store.observe_quarantines({"az-sg": ("down", "dark")}, 100.0, 2 * H)
    before = store.get_state(QUARANTINE_KEY)
    with pytest.raises(ConfigError, match="site aws-hk: not in quarantine"):
        store.release_quarantine("aws-hk", "alice@ops", 150.0)
    assert store.get_state(QUARANTINE_KEY) == before and store.audit_entries() == []


def test_an_unchanged_book_is_not_rewritten(store: StateStore) -> None:
    store.observe_quarantines({"aws-hk": ("down", "dark")}, 100.0, 2 * H)
    version = store.get_state(QUARANTINE_KEY)[1]  # type: ignore[index]
    store.observe_quarantines({"aws-hk": ("down", "dark"), "gcp-hk": ("healthy", "")}, 110.0, 2 * H)
    assert store.get_state(QUARANTINE_KEY)[1] == version  # type: ignore[index]


def test_a_corrupt_book_is_a_store_error_naming_the_key(store: StateStore) -> None:
    store.put_state(QUARANTINE_KEY, {"sites": {"aws-hk": {"site": "aws-hk"}}}, None)
    with pytest.raises(StoreError, match="state 'quarantine': unreadable quarantine"):
        store.quarantines()


def test_two_handles_writing_at_once_lose_no_site(store_url: str) -> None:
    sites = [f"site-{n}" for n in range(8)]
    errors: list[BaseException] = []

    def writer(names: list[str]) -> None:
        try:
            with open_store(store_url) as handle:
                for at, name in enumerate(names):
                    handle.observe_quarantines({name: ("down", "dark")}, 100.0 + at, 2 * H)
        except BaseException as error:  # reported below, with the thread's failure
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(sites[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with open_store(store_url) as reader:
        assert sorted(reader.quarantines()) == sites
