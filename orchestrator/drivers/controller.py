"""One cycle of the controller: probe, evaluate, decide, act or propose (patroni's `run_cycle`, on our core).

The same `Controller` runs in the daemon (wall clock, in-memory health), in `failover check` (health carried in
the store between cron runs), in the simulator (virtual clock, in-memory store) and in drills. Only the leader
acts; a follower still probes and records what it sees, so every orchestrator replica is also a vantage point.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.core import health as hl
from orchestrator.core import runbook as rb
from orchestrator.core.clocks import Beat, ClockState, ClockVerdict, hear, judge, offsets
from orchestrator.core.decide import (
    Action,
    ActionKind,
    EngineSnapshot,
    IncidentView,
    commit_stall_after,
    commit_verdict,
    decide,
    primary_unserving,
)
from orchestrator.core.errors import FailoverError, LeaseLost, StoreError
from orchestrator.core.health import Assessment, HealthSettings, HealthState
from orchestrator.core.model import Engine, Observation, Phase, ReplicaStatus, Role, Topology, Verdict
from orchestrator.core.quarantine import Quarantine, quarantined_replicas
from orchestrator.drivers.auto_rejoin import run_auto_rejoin
from orchestrator.drivers.events import Event, EventKind, Notifier
from orchestrator.drivers.modes import MODES, ControllerSettings, Mode
from orchestrator.drivers.probe import Prober, probe_source
from orchestrator.drivers.provider_watch import ProviderWatch
from orchestrator.drivers.runbook import Progress, RunbookDriver, new_plan, plan_detail
from orchestrator.drivers.scheduled import run_due
from orchestrator.drivers.state import (
    HEALTH_KEY,
    EngineRecord,
    engine_key,
    health_from_json,
    health_to_json,
    load_engine,
    next_epoch,
)
from orchestrator.drivers.status import write_verdicts
from orchestrator.engine.base import EngineControl
from orchestrator.store.base import Conflict, StateStore
from orchestrator.store.records import Incident, IncidentStatus, Lease
from providers.base import CloudProvider
from providers.traffic import TrafficRouter

if TYPE_CHECKING:  # imported when a controller judges over arrays (`_columnar`): numpy costs a cron run's start
    from orchestrator.core import health_columns as hc

LEADER_LEASE = "leader"
LEASE_SAFETY = 0.6  # act for at most this share of the lease TTL after a successful renewal
REMOTE_BATCH = 20_000  # observations read from the shared store per request
# Subjects (replicas and sites) from which a controller judges health over arrays (core/health_columns.py): the
# same verdicts, at a fixed cost per cycle of some tens of array operations that only pays off with thousands of
# subjects (10,000 engines: ingest and assess from about 200 to a few CPU ms; ten engines: slower than per object).
COLUMNAR_SUBJECTS = 1_000


def _flat(items: list[Observation | hc.Column]) -> list[Observation]:
    """Columns (only a columnar controller's probe rounds hold any) expanded to observation objects, in order."""
    return [o for item in items for o in ((item,) if isinstance(item, Observation) else item.observations())]


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
    needs_human: bool = False  # a runbook needs a human, or cannot move and said so


class ControllerEdges(Protocol):
    """The IO a controller works through (`drivers.wiring.Edges` in production; the simulator's own)."""

    @property
    def store(self) -> StateStore: ...
    @property
    def engines(self) -> EngineControl: ...
    @property
    def providers(self) -> Mapping[str, CloudProvider]: ...
    @property
    def routers(self) -> Mapping[str, TrafficRouter]: ...
    @property
    def prober(self) -> Prober: ...
    @property
    def notifier(self) -> Notifier: ...
    @property
    def clock(self) -> Callable[[], float]: ...


class Controller:
    def __init__(
        self,
        topology: Topology,
        edges: ControllerEdges,
        mode: Mode,
        settings: ControllerSettings | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        columnar: bool | None = None,
    ) -> None:
        self.topology = topology
        self.store = edges.store
        self.engines = edges.engines
        self.providers = edges.providers
        self.routers = edges.routers
        self.prober = edges.prober
        self.notifier = edges.notifier
        self.clock = edges.clock
        self.mode = mode
        self.behaviour = MODES[mode]
        self.options = settings or ControllerSettings()
        self.monotonic = monotonic  # measures how long the lease surely holds; the simulator passes its clock
        self.settings = HealthSettings.from_policy(
            topology.policy, topology.probes.interval, self.options.provider_interval
        )
        self._health = HealthState()
        self._columns = self._columnar(columnar)
        self.lease: Lease | None = None
        self.statuses: dict[str, ReplicaStatus] = {}
        self._highest: tuple[dict[str, ReplicaStatus], int] | None = None  # (statuses, their highest epoch)
        self.provider_watch = ProviderWatch(
            self.providers, self._instances_on, self.options.provider_interval,
            background=self.behaviour.background_threads,
        )
        self._lease_lock = threading.RLock()
        self._keeper: threading.Thread | None = None
        self._keeper_stop = threading.Event()
        self.remote_cursor: int | None = None  # where our reading of the shared observations stands
        self._remote_last: dict[str, float] = {}  # per source, the time we gave its newest observation
        self.remote_heard: dict[str, float] = {}  # per source, when we last read something of it
        self.remote_fresh_start = False  # the first read only set the cursor: nothing heard yet, by design
        self.prober_source = probe_source(self.options.vantage)
        self.clock_state = ClockState()
        self.clock_verdict = ClockVerdict(True, None)
        self._verdicts: dict[str, Assessment] = {}
        self._holding: set[str] = set()
        self._stalled: set[tuple[str, Any]] = set()
        self._archive_tried: set[str] = set()
        self._valid_until = 0.0
        self.seq_floor: dict[str, int] = {}  # per engine: the highest journal position a standby was seen holding
        self._records: dict[str, tuple[tuple[dict[str, Any], int] | None, EngineRecord]] = {}  # see _record
        # per site, the engines with a replica on it; per replica, its site (see _unsettled)
        self._engines_on: dict[str, set[str]] = {}
        for engine in topology.engines.values():
            for replica in engine.replicas:
                self._engines_on.setdefault(replica.site, set()).add(engine.name)
        self._replica_names = frozenset(r.name for e in topology.engines.values() for r in e.replicas)
        self._keys = {name: engine_key(name) for name in topology.engines}  # each engine record's store key
        self._fenced: set[str] = set()  # replicas that answered fenced this cycle (see _observe)
        self._probed = False  # whether `statuses` come from a probe round (see `unreachable`)
        self._engine_of = {r.name: e.name for e in topology.engines.values() for r in e.replicas}

    def _columnar(self, wanted: bool | None) -> hc.ColumnarHealth | None:
        """The columnar evaluator when it applies (`wanted`: None to decide by the number of subjects): not with
        a gray objective, nor when the health state is carried in the store between cron runs (core/health.py)."""
        if self.settings.gray is not None or self.behaviour.carry_health_in_store:
            return None
        subjects = sum(len(e.replicas) for e in self.topology.engines.values()) + len(self.topology.sites)
        if wanted is False or (wanted is None and subjects < COLUMNAR_SUBJECTS):
            return None
        from orchestrator.core import health_columns  # numpy: only for a controller that judges over arrays

        return health_columns.ColumnarHealth(self.settings)

    @property
    def health(self) -> HealthState:
        """The evaluator's memory as `core.health` holds it (with the columnar evaluator, a copy of it)."""
        return self._columns.state() if self._columns is not None else self._health

    @property
    def columnar(self) -> bool:
        return self._columns is not None

    # ---- leadership -----------------------------------------------------------------------------------------

    @property
    def token(self) -> int:
        return self.lease.token if self.lease else 0

    def _lead(self) -> bool:
        """Hold the leader lease, or learn that someone else does. Losing it mid-cycle stops us acting."""
        with self._lease_lock:
            began = self.monotonic()
            try:
                if self.lease is not None:
                    self.lease = self.store.renew_lease(self.lease, self.options.lease_ttl)
                else:
                    self.lease = self.store.acquire_lease(LEADER_LEASE, self.options.identity,
                                                          self.options.lease_ttl)
            except (LeaseLost, StoreError):
                self.lease = None
            if self.lease is not None:
                # act only while the lease surely holds: measured from before the renewal, with a margin
                self._valid_until = began + self.options.lease_ttl * LEASE_SAFETY
                self._start_keeper()
            return self.lease is not None

    def _start_keeper(self) -> None:
        """Leadership must not depend on how long a cycle's work takes: a runbook step waiting on a slow cloud API
        (each call near its budget) outlasted the lease, and every later cycle stopped before the next step
        ("leadership not certain"), for good. So a leader renews on a thread of its own, several times per TTL;
        `still_leader` stays true exactly as long as those renewals succeed."""
        if not self.behaviour.background_threads or (self._keeper is not None and self._keeper.is_alive()):
            return
        self._keeper_stop.clear()
        self._keeper = threading.Thread(target=self._keep_lease, name="lease-keeper", daemon=True)
        self._keeper.start()

    def _keep_lease(self) -> None:
        pause = max(0.05, self.options.lease_ttl * LEASE_SAFETY / 3)
        while not self._keeper_stop.wait(pause):
            with self._lease_lock:
                if self.lease is None:
                    return
                self._lead()

    def _stop_keeper(self) -> None:
        self._keeper_stop.set()
        keeper, self._keeper = self._keeper, None
        if keeper is not None and keeper is not threading.current_thread():
            keeper.join(timeout=5.0)

    def still_leader(self) -> bool:
        """Checked before every runbook step: a leader that could not renew stops before its lease can lapse."""
        return self.lease is not None and self.monotonic() < self._valid_until

    def release(self) -> None:
        self._stop_keeper()
        with self._lease_lock:
            if self.lease is not None:
                try:
                    self.store.release_lease(self.lease)
                finally:
                    self.lease = None
                    self._valid_until = 0.0

    def drop_lease(self) -> None:
        """Forget the lease without telling the store (it cannot be reached): stop acting at once."""
        self._stop_keeper()
        with self._lease_lock:
            self.lease = None
            self._valid_until = 0.0

    # ---- observe --------------------------------------------------------------------------------------------

    def _observe(self, now: float) -> list[Observation | hc.Column]:
        self.provider_watch.start(now)  # the cloud APIs answer while the replicas are probed
        probe = self.prober.probe_columns(now) if self._columns is not None else self.prober.probe(now)
        last, self.statuses = self.statuses, dict(probe.statuses)
        self._probed = True
        standby, fenced = Role.STANDBY, Role.FENCED
        self._fenced = set()
        for name, status in probe.statuses.items():
            # what a standby holds is durable somewhere: remember it, even once the standby is lost. The floor only
            # grows, so a status already folded (the same object as last cycle's: a simulated replica that did not
            # change) is skipped.
            role = status.role
            if role is standby:
                if status.error is None and last.get(name) is not status:  # a diverged journal owes nothing
                    engine = self._engine_of[name]
                    self.seq_floor[engine] = max(self.seq_floor.get(engine, 0), status.last_seq)
            elif role is fenced:  # a fenced journal owes nothing either; `_archive_returned` looks at these
                self._fenced.add(name)
        observations: list[Observation | hc.Column] = [*probe.columns, *probe.observations]
        observations.extend(self.provider_watch.collect(now, self.behaviour.provider_wait))
        if self.behaviour.persist_observations:
            self.store.record_observations(_flat(observations))
        if self.options.remote_observations:
            observations.extend(self._remote(now, {o.source for o in observations}))
        return observations

    def _remote(self, now: float, own: set[str]) -> list[Observation]:
        """What the other vantage points wrote since our last read, judged by when it reached the store, not by
        the writers' clocks: a leader whose clock ran 30 s fast dropped every other vantage point's observations
        as stale and never reached a quorum. Each source's batch is re-timed on our clock so that its newest
        observation is `now`, keeping their spacing (and never going back on a source's previous batch)."""
        if self.remote_cursor is None and self.behaviour.carry_health_in_store:  # cron: where the last run stopped
            stored = self.store.get_state(HEALTH_KEY)
            cursor = stored[0].get("remote_cursor") if stored else None
            self.remote_cursor = int(cursor) if isinstance(cursor, int) else None
        if self.remote_cursor is None:  # from now on: what arrived before we started is history
            self.remote_cursor = self.store.observations_cursor()
            self.remote_fresh_start = True
            return []
        arrived: list[Observation] = []
        while True:
            batch, self.remote_cursor = self.store.observations_after(self.remote_cursor, REMOTE_BATCH)
            arrived.extend(o for o in batch if o.source not in own)
            if len(batch) < REMOTE_BATCH:
                break
        newest: dict[str, float] = {}
        for obs in arrived:
            newest[obs.source] = max(newest.get(obs.source, obs.at), obs.at)
        retimed = []
        for obs in arrived:
            at = max(now - (newest[obs.source] - obs.at), self._remote_last.get(obs.source, float("-inf")) + 1e-3)
            self._remote_last[obs.source] = at
            self.remote_heard[obs.source] = now
            retimed.append(replace(obs, at=at))
        return retimed

    def unheard_vantage_points(self, now: float) -> list[str]:
        """Configured vantage points whose probe agent wrote nothing we read lately: decisions are being made
        without them (every mode reads every source it is configured with, or says which it cannot)."""
        horizon = 10 * self.topology.probes.interval
        own = self.prober_source
        return [vantage for vantage in self.topology.probes.vantage_points
                if vantage != "orchestrator" and probe_source(vantage) != own
                and now - self.remote_heard.get(probe_source(vantage), float("-inf")) > horizon]

    def _instances_on(self, site: str) -> dict[str, str]:
        return {r.instance: r.name for e in self.topology.engines.values() for r in e.replicas if r.site == site}

    def _assess(self, observations: list[Observation | hc.Column], now: float) -> dict[str, Assessment]:
        if self.behaviour.carry_health_in_store:
            stored = self.store.get_state(HEALTH_KEY)
            self._health = health_from_json(stored[0]) if stored else HealthState()
            for engine, floor in (stored[0].get("seq_floor", {}) if stored else {}).items():
                self.seq_floor[engine] = max(self.seq_floor.get(engine, 0), int(floor))
        if self._columns is not None:
            self._columns.ingest(observations)
            verdicts = self._columns.assess(now)
        else:
            self._health = hl.ingest(self._health, _flat(observations))
            self._health, verdicts = hl.assess(self._health, now, self.settings)
        stall_after = commit_stall_after(self.topology)
        for name, status in self.statuses.items():
            if status.unreplicated_age is None:  # commit_verdict's first test, without the call (30,000 a cycle)
                continue
            stalled = commit_verdict(status, now, stall_after)
            if stalled is not None:
                verdicts[name] = stalled
        last = self._verdicts
        for subject, assessment in verdicts.items():
            before = last.get(subject)
            if before is assessment:  # kept from last cycle by the evaluator: the same verdict
                continue
            if before is None or before.verdict is not assessment.verdict:
                self.notifier.publish(Event(now, EventKind.VERDICT, None, f"{subject}: {assessment.verdict.value}", {
                    "subject": subject, "verdict": assessment.verdict.value,
                    "previous": before.verdict.value if before else None, "reason": assessment.reason,
                }))
        self._verdicts = verdicts
        if self.behaviour.carry_health_in_store and self.lease is not None:
            # only the leader carries hysteresis forward; a concurrent writer's newer state wins
            found = self.store.get_state(HEALTH_KEY)
            with contextlib.suppress(Conflict):
                document = {**health_to_json(self.health), "seq_floor": self.seq_floor,
                            "remote_cursor": self.remote_cursor}
                self.store.put_state(HEALTH_KEY, document, found[1] if found else None)
        return verdicts

    # ---- decide and act -------------------------------------------------------------------------------------

    def snapshot(self, engine_name: str, open_incidents: Mapping[str, Incident] | None = None,
                 book: Mapping[str, Quarantine] | None = None,
                 record: EngineRecord | None = None) -> tuple[EngineSnapshot, EngineRecord]:
        """What `decide` needs of one engine. A cycle passes the open incidents and the quarantine book it read
        once for every engine (one store read per cycle, not one per engine), and the engine's record it read."""
        now = self.clock()
        if record is None:
            record = self._record(engine_name)
        incident = (self.store.open_incident(engine_name) if open_incidents is None
                    else open_incidents.get(engine_name))
        engine = self.topology.engines[engine_name]
        book = self.store.quarantines() if book is None else book
        view = IncidentView(incident.id, incident.status.value, incident.target) if incident else None
        statuses = {r.name: self.statuses[r.name] for r in engine.replicas if r.name in self.statuses}
        snap = EngineSnapshot(
            engine=engine, primary=record.primary, phase=record.phase, epoch=record.epoch, statuses=statuses,
            incident=view, last_failover_done_at=record.last_failover_done_at,
            override_interval=record.override_interval, seq_floor=self.seq_floor.get(engine_name, 0),
            quarantined=quarantined_replicas(engine, book, now, self.topology.policy.quarantine) if book else
            frozenset(),
        )
        return snap, record

    def _record(self, engine_name: str) -> EngineRecord:
        """`load_engine`, read from the store every time (another process may have written it: `failover halt`),
        with the record object kept while the stored document is the same: at 10,000 engines, rebuilding every
        record every cycle cost more than reading them."""
        key = self._keys.get(engine_name) or engine_key(engine_name)
        found = self.store.get_state(key)
        kept = self._records.get(engine_name)
        if found is None:
            if kept is None or kept[0] is not None:
                kept = self._records[engine_name] = (None, load_engine(self.store, self.topology, engine_name))
            return kept[1]
        if kept is None or kept[0] != found:
            kept = self._records[engine_name] = (found, EngineRecord.from_json(*found))
        return kept[1]

    def runbook(self) -> RunbookDriver:
        return RunbookDriver(
            self.topology, self.store, self.engines, self.providers, self.routers, self.notifier, self.clock,
            token=self.token, actor=self.options.identity, pre_hooks=self.options.pre_hooks,
            post_hooks=self.options.post_hooks, guard=self.still_leader, unreachable=self.unreachable,
        )

    def unreachable(self, engine: Engine) -> frozenset[str]:
        """The replicas of `engine` the last probe round could not reach. A runbook advanced right after that round
        does not ask them again (each ask of a dead host is a connect timeout, 2.1 s with the daemon's client,
        paid per engine and per advance: at a lost site, by every engine's runbook in turn, and by a new leader's
        adoption before its first step). It treats them exactly as if they had timed out now, which the steps'
        checks already allow for (`StepIO.statuses`). Nothing before the first probe round (an operator's command
        that set the statuses itself)."""
        if not self._probed:
            return frozenset()
        answered = self.statuses
        return frozenset(replica.name for replica in engine.replicas if replica.name not in answered)

    def run_cycle(self) -> CycleResult:
        now = self.clock()
        if self.behaviour.clock_check:
            self._check_clock(now)
        if self.behaviour.observe_only or not self.clock_verdict.may_lead:
            if self.lease is not None:
                self.release()  # our clock is the odd one out: let a daemon with a sound clock lead
            leader = False
        else:
            leader = self._lead()
        observations = self._observe(now)
        verdicts = self._assess(observations, now)
        if self.behaviour.publish_verdicts and leader:
            write_verdicts(self.store, now, verdicts)
        if not leader:
            holder = self.store.current_lease(LEADER_LEASE)
            who = holder.holder if holder else "nobody"
            return CycleResult(now, False, f"following; the leader is {who}", verdicts)
        book = self.store.observe_quarantines(
            {site: (verdicts[site].verdict.value, verdicts[site].reason) for site in self.topology.sites
             if site in verdicts}, now, self.topology.policy.quarantine)
        open_incidents = {i.engine: i for i in self.store.incidents(open_only=True)}
        records = {name: self._record(name) for name in self.topology.engines}
        unhealthy = [subject for subject, a in verdicts.items() if a.verdict is not Verdict.HEALTHY]
        unsettled = self._unsettled(unhealthy, verdicts)
        snapshots = {name: self.snapshot(name, open_incidents, book, records[name]) for name in self.topology.engines
                     if name in unsettled}  # decide has nothing to say of the others: see _unsettled
        actions = decide([snap for snap, _ in snapshots.values()], self.topology, verdicts, now)
        acted = False
        self._enforce(records, open_incidents, now)
        for action in actions:
            acted |= self._apply(action, records[action.engine], now)
        scheduled = run_due(self.store, self.topology, self, verdicts, now)  # planned switchovers (--at)
        acted |= scheduled.acted
        progress = self._advance_running(verdicts)
        acted |= any(p.step is not None for p in progress)
        acted |= run_auto_rejoin(self.store, self.topology, self, verdicts, now).acted  # policy.auto_rejoin
        self._archive_returned(now)
        self._page_holds(actions, now)
        self._page_stalls(progress, now)
        degraded = bool(unhealthy)
        needs_human = any(p.stalled_for is not None or p.status is rb.Status.NEEDS_HUMAN for p in progress)
        return CycleResult(now, True, self._message(actions, progress, unhealthy), verdicts, tuple(actions),
                           tuple(progress), acted, degraded, needs_human)

    def _unsettled(self, unhealthy: list[str], verdicts: Mapping[str, Assessment]) -> set[str]:
        """The engines `decide` must look at: those with a replica, or a replica's site, that is not `healthy`
        (or has no verdict yet). For every other engine `decide_engine` answers None whatever its record,
        incident, statuses or quarantines say: its primary, whichever replica the record names, and the primary's
        site are healthy, so no rule that fails over, halts, holds or pages applies (core/decide.py;
        tests/core/test_controller_scale.py checks it over random snapshots). At 10,000 engines this spares 10,000
        snapshots and decisions a quiet cycle (about 60 of 140 CPU ms)."""
        found: set[str] = set()
        engine_of, engines_on = self._engine_of, self._engines_on
        for subject in unhealthy:
            engine = engine_of.get(subject)
            if engine is not None:
                found.add(engine)
            else:
                found |= engines_on.get(subject, set())
        for replica in self._replica_names - verdicts.keys():
            found.add(engine_of[replica])
        for site, engines in engines_on.items():
            if site not in verdicts:
                found |= engines
        return found

    def _enforce(self, records: Mapping[str, EngineRecord], open_incidents: Mapping[str, Incident],
                 now: float) -> None:
        """Keep what was decided true while a replica comes back from the dark: a replica claiming primary under
        an older epoch than the engine's is fenced on sight, and while an engine waits halted for a human every
        primary that answers is halted again (it may have missed the halt while it was unreachable). The engines
        that need either are found first (one pass over the statuses), then handled in the engines' order."""
        driver: RunbookDriver | None = None
        answering = self.statuses
        primary = Role.PRIMARY
        engine_of = self._engine_of
        acting = {name for name, incident in open_incidents.items() if incident.status == IncidentStatus.NEEDS_HUMAN}
        waiting_on = set(acting)
        for replica_name, status in answering.items():
            if status.role is primary:
                engine_name = engine_of.get(replica_name, "")
                record = records.get(engine_name)
                if record is not None and replica_name != record.primary and status.epoch < record.epoch:
                    acting.add(engine_name)
        if not acting:
            return
        for name, engine in self.topology.engines.items():
            if name not in acting:
                continue
            record = records[name]
            statuses = {r.name: answering[r.name] for r in engine.replicas if r.name in answering}
            for replica_name, status in statuses.items():
                if status.role is primary and replica_name != record.primary and status.epoch < record.epoch:
                    try:
                        self.engines.fence(engine.replica(replica_name), record.epoch)
                        self._page(now, name, f"[{name}] fenced {replica_name}: it claimed primary under epoch "
                                              f"{status.epoch}, the engine is at {record.epoch}")
                    except FailoverError as error:
                        self._page(now, name, f"[{name}] could not fence stale primary {replica_name}: {error}")
            if name not in waiting_on:
                continue
            stray = [n for n, s in statuses.items() if s.role is primary and s.phase is not Phase.HALTED]
            if stray or record.phase.phase is not Phase.HALTED:
                driver = driver or self.runbook()
                epoch = max([record.epoch, *(s.epoch for s in statuses.values())])
                driver.halt_everywhere(engine, epoch, "halted while a human decides", now, quiet=True)

    def _check_clock(self, now: float) -> None:
        """Write our heartbeat, read everyone's, and judge our clock against the majority's (`core.clocks`)."""
        verdict = self.clock_verdict
        self.store.heartbeat(self.options.identity, now, {
            "leader": self.lease is not None, "may_lead": verdict.may_lead, "clock_offset": verdict.offset,
            "clock_reason": verdict.reason, "offsets": offsets(self.clock_state),
        })
        beats = [Beat(b.identity, b.wall, b.arrival) for b in self.store.heartbeats()]
        self.clock_state = hear(self.clock_state, beats, self.options.identity, self.clock())
        judged = judge(self.clock_state, self.options.max_clock_offset)
        if judged.may_lead != verdict.may_lead:
            message = judged.reason or f"clock agrees with the other daemons again ({judged.offset or 0:+.1f}s)"
            self._page(now, None, f"[{self.options.identity}] {message}")
        self.clock_verdict = judged

    def _archive_returned(self, now: float) -> None:
        """An old primary that answers again, fenced, after its incident closed or was handed to a human: record
        once what it wrote that the new primary does not hold (`reconcile`); the incident report lists it for
        support. Not while the runbook still runs (its close compares the tail) or waits for approval."""
        fenced = self._fenced
        if not fenced:
            return
        settled = (IncidentStatus.CLOSED, IncidentStatus.NEEDS_HUMAN)
        # only an engine with a fenced replica can qualify (its incident's source must be fenced): after a whole
        # site was lost and came back, asking the store about every engine, every cycle, was 1,000 reads a cycle
        fenced_engines = {self._engine_of[name] for name in fenced if name in self._engine_of}
        for engine in self.topology.engines:
            if engine not in fenced_engines:
                continue
            latest = self.store.incidents(engine, limit=1)
            if not latest or latest[0].status not in settled or latest[0].id in self._archive_tried:
                continue
            diverged = latest[0].detail.get("diverged")
            target = str(latest[0].detail.get("target", latest[0].target))
            if (isinstance(diverged, dict) and not diverged.get("checked") and latest[0].source in fenced
                    and target in self.statuses):
                self._archive_tried.add(latest[0].id)
                self.runbook().archive_tail(latest[0], now)

    def _page(self, now: float, engine: str | None, message: str) -> None:
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
        if action.kind is ActionKind.PAGE:  # a gray failure under policy.gray.action: page
            self._page(now, action.engine, f"[{action.engine}] DEGRADED: {action.reason}")
        return False

    def open_failover(self, engine_name: str, source: str, target: str, reason: str, record: EngineRecord, *,
                      proposed: bool = False, kind: str = "failover") -> str:
        """Open an incident with its plan; `running` starts the runbook at once, `proposed` waits for approval."""
        now = self.clock()
        seen = self._highest_epoch()
        plan = new_plan(self.topology, engine_name, source, target, next_epoch(record, seen, self.token),
                        has_router=engine_name in self.routers, seq_floor=self.seq_floor.get(engine_name, 0))
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

    def _highest_epoch(self) -> int:
        """The highest epoch any replica reported this cycle. Kept for as long as `statuses` is the same mapping
        (each cycle, and `operator`, assign a new one; nothing changes one in place): a whole site lost opens a
        failover for every engine in one cycle, and re-reading every replica's status for each of them cost
        2,000 answering replicas x 1,000 failovers at 1,000 engines (docs/mass-failover.md)."""
        statuses, kept = self.statuses, self._highest
        if kept is None or kept[0] is not statuses:
            kept = self._highest = (statuses, max((s.epoch for s in statuses.values()), default=0))
        return kept[1]

    def _halt_for_human(self, action: Action, record: EngineRecord, now: float) -> None:
        incident = self.store.create_incident(action.engine, "halt", action.reason, now, source=action.source,
                                              status=IncidentStatus.NEEDS_HUMAN,
                                              detail={"blocked_by": [r.value for r in action.blocked_by]})
        engine = self.topology.engines[action.engine]
        seen = self._highest_epoch()
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
        open_incidents = {i.engine: i for i in self.store.incidents(open_only=True)}  # after this cycle's opened
        for engine_name in self.topology.engines:
            incident = open_incidents.get(engine_name)
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

    def _page_stalls(self, progress: list[Progress], now: float) -> None:
        """Page once for each runbook that cannot move (leadership not certain past the step's deadline)."""
        stalled = {(p.incident, p.step) for p in progress if p.stalled_for is not None}
        for p in progress:
            if p.stalled_for is not None and (p.incident, p.step) not in self._stalled:
                engine = self.store.incident(p.incident).engine
                self._page(now, engine, f"[{engine}] runbook of {p.incident} stalled at {p.step}: {p.message}")
        self._stalled = stalled

    def _message(self, actions: list[Action], progress: list[Progress], unhealthy: list[str]) -> str:
        parts = [f"{a.engine}: {a.kind.value} ({a.reason})" for a in actions]
        parts += [f"{p.incident}: {p.status.value} {p.step or ''} {p.message}".strip() for p in progress]
        if not parts:
            return "all healthy" if not unhealthy else f"no action; not healthy: {', '.join(sorted(unhealthy))}"
        return "; ".join(parts)

    def primary_problem(self, engine_name: str) -> str | None:
        snap, _ = self.snapshot(engine_name)
        return primary_unserving(snap, self.topology, self._verdicts)

    def describe(self) -> dict[str, Any]:
        return {"leader": self.lease is not None, "token": self.token, "may_lead": self.clock_verdict.may_lead,
                "clock_offset": self.clock_verdict.offset, "clock_reason": self.clock_verdict.reason,
                "clock_offsets": offsets(self.clock_state)}
