"""The drill's speed figures against their goals: detection and time to a new primary in a zone outage.

`tests/drill` checks what the drill must hold (every invariant, one failover, detection before promotion); how fast
it detects and promotes is a speed figure that a busy machine stretches, so it is measured here: `failover drill
--scenario zone-outage --speed 120` (a 90-minute scenario in 45 s, real processes on loopback), the figures read
from its JSON report. Goals: detection within 5 s and a new primary within 15 s of the fault (wall clock). With
`runs` above 1 the drill runs that many times and each figure is the median (the exit code: the worst).

    python -m benchmarks --only drill_bench
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure

GOALS = {"detection_s": 5.0, "time_to_new_primary_s": 15.0}  # the bounds tests/drill used to assert


def _drill() -> tuple[int, dict[str, Any] | str]:
    """One drill: its exit code, and its report's figures or why there is no report."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "orchestrator", "drill", "--scenario", "zone-outage", "--speed",
                               "120", "--out", tmp], capture_output=True, text=True, timeout=600, check=False,
                              cwd=tmp)
        report_path = Path(tmp) / "drill-report.json"
        if not report_path.exists():
            return done.returncode, f"exit {done.returncode}: {done.stderr.strip()[-500:]}"
        report: dict[str, Any] = json.loads(report_path.read_text())["figures"]
        return done.returncode, report


def run(runs: int = 1) -> dict[str, Any]:
    drills = [_drill() for _ in range(runs)]
    errors = [report for _, report in drills if isinstance(report, str)]
    if errors:
        return {"drill.zone-outage": {"error": errors[0]}}
    rows: dict[str, Any] = {}
    for name, goal in GOALS.items():
        values = [report[name] for _, report in drills
                  if isinstance(report, dict) and isinstance(report.get(name), int | float)]
        value = statistics.median(values) if len(values) == runs else None
        rows[name] = {"measured_s": value, "runs_s": values, "goal_s": goal,
                      "ratio_to_goal": value / goal if value is not None else None,
                      "met": value is not None and value <= goal}
    return {"drill.zone-outage": {"runs": runs, "exit_code": max(code for code, _ in drills), **rows}}


def figures(result: dict[str, Any]) -> list[Figure]:
    """Detection and time to a new primary beside their goals, and whether every invariant held (exit 0)."""
    data = result["drill.zone-outage"]
    if "error" in data:
        return [Figure("drill", "zone outage at 120x: a report written", False, "", data["error"][:80], goal=True,
                       op="==")]
    runs = data.get("runs", 1)
    stat = "one run" if runs == 1 else f"median of {runs}"
    found = [Figure("drill", f"zone outage at 120x: {name.removesuffix('_s').replace('_', ' ')}",
                    data[name]["measured_s"], "s wall", stat, goal=goal) for name, goal in GOALS.items()]
    found.append(Figure("drill", "zone outage at 120x: exit code (0: every invariant held)", data["exit_code"], "",
                        "one run" if runs == 1 else f"worst of {runs}", goal=0, op="=="))
    return found


def render(result: dict[str, Any]) -> str:
    data = result["drill.zone-outage"]
    lines = [f"== drill zone-outage at 120x: speed figures against their goals (wall clock, median of "
             f"{data.get('runs', 1)})"]
    if "error" in data:
        return "\n".join([*lines, f"   the drill wrote no report: {data['error']}"])
    for name in GOALS:
        row = data[name]
        measured = "n/a" if row["measured_s"] is None else f"{row['measured_s']:.2f} s"
        ratio = "" if row["ratio_to_goal"] is None else f" = {row['ratio_to_goal']:.2f}x"
        lines.append(f"   {name}: {measured}{ratio} of the {row['goal_s']:g} s goal "
                     f"({'met' if row['met'] else 'MISSED'})")
    lines.append(f"   drill exit code {data['exit_code']} (1: an invariant broke; see tests/drill)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(run()))
