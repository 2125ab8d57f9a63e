"""How long `failover --help` and `failover status` take, wall clock, as an SRE's shell runs them (issue 17 item 1).

Each command runs `RUNS` times as a fresh process of the venv's `failover` script; reported: median, fastest and
slowest seconds, against the goal of 0.3 s (patronictl and kubectl answer in that time). `status` reads
`configs/example.yaml` and a fresh SQLite store in a temporary directory (`$FAILOVER_STORE`), so the run leaves
nothing in the tree. Bytecode is cached as an installed tool's is (in a temporary `PYTHONPYCACHEPREFIX`, after one
untimed run of each command), even where the environment sets `PYTHONDONTWRITEBYTECODE`: otherwise every run
would compile the whole package again and measure the compiler. The interpreter's own start (`python -c pass`) is
printed beside them as the floor no command can go under. Which modules each command loads is a test
(tests/cli/test_import_cost.py); how fast they load is this.

    python -m benchmarks --only cli_start_bench
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure

ROOT = Path(__file__).resolve().parents[1]
RUNS = 10
GOAL_S = 0.3


def _failover() -> list[str]:
    """The installed entry point beside this interpreter (what `make` puts in .venv/bin), else the module."""
    script = Path(sys.executable).parent / "failover"
    return [str(script)] if script.exists() else [sys.executable, "-m", "orchestrator"]


def _commands() -> dict[str, tuple[list[str], float | None]]:
    failover = _failover()
    return {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "failover --help": ([*failover, "--help"], GOAL_S),
        "failover status": ([*failover, "status", "--config", str(ROOT / "configs" / "example.yaml")], GOAL_S),
        "failover config validate": ([*failover, "config", "validate", str(ROOT / "configs" / "example.yaml")],
                                     None),
    }


def _time(command: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    warm = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if warm.returncode != 0:
        lines = warm.stderr.strip().splitlines()
        return {"failed": f"exit {warm.returncode}: {lines[-1] if lines else '(no output)'}"}
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(command, env=env, cwd=ROOT, capture_output=True, check=False)
        times.append(time.perf_counter() - began)
    return {"runs": runs, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def run(runs: int = RUNS) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cli-start-") as scratch:
        env = {key: value for key, value in os.environ.items()
               if key not in ("PYTHONDONTWRITEBYTECODE", "FAILOVER_CONFIG")}
        env.update(PYTHONPYCACHEPREFIX=str(Path(scratch) / "pycache"),
                   FAILOVER_STORE=f"sqlite:///{Path(scratch) / 'failover-state.db'}",
                   FAILOVER_SPOOL=str(Path(scratch) / "spool.jsonl"))
        for name, (command, goal) in _commands().items():
            row = _time(command, env, runs)
            if goal is not None:
                row["goal_s"] = goal
                row["met"] = "median_s" in row and row["median_s"] <= goal
            rows[name] = row
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cli.start": rows, "machine": {"load_1min": load, "cpus": os.cpu_count()}, "runs": runs}


def figures(result: dict[str, Any]) -> list[Figure]:
    """Each command's median wall seconds beside its goal (the interpreter's own start is the floor, no goal)."""
    found = []
    for name, row in result["cli.start"].items():
        stat = f"median of {row['runs']}" if "runs" in row else f"failed: {row.get('failed')}"
        found.append(Figure("CLI start", name, row.get("median_s"), "s wall", stat, goal=row.get("goal_s")))
    return found


def render(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [f"== CLI start: wall seconds of a fresh process, median of {result.get('runs', RUNS)} "
             f"(load {machine['load_1min']:.1f} on {machine['cpus']} cpus)"]
    for name, row in result["cli.start"].items():
        if "failed" in row:
            lines.append(f"   {name}: FAILED ({row['failed']})")
            continue
        line = f"   {name:26} median {row['median_s']:.3f} s (fastest {row['min_s']:.3f}, slowest {row['max_s']:.3f})"
        if "goal_s" in row:
            line += f"  goal <= {row['goal_s']:g} s: {'met' if row['met'] else 'MISSED'}"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(run()))
