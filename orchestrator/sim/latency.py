"""How long each simulated cloud and engine call takes: a per-call distribution, drawn per call, on the virtual clock.

Why: without it every runbook step ran in the same virtual second, so the simulator reported a halt of 0 s and a
new primary at the instant of detection, while the loopback drill needs about 2 s more and real clouds far more (a
forced stop takes tens of seconds, a Route 53 change about a minute to reach every name server). The runbook
driver waits for each call to return, as in production; here waiting is sleeping on the virtual clock, so the world
(orders, replication, fault edges) lives through the call as it would.

How a call spends its time: a call that gets an answer sleeps half its latency, acts (the request has reached the
replica or the cloud), and sleeps the other half (the answer travels back). A call to a replica that cannot answer
costs what the production client spends before giving up (`engine.no_answer`). A stop or start asked of a cloud
completes after its own drawn time (`<cloud>.stop`, `<cloud>.start`), and a DNS change reaches resolvers
`<cloud>.dns_propagation` after it was written (the record reads back at once, as Route 53's API answers a PENDING
change), see `clouds.SimRouter`. docs/simulated-latency.md lists every default with its source.

Why each draw is a hash of (the run's key, the call, its subject, the instant) rather than the next number of a
stream: the event-driven runner (`stepping.py`) accounts for quiet ticks without running their cycle, and a quiet
cycle that waits for the replicas' statuses (a protection window) must spend exactly the time the tick-by-tick run
spends. With keyed draws, replaying those waits draws the same latencies without running the cycle, and a run's
other streams (orders, probe losses) are untouched: the same seed gives the same timeline, whichever way it steps.
The key itself is drawn from the run's seeded generator (its third number, after the order and probe streams).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TypeVar

from orchestrator.sim.clock import VirtualClock

T = TypeVar("T")

Z95 = NormalDist().inv_cdf(0.95)
TAIL = 3.0  # draws are cut at this many standard deviations (a log-normal's tail is otherwise unbounded)

ENGINE = "engine"
ENGINE_CALLS = ("status", "set_phase", "promote", "fence", "no_answer")
CLOUD_CALLS = ("api", "stop", "start", "dns_api", "dns_propagation")
NO_ANSWER = f"{ENGINE}.no_answer"


@dataclass(frozen=True, slots=True)
class Latency:
    """A log-normal with this median and 95th percentile (equal: always that long), cut at `TAIL` deviations."""

    median: float
    p95: float

    def __post_init__(self) -> None:
        if self.median < 0 or self.p95 < self.median:
            raise ValueError(f"latency needs 0 <= median <= p95, got median {self.median} and p95 {self.p95}")

    def at(self, u: float) -> float:
        """The latency at quantile `u` (0 < u < 1)."""
        if self.p95 == self.median or self.median == 0:
            return self.median
        sigma = math.log(self.p95 / self.median) / Z95
        z = max(-TAIL, min(TAIL, NormalDist().inv_cdf(u)))
        return self.median * math.exp(sigma * z)

    @property
    def most(self) -> float:
        """The longest a draw can be."""
        return self.at(1 - 1e-12)


INSTANT = Latency(0.0, 0.0)

# Defaults, in seconds; docs/simulated-latency.md gives each one's source (a provider's published figure, what our
# fakes measure, or, where a provider publishes nothing, the assumption made).
DEFAULT_ENGINE: dict[str, Latency] = {
    "status": Latency(0.020, 0.060),
    "set_phase": Latency(0.030, 0.100),  # journaled (fsync) before it answers
    "promote": Latency(0.060, 0.250),  # the replica asks every peer for its position before it accepts
    "fence": Latency(0.030, 0.100),
    "no_answer": Latency(2.1, 2.3),  # the production client: 2 attempts, 1 s connect timeout, a short backoff
}
DEFAULT_CLOUDS: dict[str, dict[str, Latency]] = {
    "aws": {"api": Latency(0.15, 0.5), "stop": Latency(20.0, 60.0), "start": Latency(30.0, 60.0),
            "dns_api": Latency(0.3, 1.0), "dns_propagation": Latency(40.0, 60.0)},
    "gcp": {"api": Latency(0.2, 0.6), "stop": Latency(30.0, 90.0), "start": Latency(25.0, 50.0),
            "dns_api": Latency(0.3, 1.0), "dns_propagation": Latency(40.0, 60.0)},
    "azure": {"api": Latency(0.3, 1.0), "stop": Latency(25.0, 60.0), "start": Latency(45.0, 120.0),
              "dns_api": Latency(0.4, 1.2), "dns_propagation": Latency(40.0, 60.0)},
}
OTHER_CLOUD = DEFAULT_CLOUDS["aws"]  # a provider with no defaults of its own (an adapter from docs/extending.md)


@dataclass(frozen=True)
class LatencyTable:
    """Every call's distribution, by `engine.<call>` or `<cloud>.<call>`; `instant`: every call takes no time (the
    simulator before latencies, for comparisons)."""

    engine: Mapping[str, Latency] = field(default_factory=lambda: dict(DEFAULT_ENGINE))
    clouds: Mapping[str, Mapping[str, Latency]] = field(default_factory=dict)
    instant: bool = False

    def of(self, call: str) -> Latency:
        if self.instant:
            return INSTANT
        owner, _, name = call.partition(".")
        if owner == ENGINE:
            return self.engine.get(name, DEFAULT_ENGINE[name])
        mine = self.clouds.get(owner, {})
        return mine[name] if name in mine else DEFAULT_CLOUDS.get(owner, OTHER_CLOUD)[name]

    def override(self, sections: Mapping[str, Mapping[str, Latency]], *, instant: bool = False) -> LatencyTable:
        """This table with a scenario's `latencies:` sections laid over it."""
        engine = {**self.engine, **sections.get(ENGINE, {})}
        clouds = {name: {**self.clouds.get(name, {}), **calls} for name, calls in sections.items() if name != ENGINE}
        return LatencyTable(engine, {**self.clouds, **clouds}, instant or self.instant)


