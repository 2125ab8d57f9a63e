"""The simulated world: sites on simulated clouds, engine replicas with journals, clients sending orders, faults.

Why it looks like this:
- **Deterministic.** One `random.Random(seed)` seeds one stream for the order flow and one for probe losses, so
  changing the probe interval (a policy preset) does not change which orders the clients send. No wall clock, no
  threads: time is the `VirtualClock`, which the orchestrator's own sleeps also advance (through `advance_to`).
- **Cheap.** Conditions (which sites are out, which vantage point is cut off...) are recomputed only at fault
  edges; between them the world advances a whole tick at once: replication catches up once per engine, then the
  tick's Poisson count of orders is processed against conditions that cannot change inside the tick.
  Journals are shared arrays of entry ids: a replica is a view `(log, n)` of a history, so replicating is an
  assignment and checking that one journal is a prefix of another compares one entry (entry ids are unique).
  Arrays, not lists: a day is millions of entries, and the garbage collector walks every object a list holds at
  each full collection (that walk was a fifth of a ten-engine day's cost); an array holds no objects.
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
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlparse

from orchestrator.core.model import Phase, Replica, ReplicaStatus, Role, Status, Topology
from orchestrator.core.phases import MATCHING, RequestKind, admit
from orchestrator.sim.clock import VirtualClock
from orchestrator.sim.faults import ORCHESTRATOR, STOPPED, Atom, Effect, expand
from orchestrator.sim.orders import Book, drawer, poisson
from orchestrator.sim.scenario import Scenario
from providers.base import InstanceState
from providers.local import LocalCloud, LocalInstance

_RUNNING = InstanceState.RUNNING


class SimReplica:
    """One replica's own state: what `GET /v1/status` would answer, and its journal as a view of a history."""

    __slots__ = ("address", "applied", "cloud", "engine", "epoch", "instance", "log", "machine", "n", "name",
                 "phase", "phase_until", "role", "site", "zone")

    def __init__(self, replica: Replica, cloud: str, zone: str, role: Role, machine: LocalInstance) -> None:
        self.name, self.engine, self.site, self.instance = replica.name, replica.engine, replica.site, replica.instance
        self.cloud, self.zone = cloud, zone
        self.machine = machine  # the simulated cloud's record of its instance (state, pending transition)
        self.address = urlparse(replica.control_url).hostname or replica.control_url
        self.role = role
        self.epoch = 0
        self.phase = Phase.OPEN
        self.phase_until: float | None = None
        self.log: array[int] = array("q")  # entry ids; shared with the replicas that hold the same history
        self.n = 0  # last_seq: entries 1..n of `log` are this replica's journal
        self.applied = 0

    def status(self) -> ReplicaStatus:
        return ReplicaStatus(self.name, self.role, self.epoch, self.phase, self.phase_until, self.n, self.applied)


def holds(standby: SimReplica, source: SimReplica) -> bool:
    """Whether `standby`'s journal is a prefix of `source`'s (entry ids are unique, so one comparison suffices)."""
    n = standby.n
    return n <= source.n and (n == 0 or standby.log is source.log or source.log[n - 1] == standby.log[n - 1])


Lane = tuple[str | None, dict[RequestKind, str | None], bool, bool, list[SimReplica]]
"""What every request to one target meets while conditions hold: the refusal they all get (None: none), the phase's
admission table, whether the target can acknowledge, whether it matches, and the standbys that take its entries."""


