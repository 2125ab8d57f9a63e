"""What a deposed primary wrote beyond the new primary's history is archived in the incident (`drivers.reconcile`),
never replayed, also when the failover ends with a human rather than closing (soak seed 2043), and only once the old
primary can write no more.

Runbook of the regression, as the soak played it: the failover from spot-aws to spot-gcp is done up to protection;
spot-gcp is lost in protection and the runbook hands over to a human. spot-aws, started again on its data directory
(primary at epoch 0, cut from the other replicas), writes an order nobody can acknowledge, and is fenced. The
incident never closes, and the archive was made only at close (or after, by the controller): nothing recorded what
spot-aws holds beyond spot-gcp's history.

The engine here is the replicas' statuses and journals as plain data: the runbook driver, its store and its
comparison are the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import load_config
from orchestrator.core.model import Phase, Replica, ReplicaStatus, Role, Topology
from orchestrator.drivers.controller import Controller
from orchestrator.drivers.events import EventLog
from orchestrator.drivers.modes import Mode
from orchestrator.drivers.runbook import RunbookDriver, new_plan, plan_detail
from orchestrator.engine.base import EngineControl
from orchestrator.store import open_store
from orchestrator.store.base import StateStore
from orchestrator.store.records import IncidentStatus

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0
EPOCH = 1_000_001
OLD, NEW, OTHER = "spot-aws", "spot-gcp", "spot-azure"


def entries(count: int, chain: str, start: int = 1, epoch: int = 0) -> list[dict[str, Any]]:
    return [{"seq": seq, "at": "2026-12-01T02:50:00.000000Z", "epoch": epoch, "kind": "order",
             "data": {"client_order_id": f"{chain}{seq}", "account": "acct-1"}, "hash": f"{chain}{seq}"}
            for seq in range(start, start + count)]


COMMON = entries(42, "c")
ZOMBIE = COMMON + entries(1, "z", 43)  # what spot-aws wrote once started again
HISTORY = COMMON + entries(8, "n", 43, EPOCH)  # the new primary's halt, protection and orders


class Engines(EngineControl):
    """Replicas as plain statuses and journals; a replica missing from `statuses` does not answer."""

    def __init__(self, statuses: dict[str, ReplicaStatus], journals: dict[str, list[dict[str, Any]]]) -> None:
        self.replicas = statuses
        self.journals = journals

    def status(self, replica: Replica) -> ReplicaStatus:
        from orchestrator.core.errors import EngineError

        if replica.name not in self.replicas:
            raise EngineError(f"{replica.name} does not answer")
        return self.replicas[replica.name]

    def set_phase(self, replica: Replica, phase: Phase, until: float | None, epoch: int) -> ReplicaStatus:
        now = self.status(replica)
        changed = replace(now, epoch=max(now.epoch, epoch), phase=phase if now.role is Role.PRIMARY else now.phase)
        self.replicas[replica.name] = changed
        return changed

    def promote(self, replica: Replica, epoch: int, *, force: bool = False) -> ReplicaStatus:
        raise AssertionError("no promotion here")

    def fence(self, replica: Replica, epoch: int) -> ReplicaStatus:
        fenced = replace(self.status(replica), role=Role.FENCED, epoch=max(epoch, self.status(replica).epoch))
        self.replicas[replica.name] = fenced
        return fenced

    def journal(self, replica: Replica, after: int = 0, limit: int = 5000) -> list[dict[str, Any]]:
        self.status(replica)
        return [entry for entry in self.journals[replica.name] if int(entry["seq"]) > after][:limit]


def status(name: str, role: Role, epoch: int, journal: list[dict[str, Any]], phase: Phase = Phase.HALTED) \
        -> ReplicaStatus:
    return ReplicaStatus(name, role, epoch, phase, None, len(journal), len(journal))


@pytest.fixture
def topology() -> Topology:
    return load_config(ROOT / "configs" / "example.yaml").topology


def failover_at_a_human(topology: Topology, store: StateStore) -> str:
    """A failover whose await_window outlived its deadline: the next advance hands it to a human."""
    plan = new_plan(topology, "spot", OLD, NEW, EPOCH, has_router=False)
    incident = store.create_incident("spot", "failover", "aws-hk is down", NOW - 100, source=OLD, target=NEW,
                                     status=IncidentStatus.RUNNING, detail=plan_detail(plan))
    for step in ("announce", "halt", "fence_old_primary", "ensure_target_running", "wait_caught_up", "promote",
                 "switch_traffic", "open_protection"):
        store.append_journal(incident.id, step, "started", NOW - 99, {"attempt": 1})
        store.append_journal(incident.id, step, "done", NOW - 99, {"until": NOW - 90} if "protection" in step
                             else {})
    store.append_journal(incident.id, "await_window", "started", NOW - 98, {"attempt": 1})
    store.append_journal(incident.id, "await_window", "failed", NOW - 80,
                         {"error": "new primary spot-gcp is down in protection", "final": True})
    return incident.id


def driver(topology: Topology, store: StateStore, engines: Engines) -> RunbookDriver:
    return RunbookDriver(topology, store, engines, {}, {}, EventLog(), lambda: NOW)


def test_a_failover_handed_to_a_human_archives_the_old_primarys_tail(topology: Topology) -> None:
    store = open_store("memory://")
    engines = Engines({OLD: status(OLD, Role.FENCED, EPOCH, ZOMBIE), NEW: status(NEW, Role.PRIMARY, EPOCH, HISTORY),
                       OTHER: status(OTHER, Role.STANDBY, EPOCH, HISTORY)},
                      {OLD: ZOMBIE, NEW: HISTORY, OTHER: HISTORY})
    incident_id = failover_at_a_human(topology, store)
    driver(topology, store, engines).advance(incident_id, {})
    incident = store.incident(incident_id)
    assert incident.status is IncidentStatus.NEEDS_HUMAN
    diverged = incident.detail.get("diverged")
    assert isinstance(diverged, dict), f"nothing archived: {sorted(incident.detail)}"
    assert (diverged["replica"], diverged["checked"], diverged["common_seq"], diverged["count"]) == (OLD, True, 42, 1)
    assert [entry["client_order_id"] for entry in diverged["entries"]] == ["z43"]


def test_while_the_old_primary_cannot_be_compared_the_archive_says_why_and_stays_open(topology: Topology) -> None:
    """Dead at the hand-over (soak seed 2043: it came back later and wrote then): nothing is compared yet, and the
    incident says so, so that the comparison is made when it answers again, fenced."""
    store = open_store("memory://")
    engines = Engines({NEW: status(NEW, Role.PRIMARY, EPOCH, HISTORY), OTHER: status(OTHER, Role.STANDBY, EPOCH,
                                                                                      HISTORY)},
                      {OLD: ZOMBIE, NEW: HISTORY, OTHER: HISTORY})
    incident_id = failover_at_a_human(topology, store)
    driver(topology, store, engines).advance(incident_id, {})
    diverged = store.incident(incident_id).detail["diverged"]
    assert (diverged["checked"], diverged["why"]) == (
        False, "the old primary did not answer; compared when it answers again")

    # it answers again, still claiming primary at its old epoch: it may still be writing, so not yet
    engines.replicas[OLD] = status(OLD, Role.PRIMARY, 0, ZOMBIE, Phase.OPEN)
    found = driver(topology, store, engines).archive_tail(store.incident(incident_id), NOW + 1)  # as the controller
    assert found["checked"] is False and "still answers as primary" in found["why"]

    engines.replicas[OLD] = status(OLD, Role.FENCED, EPOCH, ZOMBIE)  # fenced: its journal can no longer grow
    found = driver(topology, store, engines).archive_tail(store.incident(incident_id), NOW + 2)
    assert (found["checked"], found["common_seq"], found["count"]) == (True, 42, 1)
    assert store.incident(incident_id).detail["diverged"]["count"] == 1


@dataclass
class Edges:
    """What a controller is built on; only the store, the engines and the clock matter here."""

    store: StateStore
    engines: EngineControl
    providers: dict[str, Any] = field(default_factory=dict)
    routers: dict[str, Any] = field(default_factory=dict)
    prober: Any = None
    notifier: Any = field(default_factory=EventLog)
    clock: Any = lambda: NOW


def test_an_old_primary_back_after_the_hand_over_has_its_tail_archived_by_the_controller(
        topology: Topology) -> None:
    """Soak seed 2043's order of events: the failover was handed to a human while spot-aws was dead; it came back
    afterwards, wrote, and was fenced. Only the controller's later cycles can compare its journal."""
    store = open_store("memory://")
    engines = Engines({NEW: status(NEW, Role.PRIMARY, EPOCH, HISTORY), OTHER: status(OTHER, Role.STANDBY, EPOCH,
                                                                                      HISTORY)},
                      {OLD: ZOMBIE, NEW: HISTORY, OTHER: HISTORY})
    incident_id = failover_at_a_human(topology, store)
    driver(topology, store, engines).advance(incident_id, {})
    assert store.incident(incident_id).detail["diverged"]["checked"] is False
    engines.replicas[OLD] = status(OLD, Role.FENCED, EPOCH, ZOMBIE)

    controller = Controller(topology, Edges(store, engines), Mode.SIMULATION)
    controller.statuses = dict(engines.replicas)
    controller._fenced = {OLD}  # what a probe round notes of the statuses above (Controller._observe)
    controller._archive_returned(NOW + 5)
    diverged = store.incident(incident_id).detail["diverged"]
    assert (diverged["checked"], diverged.get("common_seq"), diverged.get("count")) == (True, 42, 1)