def run_key(seed: int) -> int:
    """The run's latency key: the third number of the run's seeded generator (the world draws the first two, for its
    order and probe streams, from a generator seeded the same way)."""
    master = random.Random(seed)
    master.getrandbits(64)
    master.getrandbits(64)
    return master.getrandbits(64)


Trail = tuple[tuple[str, str], ...]
"""The waits of a cycle that only read (engine statuses), in order: (call, subject). See `Latencies.replay`."""


class Latencies:
    """The run's latency model: draws each call's time and spends it on the virtual clock.

    `reads` / `read_time` count the waits of calls that change nothing (an engine's status), and `trail` lists them
    while the event-driven runner watches (`watch`): such waits are all a quiet cycle does besides reading its own
    memory, and the runner replays them in the ticks it skips (stepping.py)."""

    def __init__(self, table: LatencyTable, clock: VirtualClock, seed: int) -> None:
        self.table, self.clock = table, clock
        self._key = run_key(seed).to_bytes(8, "big")
        self._cache: dict[str, Latency] = {}
        self.read_time = 0.0
        self.waits = 0  # waits that were not reads, the adapters' own pauses and backoffs included (`sleep`)
        self.trail: list[tuple[str, str]] | None = None
        self.waited = 0.0  # every second spent waiting on calls, for the figures
        self.on_wait: Callable[[], None] | None = None  # after each wait (the runner renews the lease: runner.py)

    def latency(self, call: str) -> Latency:
        found = self._cache.get(call)
        if found is None:
            found = self._cache[call] = self.table.of(call)
        return found

    def draw(self, call: str, subject: str, at: float) -> float:
        """The latency of `call` to `subject` sent at `at`: the same for the same run, call, subject and instant."""
        latency = self.latency(call)
        if latency.p95 == latency.median:
            return latency.median
        digest = hashlib.blake2b(f"{call}|{subject}|{at!r}".encode(), key=self._key, digest_size=8).digest()
        return latency.at((int.from_bytes(digest, "big") + 0.5) / 2.0**64)

    def watch(self, on: bool) -> None:
        """Start (or stop) listing read waits for the stepper."""
        self.trail = [] if on else None

    def call(self, call: str, subject: str, act: Callable[[], T], *, read: bool = False) -> T:
        """Half the call's latency, `act()`, the other half; an exception from `act` still spends the second half."""
        took = self.draw(call, subject, self.clock())
        half = took / 2
        self._sleep(half, read)
        try:
            return act()
        finally:
            self._sleep(took - half, read)
            if read and self.trail is not None:
                self.trail.append((call, subject))

    def no_answer(self, subject: str, *, read: bool = False) -> None:
        """What a call to a replica that cannot answer costs before the client gives up."""
        self._sleep(self.draw(NO_ANSWER, subject, self.clock()), read)
        if read and self.trail is not None:
            self.trail.append((NO_ANSWER, subject))

    def sleep(self, seconds: float) -> None:
        """The cloud adapters' own waits (a fence polling its machine, a retry's backoff): never a read."""
        self._sleep(seconds, False)

    def _sleep(self, seconds: float, read: bool) -> None:
        if seconds <= 0:
            return
        self.waited += seconds
        if read:
            self.read_time += seconds
        else:
            self.waits += 1
        self.clock.sleep(seconds)
        if self.on_wait is not None:
            self.on_wait()

    # ---- replaying a quiet cycle's waits (stepping.py) -----------------------------------------------------------

    def replay_end(self, trail: Trail, start: float) -> float:
        """When waits like `trail`'s, begun at `start`, end: the same arithmetic as spending them (`replay`)."""
        now = start
        for call, subject in trail:
            took = self.draw(call, subject, now)
            if call == NO_ANSWER:
                now = now + took if took > 0 else now
                continue
            half = took / 2
            now = now + half if half > 0 else now
            rest = took - half
            now = now + rest if rest > 0 else now
        return now

    def replay(self, trail: Iterable[tuple[str, str]]) -> None:
        """Spend the waits a skipped cycle would have spent, in its order, without making its calls."""
        for call, subject in trail:
            if call == NO_ANSWER:
                self.no_answer(subject, read=True)
            else:
                self.call(call, subject, lambda: None, read=True)
