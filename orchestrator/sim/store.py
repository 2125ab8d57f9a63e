"""`SimStore`: the in-memory store, counting the writes a controller cycle makes.

Why: the event-driven runner (`stepping.py`) may account for a tick without running the controller only when the
last cycle changed nothing outside the controller's own memory. Events and engine calls are counted where they
are made (the simulation's event log and engine control); the store's writes are counted here, at the backend's
hooks (`orchestrator.store.base`), so that every public method that writes is covered, whoever calls it. Renewing
the leader lease is the one write every cycle makes; it changes only the lease's expiry, which no skipped cycle
would read (a simulation has one orchestrator, and nobody competes for the lease), so it is not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.store.memory import MemoryStore

WRITES = ("_acquire_lease", "_append_audit", "_append_journal", "_claim_notifications", "_delete_notifications",
          "_delete_observations", "_insert_incident", "_insert_notification", "_insert_observations",
          "_put_heartbeat", "_put_state", "_release_lease", "_update_incident", "_update_notification")
"""The store hooks that change something; the others read (`_select_*`, `_load_audit`...), or renew the lease."""


class SimStore(MemoryStore):
    writes = 0


def _counted(name: str) -> Callable[..., Any]:
    hook = getattr(MemoryStore, name)

    def counted(self: SimStore, *args: Any, **kwargs: Any) -> Any:
        self.writes += 1
        return hook(self, *args, **kwargs)

    counted.__name__ = counted.__qualname__ = name
    return counted


for _name in WRITES:
    setattr(SimStore, _name, _counted(_name))
