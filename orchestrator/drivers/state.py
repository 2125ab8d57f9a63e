"""The controller's own memory of each engine, kept in the store so that cron runs and new leaders share it.

One versioned document per engine (`engine/<name>`), written by compare-and-set: two orchestrators that both
think they may act cannot both move the same engine, because one of the writes loses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.core import gray
from orchestrator.core.health import HealthState, SubjectRecord, Track
from orchestrator.core.model import Phase, Status, Topology, Verdict
from orchestrator.core.phases import PhaseState
from orchestrator.store.base import StateStore

EPOCH_STRIDE = 1_000_000
"""Epochs are `token * EPOCH_STRIDE + n`: a leader with a newer fencing token always outbids an older one."""


@dataclass(frozen=True, slots=True)
class EngineRecord:
    engine: str
    primary: str
    epoch: int = 0
    phase: PhaseState = field(default_factory=PhaseState)
    last_failover_done_at: float | None = None
    override_interval: bool = False
    version: int | None = None  # the store's version of this document; None: never written

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "primary": self.primary,
            "epoch": self.epoch,
            "phase": self.phase.phase.value,
            "phase_since": self.phase.since,
            "phase_until": self.phase.until,
            "last_failover_done_at": self.last_failover_done_at,
            "override_interval": self.override_interval,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any], version: int) -> EngineRecord:
        return cls(
            engine=value["engine"],
            primary=value["primary"],
            epoch=int(value.get("epoch", 0)),
            phase=PhaseState(Phase(value.get("phase", "open")), float(value.get("phase_since", 0.0)),
                             value.get("phase_until")),
            last_failover_done_at=value.get("last_failover_done_at"),
            override_interval=bool(value.get("override_interval", False)),
            version=version,
        )


def engine_key(engine: str) -> str:
    return f"engine/{engine}"


def load_engine(store: StateStore, topology: Topology, engine: str) -> EngineRecord:
    """The stored record, or a fresh one from the configuration (the configured primary, trading open)."""
    found = store.get_state(engine_key(engine))
    if found is None:
        return EngineRecord(engine, topology.engines[engine].primary)
    value, version = found
    return EngineRecord.from_json(value, version)


def save_engine(store: StateStore, record: EngineRecord) -> EngineRecord:
    """Compare-and-set; raises the store's Conflict when another orchestrator wrote first."""
    version = store.put_state(engine_key(record.engine), record.to_json(), record.version)
    return replace(record, version=version)


def next_epoch(record: EngineRecord, seen: int, token: int) -> int:
    """A new epoch above everything this engine has seen, and within our token's range when it is newer."""
    return max(record.epoch, seen, token * EPOCH_STRIDE) + 1


# ---- health state, carried between cron runs -----------------------------------------------------------------

HEALTH_KEY = "health"


def health_to_json(state: HealthState) -> dict[str, Any]:
    return {
        "tracks": [[subject, source, t.status.value, t.at, t.failures, t.oks] for (subject, source), t in
                   state.tracks.items()],
        "subjects": {name: [r.verdict.value, r.since, r.down, list(r.downs)] for name, r in state.subjects.items()},
        "gray": gray.to_json(state.gray),  # the sliding windows: a cron run must not start each one empty
    }


def health_from_json(value: dict[str, Any]) -> HealthState:
    tracks = {
        (subject, source): Track(Status(status), float(at), int(failures), int(oks))
        for subject, source, status, at, failures, oks in value.get("tracks", [])
    }
    subjects = {
        name: SubjectRecord(Verdict(verdict), float(since), bool(down), tuple(float(t) for t in downs))
        for name, (verdict, since, down, downs) in value.get("subjects", {}).items()
    }
    return HealthState(tracks, subjects, gray=gray.from_json(value.get("gray", {})))
