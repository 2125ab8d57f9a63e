"""The simulator's virtual clock: the only notion of time in a simulation.

Why one object: the controller, the runbook driver, the providers' deadlines and retries, the store's leases and
the world all read it, so a simulated day is the same day for every one of them, and no run ever reads the wall
clock (same seed, same result). Sleeping — which the provider adapters do between retries and while waiting for
an instance to stop — does not block: it moves the clock forward and lets the world live through that time
(orders keep arriving while the orchestrator waits for a cloud API), through the `on_sleep` hook the world sets.
"""

from __future__ import annotations

from collections.abc import Callable


class VirtualClock:
    """Seconds since the Unix epoch, moved only by `advance_to` and `sleep`."""

    __slots__ = ("_now", "on_sleep", "slept")

    def __init__(self, start: float) -> None:
        self._now = float(start)
        self.on_sleep: Callable[[float], None] | None = None  # called with the new time before it is set
        self.slept = 0.0  # total time spent sleeping, for the figures

    def __call__(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now

    def advance_to(self, at: float) -> None:
        """Move forward to `at`; never backward (a late tick simply happens now)."""
        if at > self._now:
            self._now = at

    def sleep(self, seconds: float) -> None:
        """Spend `seconds` of virtual time: the world advances first, then the clock."""
        if seconds <= 0:
            return
        target = self._now + seconds
        self.slept += seconds
        if self.on_sleep is not None:
            self.on_sleep(target)
        self.advance_to(target)
