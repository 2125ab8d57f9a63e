"""`SimEngineControl`: the engine control interface (docs/design.md §7) answered by the simulated replicas.

Why it mirrors the reference replica so closely: the runbook that runs here is the one that runs in production, so
every answer must be one a real replica could give — the epoch rule first (a lower epoch is refused with
`StaleEpoch` and changes nothing; a higher one is recorded before the call acts), then the role, then the effect.
Where the simulation takes a position the reference replica leaves open, it is stated here:

- a standby accepts `set_phase` (recording the epoch and the phase it is told), so that the runbook's `halt` step
  can confirm that every replica it reaches is halted under its epoch; a fenced replica accepts only `halted`,
  which it already is;
- fencing halts: a fenced replica reports `halted` (it takes no order, so that is what it is);
- a promotion without `force` is refused with `PromoteRefused` when a peer the replica can reach holds more
  journal entries; a promoted replica applies everything it holds and starts `halted`.

- a rejoin (`rejoin`, `rejoin_status`: docs/simulated-rejoin.md) fences the replica at once and answers its record;
  the world copies the primary's journal to it at a simulated rate (`World._rejoin_progress`) and makes it a
  standby once caught up. Refused like the reference replica's: a stale epoch, `is_primary`, a primary that is not
  one of the engine's replicas. Asked again with the same primary and epoch while it runs, it answers the same
  rejoin (resumable).

Every call fails with `EngineError` when the orchestrator's host is partitioned, the replica's site is out, its
machine is not running, or it answers slower than the control timeout.

Every call takes time (`orchestrator.sim.latency`): one that gets an answer spends half its drawn latency before it
acts and half after; one that gets none costs what the production client spends before it gives up
(`engine.no_answer`). A status changes nothing, so its wait is a read the event-driven runner may replay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from orchestrator.core.errors import EngineError, StaleEpoch
from orchestrator.core.model import Phase, Replica, ReplicaStatus, Role
from orchestrator.engine.base import EngineControl, PromoteRefused
from orchestrator.sim.latency import Latencies
from orchestrator.sim.replica import RejoinJob, SimReplica, common_prefix
from orchestrator.sim.world import World


class SimEngineControl(EngineControl):
    def __init__(self, world: World, latency: Latencies | None = None) -> None:
        self.world = world
        self.latency = latency  # None: every call answers at once
        self.calls = 0
        self.changes = 0  # mutating calls (set_phase, promote, fence), refused or not: see stepping.py

    def _reach(self, replica: Replica, *, read: bool = False) -> SimReplica:
        self.calls += 1
        sim = self.world.replicas[replica.name]
        problem = self.world.control_problem(sim)
        if problem is not None:
            if self.latency is not None:
                self.latency.no_answer(sim.name, read=read)
            raise EngineError(f"replica {replica.name} at {replica.control_url}: {problem}")
        return sim

    def _timed(self, call: str, sim: SimReplica, act: Callable[[], ReplicaStatus], *,
               read: bool = False) -> ReplicaStatus:
        if self.latency is None:
            return act()
        return self.latency.call(f"engine.{call}", sim.name, act, read=read)

    def _see_epoch(self, sim: SimReplica, epoch: int) -> None:
        """The epoch rule, checked before anything else; every mutating call goes through here."""
        self.changes += 1
        if epoch < sim.epoch:
            raise StaleEpoch(f"replica {sim.name}: stale epoch {epoch}; the replica has seen epoch {sim.epoch}")
        sim.epoch = epoch
        self.world.touch()

    def status(self, replica: Replica) -> ReplicaStatus:
        sim = self._reach(replica, read=True)
        return self._timed("status", sim, sim.status, read=True)

    def set_phase(self, replica: Replica, phase: Phase, until: float | None, epoch: int) -> ReplicaStatus:
        sim = self._reach(replica)
        return self._timed("set_phase", sim, lambda: self._set_phase(sim, phase, until, epoch))

    def _set_phase(self, sim: SimReplica, phase: Phase, until: float | None, epoch: int) -> ReplicaStatus:
        self._see_epoch(sim, epoch)
        if sim.role is Role.FENCED:
            if phase is Phase.HALTED:
                return sim.status()
            raise EngineError(f"replica {sim.name}: refused with 409 fenced")
        sim.phase = phase
        sim.phase_until = until if phase is Phase.PROTECTION else None
        return sim.status()

    def promote(self, replica: Replica, epoch: int, *, force: bool = False) -> ReplicaStatus:
        sim = self._reach(replica)
        return self._timed("promote", sim, lambda: self._promote(sim, epoch, force))

    def _promote(self, sim: SimReplica, epoch: int, force: bool) -> ReplicaStatus:
        self._see_epoch(sim, epoch)
        if sim.role is Role.PRIMARY:
            return sim.status()
        if sim.role is Role.FENCED and not force:
            raise EngineError(f"replica {sim.name}: refused with 409 fenced")
        if not force:
            ahead = max(self.world.reachable_peers(sim), key=lambda peer: peer.n, default=None)
            if ahead is not None and ahead.n > sim.n:
                raise PromoteRefused(
                    f"replica {sim.name}: promotion refused: at seq {sim.n}, behind {ahead.name} at {ahead.n}",
                    last_seq=sim.n, peer_seq=ahead.n, peer=ahead.name,
                )
        self.world.note_promotion(sim, force)
        sim.role = Role.PRIMARY
        sim.applied = sim.n
        sim.phase, sim.phase_until = Phase.HALTED, None
        return sim.status()

    def fence(self, replica: Replica, epoch: int) -> ReplicaStatus:
        sim = self._reach(replica)
        return self._timed("fence", sim, lambda: self._fence(sim, epoch))

    def _fence(self, sim: SimReplica, epoch: int) -> ReplicaStatus:
        self._see_epoch(sim, epoch)
        sim.role = Role.FENCED
        sim.phase, sim.phase_until = Phase.HALTED, None
        return sim.status()

    # ---- rejoin (docs/rejoin.md; the simulated copy is the world's: World._rejoin_progress) --------------------

    def rejoin(self, replica: Replica, epoch: int, primary_url: str) -> dict[str, Any]:
        sim = self._reach(replica)
        return self._timed_record("set_phase", sim, lambda: self._rejoin(sim, epoch, primary_url))

    def _rejoin(self, sim: SimReplica, epoch: int, primary_url: str) -> dict[str, Any]:
        self._see_epoch(sim, epoch)
        if sim.role is Role.PRIMARY:
            raise EngineError(f"replica {sim.name}: refused with 409 is_primary")
        flow = self.world.engines[sim.engine]
        primary = flow.by_address.get(urlparse(primary_url).hostname or primary_url)
        if primary is None or primary is sim:
            raise EngineError(f"replica {sim.name}: refused with 400: {primary_url} is not a peer")
        job = sim.rejoin
        if job is not None and job.state in ("started", "copying") and job.primary == primary.name \
                and job.epoch == epoch:
            return job.record()  # the same rejoin, followed again
        now = self.world.clock()
        common = common_prefix(sim, primary)
        sim.rejoin = RejoinJob(primary.name, epoch, now, common, sim.n - common, float(common), now)
        sim.role = Role.FENCED
        sim.phase, sim.phase_until = Phase.HALTED, None
        self.world.start_rejoin(sim)
        return sim.rejoin.record()

    def rejoin_status(self, replica: Replica) -> dict[str, Any]:
        sim = self._reach(replica, read=True)
        return self._timed_record("status", sim, lambda: sim.rejoin.record() if sim.rejoin else {"state": "none"},
                                  read=True)

    def _timed_record(self, call: str, sim: SimReplica, act: Callable[[], dict[str, Any]], *,
                      read: bool = False) -> dict[str, Any]:
        if self.latency is None:
            return act()
        return self.latency.call(f"engine.{call}", sim.name, act, read=read)
