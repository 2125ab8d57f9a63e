"""The automatic rejoin's decision, pure (`drivers.auto_rejoin`: need_of, track, choose): which replica needs a
rebuild, when it is due, and what holds it back. The runbook it checks: after a failover the old primary comes back
fenced; `after` minutes later, once its site is out of quarantine and no incident of its engine is open, the leader
rebuilds it; a refusal or a failure waits `retry`; one rejoin at a time per engine, `max_concurrent` in all."""

from __future__ import annotations

import pytest

from orchestrator.core.model import Phase, ReplicaStatus, Role
from orchestrator.drivers.auto_rejoin import AutoRejoin, Facts, Need, blocker, choose, need_of, track
from orchestrator.store.auto_rejoin import REJOINING, Pending, auto_rejoin_book, save_auto_rejoin
from orchestrator.store.memory import MemoryStore

T0 = 1_670_036_400.0
POLICY = AutoRejoin(enabled=True, after=300.0, retry=120.0, max_concurrent=1)
SITES = {"spot-aws": "aws-hk", "spot-gcp": "gcp-hk", "spot-azure": "azure-hk", "perp-aws": "aws-hk",
         "perp-azure": "azure-hk"}
EVERYONE = frozenset(SITES)


def status(name: str, role: Role, *, error: str | None = None, epoch: int = 7) -> ReplicaStatus:
    return ReplicaStatus(name, role, epoch, Phase.OPEN, None, 100, 100, error=error)


def pending(replica: str, since: float, *, engine: str = "spot", due: float | None = None,
            state: str = "waiting") -> Pending:
    return Pending(engine, replica, "fenced", since, since + 300.0 if due is None else due, state)


# ---- what needs a rebuild -----------------------------------------------------------------------------------


def test_the_fenced_old_primary_a_deposed_primary_and_a_diverged_standby_need_a_rebuild() -> None:
    assert need_of("spot-aws", status("spot-aws", Role.FENCED), "spot-gcp") is Need.FENCED
    assert need_of("spot-aws", status("spot-aws", Role.PRIMARY, epoch=3), "spot-gcp") is Need.DEPOSED
    diverged = status("spot-azure", Role.STANDBY, error="diverged from http://gcp: it does not hold our entry 9")
    assert need_of("spot-azure", diverged, "spot-gcp") is Need.DIVERGED


def test_the_primary_a_healthy_standby_and_a_replica_not_seen_need_nothing() -> None:
    assert need_of("spot-gcp", status("spot-gcp", Role.PRIMARY), "spot-gcp") is None
    assert need_of("spot-azure", status("spot-azure", Role.STANDBY), "spot-gcp") is None
    assert need_of("spot-aws", None, "spot-gcp") is None


def test_the_simulator_may_say_a_standby_diverged_when_its_status_cannot() -> None:
    quiet = status("spot-azure", Role.STANDBY)
    assert need_of("spot-azure", quiet, "spot-gcp", diverged=True) is Need.DIVERGED
    assert need_of("spot-azure", status("spot-azure", Role.STANDBY, error="x"), "spot-gcp", diverged=False) is None


# ---- when: the clock kept in the book ---------------------------------------------------------------------


def test_a_replica_first_seen_needing_a_rebuild_is_due_after_the_wait() -> None:
    book = track({}, {"spot-aws": ("spot", Need.DEPOSED)}, T0, POLICY)
    assert book["spot-aws"].since == T0 and book["spot-aws"].due == T0 + 300.0
    fenced = track(book, {"spot-aws": ("spot", Need.FENCED)}, T0 + 10, POLICY)  # the controller fenced it
    assert (fenced["spot-aws"].need, fenced["spot-aws"].since, fenced["spot-aws"].due) == ("fenced", T0, T0 + 300.0)


def test_a_replica_not_seen_keeps_its_clock_and_one_seen_healthy_leaves_the_book() -> None:
    book = track({}, {"spot-aws": ("spot", Need.FENCED)}, T0, POLICY)
    assert track(book, {}, T0 + 200, POLICY) == book  # it went dark again: the clock is kept
    assert track(book, {"spot-aws": ("spot", None)}, T0 + 200, POLICY) == {}  # an operator rejoined it


