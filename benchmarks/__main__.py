"""`make bench`: every benchmark, each figure beside its goal, stored in bench.json and drawn in bench.png.

    python -m benchmarks               the default set: fewer seeds and repetitions, a few minutes on 2 cores
    python -m benchmarks --full        the full set (`make bench-full`): every seed and repetition
    python -m benchmarks --only NAME   one benchmark (repeatable); its bench.json cannot rewrite README
    python -m benchmarks --readme      no run: README's table from bench.json, and bench.png copied to docs/

Why two sets: the full set took 21 minutes on a 2-core machine, too long to run before every change; the default
set measures the same things with fewer repetitions (`SETS`). A run prints the calibration figure first (a fixed
pure-Python workload's CPU seconds, so two machines' figures can be compared), then each benchmark's own tables
and its wall and CPU seconds, then every figure beside its goal and peer. It writes bench.json (`record.py`) and
bench.png (`chart.py`) beside it (`--out`). Exit code: 0 when every benchmark ran (missed goals are reported, not
an error), 1 when one of them failed (the others still run), 2 for bad input to `--readme`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import calibration, chart, figures, readme, record
from benchmarks.figures import Figure

MODULES = ("cli_start_bench", "cron_bench", "sim_bench", "sim_scale_bench", "failover_time_bench", "gray_bench",
           "providers_bench", "daemon_bench", "daemon_scale_bench", "status_page_bench", "deadline_bench",
           "handover_bench", "rejoin_bench", "drill_bench")

# Repetitions per benchmark: (default set, full set). Only how many times; what is measured stays the same.
Setting = int | bool | None
SETS: dict[str, tuple[dict[str, Setting], dict[str, Setting]]] = {
    "cli_start_bench": ({"runs": 5}, {"runs": 10}),
    "cron_bench": ({"runs": 3}, {"runs": 5}),
    "sim_bench": ({"default_seeds": 10, "preset_seeds": 5, "scale_seeds": 1, "cycles": 10},
                  {"default_seeds": 50, "preset_seeds": 10, "scale_seeds": None, "cycles": 30}),
    "sim_scale_bench": ({"runs": 1, "compare": False}, {"runs": 3, "compare": True}),
    "failover_time_bench": ({"seeds": 5}, {"seeds": 20}),
    "gray_bench": ({"seeds": 1, "noisy_hours": 1, "noisy_seeds": 1, "cycles": 10},
                   {"seeds": 3, "noisy_hours": 24, "noisy_seeds": 3, "cycles": 30}),
    "providers_bench": ({"polls": 20}, {"polls": 50}),
    "daemon_bench": ({"cycles": 8}, {"cycles": 15}),
    "daemon_scale_bench": ({"rounds": 5, "before_rounds": 2, "cycles": 2, "mass_failover": 100, "mass_runs": 1},
                           {"rounds": 15, "before_rounds": 5, "cycles": 5, "mass_failover": 1000, "mass_runs": 2}),
    "status_page_bench": ({"requests": 30}, {"requests": 200}),
    "deadline_bench": ({"repeats": 3}, {"repeats": 5}),
    "handover_bench": ({"repeats": 1, "killed_runs": 1}, {"repeats": 3, "killed_runs": 5}),
    "rejoin_bench": ({"runs": 1, "entries": 20000}, {"runs": 3, "entries": 100000}),
    "drill_bench": ({"runs": 1}, {"runs": 3}),
}

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS_CHART = ROOT / "docs" / "bench.png"


def _table(name: str, result: dict[str, Any]) -> str:
    """A benchmark without its own `render`: each section as rows of its numbers."""
    lines = [f"== {name}"]
    for section, rows in result.items():
        lines.append(f"-- {section}")
        if isinstance(rows, dict) and all(isinstance(v, dict) for v in rows.values()):
            columns = sorted({k for v in rows.values() for k in v if not isinstance(v[k], dict | list)})
            lines.append("  " + " | ".join(["name", *columns]))
            for row, values in rows.items():
                lines.append("  " + " | ".join([row, *(_fmt(values.get(c)) for c in columns)]))
        else:
            lines.append(f"  {json.dumps(rows, default=str)}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _cpu() -> float:
    """CPU seconds of this process and of every child it has waited for (the simulator's pool, the testbeds)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _run_one(name: str, full: bool, as_json: bool) -> tuple[dict[str, Any] | None, list[Figure], dict[str, Any]]:
    """One benchmark: its result, its figures and what it cost; a failure is printed and recorded, not raised."""
    began, began_cpu = time.monotonic(), _cpu()
    settings = SETS.get(name, ({}, {}))[1 if full else 0]
    result: dict[str, Any] | None = None
    found: list[Figure] = []
    error = None
    try:
        module: ModuleType = importlib.import_module(f"benchmarks.{name}")
        result = module.run(**settings)
        found = module.figures(result) if hasattr(module, "figures") else []
    except Exception as exc:  # one broken benchmark must not cost the others' figures
        error = f"{type(exc).__name__}: {exc}"
    cost = {"wall_s": round(time.monotonic() - began, 1), "cpu_s": round(_cpu() - began_cpu, 1),
            "settings": settings, "error": error}
    if not as_json:
        if result is not None:
            render = getattr(module, "render", None)
            print(render(result) if render else _table(name, result))
        else:
            print(f"== {name}: FAILED ({error})")
        print(f"({name}: {cost['wall_s']:.1f} s wall, {cost['cpu_s']:.1f} s CPU)\n", flush=True)
    return result, found, cost


def run(names: list[str], full: bool, out: Path, as_json: bool) -> int:
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    machine = record.machine()
    commit = record.git_commit()

    def say(text: str) -> None:
        if not as_json:
            print(text, flush=True)

    mode = ("full" if full else "default") if names == list(MODULES) else "only " + ",".join(names)
    say(f"== make bench, {mode} set: commit {(commit['commit'] or 'unknown')[:10]}"
        f"{' (uncommitted changes)' if commit['dirty'] else ''}, {machine['cores']} cores, Python "
        f"{machine['python']}, load average {machine['load_at_start']} at start")
    began, began_cpu = time.monotonic(), _cpu()
    cal = calibration.calibrate()
    say(calibration.render(cal) + "\n")
    results: dict[str, Any] = {}
    costs: dict[str, Any] = {}
    found: list[Figure] = []
    for name in names:
        result, figures_of, cost = _run_one(name, full, as_json)
        if result is not None:
            results[name] = result
        costs[name] = cost
        found += figures_of
    machine["load_at_end"] = record.load_average()
    # the chart's distributions: the detection times a benchmark reports (sim_bench's, in `make bench`)
    detections: dict[str, list[float]] = next(
        (result["detections"] for result in results.values() if "detections" in result), {})
    totals = {"wall_s": round(time.monotonic() - began, 1), "cpu_s": round(_cpu() - began_cpu, 1),
              "complete": names == list(MODULES) and all(cost["error"] is None for cost in costs.values())}
    data = record.record(mode=mode, started_at=started_at, calibration=cal, machine_info=machine, commit=commit,
                         figures=found, modules=costs, results=results, detections=detections, totals=totals)
    record.write(out, data)
    drawn = chart.draw(detections, out.with_suffix(".png"), chart.subtitle(data))
    if as_json:
        json.dump(results, sys.stdout, indent=2, default=str)
        print()
    else:
        say(figures.render(found))
        say(f"== {mode} set took {totals['wall_s']:.0f} s wall, {totals['cpu_s']:.0f} s CPU (load average "
            f"{machine['load_at_start']} at start, {machine['load_at_end']} at end); calibration "
            f"{cal['cpu_s']:.3f} CPU s; wrote {out}" + (f" and {drawn}" if drawn else ""))
    return 0 if all(cost["error"] is None for cost in costs.values()) else 1


def update_readme(source: Path, target: Path = README, chart_copy: Path = DOCS_CHART) -> str:
    """Rewrite `target`'s table from the bench.json at `source` and copy its chart to `chart_copy`.

    ReadmeError (one line, naming the file) when the record cannot be read or is not a complete run.
    """
    try:
        data = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise readme.ReadmeError(f"{source}: cannot read a bench record ({exc}); run `make bench` first") from exc
    problems = record.problems(data)
    if problems:
        raise readme.ReadmeError(f"{source}: not a bench record this code reads: {'; '.join(problems)}")
    if not data.get("complete"):
        raise readme.ReadmeError(f"{source}: the run was {data.get('mode')!r} or a benchmark failed; README's "
                                 f"table comes from a complete run (make bench)")
    target.write_text(readme.rewrite(target.read_text(), readme.tables(data)))
    png = source.with_suffix(".png")
    if png.exists():
        chart_copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, chart_copy)
    return f"rewrote the table in {target} from {source}" + (f"; copied {png} to {chart_copy}" if png.exists() else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="every seed and repetition (make bench-full)")
    parser.add_argument("--only", choices=MODULES, action="append", help="run this benchmark only (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON instead of tables")
    parser.add_argument("--out", type=Path, default=Path("bench.json"),
                        help="where to write the record (the chart goes beside it, .png); default ./bench.json")
    parser.add_argument("--readme", action="store_true",
                        help="no run: rewrite README's table from --out and copy its chart to docs/bench.png")
    args = parser.parse_args(argv)
    if args.readme:
        try:
            print(update_readme(args.out))
        except (readme.ReadmeError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    names = list(dict.fromkeys(args.only)) if args.only else list(MODULES)
    problem = _unwritable(args.out)
    if problem:  # found now, not after minutes of measuring
        print(f"error: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    return run(names, args.full, args.out, args.json)


def _unwritable(out: Path) -> str | None:
    if out.is_dir():
        return "is a directory (give a file name, e.g. bench.json)"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create its directory ({exc.strerror})"
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        return "not writable"
    return None


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
