"""bench.png: detection time per policy as a distribution, one box per preset, ours first.

Why a distribution: a median hides what an operator feels, the slow tail (a fault that begins just after a probe
tick waits a whole interval longer) and how wide the spread is. Each box is every detected fault of every scenario
and seed under one policy (`sim_bench`'s `detections`), its points drawn over it; the x axis is logarithmic, since
the presets span half a second to a minute and a half. Matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

TICKS = (0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 90, 300)
GOAL_S = 5.0  # our detection goal for a clean outage (sim_bench's figure), drawn for reference
LABELS = {  # the presets of orchestrator.sim.policies, as README names them
    "default": "ours (1 s probes, 3 failures, quorum 2)",
    "route53": "Route 53 (30 s x 3)",
    "route53-fast": "Route 53 fast (10 s x 3)",
    "patroni": "Patroni (ttl 30 s, loop 10 s)",
    "naive": "naive (first failed probe)",
}


def label(policy: str) -> str:
    return LABELS.get(policy, policy)


def draw(detections: dict[str, list[float]], path: Path, subtitle: str = "") -> Path | None:
    """Write the chart to `path`; None (and no file) when no policy detected anything."""
    policies = [policy for policy, values in detections.items() if values]
    if not policies:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = list(reversed(policies))  # matplotlib draws the first box at the bottom: ours goes on top
    figure, axes = plt.subplots(figsize=(10, 1.6 + 0.7 * len(order)), dpi=110)
    values = [detections[policy] for policy in order]
    axes.boxplot(values, orientation="horizontal", whis=(1, 99), widths=0.55, showfliers=False,
                 medianprops={"color": "#c0392b", "linewidth": 2})
    jitter = random.Random(0)
    for row, points in enumerate(values, start=1):
        axes.scatter(points, [row + jitter.uniform(-0.18, 0.18) for _ in points], s=9, alpha=0.45,
                     color="#2c3e50", linewidths=0)
        median = statistics.median(points)
        axes.annotate(f"median {median:.3g} s", (median, row + 0.32), fontsize=8, ha="center", color="#c0392b")
    axes.set_yticks(range(1, len(order) + 1), [f"{label(p)}  n={len(detections[p])}" for p in order])
    axes.set_xscale("log")
    ticks = [tick for tick in TICKS if min(min(v) for v in values) / 2 <= tick <= max(max(v) for v in values) * 2]
    axes.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
    axes.axvline(GOAL_S, color="#27ae60", linestyle="--", linewidth=1)
    axes.text(GOAL_S * 1.05, 0.5, f"{GOAL_S:g} s: our goal", color="#27ae60", fontsize=8, ha="left")
    axes.set_ylim(0.4, len(order) + 0.7)
    axes.set_xlabel("detection time, simulated seconds from the fault (log scale; box: quartiles, whiskers p1-p99)")
    axes.grid(axis="x", which="major", alpha=0.3)
    title = "Detection time per policy: every scenario with a fault to detect, every seed"
    axes.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def subtitle(data: dict[str, Any]) -> str:
    """The run the chart comes from, in one line: commit, mode, seeds, machine and calibration."""
    seeds = data.get("results", {}).get("sim_bench", {}).get("seeds", {})
    commit = (data.get("commit") or "unknown")[:10]
    machine = data.get("machine", {})
    scale = f", exchange-scale scenarios {seeds['scale']}" if seeds.get("scale") is not None else ""
    return (f"commit {commit}, {data.get('mode', '?')} run ({seeds.get('default', '?')} seeds ours, "
            f"{seeds.get('presets', '?')} presets{scale});\n{machine.get('cores', '?')} cores, calibration "
            f"{data.get('calibration', {}).get('cpu_s', '?')} CPU s")
