"""Automatic rejoin (`policy.auto_rejoin`): the leader rebuilds a replica that needs it, with `failover rejoin`'s
own driver, once per cycle at most, never while a human or a runbook could be moving the primary.

Why in the leader's cycle and stepped across cycles, not one blocking call: a rejoin of a big journal takes seconds
to minutes, and the cycle must keep probing and deciding meanwhile; `failover check` (cron) is a new process every
minute, so a thread would die with it. The work happens on the replica anyway (`POST /v1/rejoin` answers at once,
and the replica resumes its rejoin after a kill), so a cycle only starts one (`Rejoin.plan`, then `Rejoin.run` with
no time to wait) and later cycles follow it (`GET /v1/rejoin`), finishing it through `Rejoin.run` again when the
replica says done and acknowledges: that run finds the same rejoin (never starts it over), records the archived
tail in the incident, and audits `rejoin.done`, which the incident report reads. What a leader started is kept in
the store's `auto_rejoin` book (`store.auto_rejoin`), so a new leader, or the next cron run, follows it; a leader
that died between starting one and writing the book leaves a rejoin the next one finds running and adopts.

The decision is pure and shared with the simulator (`sim/rejoiner.py`):
- *needs a rebuild* (`need_of`): fenced; claiming primary while another replica is the engine's primary (deposed);
  a standby whose replication stopped on a journal that is no prefix of its primary's (diverged, its `error`);
- *when* (`track`): `after` seconds after a cycle first saw it needing one (the book keeps that time), then every
  `retry` after a refusal or a failed rejoin; a replica seen not needing one any more leaves the book (an operator
  rejoined it); one that does not answer keeps its place and its clock;
- *whether now* (`choose`): never while its engine has an open incident (a failover running, proposed, or handed to
  a human: the human decides), never onto a quarantined site, never while the replica or its site is judged anything
  but healthy, never without a current primary; at most `max_concurrent` rejoins at once, one per engine (each
  copies the primary's journal: two at once would double the primary's load while it alone serves the trading).

Each attempt is audited (`auto_rejoin.start`, `.done`, `.failed`, `.refused`, with the rejoin driver's own
`rejoin.*` entries between them) and announced; the first failure of a replica, or a new reason, pages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from orchestrator.core.errors import FailoverError
from orchestrator.core.health import Assessment
from orchestrator.core.model import AutoRejoin, Engine, ReplicaStatus, Role, Topology, Verdict
from orchestrator.core.quarantine import quarantined_sites
from orchestrator.drivers.events import Event, EventKind, Notifier
from orchestrator.drivers.modes import ControllerSettings
from orchestrator.drivers.rejoin import Rejoin, RejoinPlan
from orchestrator.drivers.state import load_engine
from orchestrator.engine.base import EngineControl
from orchestrator.store.auto_rejoin import REJOINING, WAITING, Pending, auto_rejoin_book, save_auto_rejoin
from orchestrator.store.base import StateStore

__all__ = ["AutoRejoin", "AutoRejoinOutcome", "Facts", "Leader", "Need", "choose", "need_of", "policy_of",
           "run_auto_rejoin", "track"]

ACTIVE = ("started", "copying")  # a rejoin record's states while the replica works
ERROR_CHARS = 300  # of an engine's error kept in the book and the audit


class Need(StrEnum):
    FENCED = "fenced"
    DEPOSED = "deposed"  # claims primary while another replica is the engine's primary
    DIVERGED = "diverged"  # a standby whose journal is no prefix of its primary's


def policy_of(topology: Topology) -> AutoRejoin:
    """The topology's `policy.auto_rejoin`."""
    return topology.policy.auto_rejoin


# ---- the decision (pure) -------------------------------------------------------------------------------------


