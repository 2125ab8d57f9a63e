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
  is reported `degraded`;
- with a gray objective (`policy.gray`), each answer carries its round-trip time (`gray.Measured`): a replica's
  normal time (`world.PROBE_LATENCY`), times a slow fault's factor, plus its site's added latency. A constant, not a
  draw: a jittered time would make every round news, and cost the randomness that decides which probes are lost.

A round is drawn in two halves so that the event-driven runner (`stepping.py`) can tell a tick whose probes come
out as the last cycle's from one that brings news, without building the round: `lost(now)` draws which probes are
lost to probe loss (the only random part of a round, drawn in exactly the order `probe` always drew it) and keeps
the answer for `probe(now)`, which builds the observations. Everything else about a round follows from the world's
conditions, which only change with its `version` (fault edges, control calls) or an instance transition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from orchestrator.core.gray import Measured
from orchestrator.core.model import Observation, ReplicaStatus, Status
from orchestrator.drivers.probe import Prober, ProbeRound, probe_source, site_observations
from orchestrator.sim.builders import builder
from orchestrator.sim.faults import ORCHESTRATOR
from orchestrator.sim.replica import SimReplica
from orchestrator.sim.world import World

if TYPE_CHECKING:  # numpy, imported by `probe_columns` only: a controller judging health over arrays asks for it
    from orchestrator.core.health_columns import Column

Row = tuple[SimReplica, str | None, float, Status, str, float]
"""Per replica, for one round: why a probe fails from anywhere (loss and partitions aside), its site's loss rate,
and the status, detail and round-trip time a successful probe reports."""

Lost = frozenset[tuple[int, int]]
"""The probes of one round lost to probe loss: (vantage index, replica index) pairs."""

Answers = tuple[tuple[tuple[str, Status, str, float | None], ...], tuple[bool, ...], frozenset[str]]
"""One vantage point's round: per replica (name, status, detail, latency), whether each answered, and who did."""

PARTITIONED = "unreachable: this vantage point is partitioned"
_observation = builder(Observation)  # ~150 per round at ten engines: see builders.py
_status_fields = attrgetter("role", "epoch", "phase", "phase_until", "n", "applied")  # all SimReplica.status reads


def _measured_builder() -> Callable[[float, str, str, Status, str, float | None], Measured]:
    """`builder(Measured)`'s way for a subclass, whose inherited slots live on its parent: each slot set through its
    descriptor, found on the class the way attribute lookup finds it."""
    new = object.__new__
    sets = [getattr(Measured, f.name).__set__ for f in fields(Measured)]
    set_at, set_subject, set_source, set_status, set_detail, set_cause, set_latency = sets

    def build(at: float, subject: str, source: str, status: Status, detail: str, latency: float | None) -> Measured:
        made: Measured = new(Measured)
        set_at(made, at)
        set_subject(made, subject)
        set_source(made, source)
        set_status(made, status)
        set_detail(made, detail)
        set_cause(made, None)
        set_latency(made, latency)
        return made

    return build


_measure = _measured_builder()


