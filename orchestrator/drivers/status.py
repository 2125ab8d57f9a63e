"""What `failover status` shows: the configured engines and what the store remembers of them.

It reads, never probes: an SRE must be able to run it during an incident without adding load or side effects,
and from a host that cannot reach the engines at all.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.config import LoadedConfig
from orchestrator.core.health import Assessment
from orchestrator.core.model import Topology
from orchestrator.core.quarantine import DEFAULT_QUARANTINE, Quarantine
from orchestrator.drivers.state import load_engine
from orchestrator.store.auto_rejoin import Pending, auto_rejoin_book
from orchestrator.store.base import Conflict, StateStore
from orchestrator.store.topology_record import differences, topology_book, with_recorded

VERDICTS_KEY = "verdicts"


@dataclass(frozen=True, slots=True)
class ReplicaLine:
    name: str
    site: str
    provider: str
    region: str
    instance: str
    role: str  # primary | standby, as the controller last knew it
    verdict: str
    site_verdict: str


@dataclass(frozen=True, slots=True)
class EngineLine:
    name: str
    primary: str
    phase: str
    phase_since: float
    phase_until: float | None
    epoch: int
    incident: dict[str, Any] | None
    replicas: list[ReplicaLine] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DaemonLine:
    """What one daemon said of itself in its last heartbeat (its clock, as it sees it against the others)."""

    identity: str
    wall: float  # its own clock when it wrote the beat
    leader: bool
    may_lead: bool
    clock_offset: float | None  # its clock minus the agreeing majority's, by its own estimate
    reason: str


@dataclass(frozen=True, slots=True)
class QuarantineLine:
    """A site that may be neither a failover target nor a rejoin host, and when that ends."""

    site: str
    down_at: float
    healthy_since: float | None  # None: not healthy now, so the clock is stopped
    ends_at: float | None  # when it ends if the site stays healthy; None while the clock is stopped
    relapses: int
    reason: str


@dataclass(frozen=True, slots=True)
class StatusReport:
    config: str
    store: str
    verdicts_at: float | None
    engines: list[EngineLine]
    notifications: dict[str, Any] = field(default_factory=dict)  # the outbox: pending, abandoned, oldest pending
    daemons: list[DaemonLine] = field(default_factory=list)
    quarantines: list[QuarantineLine] = field(default_factory=list)
    quarantine_s: float = DEFAULT_QUARANTINE
    topology_differs: list[str] = field(default_factory=list)  # replicas `failover replace` moved (store vs file)
    planned: list[dict[str, Any]] = field(default_factory=list)  # planned switchovers not started yet (`--at`)
    rebuilds: list[Pending] = field(default_factory=list)  # replicas the automatic rejoin tracks (policy.auto_rejoin)
    replacing: list[str] = field(default_factory=list)  # `failover replace` runs not finished, in words


def quarantine_duration(topology: Topology) -> float:
    """`policy.quarantine` in seconds where the configuration has it, else the default (2 h)."""
    value = getattr(topology.policy, "quarantine", None)
    return DEFAULT_QUARANTINE if value is None else float(value)


def quarantine_lines(book: Mapping[str, Quarantine], now: float, duration: float) -> list[QuarantineLine]:
    """The quarantines still in force at `now`, by site (one that has ended waits for the next cycle to drop it)."""
    return [QuarantineLine(q.site, q.down_at, q.healthy_since, q.ends_at(duration), q.relapses, q.reason)
            for _, q in sorted(book.items()) if q.active(now, duration)]


def read_verdicts(store: StateStore) -> tuple[float | None, dict[str, Any]]:
    found = store.get_state(VERDICTS_KEY)
    if found is None:
        return None, {}
    value = found[0]
    return value.get("at"), dict(value.get("verdicts", {}))


def write_verdicts(store: StateStore, at: float, verdicts: Mapping[str, Assessment]) -> None:
    """Publish the last cycle's verdicts for `status` and `plan` (last writer wins; it is a display copy)."""
    value = {"at": at, "verdicts": {s: {"verdict": a.verdict.value, "since": a.since, "reason": a.reason}
                                    for s, a in verdicts.items()}}
    for _ in range(3):
        found = store.get_state(VERDICTS_KEY)
        try:
            store.put_state(VERDICTS_KEY, value, found[1] if found else None)
            return
        except Conflict:
            continue


