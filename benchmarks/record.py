"""bench.json: one run's figures with everything needed to read them later, on another machine.

Why stored: a figure without its machine, its load, its commit and the calibration of that machine cannot be
compared with anything. The record holds, per figure, the name, value, unit, how it was taken, the goal, the peer
and whether the goal was met (`Figure.as_dict`), and for a CPU-seconds figure `per_calibration`, its value in units
of this machine's calibration figure (what to compare across machines); per run, the mode (default or full), the
git commit, the machine (cores, Python, load average at start and end), the calibration figure, and each
benchmark's own wall and CPU seconds and raw result (for whoever wants a number the table leaves out). `SCHEMA`
changes when a key does.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure

SCHEMA = 1
ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("schema", "mode", "started_at", "commit", "machine", "calibration", "figures", "modules", "results")
FIGURE_KEYS = ("group", "name", "value", "unit", "stat", "goal", "op", "peer", "peer_name", "met")


def load_average() -> list[float] | None:
    return [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "python": platform.python_version(), "implementation":
            platform.python_implementation(), "platform": platform.platform(), "machine": platform.machine(),
            "load_at_start": load_average()}


def git_commit(root: Path = ROOT) -> dict[str, Any]:
    """The commit the run measured, and whether the tree had uncommitted changes (then the commit is not all of it)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def record(*, mode: str, started_at: str, calibration: dict[str, Any], machine_info: dict[str, Any],
           commit: dict[str, Any], figures: list[Figure], modules: dict[str, Any], results: dict[str, Any],
           detections: dict[str, list[float]], totals: dict[str, Any]) -> dict[str, Any]:
    judged = [figure for figure in figures if figure.met is not None]
    return {
        "schema": SCHEMA, "mode": mode, "started_at": started_at, **totals,
        "commit": commit["commit"], "dirty": commit["dirty"], "machine": machine_info, "calibration": calibration,
        "goals": {"judged": len(judged), "met": sum(1 for figure in judged if figure.met),
                  "missed": [f"{figure.group}: {figure.name}" for figure in judged if not figure.met]},
        "figures": [dict(figure.as_dict(), per_calibration=_per_calibration(figure, calibration))
                    for figure in figures],
        "detections": detections, "modules": modules, "results": results,
        "argv": sys.argv[1:],
    }


def _per_calibration(figure: Figure, calibration: dict[str, Any]) -> float | None:
    cpu = calibration.get("cpu_s")
    if figure.unit != "CPU s" or not isinstance(figure.value, int | float) or not isinstance(cpu, float) or not cpu:
        return None
    return round(float(figure.value) / cpu, 2)


def write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def problems(data: dict[str, Any]) -> list[str]:
    """What a bench.json lacks to be read (empty when it is complete): what README's rewrite and the tests check."""
    found = [f"no {key!r}" for key in REQUIRED if key not in data]
    if data.get("schema") not in (None, SCHEMA):
        found.append(f"schema {data.get('schema')!r}, this code reads {SCHEMA}")
    for index, figure in enumerate(data.get("figures", [])):
        missing = [key for key in FIGURE_KEYS if key not in figure]
        if missing:
            found.append(f"figure {index} ({figure.get('name', '?')}) lacks {', '.join(missing)}")
    for key in ("cores", "python", "load_at_start"):
        if key not in data.get("machine", {}):
            found.append(f"machine lacks {key!r}")
    if "cpu_s" not in data.get("calibration", {}):
        found.append("calibration lacks 'cpu_s'")
    return found
