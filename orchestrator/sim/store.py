"""`SimStore`: the in-memory store, counting the writes a controller cycle makes.

Why: the event-driven runner (`stepping.py`) may account for a tick without running the controller only when the
last cycle changed nothing outside the controller's own memory. Events and engine calls are counted where they
are made (the simulation's event log and engine control); the store's writes are counted here, at the backend's
hooks (`orchestrator.store.base`), so that every public method that writes is covered, whoever calls it. Renewing
the leader lease is the one write every cycle makes; it changes only the lease's expiry, which no skipped cycle
would read (a simulation has one orchestrator, and nobody competes for the lease), so it is not counted.

It also keeps the quarantine book's history (`spells`), which the store itself does not: the report says how long
each site spent in quarantine. A spell ends when the site has been healthy for the whole quarantine (the end is
`healthy_since + quarantine`, not the cycle that noticed it), or when it is released by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.core.quarantine import Quarantine
from orchestrator.store.memory import MemoryStore

WRITES = ("_acquire_lease", "_append_audit", "_append_journal", "_claim_notifications", "_delete_notifications",
          "_delete_observations", "_insert_incident", "_insert_notification", "_insert_observations",
          "_put_heartbeat", "_put_state", "_release_lease", "_update_incident", "_update_notification")
"""The store hooks that change something; the others read (`_select_*`, `_load_audit`...), or renew the lease."""


@dataclass
class Spell:
    """One site's time in quarantine: from its first `down` verdict to its end (None: still in quarantine)."""

    site: str
    began: float
    ended: float | None = None
    relapses: int = 0
    released: bool = False


class SimStore(MemoryStore):
    writes = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spells: list[Spell] = []
        self._observed: tuple[float, float] | None = None  # (now, duration) of the observation under way

    def observe_quarantines(self, verdicts: Mapping[str, tuple[str, str]], now: float,
                            duration: float) -> dict[str, Quarantine]:
        self._observed = (now, duration)
        try:
            return super().observe_quarantines(verdicts, now, duration)
        finally:
            self._observed = None

    def _change_quarantines(self, change: Callable[[dict[str, Quarantine]], dict[str, Quarantine]]) \
            -> dict[str, Quarantine]:
        seen: list[tuple[dict[str, Quarantine], dict[str, Quarantine]]] = []

        def watched(book: dict[str, Quarantine]) -> dict[str, Quarantine]:
            after = change(book)
            seen[:] = [(book, after)]
            return after

        result = super()._change_quarantines(watched)
        if seen:
            self._note(*seen[-1])
        return result

    def _note(self, book: Mapping[str, Quarantine], after: Mapping[str, Quarantine]) -> None:
        now, duration = self._observed if self._observed is not None else (self._clock(), None)
        open_ = {spell.site: spell for spell in self.spells if spell.ended is None}
        for site, quarantine in sorted(after.items()):
            spell = open_.get(site)
            if spell is None:
                self.spells.append(Spell(site, quarantine.down_at, relapses=quarantine.relapses))
            else:
                spell.relapses = quarantine.relapses
        for site, quarantine in sorted(book.items()):
            spell = open_.get(site)
            if site in after or spell is None:
                continue
            ends = quarantine.ends_at(duration) if duration is not None else None
            spell.ended = ends if ends is not None and ends <= now else now
            spell.released = duration is None


def _counted(name: str) -> Callable[..., Any]:
    hook = getattr(MemoryStore, name)

    def counted(self: SimStore, *args: Any, **kwargs: Any) -> Any:
        self.writes += 1
        return hook(self, *args, **kwargs)

    counted.__name__ = counted.__qualname__ = name
    return counted


for _name in WRITES:
    setattr(SimStore, _name, _counted(_name))
