"""How long one `failover check` (the cron mode) takes against the local fakes: 3 replicas on 3 clouds (issue 17
item 2).

The drill's testbed runs moto (EC2, Route 53), the GCP and Azure fakes and three reference replicas on loopback;
`failover check --output json` then runs `RUNS` times as a fresh process, as cron starts it, and the median wall
time is printed beside the 2 s goal (a one-minute cron interval keeps its margin). CPU seconds (user + system of
the child) are printed too: on a shared machine wall time is mostly other people's load, CPU time is ours.

A second series makes one cloud's API slow: every GCP call answers after `SLOW_CALL_S` seconds, longer than a cron
run waits for a cloud (`drivers.modes.CRON_PROVIDER_WAIT`). The run must neither wait for GCP's answers nor hold
up AWS's and Azure's: its wall time is the healthy run plus that wait, and its verdicts say GCP `unknown`, the other
clouds `healthy` (checked, and printed). The floor rows are what no run can go under: the interpreter's start, and
importing the three clouds' SDKs.

Bytecode is cached as an installed tool's is (in a temporary `PYTHONPYCACHEPREFIX`, after one untimed run).

    python -m benchmarks --only cron_bench
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure
from orchestrator.drivers.modes import CRON_PROVIDER_WAIT
from orchestrator.testbed.world import Testbed

ROOT = Path(__file__).resolve().parents[1]
RUNS = 5
GOAL_S = 2.0
SLOW_CALL_S = 5.0  # each GCP call's latency in the slow series: above the cron run's wait for a cloud
SDKS = "import boto3, azure.mgmt.compute, google.auth.transport.requests, google.api_core.exceptions"


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds, CPU seconds (user + system) of the child, and its result."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done


def _series(command: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    walls, cpus, codes = [], [], []
    verdicts: dict[str, str] = {}
    for _ in range(runs):
        wall, cpu, done = _timed(command, env)
        walls.append(wall)
        cpus.append(cpu)
        codes.append(done.returncode)
        if done.stdout.strip().startswith("{"):
            verdicts = json.loads(done.stdout).get("verdicts", {})
        elif done.returncode not in (0, 1):
            lines = done.stderr.strip().splitlines()
            return {"failed": f"exit {done.returncode}: {lines[-1] if lines else '(no output)'}"}
    return {"runs": runs, "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "cpu_median_s": statistics.median(cpus), "exit_codes": sorted(set(codes)), "verdicts": verdicts}


def _check_series(bed: Testbed, env: dict[str, str], runs: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "orchestrator", "check", "--output", "json"]
    subprocess.run(command, env=env, cwd=ROOT, capture_output=True, check=False, timeout=300)  # bytecode, store
    return _series(command, env, runs)


def run(runs: int = RUNS) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cron-bench-") as scratch, Testbed(Path(scratch) / "bed") as bed:
        env = {key: value for key, value in bed.env().items() if key != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(scratch) / "pycache")
        for name, code in (("python -c pass", "pass"), ("import the 3 cloud SDKs", SDKS)):
            subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, check=False)
            rows[name] = _series([sys.executable, "-c", code], env, runs)
        healthy = _check_series(bed, env, runs)
        healthy.update(goal_s=GOAL_S, met="median_s" in healthy and healthy["median_s"] <= GOAL_S,
                       expected=_expected(healthy, {}))
        rows["failover check, 3 clouds"] = healthy
        assert bed.gcp is not None
        bed.gcp.hang_next(SLOW_CALL_S, count=1_000_000)  # every GCP call answers, SLOW_CALL_S late
        slow = _check_series(bed, env, runs)
        slow.update(goal_s=GOAL_S + CRON_PROVIDER_WAIT,
                    met="median_s" in slow and slow["median_s"] <= GOAL_S + CRON_PROVIDER_WAIT,
                    expected=_expected(slow, {"gcp-hk": "unknown", "spot-gcp": "unknown"}))
        rows[f"failover check, GCP API {SLOW_CALL_S:g} s per call"] = slow
        bed.gcp.clear_faults()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cron.check": rows, "machine": {"load_1min": load, "cpus": os.cpu_count(),
                                            "cron_provider_wait_s": CRON_PROVIDER_WAIT}, "runs": runs}


def figures(result: dict[str, Any]) -> list[Figure]:
    """Median wall seconds beside the goal, the child's CPU seconds beside it, and whether the verdicts were right."""
    found = []
    for name, row in result["cron.check"].items():
        stat = f"median of {row['runs']}" if "runs" in row else f"failed: {row.get('failed')}"
        found.append(Figure("cron cycle", name, row.get("median_s"), "s wall", stat, goal=row.get("goal_s")))
        if "goal_s" in row:
            found.append(Figure("cron cycle", f"{name}: CPU of the run", row.get("cpu_median_s"), "CPU s", stat))
            found.append(Figure("cron cycle", f"{name}: verdicts as expected", row.get("expected", False), "",
                                "last run", goal=True, op="=="))
    return found


def _expected(row: dict[str, Any], exceptions: dict[str, str]) -> bool:
    """The last run's verdicts: every subject healthy but `exceptions`, which must be as given."""
    verdicts = row.get("verdicts") or {}
    return bool(verdicts) and all(verdict == exceptions.get(subject, "healthy")
                                  for subject, verdict in verdicts.items())


def render(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [f"== cron cycle: wall seconds of `failover check` as a fresh process against the local fakes, median of "
             f"{result.get('runs', RUNS)} (load {machine['load_1min']:.1f} on {machine['cpus']} cpus)"]
    for name, row in result["cron.check"].items():
        if "failed" in row:
            lines.append(f"   {name}: FAILED ({row['failed']})")
            continue
        line = (f"   {name:36} median {row['median_s']:.3f} s (fastest {row['min_s']:.3f}, slowest "
                f"{row['max_s']:.3f}; cpu {row['cpu_median_s']:.3f} s)")
        if "goal_s" in row:
            line += f"  goal <= {row['goal_s']:g} s: {'met' if row['met'] else 'MISSED'}"
            line += f"; exit {row['exit_codes']}, verdicts {'as expected' if row['expected'] else 'WRONG'}"
        lines.append(line)
    lines.append(f"   (the slow series' goal is the healthy goal plus the run's wait for a cloud, "
                 f"{machine['cron_provider_wait_s']:g} s: GCP must cost no more, and never the others' verdicts)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(run()))
