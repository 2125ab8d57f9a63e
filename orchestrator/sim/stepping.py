"""Event-driven stepping: which ticks the runner may account for without running a controller cycle.

Why: a simulated day at 1 s probes is 86,400 ticks, and in most of them nothing can change: the world is as it was,
every probe answers as it did, the health evaluator's counts are past every threshold, no timer falls due. A cycle
in such a tick would come to the same verdicts and the same decision as the last one and change nothing. Running
it anyway made the simulator's cost grow with every engine, replica and vantage point (issue 17 item 4); skipping
it is exact only if "nothing can change" is exact. So a tick is skipped only when all of this holds, and the tests
compare every built-in scenario's report with the tick-by-tick run's, byte for byte (tests/sim/test_sim_stepping.py).

After a cycle (`settle`), the ticks that follow may be skipped when that cycle was a fixed point:
- it changed nothing outside the controller's memory: no event, no store write but the lease's renewal, no engine
  call that changes anything, no sleep (a retried cloud call, a wait), no action but a hold already paged, and no
  runbook moving except one waiting out its protection window;
- the controller's memory is settled: every probe track refreshed this cycle has counted past the failure
  threshold (failures) or the recovery threshold (oks), so one more identical probe cannot change a vote;
- and then until the first timer that could change a verdict or a decision: a track going stale (a source that no
  longer reports), a fall into `down` leaving the flap window, a suspect primary reaching `suspect_timeout`, a
  cloud API's next poll, the end of a protection window, the end of a site's quarantine (it may be a target again,
  and the cycle that sees it ends the quarantine in the store).

A rejoin the simulation starts (`rejoiner.py`) runs between cycles, at a tick, in both steppings; the cycle of a
tick with a rejoin attempt always runs, and one that finishes changes the world's `version`.

Before each tick (`may_skip`), the world must be as it was: no fault edge, no control call (the world's
`version`), no instance transition under way, and the probes lost to probe loss (drawn for this tick exactly as the
cycle would draw them, and kept for it) the same as in the last cycle. The tick before a fault edge always runs, so
that the tracks of a vantage point that stops reporting at the edge end at the same time as in a tick-by-tick run.

Calls take time (latency.py), and a cycle that waits has moved the clock and let the world live through the wait
(orders drawn over two stretches instead of one): such a cycle is a fixed point only if its waits were all reads of
the replicas' statuses (the runbook re-reading them while a protection window runs; every other wait counts as a
change). Its waits are kept (`trail`), and each tick skipped after it spends the same waits in the same order
(`replay`): the latencies are keyed draws (latency.py), so the skipped tick's world lives through exactly what the
tick-by-tick run's does. A tick is skipped only if those waits end before the next timer and the next fault edge.

What a skipped tick would have changed, and why it does not matter: the tracks' timestamps and counts (refreshed
by the next cycle before any verdict is taken; counts past their thresholds compare the same), the lease's expiry
(only this simulation's controller holds it), the highest journal position seen on a standby (a maximum, and
standbys only move forward while nothing changes). The world itself lives through every tick as before: the order
stream is drawn tick by tick, so the same seed sends the same orders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from orchestrator.core import gray
from orchestrator.core import runbook as rb
from orchestrator.core.decide import ActionKind
from orchestrator.core.health import PROVIDER_PREFIX, HealthSettings, HealthState
from orchestrator.core.model import Status, Verdict
from orchestrator.drivers.controller import Controller, CycleResult
from orchestrator.drivers.events import EventLog
from orchestrator.sim.engine import SimEngineControl
from orchestrator.sim.latency import Latencies, Trail
from orchestrator.sim.probes import Lost, SimProber
from orchestrator.sim.store import SimStore
from orchestrator.sim.world import World

MARGIN = 1e-3  # seconds: a tick this close to a timer runs (timers are sums of floats; a cycle too many is harmless)


@dataclass(frozen=True, slots=True)
class Mark:
    """What a cycle could change, counted before it runs (`now` is when it began: waits move the clock, and the
    waits that are not reads are counted in `waits`)."""

    now: float = field(compare=False)
    events: int
    writes: int
    changes: int
    version: int
    waits: int


class Stepper:
    def __init__(self, world: World, controller: Controller, prober: SimProber, store: SimStore,
                 engines: SimEngineControl, events: EventLog, latency: Latencies) -> None:
        self.world, self.controller, self.prober = world, controller, prober
        self.store, self.engines, self.events, self.latency = store, engines, events, latency
        latency.watch(True)
        self.trail: Trail = ()  # the waits of the last fixed-point cycle, replayed in each tick skipped after it
        self.suspect_timeout = controller.topology.policy.suspect_timeout
        self.until = -math.inf  # ticks before this may be skipped (if the world is as it was)
        self.version = -1
        self.lost: Lost = frozenset()

    def reset(self) -> None:
        """Run the next tick: the world may have been changed from outside (a test injecting a fault)."""
        self.until = -math.inf

    def may_skip(self, tick: float, interval: float) -> bool:
        """Whether the cycle at `tick` would be the last cycle over again (the world has lived up to `tick`)."""
        world = self.world
        if tick > self.until - MARGIN or world.version != self.version or world.moving():
            return False
        end = self.latency.replay_end(self.trail, tick) if self.trail else tick
        if end > self.until - MARGIN:
            return False  # the waits would reach a timer (the window's end): the cycle must run
        if world.next_edge_at() <= max(tick + interval, end):
            return False  # the tick before an edge runs: see the module's docstring
        return not world.loss or self.prober.lost(tick) == self.lost

    def replay(self) -> None:
        """Spend the waits of a skipped tick's cycle (see the module's docstring)."""
        if self.trail:
            self.latency.replay(self.trail)

    def mark(self) -> Mark:
        """Before a cycle: what it could change, and a fresh list of its read waits."""
        self.latency.watch(True)
        return self._counts()

    def _counts(self) -> Mark:
        return Mark(self.world.clock(), len(self.events.events), self.store.writes, self.engines.changes,
                    self.world.version, self.latency.waits)

    def settle(self, before: Mark, result: CycleResult) -> None:
        """After a cycle: how long the ticks that follow may be skipped (not at all unless it was a fixed point)."""
        self.until, self.trail = -math.inf, ()
        if result.leader and self._changed_nothing(before, result):
            self.until = self._timers(before.now, result)
            self.version, self.lost = self.world.version, self.prober.last_lost
            self.trail = tuple(self.latency.trail or ())

    def _changed_nothing(self, before: Mark, result: CycleResult) -> bool:
        return (self._counts() == before and not self.world.moving()
                and all(action.kind is ActionKind.HOLD for action in result.actions)
                and all(p.status is rb.Status.RUN and p.step is rb.Step.AWAIT_WINDOW for p in result.progress))

    def _timers(self, now: float, result: CycleResult) -> float:
        """The first time at which a cycle could come out differently (-inf: the next one may)."""
        controller = self.controller
        until = settled_until(controller.health, controller.settings, now)
        if controller.settings.gray is not None:  # a gray window's edge, or a budget used up, changes a verdict
            until = min(until, gray.next_change(controller.health.gray, now, controller.settings.gray))
        for assessment in result.verdicts.values():  # `now - since > suspect_timeout` turns true once, for good
            if assessment.verdict is Verdict.SUSPECT and now - assessment.since <= self.suspect_timeout:
                until = min(until, assessment.since + self.suspect_timeout)
        duration = controller.topology.policy.quarantine  # a quarantine's end changes what may be a target
        for quarantine in self.store.quarantines().values():
            ends = quarantine.ends_at(duration)
            if ends is not None:
                until = min(until, ends)
        due = controller.provider_watch._next_at  # when each cloud API is polled next
        for site in controller.providers:
            until = min(until, due.get(site, -math.inf))
        for progress in result.progress:
            window = rb.protection_until(self.store.journal(progress.incident))
            until = min(until, -math.inf if window is None else window)
        return until


def settled_until(health: HealthState, settings: HealthSettings, now: float) -> float:
    """Until when the evaluator's memory gives the same verdicts if every source that reported at `now` keeps
    reporting the same (-inf: it may not, a count is still below its threshold): the first time a track that was not
    refreshed at `now` goes stale, or a fall into `down` leaves the flap window.

    A run of failures below the threshold always counts (one more makes the source fail the subject). A run of oks
    below it counts only for a subject that is down: oks are read only to leave `down` (core/health.py rule 3). For
    any other subject, it takes at least `failure_threshold` cycles of failures, all of them run (a failure is news),
    to fall into `down`, and every source still answering ok counts one more ok in each: by then its run is past
    the threshold whether or not the quiet ticks before were counted."""
    threshold, until, subjects, unknown = settings.failure_threshold, math.inf, health.subjects, Status.UNKNOWN
    for (subject, source), (status, at, failures, oks) in health.tracks.items():
        if at == now and status is not unknown and not source.startswith(PROVIDER_PREFIX):
            if 0 < failures < threshold:
                return -math.inf
            if failures == 0 and oks < threshold:
                record = subjects.get(subject)
                if record is None or record.down:
                    return -math.inf
        elif status is not unknown:  # an unknown track never votes, whatever its age
            limit = settings.provider_stale_after if source.startswith(PROVIDER_PREFIX) else settings.probe_stale_after
            if now - at <= limit and at + limit < until:
                until = at + limit
    for record in health.subjects.values():
        if record.downs:
            until = min(until, min(record.downs) + settings.flap_window)
    return until