def need_of(name: str, status: ReplicaStatus | None, primary: str, *, diverged: bool | None = None) -> Need | None:
    """Whether replica `name` needs a rebuild, from its status and the engine's primary; None when it does not or
    cannot be seen. `diverged` overrides the status's `error` (the simulator knows the journals themselves)."""
    if name == primary or status is None:
        return None
    if status.role is Role.PRIMARY:
        return Need.DEPOSED
    if status.role is Role.FENCED:
        return Need.FENCED
    if diverged if diverged is not None else status.error is not None:
        return Need.DIVERGED
    return None


def track(book: Mapping[str, Pending], observed: Mapping[str, tuple[str, Need | None]], now: float,
          policy: AutoRejoin) -> dict[str, Pending]:
    """The book after one look (`observed`: replica -> (engine, its need), for the replicas seen this cycle): a
    replica newly needing a rebuild is due `after` from now; one seen fine leaves the book; one whose need changed
    (deposed, then fenced) keeps its clock; one unseen, or rejoining (its record decides), is left as it is."""
    after = dict(book)
    for name, (engine, need) in observed.items():
        entry = book.get(name)
        if entry is not None and entry.state == REJOINING:
            continue
        if need is None:
            after.pop(name, None)
        elif entry is None:
            after[name] = Pending(engine, name, need.value, since=now, due=now + policy.after)
        elif entry.need != need.value:
            after[name] = replace(entry, need=need.value)
    return after


@dataclass(frozen=True, slots=True)
class Facts:
    """What gates an attempt, read once per cycle."""

    sites: Mapping[str, str]  # replica -> its site
    incidents: Mapping[str, str] = field(default_factory=dict)  # engine -> its open incident, in words
    quarantined: frozenset[str] = frozenset()  # sites
    unhealthy: Mapping[str, str] = field(default_factory=dict)  # subject -> its verdict, when not healthy
    answering: frozenset[str] = frozenset()  # replicas whose status was read this cycle
    no_primary: Mapping[str, str] = field(default_factory=dict)  # engine -> why it has no current primary


def blocker(entry: Pending, facts: Facts) -> str | None:
    """Why `entry`'s replica may not be rebuilt now, in words; None when nothing stands in the way."""
    site = facts.sites.get(entry.replica, "")
    if entry.engine in facts.incidents:
        return facts.incidents[entry.engine]
    if site in facts.quarantined:
        return f"site {site} is in quarantine"
    for subject in (site, entry.replica):
        if subject in facts.unhealthy:
            return f"{subject} is {facts.unhealthy[subject]}"
    if entry.replica not in facts.answering:
        return f"{entry.replica} does not answer"
    if entry.engine in facts.no_primary:
        return facts.no_primary[entry.engine]
    return None


def choose(book: Mapping[str, Pending], facts: Facts, now: float,
           policy: AutoRejoin) -> tuple[list[str], dict[str, str]]:
    """The replicas to try now (oldest need first), and why each other waiting one waits. A rejoin running counts
    against `max_concurrent` and holds back the other replicas of its engine."""
    busy = {entry.engine for entry in book.values() if entry.state == REJOINING}
    slots = policy.max_concurrent - sum(1 for entry in book.values() if entry.state == REJOINING)
    chosen: list[str] = []
    waiting: dict[str, str] = {}
    for entry in sorted(book.values(), key=lambda e: (e.since, e.replica)):
        if entry.state != WAITING:
            continue
        why = blocker(entry, facts)
        if why is None and entry.due > now:
            continue
        if why is None and entry.engine in busy:
            why = f"another replica of {entry.engine} is being rebuilt"
        if why is None and slots <= 0:
            why = f"{policy.max_concurrent} rejoin(s) running (policy.auto_rejoin.max_concurrent)"
        if why is not None:
            waiting[entry.replica] = why
            continue
        chosen.append(entry.replica)
        busy.add(entry.engine)
        slots -= 1
    return chosen, waiting


# ---- the cycle's work (IO) -------------------------------------------------------------------------------------


