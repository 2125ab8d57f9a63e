"""README's benchmark table, rewritten from a bench.json between two marker comments.

Why generated: a hand-copied table drifts from the code the day after it is written (README said 29 ms for a cycle
that measured 108 ms). `python -m benchmarks --readme` reads the last run's bench.json, replaces everything between
`START` and `END` in README.md with the tables below, and copies the run's chart to docs/bench.png, which README
shows. Only a complete run (every benchmark, no `--only`) may replace the table.
"""

from __future__ import annotations

import textwrap
from typing import Any

from benchmarks.chart import label
from benchmarks.figures import Figure, goal_text, number, peer_text, verdict

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"
WIDTH = 120  # README's prose width


class ReadmeError(Exception):
    """README or bench.json cannot give a table: the message names the file and what is wrong."""


def rewrite(readme: str, table: str) -> str:
    """`readme` with the text between the markers replaced by `table` (markers kept); ReadmeError without them."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < 0 or end < start or readme.count(START) != 1 or readme.count(END) != 1:
        raise ReadmeError(f"README.md needs exactly one {START} followed by one {END}")
    return readme[:start + len(START)] + "\n" + table.strip("\n") + "\n" + readme[end:]


def tables(data: dict[str, Any]) -> str:
    """The run's header line, the policy comparison and every figure beside its goal, as Markdown."""
    parts = [_header(data)]
    sim = data.get("results", {}).get("sim_bench")
    if sim and "policies" in sim:
        parts.append(_policies(sim))
    parts.append(_figures([Figure.from_dict(row) for row in data.get("figures", [])]))
    goals = data.get("goals", {})
    missed = goals.get("missed", [])
    parts.append(f"Goals met: {goals.get('met', 0)} of {goals.get('judged', 0)}" +
                 (f"; missed: {'; '.join(missed)}." if missed else "."))
    return "\n\n".join(parts)


def _header(data: dict[str, Any]) -> str:
    machine, calibration = data.get("machine", {}), data.get("calibration", {})
    load = machine.get("load_at_start") or ["?"]
    commit = (data.get("commit") or "unknown")[:10] + (" (with uncommitted changes)" if data.get("dirty") else "")
    wall, cpu = data.get("wall_s"), data.get("cpu_s")
    took = f"; the run took {number(wall, 's')} wall, {number(cpu, 's')} CPU" if wall is not None else ""
    text = (f"Generated from `make bench` ({data.get('mode', '?')} set) at commit {commit}, {data.get('started_at')}, "
            f"on {machine.get('cores', '?')} cores, Python {machine.get('python', '?')}, load average "
            f"{load[0]} at start{took}. Calibration (a fixed pure-Python workload, `benchmarks/calibration.py`): "
            f"**{number(calibration.get('cpu_s'), 'CPU s')}**: compare another machine's figures through it.")
    return textwrap.fill(text, width=WIDTH, break_on_hyphens=False, break_long_words=False)


def _policies(sim: dict[str, Any]) -> str:
    seeds = sim.get("seeds", {})
    scenarios = len({name.split(" / ")[0] for name in sim["policies"] if not name.startswith("ALL")})
    scale = f", exchange-scale ones x {seeds['scale']} at most" if seeds.get("scale") is not None else ""
    rows = [f"| policy ({scenarios} scenarios; ours x {seeds.get('default', '?')} seeds, presets x "
            f"{seeds.get('presets', '?')}{scale}) | detection median / p99 | false failovers | orders lost | "
            f"trades halted/protection | expectations met |",
            "|---|---|---|---|---|---|"]
    for name, row in sim["policies"].items():
        if not name.startswith("ALL / "):
            continue
        policy = name.removeprefix("ALL / ")
        rows.append(f"| {label(policy)} | {number(row['detection_median_s'], 's')} / "
                    f"{number(row['detection_p99_s'], 's')} | {number(row['false_failovers'])} | "
                    f"{number(row['orders_lost'])} | {number(row['bad_trades'])} | "
                    f"{row['expectations_met']}/{row['runs']} |")
    return "\n".join(rows)


def _figures(figures: list[Figure]) -> str:
    rows = ["| benchmark | figure | measured | goal | | peer (same run) |", "|---|---|---|---|---|---|"]
    for figure in figures:
        rows.append(f"| {figure.group} | {figure.name} | {number(figure.value, figure.unit)} ({figure.stat}) | "
                    f"{goal_text(figure).removeprefix('goal ')} | {verdict(figure)} | {peer_text(figure)} |")
    return "\n".join(rows)
