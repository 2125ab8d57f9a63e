"""Data-plane probes: each vantage point asks each replica for its status, and the answers become observations.

A probe that times out or is refused is a `down` observation of the replica; per vantage point, a site is
observed `ok` when all its replicas answered, `degraded` when some did, `down` when none did. The statuses that
came back feed the decision (lag, role, epoch) and the runbook's checks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from orchestrator.core.errors import FailoverError
from orchestrator.core.model import Observation, Replica, ReplicaStatus, Status, Topology
from orchestrator.engine.base import EngineControl

ORCHESTRATOR = "orchestrator"


def probe_source(vantage: str) -> str:
    return f"probe:{vantage}"


@dataclass(frozen=True, slots=True)
class ProbeRound:
    observations: list[Observation] = field(default_factory=list)
    statuses: dict[str, ReplicaStatus] = field(default_factory=dict)  # by replica, from any vantage point


class Prober(ABC):
    """Probes every replica from the vantage points this process can speak for."""

    @abstractmethod
    def probe(self, now: float) -> ProbeRound: ...


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
    cycle past the probe interval.
    """

    def __init__(
        self,
        topology: Topology,
        engines: EngineControl,
        *,
        vantage: str = ORCHESTRATOR,
        workers: int = 32,
        replicas: Iterable[Replica] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._topology = topology
        self._engines = engines
        self._source = probe_source(vantage)
        self._replicas = list(replicas or (r for e in topology.engines.values() for r in e.replicas))
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(self._replicas))))
        self._clock = clock

    def _one(self, replica: Replica) -> tuple[Replica, ReplicaStatus | None, str]:
        try:
            return replica, self._engines.status(replica), ""
        except FailoverError as error:
            return replica, None, str(error)

    def probe(self, now: float) -> ProbeRound:
        results = list(self._pool.map(self._one, self._replicas))
        at = self._clock() if self._clock else now
        observations, statuses, reached = [], {}, {}
        for replica, status, error in results:
            reached[replica.name] = status is not None
            if status is None:
                observations.append(Observation(at, replica.name, self._source, Status.DOWN, error))
            else:
                statuses[replica.name] = status
                observations.append(Observation(at, replica.name, self._source, Status.OK, status.role.value))
        observations.extend(site_observations(self._topology, self._source, reached, at))
        return ProbeRound(observations, statuses)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