class Leader(Protocol):
    """What the leader's controller has this cycle (`drivers.controller.Controller` has all of it)."""

    @property
    def statuses(self) -> Mapping[str, ReplicaStatus]: ...
    @property
    def engines(self) -> EngineControl: ...
    @property
    def notifier(self) -> Notifier: ...
    @property
    def options(self) -> ControllerSettings: ...
    @property
    def clock(self) -> Callable[[], float]: ...


@dataclass(frozen=True, slots=True)
class AutoRejoinOutcome:
    """What one look did; `message` is empty when it did nothing."""

    started: tuple[tuple[str, str], ...] = ()  # (replica, primary)
    done: tuple[tuple[str, bool], ...] = ()  # (replica, acknowledging)
    failed: tuple[tuple[str, str], ...] = ()  # (replica, why): refused by the driver, or the rejoin failed
    waiting: tuple[tuple[str, str], ...] = ()  # (replica, why) for the due ones held back

    @property
    def acted(self) -> bool:
        return bool(self.started or self.done or self.failed)

    @property
    def message(self) -> str:
        parts = [f"rejoining {r} to {p}" for r, p in self.started]
        parts += [f"rejoined {r}" + ("" if ack else " (not acknowledging yet)") for r, ack in self.done]
        parts += [f"rejoin of {r} failed: {why}" for r, why in self.failed]
        return "; ".join(parts)


@dataclass
class _Cycle:
    store: StateStore
    topology: Topology
    leader: Leader
    policy: AutoRejoin
    now: float
    outcome: AutoRejoinOutcome = field(default_factory=AutoRejoinOutcome)

    @property
    def actor(self) -> str:
        return self.leader.options.identity

    def driver(self) -> Rejoin:
        return Rejoin(self.topology, self.store, self.leader.engines, actor=self.actor, clock=self.leader.clock)

    def engine_of(self, entry: Pending) -> Engine:
        return self.topology.engines[entry.engine]

    def audit(self, action: str, entry: Pending, **detail: Any) -> None:
        """At the moment it happens (the rejoin driver's own entries, between ours, are timed so too)."""
        self.store.audit(self.actor, action, {"engine": entry.engine, "replica": entry.replica, "need": entry.need,
                                              "since": entry.since, "attempt": entry.attempts, **detail},
                         self.leader.clock())

    def tell(self, kind: EventKind, entry: Pending, message: str, **detail: Any) -> None:
        self.leader.notifier.publish(Event(self.leader.clock(), kind, entry.engine, f"[{entry.engine}] {message}",
                                           {"replica": entry.replica, "automatic": True, **detail}))


def run_auto_rejoin(store: StateStore, topology: Topology, leader: Leader, verdicts: Mapping[str, Assessment],
                    now: float, policy: AutoRejoin | None = None) -> AutoRejoinOutcome:
    """Follow the rejoins under way, note the replicas that need one, start those due. Call only as the leader,
    once per cycle (`Controller.run_cycle`, next to `run_due`: an incident opened earlier in the cycle holds it back).
    `policy`: the topology's by default (`policy_of`)."""
    policy = policy or policy_of(topology)
    if not policy.enabled:
        return AutoRejoinOutcome()
    book, _ = auto_rejoin_book(store)
    cycle = _Cycle(store, topology, leader, policy, now)
    engines = _engines_to_read(topology, leader.statuses, book)
    if not engines:
        return AutoRejoinOutcome()
    primaries = {name: load_engine(store, topology, name).primary for name in engines}
    incidents = {i.engine: f"incident {i.id} of {i.engine} is {i.status.value}"
                 for i in store.incidents(open_only=True)}
    after = {name: entry for name, entry in book.items() if _configured(topology, entry)}
    for name, entry in list(after.items()):
        if entry.state == REJOINING:
            followed = _follow(cycle, entry, incidents, primaries[entry.engine])
            if followed is None:
                del after[name]
            else:
                after[name] = followed
    observed = {replica.name: (name, need_of(replica.name, leader.statuses.get(replica.name), primaries[name]))
                for name in engines for replica in topology.engines[name].replicas
                if replica.name in leader.statuses}
    after = track(after, observed, now, policy)
    facts = _facts(store, topology, leader.statuses, verdicts, primaries, incidents, now)
    chosen, waiting = choose(after, facts, now, policy)
    after = {name: replace(entry, blocked=waiting.get(name)) if entry.state == WAITING else entry
             for name, entry in after.items()}
    for name in chosen:
        attempted = _attempt(cycle, after[name])
        if attempted is None:
            del after[name]
        else:
            after[name] = attempted
    changes = {name: after.get(name) for name in set(book) | set(after) if book.get(name) != after.get(name)}
    if changes:
        save_auto_rejoin(store, changes)
    due = tuple((name, why) for name, why in sorted(waiting.items()) if after[name].due <= now)
    return replace(cycle.outcome, waiting=due)


