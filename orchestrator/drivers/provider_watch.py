"""Each site's cloud API, polled on its own schedule and off the cycle's path.

A cloud API in trouble answers slowly: in the seed's outage the provider's own control plane struggled for hours.
A cycle that waits for it cannot probe, cannot renew its view, cannot run the runbook; so in the daemon every
site's poll runs on a thread of its own and the cycle takes whatever answers have arrived (`collect`). A cron run
starts the polls before it probes the replicas (`start`), so that the APIs answer while it probes, then waits at
most `wait` seconds more for all of them together and goes on without the late ones, which it reports `unknown`
("no answer within 2s"), never as healthy: a slow cloud costs the run that wait, never the other clouds' answers.
The wait starts after the probes, not with the polls: on a loaded machine our own work (building an SDK client
is a fifth of a second of CPU) must not eat a healthy API's time and turn its verdict unknown. The simulator
polls inline (`background=False`): its clock is virtual, and results must not depend on thread timing.

A site's extra signals (AWS Health, Service Health, Resource Health: `providers.base.PolledSignal`) are polled on
a thread of their own beside the main source's (`observe_main` / `observe_signals`, which reads each signal on a
thread of its own): they come from services that struggle in the same outage, and a Health read that hangs must
not make the EC2 answer miss a cron run's wait. The
signals' answer is taken whenever it comes; while it has not come they have no vote (nothing is reported for them,
never a stand-in), and they are not asked again until their read in flight is back.

An API that fails is asked again only after a growing pause (up to a minute), so that a struggling control plane
is not hammered while it recovers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping

from orchestrator.core.model import Cause, Observation, Status
from providers.base import API_FAILED, CloudProvider

log = logging.getLogger(__name__)

MAX_PAUSE = 60.0


def _drain(done: queue.SimpleQueue[tuple[str, list[Observation]]]) -> list[tuple[str, list[Observation]]]:
    found = []
    while True:
        try:
            found.append(done.get_nowait())
        except queue.Empty:
            return found


def api_failed(observations: list[Observation]) -> bool:
    return any(o.cause is Cause.API_FAILED for o in observations)


class ProviderWatch:
    def __init__(
        self,
        providers: Mapping[str, CloudProvider],
        instances_of: Callable[[str], dict[str, str]],
        interval: float,
        *,
        background: bool = True,
    ) -> None:
        self.providers = providers
        self.instances_of = instances_of
        self.interval = interval
        self.background = background
        self._next_at: dict[str, float] = {}  # when each site's main source is polled next (its signals with it)
        self._failures: dict[str, int] = {}
        self._in_flight: dict[str, threading.Thread] = {}  # the main source's poll, per site
        self._signals_in_flight: dict[str, threading.Thread] = {}  # the extra signals' poll, per site
        self._done: queue.SimpleQueue[tuple[str, list[Observation]]] = queue.SimpleQueue()
        self._signals_done: queue.SimpleQueue[tuple[str, list[Observation]]] = queue.SimpleQueue()

    def start(self, now: float) -> list[str]:
        """Start the polls that are due, each on its own thread (background mode only; the simulator polls inside
        `collect`), and return their sites. Starting them before the replicas are probed lets both wait at once.
        A site's signals start with its main source, on a thread of their own, unless their last read is still
        running."""
        if not self.background:
            return []
        due = self._due(now)
        for site in due:
            thread = threading.Thread(target=self._run, args=(site,), name=f"provider-poll-{site}", daemon=True)
            self._in_flight[site] = thread
            thread.start()
            if site not in self._signals_in_flight:
                signals = threading.Thread(target=self._run_signals, args=(site,), name=f"provider-signals-{site}",
                                           daemon=True)
                self._signals_in_flight[site] = signals
                signals.start()
        return due

    def collect(self, now: float, wait: float = 0.0) -> list[Observation]:
        """Start the polls that are due, and return every answer that arrived since the last call, waiting up to
        `wait` seconds (wall time) for polls still running. With `wait`, a main source that has not answered by then
        is reported `unknown` for its site and replicas (its answer, if it comes, is taken by a later call); signals
        that have not answered are left out (no vote) and taken by a later call."""
        if not self.background:
            return [obs for site in self._due(now) for obs in self._settle(site, self._poll(site), now)]
        self.start(now)
        if wait > 0:
            deadline = time.monotonic() + wait
            for thread in [*self._in_flight.values(), *self._signals_in_flight.values()]:
                thread.join(max(0.0, deadline - time.monotonic()))
        found: list[Observation] = []
        for site, observations in _drain(self._done):
            self._in_flight.pop(site, None)
            found.extend(self._settle(site, observations, now))
        for site, observations in _drain(self._signals_done):
            self._signals_in_flight.pop(site, None)
            found.extend(observations)
        if wait > 0:
            found.extend(obs for site in self._in_flight for obs in self._late(site, now, wait))
        return sorted(found, key=lambda o: (o.subject, o.source))

    def _due(self, now: float) -> list[str]:
        due = [site for site in self.providers
               if now >= self._next_at.get(site, float("-inf")) and site not in self._in_flight]
        for site in due:
            self._next_at[site] = now + self.interval
        return due

    def _late(self, site: str, now: float, wait: float) -> list[Observation]:
        """A poll past its wait: `unknown` (an API failure) for the site and each of its replicas, never a vote."""
        source = self.providers[site].source
        detail = f"{API_FAILED}: no answer within {wait:g}s"
        return [Observation(now, subject, source, Status.UNKNOWN, detail, Cause.API_FAILED)
                for subject in (site, *self.instances_of(site).values())]

    def pending(self) -> list[str]:
        """Sites whose poll (of the main source or of the signals) is still running (a slow or hung API)."""
        return sorted({*self._in_flight, *self._signals_in_flight})

    def _poll(self, site: str) -> list[Observation]:
        """Inline (the simulator): the main source and the signals, one after the other."""
        return self.providers[site].observe(self.instances_of(site))

    def _run(self, site: str) -> None:
        try:
            observations = self.providers[site].observe_main(self.instances_of(site))
        except Exception as error:  # a poll thread must always report back, whatever broke
            observations = [Observation(time.time(), site, self.providers[site].source, Status.UNKNOWN,
                                        f"{API_FAILED}: {type(error).__name__}", Cause.API_FAILED)]
        self._done.put((site, observations))

    def _run_signals(self, site: str) -> None:
        try:
            observations = self.providers[site].observe_signals(self.instances_of(site))
        except Exception:  # signals never raise (PolledSignal); if one did, it loses its vote, not the thread
            log.exception("site %s: the outage signals' poll failed", site)
            observations = []
        self._signals_done.put((site, observations))

    def _settle(self, site: str, observations: list[Observation], now: float) -> list[Observation]:
        if api_failed(observations):
            failures = self._failures.get(site, 0)
            pause = min(MAX_PAUSE, max(self.interval, 1.0) * 2 ** failures)
            self._failures[site] = failures + 1
            self._next_at[site] = max(self._next_at.get(site, now), now + pause)
        else:
            self._failures.pop(site, None)
        return observations
