"""The automatic rejoin across the leader's cycles (`drivers.auto_rejoin.run_auto_rejoin`), with the real rejoin
driver and a real (in-memory) store, on a virtual clock. The replicas are a small scripted stand-in that keeps the
replica's side of the protocol (`POST /v1/rejoin` answers at once and is idempotent; the copy finishes when the
test says so), so that each cycle's decision can be checked at the second it is made.

The runbook: spot failed over to spot-gcp at epoch 7; spot-aws came back fenced. Five minutes later (policy.
auto_rejoin.after) the leader starts its rejoin and goes on cycling; a later cycle sees it done and acknowledging
and finishes it (the incident report's `rejoin.done`); a failed rejoin waits `retry`; a quarantined site, an open
incident or the policy off leave it alone; a new leader, or a leader that died between starting a rejoin and
writing it down, follows the same rejoin instead of starting another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import load_config
from orchestrator.core.errors import EngineError
from orchestrator.core.health import Assessment
from orchestrator.core.model import Phase, Replica, ReplicaStatus, Role, Topology, Verdict
from orchestrator.drivers.auto_rejoin import AutoRejoin, AutoRejoinOutcome, run_auto_rejoin
from orchestrator.drivers.events import EventKind, EventLog
from orchestrator.drivers.modes import ControllerSettings
from orchestrator.drivers.state import load_engine, save_engine
from orchestrator.engine.base import EngineControl, answering
from orchestrator.store.auto_rejoin import auto_rejoin_book
from orchestrator.store.memory import MemoryStore
from orchestrator.store.records import IncidentStatus

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_670_036_400.0
EPOCH = 7
POLICY = AutoRejoin(enabled=True, after=300.0, retry=120.0, max_concurrent=1)
HEALTHY = {s: Assessment(s, Verdict.HEALTHY, 0.0) for s in ("aws-hk", "gcp-hk", "azure-hk", "spot-aws", "spot-gcp",
                                                              "spot-azure")}


class Replicas(EngineControl):
    """Three replicas as they answer after the failover: gcp primary at EPOCH, azure its standby, aws fenced."""

    def __init__(self, topology: Topology) -> None:
        self.urls = {r.name: r.control_url for r in topology.engines["spot"].replicas}
        self.roles = {"spot-aws": Role.FENCED, "spot-gcp": Role.PRIMARY, "spot-azure": Role.STANDBY}
        self.records: dict[str, dict[str, Any]] = {}
        self.dark: set[str] = set()
        self.rejoins: list[tuple[str, int, str]] = []  # every POST /v1/rejoin

    def status(self, replica: Replica) -> ReplicaStatus:
        if replica.name in self.dark:
            raise EngineError(f"replica {replica.name} does not answer")
        role = self.roles[replica.name]
        standby = role is Role.STANDBY
        return ReplicaStatus(replica.name, role, EPOCH, Phase.OPEN, None, 50, 50,
                             following=self.urls["spot-gcp"] if standby else None,
                             primary_contact_age=0.2 if standby else None)

    def set_phase(self, replica: Replica, phase: Phase, until: float | None, epoch: int) -> ReplicaStatus:
        raise AssertionError("no phase change in a rejoin")

    def promote(self, replica: Replica, epoch: int, *, force: bool = False) -> ReplicaStatus:
        raise AssertionError("no promotion in a rejoin")

    def fence(self, replica: Replica, epoch: int) -> ReplicaStatus:
        self.roles[replica.name] = Role.FENCED
        return self.status(replica)

    def rejoin(self, replica: Replica, epoch: int, primary_url: str) -> dict[str, Any]:
        self.rejoins.append((replica.name, epoch, primary_url))
        found = self.records.get(replica.name)
        if found is None or (found["epoch"], found["primary"]) != (epoch, primary_url) or found["state"] == "failed":
            self.records[replica.name] = {"state": "started", "epoch": epoch, "primary": primary_url,
                                          "started_at": "2022-12-03T03:00:00Z", "tails": [], "last_seq": 0}
            self.roles[replica.name] = Role.FENCED
        return dict(self.records[replica.name])

    def rejoin_status(self, replica: Replica) -> dict[str, Any]:
        if replica.name in self.dark:
            raise EngineError(f"replica {replica.name} does not answer")
        return dict(self.records.get(replica.name, {"state": "none", "tails": []}))

    def finish(self, name: str, state: str = "done", error: str | None = None) -> None:
        """The replica's copy ends: done (a standby of gcp) or failed (still fenced)."""
        self.records[name].update(state=state, error=error, last_seq=50)
        if state == "done":
            self.roles[name] = Role.STANDBY