def _configured(topology: Topology, entry: Pending) -> bool:
    engine = topology.engines.get(entry.engine)
    return engine is not None and entry.replica in {r.name for r in engine.replicas}


@dataclass(frozen=True, slots=True)
class _Index:
    """Where each configured replica is: its engine and site, and each engine's configured primary."""

    engine_of: Mapping[str, str]
    site_of: Mapping[str, str]
    configured_primary: Mapping[str, str]


_INDEXED: list[tuple[Topology, _Index]] = []  # the last topology's index: a daemon's cycles share one topology


def _index(topology: Topology) -> _Index:
    if _INDEXED and _INDEXED[0][0] is topology:
        return _INDEXED[0][1]
    index = _Index({r.name: e.name for e in topology.engines.values() for r in e.replicas},
                   {r.name: r.site for e in topology.engines.values() for r in e.replicas},
                   {e.name: e.primary for e in topology.engines.values()})
    _INDEXED[:] = [(topology, index)]
    return index


def _engines_to_read(topology: Topology, statuses: Mapping[str, ReplicaStatus],
                     book: Mapping[str, Pending]) -> list[str]:
    """Engines worth a look this cycle: one the book tracks, or one with a replica that is fenced, diverged, or
    primary other than the configured one (after a failover: its record says whether it is the primary now). A
    cycle of 10,000 healthy engines pays one pass over their statuses and one store read."""
    index = _index(topology)
    wanted = {entry.engine for entry in book.values()}
    for name, status in statuses.items():
        if status.role is Role.STANDBY and status.error is None:
            continue
        engine = index.engine_of.get(name)
        if engine is not None and (status.role is not Role.PRIMARY or status.error is not None
                                   or index.configured_primary[engine] != name):
            wanted.add(engine)
    return sorted(name for name in wanted if name in topology.engines)


def _facts(store: StateStore, topology: Topology, statuses: Mapping[str, ReplicaStatus],
           verdicts: Mapping[str, Assessment], primaries: Mapping[str, str], incidents: Mapping[str, str],
           now: float) -> Facts:
    no_primary = {}
    for engine, primary in primaries.items():
        status = statuses.get(primary)
        if status is None or status.role is not Role.PRIMARY:
            said = "does not answer" if status is None else f"answers as {status.role.value}"
            no_primary[engine] = f"no current primary: {primary} {said}"
    return Facts(
        sites=_index(topology).site_of,
        incidents=incidents,
        quarantined=quarantined_sites(store.quarantines(), now, topology.policy.quarantine),
        unhealthy={s: a.verdict.value for s, a in verdicts.items() if a.verdict is not Verdict.HEALTHY},
        answering=frozenset(statuses), no_primary=no_primary)