def current_topology(configured: Topology, store: StateStore) -> Topology:
    """Where every replica runs now: the configuration file's topology with each replica `failover replace` moved at
    the site, instance and control URL the store recorded for it.

    The one function every command that reads where replicas are goes through (the daemon's and cron's edges in
    `drivers.wiring`, the operator's commands, `rejoin`, `status`), so that a replica replaced at 3 a.m. is probed,
    planned, promoted, halted and shown where it is, by every command alike, while the file stays the operator's to
    update (`differences` says what to copy into it). It lives here, beside `status`, because `status` must stay
    light (no controller, no engine client): every heavier module may import this one.
    """
    return with_recorded(configured, topology_book(store).recorded_replicas())


def gather_status(loaded: LoadedConfig, now: float | None = None) -> StatusReport:
    duration = quarantine_duration(loaded.topology)
    now = time.time() if now is None else now
    with loaded.open_store() as store:
        topology = current_topology(loaded.topology, store)  # each replica where it runs now, not where the file says
        at, verdicts = read_verdicts(store)
        engines = []
        for name, engine in topology.engines.items():
            record = load_engine(store, topology, name)
            incident = store.open_incident(name)
            replicas = [
                ReplicaLine(
                    name=r.name, site=r.site, provider=topology.sites[r.site].provider,
                    region=topology.sites[r.site].region, instance=r.instance,
                    role="primary" if r.name == record.primary else "standby",
                    verdict=str(verdicts.get(r.name, {}).get("verdict", "unknown")),
                    site_verdict=str(verdicts.get(r.site, {}).get("verdict", "unknown")),
                )
                for r in engine.replicas
            ]
            engines.append(EngineLine(
                name=name, primary=record.primary, phase=record.phase.phase.value, phase_since=record.phase.since,
                phase_until=record.phase.until, epoch=record.epoch,
                incident={"id": incident.id, "status": incident.status.value, "kind": incident.kind,
                          "target": incident.target, "reason": incident.reason} if incident else None,
                replicas=replicas,
            ))
        summary = store.outbox_summary()
        notifications = {"pending": summary.pending, "abandoned": summary.abandoned,
                         "oldest_pending_at": summary.oldest_pending_at}
        daemons = [daemon_line(beat.identity, beat.wall, beat.detail) for beat in store.heartbeats()]
        quarantines = quarantine_lines(store.quarantines(), now, duration)
        differs = differences(loaded.topology, topology_book(store).recorded_replicas())
        planned = [{"id": e.id, "engine": e.engine, "target": e.target, "at": e.at, "state": e.state.value,
                    "protection": e.protection} for e in store.schedules() if e.is_open]
        rebuilds = [entry for _, entry in sorted(auto_rejoin_book(store)[0].items())]
        replacing = replacing_lines(topology_book(store).replacements_under_way())
    return StatusReport(str(loaded.path), loaded.store_url, at, engines, notifications, daemons, quarantines,
                        duration, differs, planned, rebuilds, replacing)


def replacing_lines(under_way: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[str]:
    """One line per `failover replace` not finished: where it stands, and for one past its rejoin, which replicas
    still look for the replaced one at its old address (a switchover onto it would not commit until they are told)."""
    lines = []
    for (engine, replica), progress in sorted(under_way.items()):
        again = f"`failover replace {replica} --site {progress.get('site', 'SITE')}` finishes it"
        pending = dict(progress.get("pending") or {})
        if progress.get("state") == "peers" and pending:
            lines.append(f"replace {engine}/{replica}: rejoined on {progress.get('site')}, but "
                         f"{', '.join(sorted(pending))} still look(s) for it at its old address ({again})")
        else:
            lines.append(f"replace {engine}/{replica}: unfinished at {progress.get('state', '?')} on "
                         f"{progress.get('site', '?')} ({again})")
    return lines


def daemon_line(identity: str, wall: float, detail: Mapping[str, Any]) -> DaemonLine:
    offset = detail.get("clock_offset")
    return DaemonLine(identity, wall, bool(detail.get("leader")), bool(detail.get("may_lead", True)),
                      None if offset is None else float(offset), str(detail.get("clock_reason", "")))