class SimProber(Prober):
    def __init__(self, world: World, *, attempts: int | None = None) -> None:
        self.world = world
        self.topology = world.topology
        self.attempts = attempts or world.settings.probe_attempts
        self.timeout = self.topology.probes.timeout
        self.sims: list[SimReplica] = [world.replicas[replica.name]
                                       for engine in self.topology.engines.values() for replica in engine.replicas]
        self.sources = {vantage: probe_source(vantage) for vantage in world.vantages}
        self.measured = getattr(self.topology.policy, "gray", None) is not None  # Policy.gray: core/model.py
        self._site_shapes: dict[tuple[str, tuple[bool, ...]], list[Observation]] = {}  # see _sites
        self._drawn: tuple[float, int, Lost] | None = None  # (now, world version, lost): see `lost`
        self._kept: tuple[int, list[Row]] | None = None  # (world version, rows) while no instance transition runs
        self.last_lost: Lost = frozenset()  # what the last built round lost
        self._answered: dict[tuple[int, bool], tuple[list[Row], Answers]] = {}  # see _answers
        self.names = tuple(sim.name for sim in self.sims)  # every round's replica column (kept: see Column)
        self._coded: dict[int, tuple[Answers, Any, tuple[str, ...]]] = {}  # see _column
        self._who: tuple[list[frozenset[str]], set[str]] | None = None  # see _round
        self._status_kept: tuple[set[str], list[tuple[object, ...]], dict[str, ReplicaStatus],
                                 dict[str, tuple[tuple[object, ...], ReplicaStatus]]] | None = None  # see _statuses

    def _rows(self) -> list[Row]:
        world = self.world
        kept = self._kept
        if kept is not None and kept[0] == world.version and not world.moving():
            return kept[1]
        rows = self._fresh_rows()
        self._kept = None if world.moving() else (world.version, rows)
        return rows

    def _fresh_rows(self) -> list[Row]:
        world, timeout = self.world, self.timeout
        out, latency, loss, dark, slowed = world.out, world.latency, world.loss, world.dark, world.slow
        rows = []
        for sim in self.sims:
            site = sim.site
            slow = latency.get(site, 0.0) if latency else 0.0
            answer = world.answer_time(sim)
            factor = slowed.get(sim.name, 1.0) if slowed else 1.0
            reason: str | None = None
            if site in out:
                reason = f"unreachable: site {site} is out"
            elif dark and sim.name in dark:
                reason = f"unreachable: replica {sim.name} is dark"
            elif slow > timeout or (factor > 1.0 and answer > timeout):
                reason = f"timed out after {timeout:g}s"
            elif not world.up(sim):
                reason = f"refused: instance {world.clouds[sim.cloud].state_of(site, sim.instance).value}"
            rows.append((sim, reason, loss.get(site, 0.0) if loss else 0.0,
                         Status.DEGRADED if slow or factor > 1.0 else Status.OK, sim.role.value, answer))
        return rows

    def _reporting(self) -> list[tuple[int, str, bool]]:
        """The vantage points that can report this round, each with its index and whether it is cut off."""
        world = self.world
        orchestrator_cut = ORCHESTRATOR in world.partitioned
        return [(index, vantage, vantage in world.partitioned) for index, vantage in enumerate(world.vantages)
                if vantage == ORCHESTRATOR or not (vantage in world.out or orchestrator_cut)]

    def lost(self, now: float, rows: list[Row] | None = None) -> Lost:
        """Draw which probes of the round at `now` are lost, and keep the answer for `probe(now)`. The draws are
        those `probe` has always made: per reporting vantage point that is not cut off, per replica that would
        answer on a site with loss, `attempts` tries that stop at the first one that gets through."""
        world = self.world
        if not world.loss:
            found: Lost = frozenset()
        else:
            random_, attempts = world.probe_rng.random, self.attempts
            lossy = [(index, loss) for index, (_, reason, loss, _, _, _) in enumerate(rows or self._rows())
                     if reason is None and loss]
            found = frozenset((vantage, replica) for vantage, _, cut in self._reporting() if not cut
                              for replica, loss in lossy if all(random_() < loss for _ in range(attempts)))
        self._drawn = (now, world.version, found)
        return found

    def _sites(self, source: str, reached: tuple[bool, ...], now: float) -> list[Observation]:
        """`site_observations`, computed once per reach pattern and re-stamped: the same answer at a third of the
        cost on the simulator's hot path."""
        key = (source, reached)
        shape = self._site_shapes.get(key)
        if shape is None:
            if len(self._site_shapes) > 4096:
                self._site_shapes.clear()
            answered = {sim.name: flag for sim, flag in zip(self.sims, reached, strict=True)}
            shape = self._site_shapes[key] = site_observations(self.topology, source, answered, now)
        return [_observation(now, o.subject, o.source, o.status, o.detail) for o in shape]

    def _answers(self, rows: list[Row], index: int, cut: bool, lost: Lost) -> Answers:
        """What one vantage point's probes answer this round (each replica's status and detail, who answered);
        kept while the rows are, for a round in which none of its probes was lost (nearly every round)."""
        plain = not cut and not any(vantage == index for vantage, _ in lost)
        if plain or cut:
            kept = self._answered.get((index, cut))
            if kept is not None and kept[0] is rows:
                return kept[1]
        failed = f"lost ({self.attempts} attempts)"
        entries: list[tuple[str, Status, str, float | None]] = []
        for position, (sim, reason, _, ok, role, answer) in enumerate(rows):
            if cut:
                reason = PARTITIONED
            elif reason is None and (index, position) in lost:
                reason = failed
            entries.append((sim.name, ok, role, answer) if reason is None else (sim.name, Status.DOWN, reason, None))
        reached = tuple(status is not Status.DOWN for _, status, _, _ in entries)
        who = frozenset(name for (name, _, _, _), up in zip(entries, reached, strict=True) if up)
        answers = (tuple(entries), reached, who)
        if plain or cut:
            self._answered[(index, cut)] = (rows, answers)
        return answers

    def _round(self, now: float) -> tuple[list[tuple[str, Answers]], set[str]]:
        """Each reporting vantage point's source and answers this round, and the replicas anyone reached."""
        rows = self._rows()
        drawn, self._drawn = self._drawn, None
        lost = drawn[2] if drawn is not None and drawn[:2] == (now, self.world.version) else self.lost(now, rows)
        self._drawn = None
        self.last_lost = lost
        found = [(self.sources[vantage], self._answers(rows, index, cut, lost))
                 for index, vantage, cut in self._reporting()]
        who = [answers[2] for _, answers in found]
        kept = self._who
        if kept is not None and len(kept[0]) == len(who) and all(a is b for a, b in zip(kept[0], who, strict=True)):
            return found, kept[1]  # the same answers as last round: the same replicas reached
        answered: set[str] = set()
        for reached in who:
            answered |= reached
        self._who = (who, answered)
        return found, answered

    def _statuses(self, answered: set[str]) -> dict[str, ReplicaStatus]:
        """The status of each replica that answered. A status is made of six of the replica's fields: one that
        did not change since the last round is the same (frozen) object, and a round in which none changed and the
        same replicas answered is the last round's dict, copied (at 30,000 replicas, 25 ms of new objects before)."""
        keys = list(map(_status_fields, self.sims))
        kept = self._status_kept
        if kept is not None and (kept[0] is answered or kept[0] == answered) and kept[1] == keys:
            return dict(kept[2])
        before = kept[3] if kept is not None else {}
        found: dict[str, ReplicaStatus] = {}
        made: dict[str, tuple[tuple[object, ...], ReplicaStatus]] = {}
        for sim, key in zip(self.sims, keys, strict=True):
            if sim.name not in answered:
                continue
            old = before.get(sim.name)
            status = old[1] if old is not None and old[0] == key else sim.status()
            made[sim.name] = (key, status)
            found[sim.name] = status
        self._status_kept = (answered, keys, found, made)  # `answered` is never changed once made (`_round`)
        return dict(found)

    def probe(self, now: float) -> ProbeRound:
        rounds, answered = self._round(now)
        observations: list[Observation] = []
        for source, (entries, reached, _) in rounds:
            if self.measured:
                observations += [_measure(now, name, source, status, detail, latency)
                                 for name, status, detail, latency in entries]
            else:
                observations += [_observation(now, name, source, status, detail) for name, status, detail, _ in entries]
            observations += self._sites(source, reached, now)
        return ProbeRound(observations, self._statuses(answered))

    def probe_columns(self, now: float) -> ProbeRound:
        """`probe`'s round with each vantage point's probes of the replicas as one `Column` (the same observations,
        in the same order; the sites' as objects), for the columnar health evaluator: no observation object per
        probe. Under a gray objective (answers carry their latency) the round is `probe`'s."""
        if self.measured:
            return self.probe(now)
        from orchestrator.core.health_columns import Column

        rounds, answered = self._round(now)
        batch: list[Column | Observation] = []
        for source, answers in rounds:
            codes, details = self._column(answers)
            batch.append(Column(now, source, self.names, codes, details))
            batch += self._sites(source, answers[1], now)
        return ProbeRound([], self._statuses(answered), tuple(batch))

    def _column(self, answers: Answers) -> tuple[Any, tuple[str, ...]]:
        """A vantage point's answers as status codes and details, kept as long as `_answers` keeps the answers."""
        kept = self._coded.get(id(answers))
        if kept is not None and kept[0] is answers:
            return kept[1], kept[2]
        import numpy as np

        from orchestrator.core.health_columns import code_of

        entries = answers[0]
        if len(self._coded) > 64:
            self._coded.clear()
        codes = np.array([code_of(status) for _, status, _, _ in entries], np.int8)
        details = tuple(detail for _, _, detail, _ in entries)
        self._coded[id(answers)] = (answers, codes, details)  # the answers are held, so their id is not reused
        return codes, details
