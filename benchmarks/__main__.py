"""`make bench`: every benchmark, printed as tables of ratios and simulated-clock figures (never timed tests).

Each module exposes `run() -> dict` and, where it has one, `render(result) -> str`; `--only NAME` runs one and
`--json` prints the raw results.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Any

MODULES = ("cli_start_bench", "cron_bench", "sim_bench", "providers_bench", "daemon_bench", "deadline_bench",
           "handover_bench", "drill_bench")


def _table(name: str, result: dict[str, Any]) -> str:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--only", choices=MODULES)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    for name in [args.only] if args.only else MODULES:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError:
            continue
        began = time.monotonic()
        result = module.run()
        results[name] = result
        if not args.json:
            render = getattr(module, "render", None)
            print(render(result) if render else _table(name, result))
            print(f"({name}: {time.monotonic() - began:.1f} s wall)\n", flush=True)
    if args.json:
        json.dump(results, sys.stdout, indent=2, default=str)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
