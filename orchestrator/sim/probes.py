"""`SimProber`: data-plane probes of the simulated replicas from every vantage point, as `EngineProber` makes them.

What it shares with production (orchestrator/drivers/probe.py), so that the health evaluator sees the same shape:
one observation per replica per vantage point (`ok` with the role, or `down` with why), then one per site per
vantage point from `site_observations`, all with source `probe:<vantage>` and the cycle's `now`; the statuses that
came back feed the controller.

What it models, and why:
- a vantage point inside a site that is out cannot report at all, and none but the orchestrator's own can report
  while the orchestrator's host is partitioned (their reports would have to reach it);
- a vantage point that is itself cut off (`observer_partition`) still reports, and sees every probe fail — the
  case the evaluator's observer-isolation rule exists for;
- a probe is `probe_attempts` tries (the production client's retries, 3 by default); with probe loss it fails only
  when every try is lost, while latency beyond the probe timeout fails it outright; latency within the timeout
  is reported `degraded`.
"""

from __future__ import annotations

from orchestrator.core.model import Observation, Status
from orchestrator.drivers.probe import Prober, ProbeRound, probe_source, site_observations
from orchestrator.sim.faults import ORCHESTRATOR
from orchestrator.sim.world import SimReplica, World


class SimProber(Prober):
    def __init__(self, world: World, *, attempts: int | None = None) -> None:
        self.world = world
        self.topology = world.topology
        self.attempts = attempts or world.settings.probe_attempts
        self.timeout = self.topology.probes.timeout
        self.sims: list[SimReplica] = [world.replicas[replica.name]
                                       for engine in self.topology.engines.values() for replica in engine.replicas]
        self.sources = {vantage: probe_source(vantage) for vantage in world.vantages}
        self._site_shapes: dict[tuple[str, tuple[bool, ...]], list[Observation]] = {}  # see _sites

    def _rows(self) -> list[tuple[SimReplica, str | None, float, Status, str]]:
        """Per replica, once per round: why a probe fails from anywhere (loss and partitions aside), the loss
        rate of its site, and the status and detail a successful probe reports."""
        world, timeout = self.world, self.timeout
        out, latency, loss = world.out, world.latency, world.loss
        rows = []
        for sim in self.sims:
            site = sim.site
            slow = latency.get(site, 0.0) if latency else 0.0
            reason: str | None = None
            if site in out:
                reason = f"unreachable: site {site} is out"
            elif slow > timeout:
                reason = f"timed out after {timeout:g}s"
            elif not world.up(sim):
                reason = f"refused: instance {world.clouds[sim.cloud].state_of(site, sim.instance).value}"
            rows.append((sim, reason, loss.get(site, 0.0) if loss else 0.0, Status.DEGRADED if slow else Status.OK,
                         sim.role.value))
        return rows

    def _sites(self, source: str, reached: list[bool], now: float) -> list[Observation]:
        """`site_observations`, computed once per reach pattern and re-stamped: the same answer at a third of the
        cost on the simulator's hot path."""
        key = (source, tuple(reached))
        shape = self._site_shapes.get(key)
        if shape is None:
            if len(self._site_shapes) > 4096:
                self._site_shapes.clear()
            answered = {sim.name: flag for sim, flag in zip(self.sims, reached, strict=True)}
            shape = self._site_shapes[key] = site_observations(self.topology, source, answered, now)
        return [Observation(now, o.subject, o.source, o.status, o.detail) for o in shape]

    def probe(self, now: float) -> ProbeRound:
        world, rng, attempts = self.world, self.world.probe_rng, self.attempts
        orchestrator_cut = ORCHESTRATOR in world.partitioned
        rows = self._rows()
        observations: list[Observation] = []
        add = observations.append
        answered: set[str] = set()
        for vantage in world.vantages:
            if vantage != ORCHESTRATOR and (vantage in world.out or orchestrator_cut):
                continue  # it cannot report: its site is out, or its report cannot reach the orchestrator
            source = self.sources[vantage]
            cut = vantage in world.partitioned
            reached: list[bool] = []
            for sim, reason, loss, ok, role in rows:
                if cut:
                    reason = "unreachable: this vantage point is partitioned"
                elif reason is None and loss and all(rng.random() < loss for _ in range(attempts)):
                    reason = f"lost ({attempts} attempts)"
                if reason is None:
                    add(Observation(now, sim.name, source, ok, role))
                    answered.add(sim.name)
                else:
                    add(Observation(now, sim.name, source, Status.DOWN, reason))
                reached.append(reason is None)
            observations.extend(self._sites(source, reached, now))
        statuses = {sim.name: sim.status() for sim in self.sims if sim.name in answered}
        return ProbeRound(observations, statuses)
