"""Verdicts → actions, under the safety rules of docs/design.md §4. Pure: `decide(snapshot, verdicts, now)`.

Like patroni's `quorum.py`, this module looks at one immutable snapshot and says what should happen; the driver
applies it and the next cycle rediscovers the world. Every refusal carries the rule that blocked it, so that
`failover plan` can show an operator exactly why the orchestrator holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from orchestrator.core import gray as gr
from orchestrator.core.health import Assessment
from orchestrator.core.model import Approval, Engine, Phase, Replica, ReplicaStatus, Role, Topology, Verdict
from orchestrator.core.phases import PhaseState

UNSERVING = frozenset({Verdict.DOWN, Verdict.FLAPPING, Verdict.CANNOT_COMMIT})
COMMIT_STALL_MIN = 5.0  # seconds an entry may wait for a standby before its primary counts as unable to commit


class ActionKind(StrEnum):
    FAILOVER = "failover"  # start the runbook now
    PROPOSE = "propose"  # approval: manual; an operator must approve
    HALT = "halt"  # stop trading and page a human: the primary is lost and no automatic failover is allowed
    HOLD = "hold"  # do nothing and page a human: we cannot tell (our own network may be the fault)
    PAGE = "page"  # notify a human once: the primary serves but misses its gray objective (core/gray.py)


class Rule(StrEnum):
    """The safety rules of docs/design.md §4, named so refusals can cite them."""

    TARGET_SITE_HEALTHY = "target site must be healthy"
    TARGET_REPLICA_HEALTHY = "target replica must be healthy"
    TARGET_CAUGHT_UP = "target lag must not exceed max_lag_on_failover"
    TARGET_STATUS_KNOWN = "target replica status must be known"
    ONE_IN_FLIGHT = "no failover while one is in flight"
    MIN_INTERVAL = "no automatic failover within min_failover_interval of the last"
    OBSERVER_ISOLATED = "no failover when the orchestrator cannot see most sites"
    NOT_PRIMARY = "target must not be the current primary"
    SUSPECT_UNDECIDED = "a suspect primary left undecided past policy.suspect_timeout needs a human"
    GRAY_PAGE_ONLY = "a degraded primary is switched over only with policy.gray.action: switchover"
    TARGET_NOT_QUARANTINED = "target site must not be in quarantine (failover release SITE ends it by hand)"


@dataclass(frozen=True, slots=True)
class IncidentView:
    id: str
    status: str  # open | proposed | running | needs_human
    target: str | None = None


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """What the controller knows of one engine at the start of a cycle."""

    engine: Engine
    primary: str
    phase: PhaseState = field(default_factory=PhaseState)
    epoch: int = 0
    statuses: Mapping[str, ReplicaStatus] = field(default_factory=dict)  # last known, by replica
    incident: IncidentView | None = None
    last_failover_done_at: float | None = None
    override_interval: bool = False  # an operator lifted min_failover_interval for the next failover
    seq_floor: int = 0  # the highest journal position a standby was ever seen holding (it may be gone since)
    quarantined: frozenset[str] = frozenset()  # replicas on a site in quarantine (core/quarantine.py)


@dataclass(frozen=True, slots=True)
class Candidate:
    replica: str
    eligible: bool
    lag: int | None
    blocked_by: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    engine: str
    reason: str
    source: str | None = None
    target: str | None = None
    blocked_by: tuple[Rule, ...] = ()
    candidates: tuple[Candidate, ...] = ()


def _verdict(verdicts: Mapping[str, Assessment], subject: str) -> Verdict:
    found = verdicts.get(subject)
    return found.verdict if found else Verdict.UNKNOWN


def owed_seq(snapshot: EngineSnapshot) -> int:
    """The journal position a new primary must reach: what any standby holds or was seen holding, and of the
    primary only what it acknowledged (a synchronous primary that cannot replicate holds entries nobody was told
    about; they must not make every standby look behind)."""
    held = (status.acknowledged_seq() if name == snapshot.primary else status.last_seq
            for name, status in snapshot.statuses.items() if name == snapshot.primary or status.role is not Role.FENCED)
    return max(snapshot.seq_floor, *held, 0)


def commit_stall_after(topology: Topology) -> float:
    """How long an entry may wait for a standby's copy before its primary counts as unable to commit: as long as
    an outage takes to detect, and never less than COMMIT_STALL_MIN (a standby's fetch is a long poll)."""
    return max(COMMIT_STALL_MIN, topology.probes.interval * topology.policy.failure_threshold)


def commit_verdict(status: ReplicaStatus, now: float, stall_after: float) -> Assessment | None:
    """`cannot_commit` for a synchronous primary whose oldest unacknowledged entry has waited `stall_after` or more:
    every write it takes is answered 503 and nobody is told, although it answers every probe. None otherwise."""
    age = status.unreplicated_age
    if status.role is not Role.PRIMARY or not status.synchronous or age is None or age < stall_after:
        return None
    held = "?" if status.replicated_seq is None else status.replicated_seq
    return Assessment(
        status.replica, Verdict.CANNOT_COMMIT, now - age, reason=(
            f"no standby on another cloud took its writes for {age:.1f}s (written up to {status.last_seq}, "
            f"replicated up to {held}, {status.replication_timeouts} writes timed out)"),
    )


def primary_unserving(snapshot: EngineSnapshot, topology: Topology, verdicts: Mapping[str, Assessment]) -> str | None:
    """Why the primary cannot serve, or None if it can (or we cannot tell)."""
    primary = snapshot.engine.replica(snapshot.primary)
    for subject in (primary.site, primary.name):
        verdict = _verdict(verdicts, subject)
        if verdict in UNSERVING:
            found = verdicts.get(subject)
            detail = f": {found.reason}" if found and found.reason else ""
            return f"{subject} is {verdict.value}{detail}"
    return None


def rank_candidates(
    snapshot: EngineSnapshot,
    topology: Topology,
    verdicts: Mapping[str, Assessment],
    exclude: Iterable[str] = (),
) -> tuple[Candidate, ...]:
    """Every other replica, eligible ones first in the order we would pick them (docs/design.md §4 target choice)."""
    engine, policy = snapshot.engine, topology.policy
    failed_provider = topology.sites[engine.replica(snapshot.primary).site].provider
    highest = owed_seq(snapshot)
    skip = {snapshot.primary, *exclude}
    ranked: list[tuple[tuple[int, int, int], Candidate]] = []
    for replica in engine.replicas:
        if replica.name in skip:
            continue
        candidate = _candidate(replica, snapshot, verdicts, highest, policy.max_lag_on_failover)
        same_cloud = int(policy.prefer_other_provider and topology.sites[replica.site].provider == failed_provider)
        ranked.append(((0 if candidate.eligible else 1, same_cloud, replica.priority), candidate))
    return tuple(candidate for _, candidate in sorted(ranked, key=lambda pair: pair[0]))


def _candidate(
    replica: Replica, snapshot: EngineSnapshot, verdicts: Mapping[str, Assessment], highest: int, max_lag: int
) -> Candidate:
    blocked: list[Rule] = []
    if _verdict(verdicts, replica.site) is not Verdict.HEALTHY:
        blocked.append(Rule.TARGET_SITE_HEALTHY)
    if _verdict(verdicts, replica.name) is not Verdict.HEALTHY:
        blocked.append(Rule.TARGET_REPLICA_HEALTHY)
    if replica.name in snapshot.quarantined:
        blocked.append(Rule.TARGET_NOT_QUARANTINED)
    status = snapshot.statuses.get(replica.name)
    lag = None if status is None else max(0, highest - status.applied_seq)
    if lag is None:
        blocked.append(Rule.TARGET_STATUS_KNOWN)
    elif lag > max_lag:
        blocked.append(Rule.TARGET_CAUGHT_UP)
    return Candidate(replica.name, not blocked, lag, tuple(blocked))


def interval_blocks(snapshot: EngineSnapshot, topology: Topology, now: float) -> bool:
    done = snapshot.last_failover_done_at
    return (
        done is not None
        and now - done < topology.policy.min_failover_interval
        and not snapshot.override_interval
    )


def decide_engine(
    snapshot: EngineSnapshot, topology: Topology, verdicts: Mapping[str, Assessment], now: float
) -> Action | None:
    """The one action this engine needs now, or None."""
    name = snapshot.engine.name
    incident = snapshot.incident
    if incident is not None and incident.status in ("running", "needs_human", "proposed"):
        return None  # the runbook driver, or a human, owns this engine until the incident closes
    reason = primary_unserving(snapshot, topology, verdicts)
    if reason is None:
        degraded = _degraded(snapshot, topology, verdicts, now)
        return degraded if degraded is not None else _undecided(snapshot, topology, verdicts, now)
    candidates = rank_candidates(snapshot, topology, verdicts)
    if interval_blocks(snapshot, topology, now):
        return Action(
            ActionKind.HALT, name, f"{reason}; a failover completed too recently", snapshot.primary,
            blocked_by=(Rule.MIN_INTERVAL,), candidates=candidates,
        )
    best = candidates[0] if candidates and candidates[0].eligible else None
    if best is None:
        rules = tuple(dict.fromkeys(rule for c in candidates for rule in c.blocked_by))
        return Action(
            ActionKind.HALT, name, f"{reason}; no replica is safe to promote", snapshot.primary,
            blocked_by=rules, candidates=candidates,
        )
    kind = ActionKind.PROPOSE if topology.policy.approval is Approval.MANUAL else ActionKind.FAILOVER
    return Action(kind, name, reason, snapshot.primary, best.replica, candidates=candidates)


def primary_degraded(snapshot: EngineSnapshot, verdicts: Mapping[str, Assessment]) -> Assessment | None:
    """The primary's (or its site's) `degraded` assessment, or None: it serves, but misses its gray objective."""
    primary = snapshot.engine.replica(snapshot.primary)
    for subject in (primary.name, primary.site):
        found = verdicts.get(subject)
        if found is not None and found.verdict.value == gr.DEGRADED:
            return found
    return None


def _degraded(
    snapshot: EngineSnapshot, topology: Topology, verdicts: Mapping[str, Assessment], now: float
) -> Action | None:
    """A degraded primary (docs/gray-failures.md): with `policy.gray.action: switchover`, a planned switchover to
    the best healthy, caught-up standby (the runbook: halt first), when one is eligible and no failover completed
    within `min_failover_interval`; otherwise a page, once, in the cycle the verdict began (its `since`: the
    verdict stays until the objective is met again, and `check` exits 1 on it every run meanwhile)."""
    objective: gr.GrayObjective | None = getattr(topology.policy, "gray", None)  # Policy.gray: core/model.py
    found = primary_degraded(snapshot, verdicts)
    if objective is None or found is None or snapshot.phase.phase is Phase.HALTED:
        return None
    name, what = snapshot.engine.name, f"{found.subject} is degraded: {found.reason}"
    blocked: tuple[Rule, ...] = (Rule.GRAY_PAGE_ONLY,)
    candidates: tuple[Candidate, ...] = ()
    if objective.action is gr.GrayAction.SWITCHOVER:
        candidates = rank_candidates(snapshot, topology, verdicts)
        best = candidates[0] if candidates and candidates[0].eligible else None
        if interval_blocks(snapshot, topology, now):
            blocked = (Rule.MIN_INTERVAL,)
        elif best is None:
            blocked = tuple(dict.fromkeys(rule for c in candidates for rule in c.blocked_by))
        else:
            kind = ActionKind.PROPOSE if topology.policy.approval is Approval.MANUAL else ActionKind.FAILOVER
            return Action(kind, name, f"{what}; planned switchover", snapshot.primary, best.replica,
                          candidates=candidates)
    if found.since != now:
        return None
    return Action(ActionKind.PAGE, name, what, snapshot.primary, blocked_by=blocked, candidates=candidates)


def _undecided(
    snapshot: EngineSnapshot, topology: Topology, verdicts: Mapping[str, Assessment], now: float
) -> Action | None:
    """A primary we cannot call down: hold and page when we cannot see it at all, or when it has been suspect for
    longer than `policy.suspect_timeout` (a dark primary whose cloud API still says "running" would otherwise keep
    trading open on a dead engine, cycle after cycle, in silence)."""
    if snapshot.phase.phase is Phase.HALTED:
        return None
    primary = snapshot.engine.replica(snapshot.primary)
    unknown = [s for s in (primary.site, primary.name) if _verdict(verdicts, s) is Verdict.UNKNOWN]
    if unknown:
        return Action(
            ActionKind.HOLD, snapshot.engine.name,
            f"cannot tell whether {', '.join(unknown)} serves: too few sources see it",
            blocked_by=(Rule.OBSERVER_ISOLATED,),
        )
    limit = topology.policy.suspect_timeout
    for subject in (primary.site, primary.name):
        found = verdicts.get(subject)
        if found is not None and found.verdict is Verdict.SUSPECT and now - found.since > limit:
            failing = f" (failing from {', '.join(found.failing)})" if found.failing else ""
            return Action(
                ActionKind.HOLD, snapshot.engine.name,
                f"{subject} has been suspect for {now - found.since:.0f}s{failing}, past suspect_timeout "
                f"{limit:g}s: too few sources agree it is down to fail over, too many doubt it to trust it",
                snapshot.primary, blocked_by=(Rule.SUSPECT_UNDECIDED,),
            )
    return None


def decide(
    snapshots: Iterable[EngineSnapshot], topology: Topology, verdicts: Mapping[str, Assessment], now: float
) -> list[Action]:
    """One action at most per engine; engines fail over independently."""
    actions = []
    for snapshot in snapshots:
        action = decide_engine(snapshot, topology, verdicts, now)
        if action is not None:
            actions.append(action)
    return actions


def check_target(
    snapshot: EngineSnapshot, topology: Topology, verdicts: Mapping[str, Assessment], target: str, now: float,
    *, manual: bool = False,
) -> tuple[Rule, ...]:
    """The rules a failover to `target` would break now; an operator's switchover (`manual`) is checked with these
    too, except the interval (a human decides) and the lag (the runbook waits for catch-up after the halt)."""
    broken: list[Rule] = []
    if target == snapshot.primary:
        broken.append(Rule.NOT_PRIMARY)
    if snapshot.incident is not None and snapshot.incident.status == "running":
        broken.append(Rule.ONE_IN_FLIGHT)
    if not manual and interval_blocks(snapshot, topology, now):
        broken.append(Rule.MIN_INTERVAL)
    if target != snapshot.primary:
        highest = owed_seq(snapshot)
        replica = snapshot.engine.replica(target)
        rules = _candidate(replica, snapshot, verdicts, highest, topology.policy.max_lag_on_failover).blocked_by
        # An operator's switchover halts first and then waits for the target to catch up (wait_caught_up, within
        # its deadline): lag under a live order stream is expected there, not a reason to refuse.
        broken.extend(rule for rule in rules if not (manual and rule is Rule.TARGET_CAUGHT_UP))
    return tuple(broken)
