"""The garbage collector's thresholds for a long-running loop of cycles (the daemon, and the simulator that
stands in for it)."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """A cycle allocates tens of thousands of short-lived objects (observations, verdicts, snapshots) and keeps few:
    at the default thresholds the collector ran dozens of times a cycle and took 275-515 of 710-963 CPU ms of a
    10,000-engine cycle (docs/daemon-scale.md). Collecting the young generation every 100,000 allocations keeps
    memory bounded and the pauses rare (10,000 engines: 795 -> 507 CPU ms; 1,000: 42 -> 33)."""
    gc.set_threshold(100_000, 50, 1000)