def _attempt(cycle: _Cycle, entry: Pending) -> Pending | None:
    """Start a rejoin of `entry`'s replica (or adopt one already running on it): the entry, rejoining or waiting
    for its retry (None: done already)."""
    entry = replace(entry, attempts=entry.attempts + 1)
    target = cycle.engine_of(entry).replica(entry.replica)
    engines = cycle.leader.engines
    try:
        record = engines.rejoin_status(target)
    except FailoverError as error:
        return _failed(cycle, entry, "auto_rejoin.refused", _line(error))
    if record.get("state") in ACTIVE:  # started by a leader that died before writing the book, or by an operator
        return _adopt(cycle, entry, record)
    driver = cycle.driver()
    try:
        plan = driver.plan(entry.engine, entry.replica)
    except FailoverError as error:
        return _failed(cycle, entry, "auto_rejoin.refused", _line(error))
    cycle.audit("auto_rejoin.start", entry, primary=plan.primary, epoch=plan.epoch,
                waited=round(cycle.now - entry.since, 3))
    try:
        outcome = driver.run(plan, timeout=0.0)
    except FailoverError as error:
        return _failed(cycle, entry, "auto_rejoin.failed", _line(error))
    if outcome.state == "failed":
        return _failed(cycle, entry, "auto_rejoin.failed", outcome.error or "the rejoin failed")
    started = replace(entry, state=REJOINING, primary=plan.primary, primary_url=plan.primary_url,
                      epoch=plan.epoch, started_at=cycle.now, error=None)
    cycle.tell(EventKind.INCIDENT, entry, f"rebuilding {entry.replica} ({entry.need}) as a standby of "
                                          f"{plan.primary} at epoch {plan.epoch} (automatic rejoin)",
               primary=plan.primary, epoch=plan.epoch)
    cycle.outcome = replace(cycle.outcome, started=(*cycle.outcome.started, (entry.replica, plan.primary)))
    if outcome.state == "done":  # finished within the call (a tiny journal): the driver audited rejoin.done
        _finished(cycle, started, outcome.acknowledging)
        return None
    return started


def _adopt(cycle: _Cycle, entry: Pending, record: Mapping[str, Any]) -> Pending:
    url = str(record.get("primary") or "").rstrip("/")
    primary = next((r.name for r in cycle.engine_of(entry).replicas if r.control_url.rstrip("/") == url), url)
    epoch = int(record.get("epoch") or 0)
    cycle.audit("auto_rejoin.start", entry, primary=primary, epoch=epoch, adopted=True,
                waited=round(cycle.now - entry.since, 3))
    cycle.tell(EventKind.INCIDENT, entry, f"following the rejoin of {entry.replica} to {primary} already under way "
                                          "(automatic rejoin)", primary=primary, epoch=epoch)
    cycle.outcome = replace(cycle.outcome, started=(*cycle.outcome.started, (entry.replica, primary)))
    return replace(entry, state=REJOINING, primary=primary, primary_url=url, epoch=epoch, started_at=cycle.now,
                   error=None)


def _follow(cycle: _Cycle, entry: Pending, incidents: Mapping[str, str], primary: str) -> Pending | None:
    """A rejoin under way: still running (the entry as it is), done (None: finished and dropped), or failed or gone
    (waiting for its retry). One done to a primary deposed since is not finished to it: the next look decides."""
    target = cycle.engine_of(entry).replica(entry.replica)
    try:
        record = cycle.leader.engines.rejoin_status(target)
    except FailoverError:
        return entry  # the replica resumes its rejoin when it is back: ask again next cycle
    state = record.get("state")
    ours = (record.get("epoch"), str(record.get("primary") or "").rstrip("/")) == (
        entry.epoch, (entry.primary_url or "").rstrip("/"))
    if state in ACTIVE:
        return entry
    if state == "done" and ours and primary != entry.primary:
        return replace(entry, state=WAITING, due=cycle.now, error=f"rejoined to {entry.primary}, no longer the "
                                                                  f"primary of {entry.engine} ({primary} is)")
    if state == "done" and ours:
        status = cycle.leader.statuses.get(entry.replica)
        acknowledging = _acknowledging(status, entry.primary_url or "")
        started = entry.started_at if entry.started_at is not None else cycle.now
        if entry.engine in incidents or (not acknowledging and cycle.now - started < cycle.policy.retry):
            return entry  # finish once it fetches from its primary (or has had `retry` to), never mid-incident
        return _finish(cycle, entry)
    if state == "failed" and ours:
        return _failed(cycle, replace(entry, state=WAITING), "auto_rejoin.failed",
                       str(record.get("error") or "the rejoin failed"))
    # no record, or one that is not ours and not running: our rejoin is gone; the next look decides afresh
    return replace(entry, state=WAITING, due=cycle.now, error=f"rejoin record of {entry.replica}: {state}")


