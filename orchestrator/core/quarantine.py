"""Quarantine: a site that went down is neither a failover target nor a rejoin host until it has been healthy for
`quarantine` without a break (issue 15; the seed's exchange kept returning to a data centre that kept failing).

Rules, all in this file (sans-IO: immutable data in, immutable data out; the caller passes the time):
- a site judged `down` or `flapping` enters quarantine (`down_at`); one already in quarantine relapses: its clock
  stops and the relapse is counted;
- the clock runs only while the site is judged `healthy` (`healthy_since`); any other verdict (suspect, unknown)
  stops it without counting a relapse: a site we cannot see well is not proven healthy;
- the quarantine ends when the site has been healthy for the whole duration, or when an operator releases it
  (`release`, audited by the caller);
- a site with no verdict this cycle is left as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from orchestrator.core.errors import ConfigError
from orchestrator.core.model import Engine, Verdict

DEFAULT_QUARANTINE = 2 * 3600.0  # seconds; `policy.quarantine` in the configuration overrides it
ENTERS = frozenset({Verdict.DOWN.value, Verdict.FLAPPING.value})


@dataclass(frozen=True, slots=True)
class Quarantine:
    site: str
    down_at: float  # when the site was first judged down (the quarantine began)
    healthy_since: float | None = None  # when its current unbroken healthy run began; None while it is not healthy
    relapses: int = 0  # times it went down again while in quarantine (each restarted the clock)
    reason: str = ""  # the verdict's reason when it went down (or last relapsed)
    # healthy at least once since it last went down: going down again is then a relapse, even when the way back
    # down passes through `suspect` (it always does), which stops the clock without being a relapse itself
    recovering: bool = False

    def ends_at(self, duration: float) -> float | None:
        """When it ends if the site stays healthy; None while the clock is stopped."""
        return None if self.healthy_since is None else self.healthy_since + duration

    def active(self, now: float, duration: float) -> bool:
        ends = self.ends_at(duration)
        return ends is None or now < ends

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "down_at": self.down_at, "healthy_since": self.healthy_since,
                "relapses": self.relapses, "reason": self.reason, "recovering": self.recovering}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Quarantine:
        healthy = body.get("healthy_since")
        return cls(str(body["site"]), float(body["down_at"]), None if healthy is None else float(healthy),
                   int(body.get("relapses") or 0), str(body.get("reason") or ""),
                   bool(body.get("recovering", healthy is not None)))


class _Ranked(Protocol):
    """A candidate as `decide.rank_candidates` makes it (not imported: `decide` may import this module)."""

    @property
    def replica(self) -> str: ...


CandidateT = TypeVar("CandidateT", bound=_Ranked)
Book = Mapping[str, Quarantine]  # site -> its quarantine; a site absent is not quarantined


def _next(current: Quarantine | None, site: str, verdict: str, reason: str, now: float,
          duration: float) -> Quarantine | None:
    if verdict in ENTERS:
        if current is None:
            return Quarantine(site, now, None, 0, reason)
        if current.healthy_since is None and not current.recovering:
            return current  # still down: the same spell
        return replace(current, healthy_since=None, relapses=current.relapses + 1, reason=reason, recovering=False)
    if current is None:
        return None
    if verdict != Verdict.HEALTHY.value:
        return replace(current, healthy_since=None) if current.healthy_since is not None else current
    started = current if current.healthy_since is not None else replace(current, healthy_since=now,
                                                                          recovering=True)
    return started if started.active(now, duration) else None


def observe(book: Book, verdicts: Mapping[str, tuple[str, str]], now: float, duration: float) \
        -> dict[str, Quarantine]:
    """The book after one cycle's site verdicts (`site -> (verdict, reason)`); ended quarantines are dropped."""
    after = dict(book)
    for site, (verdict, reason) in verdicts.items():
        found = _next(book.get(site), site, verdict, reason, now, duration)
        if found is None:
            after.pop(site, None)
        else:
            after[site] = found
    return after


def release(book: Book, site: str) -> tuple[dict[str, Quarantine], Quarantine]:
    """The book without `site`'s quarantine, and the quarantine ended; ConfigError if it has none."""
    if site not in book:
        raise ConfigError(f"site {site}: not in quarantine (nothing to release)")
    after = dict(book)
    return after, after.pop(site)


def quarantined_sites(book: Book, now: float, duration: float) -> frozenset[str]:
    """Sites that may be neither a failover target nor a rejoin host now."""
    return frozenset(site for site, quarantine in book.items() if quarantine.active(now, duration))


def may_host(site: str, book: Book, now: float, duration: float) -> bool:
    """Whether a replica may be rebuilt (rejoined) or started on `site` now."""
    return site not in quarantined_sites(book, now, duration)


def quarantined_replicas(engine: Engine, book: Book, now: float, duration: float) -> frozenset[str]:
    """The engine's replicas on quarantined sites: the `exclude` of `decide.rank_candidates`."""
    sites = quarantined_sites(book, now, duration)
    return frozenset(replica.name for replica in engine.replicas if replica.site in sites)


def without_quarantined(candidates: Iterable[CandidateT], engine: Engine, book: Book, now: float,
                        duration: float) -> tuple[CandidateT, ...]:
    """The ranked candidates less those on quarantined sites, order kept: what target selection may pick from."""
    excluded = quarantined_replicas(engine, book, now, duration)
    return tuple(candidate for candidate in candidates if candidate.replica not in excluded)
