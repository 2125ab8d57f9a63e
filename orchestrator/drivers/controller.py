"""One cycle of the controller: probe, evaluate, decide, act or propose (patroni's `run_cycle`, on our core).

The same `Controller` runs in the daemon (wall clock, in-memory health), in `failover check` (health carried in
the store between cron runs), in the simulator (virtual clock, in-memory store) and in drills. Only the leader
acts; a follower still probes and records what it sees, so every orchestrator replica is also a vantage point.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from orchestrator.core import health as hl
from orchestrator.core.decide import Action, ActionKind, EngineSnapshot, IncidentView, decide, primary_unserving
from orchestrator.core.errors import FailoverError, LeaseLost, StoreError
from orchestrator.core.health import Assessment, HealthSettings, HealthState
from orchestrator.core.model import Observation, Phase, ReplicaStatus, Role, Status, Topology
from orchestrator.core.runbook import Plan
from orchestrator.drivers.events import Event, EventKind, Notifier
from orchestrator.drivers.probe import Prober
from orchestrator.drivers.runbook import Progress, RunbookDriver, address_of, plan_detail
from orchestrator.drivers.state import (
    HEALTH_KEY,
    EngineRecord,
    health_from_json,
    health_to_json,
    load_engine,
    next_epoch,
)
from orchestrator.drivers.status import write_verdicts
from orchestrator.engine.base import EngineControl
from orchestrator.store.base import Conflict, StateStore
from orchestrator.store.records import IncidentStatus, Lease
from providers.base import CloudProvider
from providers.traffic import TrafficRouter

LEADER_LEASE = "leader"
LEASE_SAFETY = 0.6  # act for at most this share of the lease TTL after a successful renewal


@dataclass(frozen=True, slots=True)
class CycleResult:
    """What one cycle saw and did; `message` is the sentence logged, printed and asserted on in tests."""

    at: float
    leader: bool
    message: str
    verdicts: Mapping[str, Assessment] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()
    progress: tuple[Progress, ...] = ()
    acted: bool = False
    degraded: bool = False


@dataclass
class ControllerOptions:
    identity: str = "orchestrator"
    lease_ttl: float = 10.0
    persist_observations: bool = True
    carry_health_in_store: bool = False  # cron: each run starts from the last run's hysteresis
    provider_interval: float = 30.0
    remote_observations: bool = False  # HA: read other vantage points' observations from the shared store
    act: bool = True  # False: observe and decide, never act (dry runs)
    observe_only: bool = False  # a probe agent: never takes the lease, only records what it sees
    publish_verdicts: bool = True  # a display copy for `status` and `plan`
    parallel_provider_polls: bool = True  # one slow cloud API must not delay the others (the simulator: False)
    pre_hooks: tuple[str, ...] = ()
    post_hooks: tuple[str, ...] = ()


class Controller:
    def __init__(
        self,
        topology: Topology,
        store: StateStore,
        engines: EngineControl,
        providers: Mapping[str, CloudProvider],
        routers: Mapping[str, TrafficRouter],
        prober: Prober,
        notifier: Notifier,
        clock: Callable[[], float],
        options: ControllerOptions | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topology = topology
        self.store = store
        self.engines = engines
        self.providers = providers
        self.routers = routers
        self.prober = prober
        self.notifier = notifier
        self.clock = clock
        self.options = options or ControllerOptions()
        self.monotonic = monotonic  # measures how long the lease surely holds; the simulator passes its clock
        self.settings = HealthSettings.from_policy(
            topology.policy, topology.probes.interval, self.options.provider_interval
        )
        self.health = HealthState()
        self.lease: Lease | None = None
        self.statuses: dict[str, ReplicaStatus] = {}
        self._last_provider_poll = float("-inf")
        self._last_remote = 0.0
        self._verdicts: dict[str, Assessment] = {}
        self._holding: set[str] = set()
        self._valid_until = 0.0
        self.seq_floor: dict[str, int] = {}  # per engine: the highest journal position a standby was seen holding
        self._engine_of = {r.name: e.name for e in topology.engines.values() for r in e.replicas}
        self._provider_backoff: dict[str, tuple[int, float]] = {}

    # ---- leadership -----------------------------------------------------------------------------------------

    @property
    def token(self) -> int:
        return self.lease.token if self.lease else 0

    def _lead(self) -> bool:
        """Hold the leader lease, or learn that someone else does. Losing it mid-cycle stops us acting."""
        began = self.monotonic()
        try:
            if self.lease is not None:
                self.lease = self.store.renew_lease(self.lease, self.options.lease_ttl)
            else:
                self.lease = self.store.acquire_lease(LEADER_LEASE, self.options.identity, self.options.lease_ttl)
        except (LeaseLost, StoreError):
            self.lease = None
        if self.lease is not None:
            # act only while the lease surely holds: measured from before the renewal, with a margin
            self._valid_until = began + self.options.lease_ttl * LEASE_SAFETY
        return self.lease is not None

    def still_leader(self) -> bool:
        """Checked before every runbook step: a leader that could not renew stops before its lease can lapse."""
        return self.lease is not None and self.monotonic() < self._valid_until

    def release(self) -> None:
        if self.lease is not None:
            try:
                self.store.release_lease(self.lease)
            finally:
                self.lease = None

    # ---- observe --------------------------------------------------------------------------------------------

    def _observe(self, now: float) -> list[Observation]:
        probe = self.prober.probe(now)
        self.statuses = dict(probe.statuses)
        for name, status in probe.statuses.items():
            # what a standby holds is durable somewhere: remember it, even once the standby is lost
            if status.role is not Role.PRIMARY:
                engine = self._engine_of[name]
                self.seq_floor[engine] = max(self.seq_floor.get(engine, 0), status.last_seq)
        observations = list(probe.observations)
        if now - self._last_provider_poll >= self.options.provider_interval:
            self._last_provider_poll = now
            observations.extend(self._provider_observations(now))
        if self.options.persist_observations:
            self.store.record_observations(observations)
        if self.options.remote_observations:
            # other vantage points write late by up to a cycle: read with an overlap (ingest drops repeats)
            own = {o.source for o in observations}
            since = max(self._last_remote, now - 10 * self.topology.probes.interval)
            remote = [o for o in self.store.observations(since - 2 * self.topology.probes.interval)
                      if o.source not in own]
            self._last_remote = now
            observations.extend(remote)
        return observations

    def _provider_observations(self, now: float) -> list[Observation]:
        """Each site's cloud API, except those backing off: an API that fails is asked again only after a
        growing pause (up to a minute), so that a struggling control plane cannot stall every cycle."""
        due = [site for site in self.providers if now >= self._provider_backoff.get(site, (0, 0.0))[1]]

        def poll(site: str) -> list[Observation]:
            instances = {
                r.instance: r.name for e in self.topology.engines.values() for r in e.replicas if r.site == site
            }
            return self.providers[site].observe(instances)

        if self.options.parallel_provider_polls and len(due) > 1:
            with ThreadPoolExecutor(max_workers=len(due), thread_name_prefix="provider-poll") as pool:
                results = list(pool.map(poll, due))  # in site order: the result does not depend on timing
        else:
            results = [poll(site) for site in due]
        found: list[Observation] = []
        for site, observed in zip(due, results, strict=True):
            failures = self._provider_backoff.get(site, (0, 0.0))[0]
            if any(o.status is Status.UNKNOWN and o.detail.startswith("provider API failed") for o in observed):
                pause = min(60.0, self.options.provider_interval * 2 ** failures)
                self._provider_backoff[site] = (failures + 1, now + pause)
            else:
                self._provider_backoff.pop(site, None)
            found.extend(observed)
        return found

    def _assess(self, observations: list[Observation], now: float) -> dict[str, Assessment]:
        if self.options.carry_health_in_store:
            stored = self.store.get_state(HEALTH_KEY)
            self.health = health_from_json(stored[0]) if stored else HealthState()
            for engine, floor in (stored[0].get("seq_floor", {}) if stored else {}).items():
                self.seq_floor[engine] = max(self.seq_floor.get(engine, 0), int(floor))
        self.health = hl.ingest(self.health, observations)
        self.health, verdicts = hl.assess(self.health, now, self.settings)
        for subject, assessment in verdicts.items():
            before = self._verdicts.get(subject)
            if before is None or before.verdict is not assessment.verdict:
                self.notifier.publish(Event(now, EventKind.VERDICT, None, f"{subject}: {assessment.verdict.value}", {
                    "subject": subject, "verdict": assessment.verdict.value,
                    "previous": before.verdict.value if before else None, "reason": assessment.reason,
                }))
        self._verdicts = verdicts
        if self.options.carry_health_in_store and self.lease is not None:
            # only the leader carries hysteresis forward; a concurrent writer's newer state wins
            found = self.store.get_state(HEALTH_KEY)
            with contextlib.suppress(Conflict):
                document = {**health_to_json(self.health), "seq_floor": self.seq_floor}
                self.store.put_state(HEALTH_KEY, document, found[1] if found else None)
        return verdicts

    # ---- decide and act -------------------------------------------------------------------------------------

    def snapshot(self, engine_name: str) -> tuple[EngineSnapshot, EngineRecord]:
        record = load_engine(self.store, self.topology, engine_name)
        incident = self.store.open_incident(engine_name)
        engine = self.topology.engines[engine_name]
        view = IncidentView(incident.id, incident.status.value, incident.target) if incident else None
        statuses = {r.name: self.statuses[r.name] for r in engine.replicas if r.name in self.statuses}
        snap = EngineSnapshot(
            engine=engine, primary=record.primary, phase=record.phase, epoch=record.epoch, statuses=statuses,
            incident=view, last_failover_done_at=record.last_failover_done_at,
            override_interval=record.override_interval, seq_floor=self.seq_floor.get(engine_name, 0),
        )
        return snap, record

    def runbook(self) -> RunbookDriver:
        return RunbookDriver(
            self.topology, self.store, self.engines, self.providers, self.routers, self.notifier, self.clock,
            token=self.token, actor=self.options.identity, pre_hooks=self.options.pre_hooks,
            post_hooks=self.options.post_hooks, guard=self.still_leader,
        )

    def run_cycle(self) -> CycleResult:
        now = self.clock()
        leader = False if self.options.observe_only else self._lead()
        observations = self._observe(now)
        verdicts = self._assess(observations, now)
        if self.options.publish_verdicts and leader:
            write_verdicts(self.store, now, verdicts)
        if not leader:
            holder = self.store.current_lease(LEADER_LEASE)
            who = holder.holder if holder else "nobody"
            return CycleResult(now, False, f"following; the leader is {who}", verdicts)
        snapshots = {name: self.snapshot(name) for name in self.topology.engines}
        actions = decide([snap for snap, _ in snapshots.values()], self.topology, verdicts, now)
        progress: list[Progress] = []
        acted = False
        if self.options.act:
            self._enforce(snapshots, now)
            for action in actions:
                acted |= self._apply(action, snapshots[action.engine][1], now)
            progress = self._advance_running(verdicts)
            acted |= any(p.step is not None for p in progress)
        self._page_holds(actions, now)
        degraded = any(a.verdict.value not in ("healthy",) for a in verdicts.values())
        return CycleResult(now, True, self._message(actions, progress, verdicts), verdicts, tuple(actions),
                           tuple(progress), acted, degraded)

    def _enforce(self, snapshots: Mapping[str, tuple[EngineSnapshot, EngineRecord]], now: float) -> None:
        """Keep what was decided true while a replica comes back from the dark: a replica claiming primary under
        an older epoch than the engine's is fenced on sight, and while an engine waits halted for a human every
        primary that answers is halted again (it may have missed the halt while it was unreachable)."""
        driver: RunbookDriver | None = None
        for name, (snap, record) in snapshots.items():
            engine = self.topology.engines[name]
            for replica_name, status in snap.statuses.items():
                if status.role is Role.PRIMARY and replica_name != record.primary and status.epoch < record.epoch:
                    try:
                        self.engines.fence(engine.replica(replica_name), record.epoch)
                        self._page(now, name, f"[{name}] fenced {replica_name}: it claimed primary under epoch "
                                              f"{status.epoch}, the engine is at {record.epoch}")
                    except FailoverError as error:
                        self._page(now, name, f"[{name}] could not fence stale primary {replica_name}: {error}")
            waiting = snap.incident is not None and snap.incident.status == "needs_human"
            stray = [n for n, s in snap.statuses.items() if s.role is Role.PRIMARY and s.phase is not Phase.HALTED]
            if waiting and (stray or record.phase.phase is not Phase.HALTED):
                driver = driver or self.runbook()
                epoch = max([record.epoch, *(s.epoch for s in snap.statuses.values())])
                driver.halt_everywhere(engine, epoch, "halted while a human decides", now, quiet=True)

    def _page(self, now: float, engine: str, message: str) -> None:
        self.notifier.publish(Event(now, EventKind.PAGE, engine, message))

    def _apply(self, action: Action, record: EngineRecord, now: float) -> bool:
        if action.kind is ActionKind.HOLD:
            return False
        self.notifier.publish(Event(now, EventKind.DETECTION, action.engine, f"[{action.engine}] {action.reason}",
                                    {"primary": action.source}))
        self.notifier.publish(Event(now, EventKind.ACTION, action.engine, f"{action.kind.value}: {action.reason}",
                                    {"kind": action.kind.value, "target": action.target,
                                     "blocked_by": [r.value for r in action.blocked_by]}))
        if action.kind in (ActionKind.FAILOVER, ActionKind.PROPOSE):
            assert action.target is not None and action.source is not None
            self.open_failover(action.engine, action.source, action.target, action.reason, record,
                               proposed=action.kind is ActionKind.PROPOSE)
            return True
        if action.kind is ActionKind.HALT:
            self._halt_for_human(action, record, now)
            return True
        return False

    def open_failover(self, engine_name: str, source: str, target: str, reason: str, record: EngineRecord, *,
                      proposed: bool = False, kind: str = "failover") -> str:
        """Open an incident with its plan; `running` starts the runbook at once, `proposed` waits for approval."""
        now = self.clock()
        engine = self.topology.engines[engine_name]
        seen = max((s.epoch for s in self.statuses.values()), default=0)
        plan = Plan(
            engine=engine_name, source=source, target=target, epoch=next_epoch(record, seen, self.token),
            protection=self.topology.protection.duration, max_lag=self.topology.policy.max_lag_on_failover,
            has_dns=engine.dns is not None and engine_name in self.routers,
            target_address=address_of(engine.replica(target).control_url),
            replicas=tuple(r.name for r in engine.replicas), seq_floor=self.seq_floor.get(engine_name, 0),
        )
        status = IncidentStatus.PROPOSED if proposed else IncidentStatus.RUNNING
        incident = self.store.create_incident(engine_name, kind, reason, now, source=source, target=target,
                                              status=status, detail=plan_detail(plan))
        self.store.audit(self.options.identity, f"incident.{status.value}",
                         {"incident": incident.id, "engine": engine_name, "source": source, "target": target,
                          "epoch": plan.epoch, "reason": reason}, now)
        text = "proposed (approval: manual)" if proposed else "started"
        self.notifier.publish(Event(now, EventKind.PAGE if proposed else EventKind.INCIDENT, engine_name,
                                    f"[{engine_name}] failover {source} -> {target} {text}: {reason} "
                                    f"(incident {incident.id})", {"incident": incident.id}))
        return incident.id

    def _halt_for_human(self, action: Action, record: EngineRecord, now: float) -> None:
        incident = self.store.create_incident(action.engine, "halt", action.reason, now, source=action.source,
                                              status=IncidentStatus.NEEDS_HUMAN,
                                              detail={"blocked_by": [r.value for r in action.blocked_by]})
        engine = self.topology.engines[action.engine]
        seen = max((s.epoch for s in self.statuses.values()), default=0)
        self.runbook().halt_everywhere(engine, next_epoch(record, seen, self.token), "primary lost; no automatic "
                                       "failover allowed", now)
        self.store.audit(self.options.identity, "incident.needs_human",
                         {"incident": incident.id, "reason": action.reason,
                          "blocked_by": [r.value for r in action.blocked_by]}, now)
        self.notifier.publish(Event(now, EventKind.PAGE, action.engine,
                                    f"[{action.engine}] NEEDS A HUMAN: {action.reason} "
                                    f"({', '.join(r.value for r in action.blocked_by)}); halting trading",
                                    {"incident": incident.id}))

    def _advance_running(self, verdicts: Mapping[str, Assessment]) -> list[Progress]:
        progress = []
        driver = self.runbook()
        for engine_name in self.topology.engines:
            incident = self.store.open_incident(engine_name)
            if incident is not None and incident.status is IncidentStatus.RUNNING:
                progress.append(driver.advance(incident.id, verdicts))
        return progress

    def _page_holds(self, actions: list[Action], now: float) -> None:
        holding = {a.engine for a in actions if a.kind is ActionKind.HOLD}
        for action in actions:
            if action.kind is ActionKind.HOLD and action.engine not in self._holding:
                self.notifier.publish(Event(now, EventKind.PAGE, action.engine,
                                            f"[{action.engine}] holding, not failing over: {action.reason}"))
        self._holding = holding

    def _message(self, actions: list[Action], progress: list[Progress], verdicts: Mapping[str, Assessment]) -> str:
        parts = [f"{a.engine}: {a.kind.value} ({a.reason})" for a in actions]
        parts += [f"{p.incident}: {p.status.value} {p.step or ''} {p.message}".strip() for p in progress]
        if not parts:
            unhealthy = sorted(s for s, a in verdicts.items() if a.verdict.value != "healthy")
            return "all healthy" if not unhealthy else f"no action; not healthy: {', '.join(unhealthy)}"
        return "; ".join(parts)

    def primary_problem(self, engine_name: str) -> str | None:
        snap, _ = self.snapshot(engine_name)
        return primary_unserving(snap, self.topology, self._verdicts)

    def describe(self) -> dict[str, Any]:
        return {"leader": self.lease is not None, "token": self.token}