@dataclass
class EngineFlow:
    """One engine's clients and its book, and what they saw."""

    name: str
    replicas: list[SimReplica]
    dns: tuple[str, str, str, float] | None  # (cloud, zone id, record, ttl)
    book: Book
    by_address: dict[str, SimReplica]
    acknowledged: int = 0
    trades: int = 0
    trades_in_protection: int = 0
    trades_while_halted: int = 0
    trades_off_phase: int = 0  # trades by a replica whose own phase forbids matching (never expected)
    max_primaries: int = 0  # the most replicas that acknowledged writes within one stretch (one tick)
    max_writable: int = 0  # the most replicas that could have (see World._sample)
    acked: array[int] = field(default_factory=lambda: array("q"))  # acknowledged: (first entry id, its seq, count)...
    refused: Counter[str] = field(default_factory=Counter)
    cache: tuple[int, dict[str, bool], dict[str, list[SimReplica]]] | None = None  # see World._live
    lanes: dict[str | None, Lane] = field(default_factory=dict)  # per target, while `cache` holds: see World._lane
    settled: tuple[tuple[float, str], SimReplica | None] | None = None  # the DNS record's last change, its replica


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
            flow = EngineFlow(engine.name, [], None, Book(), {})
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
        self.phase_log: dict[str, list[tuple[float, Phase]]] = {name: [] for name in topology.engines}
        self.promotions: list[Promotion] = []
        self.entry_times: array[float] = array("d")  # by entry id: when it was appended (asynchronous replication)
        self.entries = 0  # entry ids given out so far
        self.out: set[str] = set()
        self.latency: dict[str, float] = {}
        self.loss: dict[str, float] = {}
        self.partitioned: set[str] = set()
        self.lag: dict[str, float] = {}
        self._active: list[Atom] = []
        self._serial = 0
        self.version = 0
        self._edges = self._schedule(atom for index, fault in enumerate(scenario.faults)
                                     for atom in expand(fault, index))
        self._next_edge = 0
        self._machines = [sim.machine for sim in self.replicas.values()]
        self._calm_at = -1
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
        calls = sum(cloud.calls for cloud in self.clouds.values())
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
        if replica.site in self.out:
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
        state = self.clouds[replica.cloud].state_of(replica.site, replica.instance)
        if state is not _RUNNING:
            return f"unreachable: instance {replica.instance} is {state.value}"
        latency = self.latency.get(replica.site, 0.0)
        if latency > self.control_timeout:
            return f"timed out after {self.control_timeout:g}s (answers take {latency:g}s)"
        return None

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
        stretch to the next is kept (`flow.cache`, `flow.lanes`), and the Poisson count is `knuth` inlined."""
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
            writers = 0
            for target, share in self._client_targets(flow, stop, count):
                lane = flow.lanes.get(target.name if target is not None else None)
                if lane is None:
                    lane = self._lane(flow, target, up, receivers)
                writers += self._orders(flow, share, target, lane)
            if writers > flow.max_primaries:
                flow.max_primaries = writers

    def _conditions(self, flow: EngineFlow, start: float) -> tuple[dict[str, bool], dict[str, list[SimReplica]]]:
        """Who of the engine is up and which standbys take each primary's entries, after catching standbys up;
        kept in `flow.cache` until the world's version moves (unless an instance transition is under way)."""
        up = {replica.name: self.up(replica) for replica in flow.replicas}
        self._replicate(flow, start, up)
        receivers = {r.name: self._receivers(flow, r, up) for r in flow.replicas
                     if r.role is Role.PRIMARY and up[r.name]}
        self._sample(flow, receivers)
        steady = not any(r.machine.pending for r in flow.replicas)
        flow.cache = (self.version, up, receivers) if steady else None
        flow.lanes.clear()
        return up, receivers

    def touch(self) -> None:
        """Something that decides who is up or who replicates from whom changed (a control call)."""
        self.version += 1

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
        peers = [other for other in flow.replicas
                 if other is not standby and other.n > standby.n and up[other.name] and holds(standby, other)]
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
                    times = self.entry_times
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
            last = history[-1]
            if flow.settled is None or flow.settled[0] is not last:
                flow.settled = (last, flow.by_address.get(last[1]))
            return [(flow.settled[1], count)]
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

    def _lane(self, flow: EngineFlow, target: SimReplica | None, up: dict[str, bool],
              receivers: dict[str, list[SimReplica]]) -> Lane:
        """What requests to `target` meet until conditions change (kept in `flow.lanes`, emptied with its cache)."""
        gate = self._gate(target, target is not None and up[target.name])
        if gate is not None or target is None:
            lane: Lane = (gate or "no_route", {}, False, False, [])
        else:
            taking = receivers.get(target.name, [])
            lane = (None, self._admission[target.phase], self.can_acknowledge(target, taking), MATCHING[target.phase],
                    taking)
        if flow.cache is not None:
            flow.lanes[target.name if target is not None else None] = lane
        return lane

    def _orders(self, flow: EngineFlow, count: int, target: SimReplica | None, lane: Lane) -> int:
        """`count` client requests to `target`, each drawn whatever happens to it (so that the order stream of a
        seed does not depend on the orchestrator's policy). Refusal order as the reference replica's: role,
        phase admission, book (`unknown_order`, `would_cross`), then replication. Returns 1 if `target`
        acknowledged anything (it accepted writes as primary in this stretch), else 0.

        The hot loop of a simulated day (1.7 million requests for ten engines): the acknowledged entries of one
        call are consecutive ids at consecutive seqs, so the journals and the receivers' copies are extended once,
        after the loop, to exactly what appending them one by one would have left."""
        book, refused, one = flow.book, flow.refused, self._draw
        gate, admission, acknowledge, matching, receivers = lane
        if gate is not None or target is None:
            size = len(book.resting)  # nothing is admitted, so the book does not change
            for _ in range(count):
                one(size)
            refused[gate or "no_route"] += count
            return 0
        resting, crosses, cancel_oldest, execute = book.resting, book.crosses, book.cancel_oldest, book.execute
        cancel, post_only, add_margin = RequestKind.CANCEL, RequestKind.POST_ONLY, RequestKind.ADD_MARGIN
        taken = 0
        for _ in range(count):
            kind, buy, price, qty = one(len(resting))
            reason = admission[kind]
            if reason is None:
                if kind is cancel and not resting:
                    reason = "unknown_order"
                elif kind is post_only and crosses(buy, price):
                    reason = "would_cross"
                elif not acknowledge:
                    reason = "replication_timeout"
            if reason is not None:
                refused[reason] += 1
                continue
            taken += 1
            if kind is cancel:
                cancel_oldest()
            elif kind is not add_margin:
                trades = execute(kind, buy, price, qty, matching)
                if trades:
                    self._count_trades(flow, target, trades)
        if taken:
            self._append(flow, target, receivers, taken)
        return int(taken > 0)

    def _append(self, flow: EngineFlow, target: SimReplica, receivers: list[SimReplica], taken: int) -> None:
        """`taken` acknowledged entries: new ids at the end of the world's history, written by `target` at its
        next seqs and copied by its synchronous `receivers`, as the reference replica journals them."""
        first, seq = self.entries, target.n
        self.entries += taken
        if not self.settings.synchronous:
            self.entry_times.extend([self.clock()] * taken)
        log = target.log
        if len(log) != seq:
            log = target.log = log[:seq]  # another replica extended this history: ours forks here
        log.extend(range(first, first + taken))
        n = target.n = target.applied = seq + taken
        lag = self.lag
        for standby in receivers:
            standby.log, standby.n = log, n
            if standby.name not in lag:
                standby.applied = n
        flow.acknowledged += taken
        flow.acked.extend((first, seq + 1, taken))

    def _count_trades(self, flow: EngineFlow, replica: SimReplica, trades: int) -> None:
        flow.trades += trades
        announced = self.announced[flow.name]
        if announced is Phase.PROTECTION:
            flow.trades_in_protection += trades
        elif announced is Phase.HALTED:
            flow.trades_while_halted += trades
        if not MATCHING[replica.phase]:
            flow.trades_off_phase += trades

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

    def note_phase(self, engine: str, phase: Phase, at: float) -> None:
        self.announced[engine] = phase
        self.phase_log[engine].append((at, phase))

    def note_promotion(self, replica: SimReplica, forced: bool) -> None:
        peers = self.reachable_peers(replica)
        everyone = self.engines[replica.engine].replicas
        self.promotions.append(Promotion(self.clock(), replica.engine, replica.name, replica.n, replica.applied,
                                         max((p.n for p in peers), default=0), max(r.n for r in everyone), forced))

    def lost(self, engine: str, primary: str) -> int:
        """Acknowledged entries absent from `primary`'s journal."""
        flow, replica = self.engines[engine], self.replicas[primary]
        log, n, missing = replica.log, replica.n, 0
        acked = flow.acked
        for index in range(0, len(acked), 3):  # `count` entries with consecutive ids, at consecutive seqs
            first, seq, count = acked[index], acked[index + 1], acked[index + 2]
            held = max(0, min(count, n - seq + 1))
            missing += count - held
            if held and log[seq - 1: seq - 1 + held] != array("q", range(first, first + held)):
                missing += sum(1 for k in range(held) if log[seq - 1 + k] != first + k)
        return missing
