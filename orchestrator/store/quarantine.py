"""Quarantined sites, kept in the store so that every daemon, cron run and operator sees the same book.

The book is one versioned document (`quarantine`), changed only by compare-and-set (`store.documents`), so two
leaders' cycles or a cycle and an operator's release never lose each other's change. The rules (when a site
enters, relapses, ends) are `core.quarantine`'s; this module only says how the book is written down.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from orchestrator.core.quarantine import Quarantine, observe, release
from orchestrator.store.documents import Document, DocumentStore

__all__ = ["QUARANTINE", "QUARANTINE_KEY", "QuarantineStore"]

QUARANTINE_KEY = "quarantine"
QUARANTINE: Document[dict[str, Quarantine]] = Document(
    QUARANTINE_KEY, "quarantine",
    lambda value: {site: Quarantine.from_json(body) for site, body in (value.get("sites") or {}).items()},
    lambda book: {"sites": {site: q.to_json() for site, q in sorted(book.items())}})


class QuarantineStore(DocumentStore):
    """The quarantine book of a store; `StateStore` mixes it in."""

    def quarantines(self) -> dict[str, Quarantine]:
        """Every site in quarantine, ended or not (`Quarantine.active` says which still holds at a time)."""
        return QUARANTINE.read(self)[0]

    def observe_quarantines(self, verdicts: Mapping[str, tuple[str, str]], now: float,
                            duration: float) -> dict[str, Quarantine]:
        """Apply one cycle's site verdicts (`site -> (verdict, reason)`) to the book; returns the book after."""
        return self._change_quarantines(lambda book: observe(book, verdicts, now, duration))

    def release_quarantine(self, site: str, actor: str, now: float, reason: str = "") -> Quarantine:
        """End `site`'s quarantine by hand and audit who did it, when, and what was ended. ConfigError (exit 2)
        if the site is not in quarantine; the audit entry is written only once the release is stored."""
        ended: list[Quarantine] = []

        def change(book: dict[str, Quarantine]) -> dict[str, Quarantine]:
            after, gone = release(book, site)
            ended[:] = [gone]
            return after

        self._change_quarantines(change)
        self.audit(actor, "quarantine.release", {"site": site, "reason": reason, "ended": ended[0].to_json()},
                   now)
        return ended[0]

    def _change_quarantines(self, change: Callable[[dict[str, Quarantine]], dict[str, Quarantine]]) \
            -> dict[str, Quarantine]:
        """Every change of the book goes through here (the simulator's store watches it to count spells)."""
        return QUARANTINE.change(self, change)