def _acknowledging(status: ReplicaStatus | None, primary_url: str) -> bool:
    return (status is not None and status.role is Role.STANDBY and status.primary_contact_age is not None
            and (status.following or "").rstrip("/") == primary_url.rstrip("/"))


def _finish(cycle: _Cycle, entry: Pending) -> Pending | None:
    """The rejoin is done on the replica: run the driver on it once more (it finds the same rejoin, checks that the
    replica acknowledges, records any archived tail in the incident and audits `rejoin.done`)."""
    assert entry.primary is not None and entry.primary_url is not None and entry.epoch is not None
    plan = RejoinPlan(entry.engine, entry.replica, entry.primary, entry.primary_url, entry.epoch)
    try:
        outcome = cycle.driver().run(plan, timeout=0.0)
    except FailoverError:
        return entry  # asked again next cycle
    if outcome.state != "done":  # rejoined elsewhere meanwhile: the next look decides afresh
        return replace(entry, state=WAITING, due=cycle.now, error=f"rejoin record of {entry.replica}: "
                                                                    f"{outcome.state}")
    _finished(cycle, entry, outcome.acknowledging,
              archived=sum(int(tail.get("count") or 0) for tail in outcome.tails), incident=outcome.incident)
    return None


def _finished(cycle: _Cycle, entry: Pending, acknowledging: bool, **detail: Any) -> None:
    waited = round(cycle.now - entry.since, 3)
    cycle.audit("auto_rejoin.done", entry, primary=entry.primary, epoch=entry.epoch, acknowledging=acknowledging,
                seconds=round(cycle.now - (entry.started_at or cycle.now), 3), needed_for=waited, **detail)
    cycle.tell(EventKind.INCIDENT if acknowledging else EventKind.PAGE, entry,
               f"rebuilt {entry.replica} as a standby of {entry.primary} (automatic rejoin, "
               f"{'acknowledging' if acknowledging else 'NOT acknowledging yet: check its replication'})",
               primary=entry.primary, acknowledging=acknowledging)
    cycle.outcome = replace(cycle.outcome, done=(*cycle.outcome.done, (entry.replica, acknowledging)))


def _failed(cycle: _Cycle, entry: Pending, action: str, why: str) -> Pending:
    """An attempt that did not start or a rejoin that failed: audited, announced (paged the first time, or for a
    new reason), and tried again after `retry`."""
    why = why[:ERROR_CHARS]
    cycle.audit(action, entry, error=why, retry_at=cycle.now + cycle.policy.retry)
    first = entry.attempts <= 1 or why != entry.error
    verb = "refused" if action.endswith("refused") else "failed"
    cycle.tell(EventKind.PAGE if first else EventKind.ACTION, entry,
               f"automatic rejoin of {entry.replica} {verb} (attempt {entry.attempts}): {why}; next try in "
               f"{cycle.policy.retry:g}s", error=why)
    cycle.outcome = replace(cycle.outcome, failed=(*cycle.outcome.failed, (entry.replica, why)))
    return replace(entry, state=WAITING, due=cycle.now + cycle.policy.retry, error=why, primary=None,
                   primary_url=None, epoch=None, started_at=None)


def _line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