def test_a_rejoin_under_way_is_left_to_its_record() -> None:
    book = {"spot-aws": pending("spot-aws", T0, state=REJOINING)}
    assert track(book, {"spot-aws": ("spot", Need.FENCED)}, T0 + 400, POLICY) == book  # fenced while it copies
    assert track(book, {"spot-aws": ("spot", None)}, T0 + 400, POLICY) == book


def test_the_book_survives_a_restart_in_the_store() -> None:
    store = MemoryStore()
    first = track({}, {"spot-aws": ("spot", Need.FENCED)}, T0, POLICY)
    save_auto_rejoin(store, first)
    book, version = auto_rejoin_book(store)
    assert book == first and version == 1
    save_auto_rejoin(store, {"spot-azure": pending("spot-azure", T0 + 5)})  # another replica: the first is kept
    save_auto_rejoin(store, {"spot-aws": None})
    assert list(auto_rejoin_book(store)[0]) == ["spot-azure"]


# ---- whether now ----------------------------------------------------------------------------------------


def facts(**changes: object) -> Facts:
    return Facts(**{"sites": SITES, "answering": EVERYONE, **changes})  # type: ignore[arg-type]


def test_due_and_unblocked_is_chosen_not_before() -> None:
    book = {"spot-aws": pending("spot-aws", T0)}
    assert choose(book, facts(), T0 + 299, POLICY) == ([], {})
    assert choose(book, facts(), T0 + 300, POLICY) == (["spot-aws"], {})


@pytest.mark.parametrize(("gate", "why"), [
    ({"incidents": {"spot": "incident INC-1 of spot is running"}}, "incident INC-1 of spot is running"),
    ({"quarantined": frozenset({"aws-hk"})}, "site aws-hk is in quarantine"),
    ({"unhealthy": {"aws-hk": "suspect"}}, "aws-hk is suspect"),
    ({"unhealthy": {"spot-aws": "down"}}, "spot-aws is down"),
    ({"answering": frozenset({"spot-gcp", "spot-azure"})}, "spot-aws does not answer"),
    ({"no_primary": {"spot": "no current primary: spot-gcp does not answer"}}, "no current primary"),
])
def test_nothing_is_rebuilt_during_an_incident_on_a_quarantined_or_unhealthy_site_or_without_a_primary(
        gate: dict[str, object], why: str) -> None:
    book = {"spot-aws": pending("spot-aws", T0)}
    chosen, waiting = choose(book, facts(**gate), T0 + 3600, POLICY)
    assert chosen == [] and why in waiting["spot-aws"]
    assert blocker(book["spot-aws"], facts(**gate)) == waiting["spot-aws"]


def test_an_incident_of_another_engine_does_not_hold_this_one_back() -> None:
    book = {"spot-aws": pending("spot-aws", T0)}
    assert choose(book, facts(incidents={"perp": "incident INC-2 of perp is running"}), T0 + 300, POLICY)[0] == [
        "spot-aws"]


def test_at_most_max_concurrent_at_once_oldest_need_first_and_one_per_engine() -> None:
    book = {"perp-aws": pending("perp-aws", T0 + 60, engine="perp"), "spot-aws": pending("spot-aws", T0),
            "spot-azure": pending("spot-azure", T0 + 30)}
    chosen, waiting = choose(book, facts(), T0 + 3600, POLICY)
    assert chosen == ["spot-aws"]
    assert "another replica of spot" in waiting["spot-azure"] and "max_concurrent" in waiting["perp-aws"]
    two = AutoRejoin(enabled=True, max_concurrent=2)
    assert choose(book, facts(), T0 + 3600, two)[0] == ["spot-aws", "perp-aws"]
    running = {**book, "spot-aws": pending("spot-aws", T0, state=REJOINING)}
    chosen, waiting = choose(running, facts(), T0 + 3600, two)
    assert chosen == ["perp-aws"] and "another replica of spot" in waiting["spot-azure"]