@dataclass
class Leader:
    """What the leading controller has this cycle (`drivers.auto_rejoin.Leader`)."""

    engines: Replicas
    topology: Topology
    now: list[float]
    identity: str = "daemon-gcp"
    notifier: EventLog = field(default_factory=EventLog)
    statuses: Mapping[str, ReplicaStatus] = field(default_factory=dict)

    @property
    def options(self) -> ControllerSettings:
        return ControllerSettings(identity=self.identity)

    @property
    def clock(self) -> Callable[[], float]:
        return lambda: self.now[0]

    def cycle(self, store: MemoryStore, at: float, policy: AutoRejoin = POLICY) -> AutoRejoinOutcome:
        """One cycle at `at`: probe (every replica that answers), then the automatic rejoin's look."""
        self.now[0] = at
        self.statuses = answering(self.engines, self.topology.engines["spot"].replicas)
        return run_auto_rejoin(store, self.topology, self, HEALTHY, at, policy)


@pytest.fixture
def topology() -> Topology:
    return load_config(ROOT / "configs" / "example.yaml").topology


@pytest.fixture
def store(topology: Topology) -> MemoryStore:
    opened = MemoryStore()
    save_engine(opened, replace(load_engine(opened, topology, "spot"), primary="spot-gcp", epoch=EPOCH))
    return opened


@pytest.fixture
def leader(topology: Topology) -> Leader:
    return Leader(Replicas(topology), topology, [T0])


def actions(store: MemoryStore) -> list[str]:
    return [entry.action for entry in store.audit_entries()]


def test_the_fenced_old_primary_is_rebuilt_after_the_wait_without_blocking_the_cycle(
        store: MemoryStore, leader: Leader) -> None:
    assert not leader.cycle(store, T0).acted  # first seen fenced: the clock starts
    assert auto_rejoin_book(store)[0]["spot-aws"].since == T0
    assert not leader.cycle(store, T0 + 299).acted
    started = leader.cycle(store, T0 + 300)
    assert started.started == (("spot-aws", "spot-gcp"),) and started.acted
    assert leader.engines.rejoins == [("spot-aws", EPOCH, leader.engines.urls["spot-gcp"])]
    assert actions(store) == ["auto_rejoin.start", "rejoin.start", "rejoin.unfinished"]
    assert auto_rejoin_book(store)[0]["spot-aws"].state == "rejoining"

    copying = leader.cycle(store, T0 + 302)  # the replica copies; the cycle only asks how far it is
    assert not copying.acted and len(leader.engines.rejoins) == 1
    leader.engines.finish("spot-aws")
    done = leader.cycle(store, T0 + 304)
    assert done.done == (("spot-aws", True),)
    assert actions(store)[3:] == ["rejoin.start", "rejoin.done", "auto_rejoin.done"]
    [rejoined] = [e for e in store.audit_entries() if e.action == "rejoin.done"]
    assert rejoined.detail["acknowledging"] is True  # what the incident report times redundancy by
    assert auto_rejoin_book(store)[0] == {}
    said = [(e.kind, e.message) for e in leader.notifier.events]
    assert said == [(EventKind.INCIDENT, "[spot] rebuilding spot-aws (fenced) as a standby of spot-gcp at epoch 7 "
                                         "(automatic rejoin)"),
                    (EventKind.INCIDENT, "[spot] rebuilt spot-aws as a standby of spot-gcp (automatic rejoin, "
                                         "acknowledging)")]
    assert not leader.cycle(store, T0 + 600).acted and auto_rejoin_book(store)[0] == {}


def test_with_the_policy_off_nothing_is_asked_or_written(store: MemoryStore, leader: Leader) -> None:
    for at in (T0, T0 + 300, T0 + 3600):
        assert not leader.cycle(store, at, AutoRejoin()).acted
    assert leader.engines.rejoins == [] and actions(store) == [] and store.get_state("auto_rejoin") is None


def test_a_quarantined_site_is_not_rebuilt_until_its_quarantine_ends(
        store: MemoryStore, leader: Leader, topology: Topology) -> None:
    store.observe_quarantines({"aws-hk": ("down", "zone lost")}, T0 - 60, topology.policy.quarantine)
    store.observe_quarantines({"aws-hk": ("healthy", "")}, T0, topology.policy.quarantine)  # two hours from now
    leader.cycle(store, T0)
    held = leader.cycle(store, T0 + 3600)
    assert not held.acted and held.waiting == (("spot-aws", "site aws-hk is in quarantine"),)
    assert auto_rejoin_book(store)[0]["spot-aws"].blocked == "site aws-hk is in quarantine"
    assert leader.engines.rejoins == [] and actions(store) == []
    released = leader.cycle(store, T0 + 7200)  # healthy for policy.quarantine: the quarantine ended
    assert released.started == (("spot-aws", "spot-gcp"),)


