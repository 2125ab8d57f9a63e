"""How long a failover takes once it is detected, per policy preset, on the simulator's clock (issue 17 item 5).

Every simulated engine and cloud call now takes the time its latency table draws for it (orchestrator/sim/latency.py,
docs/simulated-latency.md), so the simulator's failover takes what production's would. For each preset (ours,
`route53`, `route53-fast`, `patroni`, `naive`) and a few seeds of two scenarios, `hk-2022` (the primary's data
centre lost, the old primary unreachable) and `zone-outage` (a clean loss of the primary's zone), each run is cut
15 minutes after its first fault (the figures are all about the first failover) and reports, from the detection:

- to halted: trading announced halted (the runbook's `halt`, or `fence_old_primary` when the old primary does not
  answer);
- to a new primary: the standby on another cloud promoted;
- to traffic switched: the engine's DNS record in sync at every name server (clients follow within one TTL),

each as a median and a 95th percentile over the runs, and the detection itself (from the fault) for context.
Seeds move the faults by a fraction of the preset's probe interval (as `sim_bench` does) and draw other latencies
and orders. About 3 s of CPU with the default 5 seeds (15 s of wall time at a load of 8 on 2 cores).

    python -m benchmarks.failover_time_bench [seeds]
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure
from benchmarks.sim_bench import percentile, shifted
from orchestrator.sim import PRESETS, load_scenario, run_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "configs" / "scenarios"
NAMES = ("hk-2022", "zone-outage")
SEEDS = 5
AFTER_FAULT = 900.0  # seconds simulated after the first fault: the first failover is long done by then
MOMENTS = ("halted", "new_primary", "traffic_switched")
GROUP = "failover time"
PEER = "route53"
GOAL_NEW_PRIMARY_S = 60.0  # hk-2022's own expectation: a new primary within a minute of the loss


def _one(name: str, policy: str, seed: int) -> dict[str, Any]:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    first = min(fault.at for fault in scenario.faults)
    cut = replace(scenario, duration=min(scenario.duration, first + AFTER_FAULT), expect={})
    interval = PRESETS[policy](scenario.topology).probes.interval
    result = run_scenario(shifted(cut, seed, interval), seed=seed, policy=policy)
    return {"scenario": name, "policy": policy, "seed": seed, "detection_s": result.detection_s,
            "time_to_new_primary_s": result.time_to_new_primary_s, **result.after_detection,
            "steps": result.step_durations_s}


def _stats(values: list[float]) -> dict[str, Any]:
    return {"median_s": round(statistics.median(values), 3) if values else None,
            "p95_s": percentile(values, 0.95), "runs": len(values)}


def run(seeds: int = SEEDS) -> dict[str, Any]:
    began = time.process_time()
    rows = [_one(name, policy, seed) for policy in PRESETS for name in NAMES for seed in range(seeds)]
    table: dict[str, dict[str, Any]] = {}
    for policy in PRESETS:
        mine = [row for row in rows if row["policy"] == policy]
        entry = {moment: _stats([row[moment] for row in mine if row.get(moment) is not None]) for moment in MOMENTS}
        entry["detection"] = _stats([row["detection_s"] for row in mine if row["detection_s"] is not None])
        entry["fault_to_new_primary"] = _stats([row["time_to_new_primary_s"] for row in mine
                                                if row["time_to_new_primary_s"] is not None])
        entry["missing"] = sum(1 for row in mine if row.get("traffic_switched") is None)
        table[policy] = entry
    return {"seeds": seeds, "scenarios": list(NAMES), "after_fault_s": AFTER_FAULT, "policies": table,
            "rows": rows, "cpu_s": round(time.process_time() - began, 2)}


def figures(result: dict[str, Any]) -> list[Figure]:
    """Ours from the detection to each moment (median beside Route 53's preset, and p95), and from the fault to a
    new primary against its goal; every preset's figures are in the result (`render`, bench.json)."""
    table, found = result["policies"], []
    ours, peer = table.get("default", {}), table.get(PEER, {})
    for moment in MOMENTS:
        stats, label = ours.get(moment, {}), moment.replace("_", " ")
        found.append(Figure(GROUP, f"ours: detection -> {label}", stats.get("median_s"), "s simulated",
                            f"median of {stats.get('runs', 0)} runs", peer=peer.get(moment, {}).get("median_s"),
                            peer_name=PEER))
        found.append(Figure(GROUP, f"ours: detection -> {label}, p95", stats.get("p95_s"), "s simulated",
                            f"p95 of {stats.get('runs', 0)} runs", peer=peer.get(moment, {}).get("p95_s"),
                            peer_name=PEER))
    whole = ours.get("fault_to_new_primary", {})
    found.append(Figure(GROUP, "ours: fault -> new primary", whole.get("median_s"), "s simulated",
                        f"median of {whole.get('runs', 0)} runs", goal=GOAL_NEW_PRIMARY_S,
                        peer=peer.get("fault_to_new_primary", {}).get("median_s"), peer_name=PEER))
    return found


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(result: dict[str, Any]) -> str:
    lines = [f"== failover time: seconds on the simulated clock, every call timed (docs/simulated-latency.md); "
             f"{', '.join(result['scenarios'])} x {result['seeds']} seeds per preset, median / p95",
             f"  {'preset':<14}{'detection':>16}{'-> halted':>16}{'-> new primary':>18}{'-> traffic':>16}"]
    for policy, entry in result["policies"].items():
        cells = [f"{_cell(entry[key]['median_s'])} / {_cell(entry[key]['p95_s'])}"
                 for key in ("detection", *MOMENTS)]
        missing = f"  ({entry['missing']} runs without a switch)" if entry["missing"] else ""
        lines.append(f"  {policy:<14}{cells[0]:>16}{cells[1]:>16}{cells[2]:>18}{cells[3]:>16}{missing}")
    lines.append(f"  (detection from the fault; the others from the detection; {result['cpu_s']:.1f} s CPU)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(run(int(sys.argv[1]) if len(sys.argv) > 1 else SEEDS)))
