"""A deposed primary (its standbys already carry a newer epoch) is fenced, never stamped: stamping it, even to halt
it, would make it a primary at the new epoch, and the standbys would follow it and copy what it wrote while nobody
acknowledged it (issue 11 hole 2, the controller's side)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.core.model import Phase, Replica, ReplicaStatus, Role, Topology
from orchestrator.drivers.events import EventLog
from orchestrator.drivers.runbook import RunbookDriver, deposed_primaries
from orchestrator.engine.base import EngineControl
from orchestrator.store import open_store

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0


class RecordingEngines(EngineControl):
    """Replicas as plain statuses; every call recorded in order."""

    def __init__(self, statuses: dict[str, ReplicaStatus]) -> None:
        self.replicas = statuses
        self.calls: list[tuple[str, str, int]] = []

    def status(self, replica: Replica) -> ReplicaStatus:
        return self.replicas[replica.name]

    def set_phase(self, replica: Replica, phase: Phase, until: float | None, epoch: int) -> ReplicaStatus:
        self.calls.append(("phase", replica.name, epoch))
        now = self.replicas[replica.name]
        changed = replace(now, epoch=max(now.epoch, epoch), phase=phase if now.role is Role.PRIMARY else now.phase)
        self.replicas[replica.name] = changed
        return changed

    def promote(self, replica: Replica, epoch: int, *, force: bool = False) -> ReplicaStatus:
        raise AssertionError("not in a halt")

    def fence(self, replica: Replica, epoch: int) -> ReplicaStatus:
        self.calls.append(("fence", replica.name, epoch))
        fenced = replace(self.replicas[replica.name], role=Role.FENCED, epoch=max(epoch, 0))
        self.replicas[replica.name] = fenced
        return fenced


def status(name: str, role: Role, epoch: int, seq: int = 10) -> ReplicaStatus:
    return ReplicaStatus(name, role, epoch, Phase.OPEN, None, seq, seq)


@pytest.fixture
def topology() -> Topology:
    return load_config(ROOT / "configs" / "example.yaml").topology


def driver(topology: Topology, engines: EngineControl) -> RunbookDriver:
    store = open_store("memory://")
    return RunbookDriver(topology, store, engines, {}, {}, EventLog(), lambda: NOW)


def test_a_primary_below_an_epoch_its_standbys_carry_is_deposed() -> None:
    zombie = {"a": status("a", Role.PRIMARY, 5), "b": status("b", Role.STANDBY, 7), "c": status("c", Role.STANDBY, 7)}
    assert deposed_primaries(zombie) == {"a"}
    normal = {"a": status("a", Role.PRIMARY, 7), "b": status("b", Role.STANDBY, 7), "c": status("c", Role.STANDBY, 5)}
    assert deposed_primaries(normal) == set()


def test_halting_everywhere_fences_a_thawed_zombie_and_halts_a_live_primary_first(topology: Topology) -> None:
    engine = topology.engines["spot"]
    engines = RecordingEngines({"spot-aws": status("spot-aws", Role.PRIMARY, 5),
                                "spot-gcp": status("spot-gcp", Role.STANDBY, 9),
                                "spot-azure": status("spot-azure", Role.STANDBY, 9)})
    assert driver(topology, engines).halt_everywhere(engine, 9, "test", NOW)
    assert engines.calls[0] == ("fence", "spot-aws", 9)
    assert engines.replicas["spot-aws"].role is Role.FENCED
    assert ("phase", "spot-aws", 9) not in engines.calls

    live = RecordingEngines({"spot-gcp": status("spot-gcp", Role.STANDBY, 5),
                             "spot-azure": status("spot-azure", Role.STANDBY, 5),
                             "spot-aws": status("spot-aws", Role.PRIMARY, 5)})
    assert driver(topology, live).halt_everywhere(engine, 9, "test", NOW)
    assert live.calls[0] == ("phase", "spot-aws", 9), "the primary is halted before any standby is stamped"
    assert live.replicas["spot-aws"].role is Role.PRIMARY and live.replicas["spot-aws"].phase is Phase.HALTED