def test_an_open_incident_holds_it_back_even_one_handed_to_a_human(store: MemoryStore, leader: Leader) -> None:
    incident = store.create_incident("spot", "halt", "primary lost", T0, source="spot-gcp",
                                     status=IncidentStatus.NEEDS_HUMAN)
    leader.cycle(store, T0)
    held = leader.cycle(store, T0 + 600)
    assert held.waiting == (("spot-aws", f"incident {incident.id} of spot is needs_human"),)
    assert leader.engines.rejoins == []
    store.update_incident(incident.id, status=IncidentStatus.CLOSED, at=T0 + 650)
    assert leader.cycle(store, T0 + 660).started == (("spot-aws", "spot-gcp"),)


def test_a_failed_rejoin_pages_and_is_tried_again_after_retry(store: MemoryStore, leader: Leader) -> None:
    leader.cycle(store, T0)
    leader.cycle(store, T0 + 300)
    leader.engines.finish("spot-aws", "failed", "spot-gcp is no longer primary at epoch 7")
    failed = leader.cycle(store, T0 + 310)
    assert failed.failed == (("spot-aws", "spot-gcp is no longer primary at epoch 7"),)
    assert leader.notifier.events[-1].kind is EventKind.PAGE
    entry = auto_rejoin_book(store)[0]["spot-aws"]
    assert (entry.state, entry.due, entry.attempts) == ("waiting", T0 + 430, 1)
    assert not leader.cycle(store, T0 + 429).acted and len(leader.engines.rejoins) == 1
    again = leader.cycle(store, T0 + 430)
    assert again.started == (("spot-aws", "spot-gcp"),) and len(leader.engines.rejoins) == 2
    assert actions(store).count("auto_rejoin.failed") == 1 and actions(store).count("auto_rejoin.start") == 2


def test_a_new_leader_follows_the_rejoin_its_predecessor_started(
        store: MemoryStore, leader: Leader, topology: Topology) -> None:
    leader.cycle(store, T0)
    leader.cycle(store, T0 + 300)
    successor = Leader(leader.engines, topology, [T0 + 305], identity="daemon-azure")
    assert not successor.cycle(store, T0 + 305).acted  # still copying: followed, not started again
    leader.engines.finish("spot-aws")
    assert successor.cycle(store, T0 + 310).done == (("spot-aws", True),)
    assert len(leader.engines.rejoins) == 2  # the start, and the finishing run that found it done
    assert [e.actor for e in store.audit_entries() if e.action.startswith("auto_rejoin.")] == [
        "daemon-gcp", "daemon-azure"]


def test_a_rejoin_started_by_a_leader_that_died_before_writing_it_down_is_adopted(
        store: MemoryStore, leader: Leader, topology: Topology) -> None:
    leader.cycle(store, T0)
    leader.engines.rejoin(topology.engines["spot"].replica("spot-aws"), EPOCH,
                          leader.engines.urls["spot-gcp"])  # the dead leader's POST; its book still says waiting
    adopted = leader.cycle(store, T0 + 300)
    assert adopted.started == (("spot-aws", "spot-gcp"),) and len(leader.engines.rejoins) == 1
    [start] = [e for e in store.audit_entries() if e.action == "auto_rejoin.start"]
    assert start.detail["adopted"] is True and "rejoin.start" not in actions(store)


def test_a_replica_that_goes_dark_keeps_its_clock_and_one_an_operator_rejoined_leaves_the_book(
        store: MemoryStore, leader: Leader) -> None:
    leader.cycle(store, T0)
    leader.engines.dark.add("spot-aws")
    held = leader.cycle(store, T0 + 400)
    assert held.waiting == (("spot-aws", "spot-aws does not answer"),)
    assert auto_rejoin_book(store)[0]["spot-aws"].since == T0
    leader.engines.dark.clear()
    leader.engines.roles["spot-aws"] = Role.STANDBY  # `failover rejoin spot-aws` by hand meanwhile
    assert not leader.cycle(store, T0 + 410).acted and auto_rejoin_book(store)[0] == {}


def test_a_rejoin_done_to_a_primary_deposed_since_is_not_finished_to_it(
        store: MemoryStore, leader: Leader, topology: Topology) -> None:
    leader.cycle(store, T0)
    leader.cycle(store, T0 + 300)
    save_engine(store, replace(load_engine(store, topology, "spot"), primary="spot-azure", epoch=EPOCH + 1))
    leader.engines.finish("spot-aws")  # done, following spot-gcp, which another failover has just deposed
    leader.engines.roles.update({"spot-gcp": Role.FENCED, "spot-azure": Role.PRIMARY})
    after = leader.cycle(store, T0 + 310)
    assert after.done == () and "rejoin.done" not in actions(store)
    assert len(leader.engines.rejoins) == 1  # no run to finish it against spot-gcp
    book = auto_rejoin_book(store)[0]  # the next look decides afresh: a standby now, and gcp the one to rebuild
    assert "spot-aws" not in book and book["spot-gcp"].need == "fenced" and book["spot-gcp"].since == T0 + 310
