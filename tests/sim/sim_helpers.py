"""Helpers for the simulator's tests (imported as `sim_helpers`, like tests/providers' `provider_helpers`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.core.model import Topology
from orchestrator.sim.faults import Fault
from orchestrator.sim.scenario import Scenario, WorldSettings

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "configs" / "scenarios"
T0 = datetime.fromisoformat("2022-12-18T11:00:00+08:00").timestamp()


def make_scenario(topology: Topology, faults: Sequence[Fault] = (), *, duration: float = 1800.0,
                  world: WorldSettings | None = None, expect: dict[str, Any] | None = None,
                  name: str = "test") -> Scenario:
    return Scenario(name=name, topology=topology, start=T0, duration=duration, faults=tuple(faults),
                    expect=expect or {}, world=world or WorldSettings())
