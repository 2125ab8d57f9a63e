"""The calibration figure: CPU seconds of one fixed pure-Python workload on the machine that ran the benchmarks.

Why: a benchmark's seconds say as much about the machine as about the code. Printed first and stored in
bench.json beside every figure, this one number lets two runs be compared: a run on a machine whose calibration is
twice as long should see CPU figures about twice as long, and a figure that moved while the calibration did not
is the code's doing. The workload is the interpreter's everyday work, as the orchestrator's hot paths are: integer
arithmetic in a loop, dict inserts and lookups, string formatting and a sort. It never changes (a change would make
every stored figure incomparable: bump `VERSION` if it must). CPU time (`time.process_time`), median of `RUNS`:
other processes' load moves it far less than wall time, though a shared core still costs some cache and clock.

    python -m benchmarks.calibration
"""

from __future__ import annotations

import statistics
import time
from typing import Any

VERSION = 1
RUNS = 3
SIZE = 1_100_000  # about 0.5 CPU s per run on the 2-core machine the project is measured on


def workload(size: int = SIZE) -> int:
    """The fixed work; returns a checksum so the interpreter cannot skip any of it (and a wrong result shows)."""
    table: dict[str, int] = {}
    state = 12345
    for index in range(size):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF  # a fixed pseudo-random sequence, no `random` module
        key = f"k{state % 50_000}"
        table[key] = table.get(key, 0) + index
    ordered = sorted(table.items(), key=lambda item: (item[1] % 977, item[0]))
    words = sorted(f"{value:08x}{key}" for key, value in ordered)
    return sum(len(word) for word in words[::7]) + sum(value % 1009 for _, value in ordered)


def calibrate(runs: int | None = None) -> dict[str, Any]:
    """Median CPU and wall seconds of `runs` (default `RUNS`) runs of `workload`, with the checksum that proves it
    ran whole."""
    runs = runs or RUNS
    cpu, wall, checksums = [], [], set()
    for _ in range(runs):
        began_cpu, began_wall = time.process_time(), time.perf_counter()
        checksums.add(workload())
        cpu.append(time.process_time() - began_cpu)
        wall.append(time.perf_counter() - began_wall)
    return {"version": VERSION, "size": SIZE, "runs": runs, "cpu_s": round(statistics.median(cpu), 3),
            "wall_s": round(statistics.median(wall), 3), "cpu_runs_s": [round(value, 3) for value in cpu],
            "checksum": checksums.pop() if len(checksums) == 1 else None}


def render(calibration: dict[str, Any]) -> str:
    return (f"== calibration: a fixed pure-Python workload (v{calibration['version']}) takes "
            f"{calibration['cpu_s']:.3f} CPU s on this machine (median of {calibration['runs']}; wall "
            f"{calibration['wall_s']:.3f} s). Compare figures across machines through this number.")


if __name__ == "__main__":
    print(render(calibrate()))
