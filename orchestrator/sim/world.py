"""The simulated world: sites on simulated clouds, engine replicas with journals, clients sending orders, faults.

Why it looks like this:
- **Deterministic.** One `random.Random(seed)` seeds one stream for the order flow and one for probe losses, so
  changing the probe interval (a policy preset) does not change which orders the clients send. No wall clock, no
  threads: time is the `VirtualClock`, which the orchestrator's own sleeps also advance (through `advance_to`).
- **Cheap.** Conditions (which sites are out, which vantage point is cut off...) are recomputed only at fault
  edges; between them the world advances a whole tick at once: replication catches up once per engine, then the
  tick's Poisson count of orders is processed against conditions that cannot change inside the tick (what a
  request meets at each target is built once per change: `flow.py`). A replica's journal is a view of a shared
  history (`replica.py`), so replicating is an assignment.
- **Honest about the safety rules.** Replicas keep the epoch rule, refuse writes when fenced or standby, admit
  orders through `orchestrator.core.phases.admit`, and — in synchronous mode — acknowledge an order only when a
  standby on another cloud that accepts the primary's epoch has it. So a deposed primary that clients can still
  reach cannot acknowledge anything once the standbys carry a newer epoch, exactly as in production.
  `max_primaries` is measured here — replicas that acknowledged writes in the same tick, clients following DNS
  through their caches — not from what the orchestrator believes.

Replicas answer the orchestrator through `SimEngineControl` (engine.py), probes through `SimProber` (probes.py),
and the clouds' control planes through `providers.local`.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator.core.model import Phase, Role, Status, Topology
from orchestrator.core.phases import RequestKind, admit
from orchestrator.sim.clock import VirtualClock
from orchestrator.sim.faults import ORCHESTRATOR, STOPPED, Atom, Effect, expand
from orchestrator.sim.flow import EngineFlow, Ledger, Taker, accepting, lost, refusing
from orchestrator.sim.orders import Book, drawer, poisson
from orchestrator.sim.replica import SimReplica, holds
from orchestrator.sim.scenario import Scenario
from providers.base import InstanceState
from providers.local import LocalCloud

_RUNNING = InstanceState.RUNNING
PROBE_LATENCY = 0.004  # seconds: a replica's normal answer to a probe from the same region (the baseline)


@dataclass(frozen=True, slots=True)
class Rejoined:
    """A rejoin the world finished: the replica became an acknowledging standby of `primary`
    (docs/simulated-rejoin.md)."""

    engine: str
    replica: str
    site: str
    primary: str
    started_at: float
    done_at: float
    copied: int  # entries copied from the primary
    archived: int  # entries the replica held beyond the common prefix (archived, never dropped)


@dataclass(frozen=True, slots=True)
class Promotion:
    at: float
    engine: str
    replica: str
    last_seq: int
    applied_seq: int
    reachable_peer_seq: int  # the highest last_seq among the peers it could reach
    highest_seq: int  # the highest last_seq of any replica of the engine, reachable or not
    forced: bool


class World:
    def __init__(self, scenario: Scenario, topology: Topology, seed: int, clock: VirtualClock) -> None:
        master = random.Random(seed)
        self.order_rng = random.Random(master.getrandbits(64))
        self.probe_rng = random.Random(master.getrandbits(64))
        self.scenario, self.topology, self.settings, self.clock = scenario, topology, scenario.world, clock
        self.start = scenario.start
        self.control_timeout = self.settings.control_timeout or topology.probes.timeout
        clock.on_sleep = self.advance_to
        providers = {site.provider for site in topology.sites.values()}
        providers |= {e.dns.provider for e in topology.engines.values() if e.dns is not None}
        self.clouds = {name: LocalCloud(name, clock, self.settings.instance_start_time,
                                        self.settings.instance_stop_time) for name in sorted(providers)}
        self.zones = {name: site.zones or (f"{name}-zone",) for name, site in topology.sites.items()}
        self.replicas: dict[str, SimReplica] = {}
        self.engines: dict[str, EngineFlow] = {}
        for engine in topology.engines.values():
            flow = EngineFlow(engine.name, [], None, Book(), {}, Ledger(clock, timed=not self.settings.synchronous))
            for replica in engine.replicas:
                site = topology.sites[replica.site]
                cloud = self.clouds[site.provider]
                zone = self.zones[site.name][0]
                cloud.add_instance(site.name, replica.instance, zone)
                sim = SimReplica(replica, site.provider, zone,
                                 Role.PRIMARY if replica.name == engine.primary else Role.STANDBY,
                                 cloud.instances[site.name][replica.instance])
                self.replicas[sim.name] = sim
                flow.replicas.append(sim)
                flow.by_address[sim.address] = sim
            if engine.dns is not None:
                dns = engine.dns
                flow.dns = (dns.provider, dns.zone_id, dns.record, float(dns.ttl))
                primary = self.replicas[engine.primary]
                self.clouds[dns.provider].seed_record(dns.zone_id, dns.record, primary.address, 0.0)
            self.engines[engine.name] = flow
        self.vantages = tuple(dict.fromkeys((*topology.probes.vantage_points, ORCHESTRATOR)))
        allow = topology.protection.allow
        self._admission = {phase: {kind: admit(phase, kind, allow) for kind in RequestKind} for phase in Phase}
        self.announced = {name: Phase.OPEN for name in topology.engines}
        self.announced_until: dict[str, float | None] = dict.fromkeys(topology.engines)  # a window's announced end
        self.phase_log: dict[str, list[tuple[float, Phase]]] = {name: [] for name in topology.engines}
        self.promotions: list[Promotion] = []
        self.rejoining: list[SimReplica] = []  # replicas copying a primary's journal (engine.py's `rejoin`)
        self.rejoined: list[Rejoined] = []
        self.failed_rejoins: list[tuple[float, str, str]] = []  # (when, replica, why)
        self.out: set[str] = set()
        self.latency: dict[str, float] = {}
        self.loss: dict[str, float] = {}
        self.partitioned: set[str] = set()
        self.lag: dict[str, float] = {}
        self.dark: set[str] = set()  # replicas blacked out (blackouts)
        self.slow: dict[str, float] = {}  # replica -> how many times its normal answer time (slow)
        self._active: list[Atom] = []
        self._serial = 0
        self.version = 0
        self._edges = self._schedule(atom for index, fault in enumerate(scenario.faults)
                                     for atom in expand(fault, index))
        self._next_edge = 0
        self._machines = [sim.machine for sim in self.replicas.values()]
        self._calm_at = -1
        self._clouds = list(self.clouds.values())
        self._draw = drawer(self.order_rng)
        self._mean: float = -1.0
        self._limit: float | None = None

    # ---- faults ---------------------------------------------------------------------------------------------

    def _schedule(self, atoms: Iterable[Atom]) -> list[tuple[float, int, int, Atom]]:
        edges = []
        for atom in atoms:
            self._serial += 1
            edges.append((self.start + atom.start, 1, self._serial, atom))
            edges.append((self.start + atom.end, 0, self._serial, atom))  # ends sort before starts at one instant
        edges.sort(key=lambda edge: edge[:3])
        return edges

    def inject(self, atoms: Iterable[Atom]) -> None:
        """Add atoms (times relative to the scenario's start) while the world runs, for stateful tests; an atom
        that should already have started starts now."""
        now = self.clock()
        fresh = [Atom(max(a.start, now - self.start), a.end, a.effect, a.target, a.value, a.fault)
                 for a in atoms if self.start + a.end > now]
        rest = self._edges[self._next_edge:] + self._schedule(fresh)
        rest.sort(key=lambda edge: edge[:3])
        self._edges = self._edges[: self._next_edge] + rest

    def next_edge_at(self) -> float:
        """When the next fault edge falls (absolute time; infinity when none is left)."""
        return self._edges[self._next_edge][0] if self._next_edge < len(self._edges) else math.inf

    def moving(self) -> bool:
        """Whether an instance transition (a start or a stop) is under way: the world then changes without an edge.
        Only a cloud API call starts one, so while no call was made since the last look found none, none is."""
        calls = sum([cloud.calls for cloud in self._clouds])
        if calls == self._calm_at:
            return False
        if any(machine.pending for machine in self._machines):
            return True
        self._calm_at = calls
        return False

    def _apply_edges(self, now: float) -> None:
        changed = False
        while self._next_edge < len(self._edges) and self._edges[self._next_edge][0] <= now:
            _, kind, _, atom = self._edges[self._next_edge]
            self._next_edge += 1
            changed = True
            if kind == 1:
                self._active.append(atom)
            elif atom in self._active:
                self._active.remove(atom)
        if changed:
            self._recompute()

    def _recompute(self) -> None:
        """Conditions from the active atoms, pushed to the clouds' control planes."""
        self.version += 1
        active = self._active
        self.out = {a.target for a in active if a.effect is Effect.DATA_PLANE_OUT}
        reported = {a.target for a in active if a.effect is Effect.PROVIDER_REPORTS_OUT}
        self.latency, self.loss, api = {}, {}, {}
        for a in active:
            if a.effect is Effect.LATENCY:
                self.latency[a.target] = max(a.value, self.latency.get(a.target, 0.0))
            elif a.effect is Effect.PROBE_LOSS:
                self.loss[a.target] = 1 - (1 - self.loss.get(a.target, 0.0)) * (1 - a.value)
            elif a.effect is Effect.API_ERRORS:
                api[a.target] = int(a.value)
        self.partitioned = {a.target for a in active if a.effect is Effect.PARTITION}
        self.dark = {a.target for a in active if a.effect is Effect.REPLICA_OUT}
        self.slow = {}
        for a in (a for a in active if a.effect is Effect.SLOW):
            self.slow[a.target] = max(a.value, self.slow.get(a.target, 1.0))
        lag: dict[str, float] = {}
        for a in (a for a in active if a.effect is Effect.LAG):
            names = [a.target] if a.target in self.replicas else \
                [r.name for r in self.replicas.values() if r.site == a.target]
            for name in names:
                lag[name] = STOPPED if STOPPED in (a.value, lag.get(name)) else max(a.value, lag.get(name, 0.0))
        self.lag = lag
        for name, site in self.topology.sites.items():
            cloud = self.clouds[site.provider]
            for zone in self.zones[name]:
                cloud.set_data_plane(zone, name not in self.out)
                cloud.set_zone_status(zone, Status.DOWN if name in reported else Status.OK)
            cloud.impair(name, name in reported)
            if name in api:
                cloud.fail_api(name, status=api[name])
            else:
                cloud.heal_api(name)
        for cloud in self.clouds.values():
            cloud.set_caller_offline(ORCHESTRATOR in self.partitioned)

    # ---- reachability ---------------------------------------------------------------------------------------

    def up(self, replica: SimReplica) -> bool:
        """Its data plane answers: the site is not out and the machine runs."""
        if replica.site in self.out or (self.dark and replica.name in self.dark):
            return False
        machine = replica.machine
        if machine.pending is None:
            return machine.state is _RUNNING
        return self.clouds[replica.cloud].state_of(replica.site, replica.instance) is _RUNNING

    def control_problem(self, replica: SimReplica) -> str | None:
        """Why the orchestrator's control call to `replica` fails, or None."""
        if ORCHESTRATOR in self.partitioned:
            return "unreachable: the orchestrator's own network is partitioned"
        if replica.site in self.out:
            return f"unreachable: site {replica.site} is out"
        if replica.name in self.dark:
            return f"unreachable: replica {replica.name} is dark"
        state = self.clouds[replica.cloud].state_of(replica.site, replica.instance)
        if state is not _RUNNING:
            return f"unreachable: instance {replica.instance} is {state.value}"
        latency = self.latency.get(replica.site, 0.0)
        if self.slow and replica.name in self.slow:
            latency += PROBE_LATENCY * (self.slow[replica.name] - 1)
        if latency > self.control_timeout:
            return f"timed out after {self.control_timeout:g}s (answers take {latency:g}s)"
        return None

    def answer_time(self, replica: SimReplica) -> float:
        """How long the replica takes to answer a probe: its normal time, times a slow fault's factor, plus its site's
        added latency (degraded)."""
        factor = self.slow.get(replica.name, 1.0) if self.slow else 1.0
        return PROBE_LATENCY * factor + (self.latency.get(replica.site, 0.0) if self.latency else 0.0)

    def reachable_peers(self, replica: SimReplica) -> list[SimReplica]:
        return [r for r in self.engines[replica.engine].replicas if r is not replica and self.up(r)]

    # ---- time -----------------------------------------------------------------------------------------------

    def advance_to(self, at: float) -> None:
        """Live through (now, at]: fault edges, replication, orders; the clock ends at `at`."""
        clock = self.clock
        while True:
            now = clock()
            self._apply_edges(now)
            edge = self._edges[self._next_edge][0] if self._next_edge < len(self._edges) else at
            stop = min(at, edge)
            if stop <= now:
                return
            self._live(now, stop)
            clock.advance_to(stop)

    def _live(self, start: float, stop: float) -> None:
        """One stretch of time in which no condition changes: catch standbys up, then the stretch's orders.

        Who is up and who takes whose entries only change with a fault edge, a control call or an instance
        transition, so they are kept between stretches (`version`) unless a transition is under way; then a
        synchronous world with no lag has nothing to replicate that the orders did not already carry.

        The hot loop of a simulated day (86,400 stretches for every engine): what does not change from one
        stretch to the next is kept (`flow.cache`, `flow.takers`, `flow.route`), and the Poisson count is
        `knuth` inlined."""
        if self.rejoining:
            self._rejoin_progress(start)
        mean = self.settings.order_rate * (stop - start)
        if mean != self._mean:
            self._mean, self._limit = mean, (math.exp(-mean) if 0 < mean <= 50 else None)
        limit, random_ = self._limit, self.order_rng.random
        moving, version = self.moving(), self.version
        replicate = bool(self.lag) or not self.settings.synchronous
        for flow in self.engines.values():
            cache = flow.cache
            if cache is None or cache[0] != version or (moving and any(r.machine.pending for r in flow.replicas)):
                up, receivers = self._conditions(flow, start)
            else:
                _, up, receivers = cache
                if replicate:
                    self._replicate(flow, start, up)
            if limit is None:
                count = poisson(self.order_rng, mean)
            else:  # knuth(random_, limit), inline
                count, product = 0, random_()
                while product > limit:
                    count += 1
                    product *= random_()
            if not count:
                continue
            route = flow.route  # the common case: every client resolves the same target as in the last stretch
            if route is not None and len(route[0]) == route[1]:
                writers = route[2](count)
            else:
                writers = self._spread(flow, stop, count, up, receivers)
            if writers > flow.max_primaries:
                flow.max_primaries = writers

    def _spread(self, flow: EngineFlow, stop: float, count: int, up: dict[str, bool],
                receivers: dict[str, list[SimReplica]]) -> int:
        """The stretch's requests to wherever clients resolve the engine; the number of targets that wrote.

        While the engine's DNS record has not changed within one TTL (or it has none), every client resolves the
        one target, and stays on it until the record changes (its history grows) or conditions do (the flow's
        cache, which empties the route): that target's taker is kept as the engine's route."""
        dns = flow.dns
        history: Sequence[tuple[float, str]] = ()
        if dns is not None:
            history = self.clouds[dns[0]].records.get((dns[1], dns[2]), [])
        settled = dns is None or (bool(history) and history[-1][0] <= stop - dns[3])
        writers = 0
        targets = self._client_targets(flow, stop, count)
        for target, share in targets:
            taker = flow.takers.get(target.name if target is not None else None)
            if taker is None:
                taker = self._taker(flow, target, up, receivers)
            writers += taker(share)
            if settled and len(targets) == 1 and flow.cache is not None:
                flow.route = (history, len(history), taker)
        return writers

    def _conditions(self, flow: EngineFlow, start: float) -> tuple[dict[str, bool], dict[str, list[SimReplica]]]:
        """Who of the engine is up and which standbys take each primary's entries, after catching standbys up;
        kept in `flow.cache` until the world's version moves (unless an instance transition is under way)."""
        up = {replica.name: self.up(replica) for replica in flow.replicas}
        self._replicate(flow, start, up)
        receivers = {r.name: self._receivers(flow, r, up) for r in flow.replicas
                     if r.role is Role.PRIMARY and up[r.name]}
        self._sample(flow, receivers)
        self._count_standbys(flow, start, up, receivers)
        steady = not any(r.machine.pending for r in flow.replicas)
        flow.cache = (self.version, up, receivers) if steady else None
        flow.takers.clear()
        flow.route = None
        return up, receivers

    def _count_standbys(self, flow: EngineFlow, now: float, up: dict[str, bool],
                        receivers: dict[str, list[SimReplica]]) -> None:
        """How many standbys acknowledge the current primary's writes (synchronous: its receivers; asynchronous:
        the standbys up that follow it), logged in `flow.standbys` when the number changes. No primary up: none."""
        primaries = [r for r in flow.replicas if r.role is Role.PRIMARY and up[r.name]]
        count = 0
        if primaries:
            primary = max(primaries, key=lambda r: r.epoch)
            if self.settings.synchronous:
                count = len(receivers.get(primary.name, ()))
            else:
                count = sum(1 for s in flow.replicas if s.role is Role.STANDBY and up[s.name]
                            and s.epoch <= primary.epoch and holds(s, primary))
        if not flow.standbys or flow.standbys[-1][1] != count:
            flow.standbys.append((now, count))

    def touch(self) -> None:
        """Something that decides who is up or who replicates from whom changed (a control call)."""
        self.version += 1

    # ---- rejoin (engine.py starts one; docs/simulated-rejoin.md) ----------------------------------------------

    def start_rejoin(self, replica: SimReplica) -> None:
        job = replica.rejoin
        assert job is not None
        replica.n = min(replica.n, job.common)  # the journal is cut to the common prefix (its tail archived)
        replica.applied = min(replica.applied, replica.n)
        if replica not in self.rejoining:
            self.rejoining.append(replica)
        self.touch()

    def _rejoin_progress(self, now: float) -> None:
        """Bring every rejoin up to `now`: copy at `rejoin_rate` entries a second (after `rejoin_setup`) while the
        replica and its primary both answer; done when it holds all the primary holds (it becomes a standby vouched
        at the rejoin's epoch, and the world's conditions change); failed if the primary was deposed meanwhile."""
        settings = self.settings
        for replica in list(self.rejoining):
            job = replica.rejoin
            assert job is not None
            primary = self.replicas[job.primary]
            if primary.role is not Role.PRIMARY or primary.epoch < job.epoch or replica.epoch > primary.epoch:
                # deposed (fenced on its return), or the replica was told of a newer epoch than its primary's (a
                # failover's halt reached it): as the reference replica, the rejoin ends failed; a new one follows
                # the new primary
                job.state, job.error = "failed", f"{primary.name} is no longer primary at epoch {replica.epoch}"
                self.failed_rejoins.append((now, replica.name, job.error))
                self.rejoining.remove(replica)
                self.touch()
                continue
            begin = max(job.since, job.started_at + settings.rejoin_setup)
            if now > begin and self.up(replica) and self.up(primary):
                job.state = "copying"
                job.copied = min(float(primary.n), job.copied + settings.rejoin_rate * (now - begin))
                replica.log, replica.n = primary.log, int(job.copied)
                replica.applied = replica.n
            job.since = max(job.since, now)
            if job.state == "copying" and job.copied >= primary.n:
                replica.role, replica.log, replica.n = Role.STANDBY, primary.log, primary.n
                replica.applied = replica.n
                job.state, job.done_at = "done", now
                self.rejoined.append(Rejoined(replica.engine, replica.name, replica.site, primary.name,
                                              job.started_at, now, primary.n - job.common, job.archived))
                self.rejoining.remove(replica)
                self.touch()

    # ---- replication ----------------------------------------------------------------------------------------

    def _source(self, flow: EngineFlow, standby: SimReplica, up: dict[str, bool]) -> SimReplica | None:
        """What the standby copies from: the reachable primary with the highest epoch it accepts (None if their
        journals diverged: it is stuck); with no such primary, the most advanced reachable peer that extends its
        journal (standbys catch up from peers while there is no primary, e.g. before a promotion)."""
        primaries = [other for other in flow.replicas if other is not standby and other.role is Role.PRIMARY
                     and other.epoch >= standby.epoch and up[other.name]]
        if primaries:
            primary = max(primaries, key=lambda other: other.epoch)
            return primary if holds(standby, primary) else None
        peers = [other for other in flow.replicas  # a journal being rebuilt is no one's source
                 if other is not standby and other not in self.rejoining and other.n > standby.n and up[other.name]
                 and holds(standby, other)]
        return max(peers, key=lambda other: other.n) if peers else None

    def _replicate(self, flow: EngineFlow, now: float, up: dict[str, bool]) -> None:
        for standby in flow.replicas:
            if standby.role is not Role.STANDBY or not up[standby.name]:
                continue
            source = self._source(flow, standby, up)
            lag = self.lag.get(standby.name)
            if source is not None and source.n > standby.n:
                target = source.n
                if not self.settings.synchronous and source.role is Role.PRIMARY:
                    cutoff = now - self.settings.replication_lag
                    times = flow.ledger.times
                    target = bisect.bisect_right(source.log, cutoff, lo=standby.n, hi=source.n,
                                                 key=lambda entry: times[entry])
                if lag is not None and lag != STOPPED:
                    target = source.n - int(lag)
                if target > standby.n:
                    standby.log, standby.n = source.log, target
            if lag != STOPPED:
                standby.applied = standby.n

    def _receivers(self, flow: EngineFlow, primary: SimReplica, up: dict[str, bool]) -> list[SimReplica]:
        """Standbys that take the primary's entries synchronously: up, accepting its epoch, holding a prefix of
        its journal, not lagging by entries, and answering within the sync timeout (as the reference replica,
        which refuses with `replication_timeout` after `sync_timeout`)."""
        if not self.settings.synchronous:
            return []
        lag, latency, limit = self.lag, self.latency, self.settings.sync_timeout
        if latency.get(primary.site, 0.0) > limit:
            return []
        return [s for s in flow.replicas
                if s.role is Role.STANDBY and s.epoch <= primary.epoch and up[s.name]
                and (not lag or lag.get(s.name) in (None, STOPPED)) and latency.get(s.site, 0.0) <= limit
                and holds(s, primary)]

    def can_acknowledge(self, primary: SimReplica, receivers: list[SimReplica]) -> bool:
        """Asynchronous: always; synchronous: only with a receiving standby on another cloud."""
        return not self.settings.synchronous or any(s.cloud != primary.cloud for s in receivers)

    # ---- orders ---------------------------------------------------------------------------------------------

    def _client_targets(self, flow: EngineFlow, now: float, count: int) -> list[tuple[SimReplica | None, int]]:
        """Where the stretch's `count` requests go. With DNS: to the record's address, except that within one TTL
        of a change each client still uses the old address with a probability that falls from 1 to 0 over the
        TTL (caches expire at random). Without DNS: to the replica claiming primary at the highest epoch."""
        if flow.dns is None:
            primaries = [r for r in flow.replicas if r.role is Role.PRIMARY]
            return [(max(primaries, key=lambda r: r.epoch) if primaries else None, count)]
        cloud_name, zone_id, record, ttl = flow.dns
        cloud = self.clouds[cloud_name]
        history = cloud.records.get((zone_id, record))
        if history and history[-1][0] <= now - ttl:  # the common case: no change within the last TTL
            return [(flow.by_address.get(history[-1][1]), count)]
        current, cached = cloud.resolve(zone_id, record, now), cloud.resolve(zone_id, record, now - ttl)
        fresh = flow.by_address.get(current or "")
        if current == cached:
            return [(fresh, count)]
        changed = cloud.changed_at(zone_id, record, now)
        stale = max(0.0, min(1.0, (changed + ttl - now) / ttl))
        old = sum(1 for _ in range(count) if self.order_rng.random() < stale)
        return [(flow.by_address.get(cached or ""), old), (fresh, count - old)]

    def _gate(self, target: SimReplica | None, reachable: bool) -> str | None:
        """The refusal every request to `target` gets whatever it is, or None."""
        if target is None:
            return "no_route"
        if not reachable:
            return "unreachable"
        if target.role is not Role.PRIMARY:
            return "fenced" if target.role is Role.FENCED else "not_primary"
        return None

    def _taker(self, flow: EngineFlow, target: SimReplica | None, up: dict[str, bool],
               receivers: dict[str, list[SimReplica]]) -> Taker:
        """What requests to `target` meet until conditions change (kept in `flow.takers`, emptied with its cache)."""
        gate = self._gate(target, target is not None and up[target.name])
        if gate is not None or target is None:
            taker = refusing(flow, gate or "no_route", self._draw)
        else:
            taking = receivers.get(target.name, [])
            taker = accepting(flow, target, taking, admission=self._admission[target.phase],
                              acknowledge=self.can_acknowledge(target, taking), draw=self._draw, ledger=flow.ledger,
                              lag=self.lag, announced=self.announced, until=self.announced_until,
                              clock=self.clock)
        if flow.cache is not None:
            flow.takers[target.name if target is not None else None] = taker
        return taker

    def _sample(self, flow: EngineFlow, receivers: dict[str, list[SimReplica]]) -> None:
        """How many replicas *could* accept a write as primary right now, whether or not any client reaches
        them: up, primary, not halted, and able to acknowledge (`receivers` holds exactly the primaries that are
        up). Stricter than `max_primaries` (writes actually accepted in one stretch); reported beside it."""
        replicas = self.replicas
        count = sum(1 for name, taking in receivers.items()
                    if replicas[name].phase is not Phase.HALTED and self.can_acknowledge(replicas[name], taking))
        if count > flow.max_writable:
            flow.max_writable = count

    # ---- what the orchestrator announces, and the end state ------------------------------------------------

    def note_phase(self, engine: str, phase: Phase, at: float, until: float | None = None) -> None:
        self.announced[engine] = phase
        self.announced_until[engine] = until if phase is Phase.PROTECTION else None
        self.phase_log[engine].append((at, phase))

    def note_promotion(self, replica: SimReplica, forced: bool) -> None:
        peers = self.reachable_peers(replica)
        everyone = self.engines[replica.engine].replicas
        self.promotions.append(Promotion(self.clock(), replica.engine, replica.name, replica.n, replica.applied,
                                         max((p.n for p in peers), default=0), max(r.n for r in everyone), forced))

    def lost(self, engine: str, primary: str) -> int:
        """Acknowledged entries absent from `primary`'s journal."""
        return lost(self.engines[engine], self.replicas[primary])
