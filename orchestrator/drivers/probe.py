"""Data-plane probes: each vantage point asks each replica for its status, and the answers become observations.

A probe that times out or is refused is a `down` observation of the replica; per vantage point, a site is
observed `ok` when all its replicas answered, `degraded` when some did, `down` when none did. The statuses that
came back feed the decision (lag, role, epoch) and the runbook's checks.

A round must fit its interval at exchange scale (1,000 replicas in a 1 s interval, docs/daemon-scale.md): an
engine control that can ask many replicas at once (`StatusBatch`: `HttpEngineClient`, over kept-alive connections
on one event loop) is asked once per round; any other (the simulator's, a test's) is asked replica by replica from
a thread pool. Either way at most `workers` requests are in flight, each bounded by the client's own deadlines.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orchestrator.core.errors import FailoverError
from orchestrator.core.gray import Measured
from orchestrator.core.model import Observation, Replica, ReplicaStatus, Status, Topology
from orchestrator.engine.base import EngineControl

if TYPE_CHECKING:  # numpy is not imported at run time here: the CLI's start-up loads this module
    from orchestrator.core.health_columns import Column

ORCHESTRATOR = "orchestrator"
THREADS = 32  # probes in flight, one thread each, for an engine control that asks one replica at a time
# Probes in flight through a StatusBatch. Each holds one of the connections kept per replica anyway, so the bound
# costs no descriptors; set above the replicas a daemon probes, the replicas of a lost site (all hanging at once)
# cost one deadline, not one per wave: 334 hung of 1,002, a round of 1.6 s here, 2.0 s at 256, 12 s from 32 threads.
IN_FLIGHT = 1024


def probe_source(vantage: str) -> str:
    return f"probe:{vantage}"


@dataclass(frozen=True, slots=True)
class ProbeRound:
    observations: list[Observation] = field(default_factory=list)
    statuses: dict[str, ReplicaStatus] = field(default_factory=dict)  # by replica, from any vantage point
    # From `probe_columns` of a prober that speaks columns: the round in order, each vantage point's probes of the
    # replicas as one `core.health_columns.Column` (the other observations as objects); `observations` is then
    # empty.
    columns: tuple[Column | Observation, ...] = ()


@runtime_checkable
class StatusBatch(Protocol):
    """An engine control that asks many replicas at once: per replica its status or the error `status` would
    raise, in order; None when it cannot here (then it is asked one replica at a time)."""

    def statuses(self, replicas: Sequence[Replica], limit: int) -> Sequence[ReplicaStatus | FailoverError] | None:
        ...


class Prober(ABC):
    """Probes every replica from the vantage points this process can speak for."""

    @abstractmethod
    def probe(self, now: float) -> ProbeRound: ...

    def probe_columns(self, now: float) -> ProbeRound:
        """The same round for the columnar health evaluator (`ProbeRound.columns`); a prober that cannot say it in
        columns answers with observations, which the evaluator takes as well."""
        return self.probe(now)


def site_observations(
    topology: Topology, source: str, reached: Mapping[str, bool], now: float
) -> list[Observation]:
    """Per site, the share of its replicas this vantage point reached, as one observation of the site."""
    per_site: dict[str, list[bool]] = defaultdict(list)
    for engine in topology.engines.values():
        for replica in engine.replicas:
            if replica.name in reached:
                per_site[replica.site].append(reached[replica.name])
    observations = []
    for site, results in per_site.items():
        up = sum(results)
        status = Status.OK if up == len(results) else Status.DOWN if up == 0 else Status.DEGRADED
        observations.append(Observation(now, site, source, status, f"{up}/{len(results)} replicas answered"))
    return observations


class EngineProber(Prober):
    """Probes over an `EngineControl` from one vantage point (the orchestrator's own host by default).

    Probes run concurrently, each bounded by the client's own timeout, so a few hung replicas cannot stretch a
    cycle past the probe interval: with `workers` in flight, a round takes at most about
    ceil(hung / workers) timeouts more than it would without them.
    """

    def __init__(
        self,
        topology: Topology,
        engines: EngineControl,
        *,
        vantage: str = ORCHESTRATOR,
        workers: int | None = None,
        replicas: Iterable[Replica] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._topology = topology
        self._engines = engines
        self._source = probe_source(vantage)
        self._replicas = list(replicas or (r for e in topology.engines.values() for r in e.replicas))
        self._batch = engines if isinstance(engines, StatusBatch) else None
        self._workers = max(1, workers or (IN_FLIGHT if self._batch else THREADS))
        self._pool: ThreadPoolExecutor | None = None  # made on first use: a batch needs no threads
        self._clock = clock

    def _one(self, replica: Replica) -> tuple[ReplicaStatus | FailoverError, float | None]:
        started = time.monotonic()
        try:
            return self._engines.status(replica), time.monotonic() - started
        except FailoverError as error:
            return error, None

    def _ask(self) -> tuple[Sequence[ReplicaStatus | FailoverError], Mapping[str, float]]:
        """Each replica's answer, and the round trip of those that answered (what a gray objective judges)."""
        answers = self._batch.statuses(self._replicas, self._workers) if self._batch else None
        if answers is not None:
            return answers, getattr(self._batch, "round_trips", {})
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=min(self._workers, max(1, len(self._replicas))))
        timed = list(self._pool.map(self._one, self._replicas))
        trips = {r.name: elapsed for r, (_, elapsed) in zip(self._replicas, timed, strict=True) if elapsed is not None}
        return [answer for answer, _ in timed], trips

    def probe(self, now: float) -> ProbeRound:
        answers, trips = self._ask()
        at = self._clock() if self._clock else now
        observations, statuses, reached = [], {}, {}
        source, ok, down = self._source, Status.OK, Status.DOWN
        for replica, answer in zip(self._replicas, answers, strict=True):
            if isinstance(answer, FailoverError):
                reached[replica.name] = False
                observations.append(Observation(at, replica.name, source, down, str(answer)))
            else:
                reached[replica.name] = True
                statuses[replica.name] = answer
                observations.append(Measured(at, replica.name, source, ok, answer.role.value,
                                             latency=trips.get(replica.name)))
        observations.extend(site_observations(self._topology, source, reached, at))
        return ProbeRound(observations, statuses)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
