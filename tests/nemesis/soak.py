"""`make soak MINUTES=N SEED=S`: random fault schedules against the whole system until time is up.

    .venv/bin/python tests/nemesis/soak.py --minutes 30 --seed 1          # seeds 1, 2, 3, ... until 30 min
    .venv/bin/python tests/nemesis/soak.py --seed 17 --replay             # schedule 17 once, as it failed

Writes soak-report.json (runs, fault kinds available and injected, invariants checked, violations with their
replay command, seeds) and exits 0 when every invariant held in every run, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: `nemesis` is tests/nemesis

from nemesis.checker import INVARIANTS
from nemesis.cluster import disk_mode
from nemesis.nemeses import KINDS
from nemesis.schedule import RunResult, generate, run
from nemesis.world import Lab


def report(results: list[RunResult], began: float, arguments: argparse.Namespace) -> dict[str, object]:
    injected: Counter[str] = Counter(f.kind for r in results for f in r.schedule.faults)
    return {
        "started": began, "ended": time.time(), "minutes": arguments.minutes, "first_seed": arguments.seed,
        "replay": arguments.replay, "runs": len(results), "seeds": [r.schedule.seed for r in results],
        "fault_kinds_available": sorted(KINDS), "fault_kinds_injected": dict(sorted(injected.items())),
        "invariants_checked": list(INVARIANTS), "disk_fault": disk_mode(),
        "violations": [{"seed": r.schedule.seed, "invariant": v.invariant, "message": v.message,
                        "replay": r.schedule.replay()} for r in results for v in r.verdict.violations]
        + [{"seed": r.schedule.seed, "invariant": "harness", "message": r.error, "replay": r.schedule.replay()}
           for r in results if r.error],
        "results": [r.to_json() for r in results],
    }


def keep_data(lab: Lab, where: Path) -> None:
    """A copy of every replica's data directory as the run left it: a full-disk run's are on tmpfs mounts that
    are gone once the lab closes."""
    cluster = lab.bed.cluster
    for name in cluster.replicas:
        shutil.copytree(cluster.data_dir(name), where / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("ballast"))
    print(f"kept: {where} (data directories), {cluster.base_dir} (replica logs), {lab.base} (daemons, store)",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak.py", description="Random nemesis schedules until time is up.")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to keep starting runs")
    parser.add_argument("--seed", type=int, default=1, help="first seed (each run takes the next one)")
    parser.add_argument("--replay", action="store_true", help="run the schedule of --seed once and stop")
    parser.add_argument("--out", type=Path, default=Path("soak-report.json"), help="where the report goes")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="run under DIR and leave it there (data directories, journals, control.json, the "
                             "daemons' logs and store) for inspection; default: a temporary directory, removed")
    arguments = parser.parse_args(argv)
    if arguments.minutes <= 0:
        print(f"soak.py: --minutes {arguments.minutes:g}: must be above 0", file=sys.stderr)
        return 2
    began = time.time()
    deadline = time.monotonic() + arguments.minutes * 60
    results: list[RunResult] = []
    with contextlib.ExitStack() as stack:
        if arguments.keep is not None:
            arguments.keep.mkdir(parents=True, exist_ok=True)
            base = str(arguments.keep)
        else:
            base = stack.enter_context(tempfile.TemporaryDirectory(prefix="nemesis-soak-"))
        lab = stack.enter_context(Lab(Path(base)))
        seed = arguments.seed
        while True:
            schedule = generate(seed)
            print(f"run {len(results) + 1}: {schedule.describe()}", flush=True)
            result = run(lab, schedule, say=lambda text: print(text, flush=True))
            results.append(result)
            print(result.report(), flush=True)
            if arguments.keep is not None:
                keep_data(lab, arguments.keep / f"s{seed}-data")
            arguments.out.write_text(json.dumps(report(results, began, arguments), indent=1) + "\n",
                                     encoding="utf-8")
            seed += 1
            if arguments.replay or time.monotonic() >= deadline:
                break
    document = report(results, began, arguments)
    violations = document["violations"]
    assert isinstance(violations, list)
    print(f"{len(results)} runs, {len(document['fault_kinds_injected'])} fault kinds injected "  # type: ignore[arg-type]
          f"(of {len(KINDS)}), {len(violations)} violations; wrote {arguments.out}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
