"""The simulator at exchange scale (issue 17 item 4): a simulated day of ten engines, in CPU seconds.

`configs/scenarios/exchange-10.yaml` is 24 simulated hours of 10 engines x 3 replicas x 4 vantage points at 1 s
probes, an AWS zone lost for 45 minutes (four failovers), an hour of 30 % probe loss on GCP and half an hour of slow
answers from Azure, with every engine's clients sending ~2 requests a second throughout (1.7 million requests).
Reported, against the goal of 10 CPU seconds:

- `exchange-10`: CPU seconds (`time.process_time`) of `run_scenario` on seed 0, event-driven (the default: a tick
  whose controller cycle provably changes nothing is accounted for without running it, orchestrator/sim/
  stepping.py), median of `runs`; ticks lived, cycles run, and whether the scenario met its expectations;
- where that time goes, from one more run with the world and the controller timed apart: the world (the order
  stream, the book, replication: every tick), the controller cycles that ran (probes, health, decision, runbook,
  cloud API polls), and the rest (the runner and its stepper, measuring the report);
- `hk-2022` (14 hours, one engine), event-driven, for the README's single-engine figure;
- with `compare`: the same day tick by tick (`stepping="tick"`, every cycle run, as the simulator did before), its
  CPU seconds, and whether its JSON report is byte for byte the event-driven one (tests/sim/test_sim_stepping.py
  checks every scenario, exchange-10 with its quiet hours shortened; this is the whole day). A minute or two.

    python -m benchmarks.sim_scale_bench
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure
from orchestrator.sim import Simulation, load_scenario
from orchestrator.sim.runner import Stepping, quiet_adapters

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "configs" / "scenarios"
SCALE = SCENARIOS / "exchange-10.yaml"
SINGLE = SCENARIOS / "hk-2022.yaml"
GOAL_CPU_S = 10.0
GROUP = "simulator at exchange scale"


def _timed(path: Path, stepping: Stepping = "event") -> tuple[float, Simulation, dict[str, Any]]:
    """CPU seconds of one run, the simulation, and its report."""
    scenario = load_scenario(path)
    with quiet_adapters():
        began = time.process_time()
        sim = Simulation(scenario, seed=0, stepping=stepping)
        sim.run_until(scenario.end)
        report = sim.result().to_json()
        cpu = time.process_time() - began
    return cpu, sim, report


def _parts(path: Path) -> dict[str, float]:
    """One event-driven run with the world and the controller timed apart (CPU seconds)."""
    scenario = load_scenario(path)
    spent = {"world_s": 0.0, "cycles_s": 0.0}

    def timing(function: Callable[..., Any], key: str) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            began = time.process_time()
            try:
                return function(*args)
            finally:
                spent[key] += time.process_time() - began
        return timed

    with quiet_adapters():
        began = time.process_time()
        sim = Simulation(scenario, seed=0)
        sim.world.advance_to = timing(sim.world.advance_to, "world_s")  # type: ignore[method-assign]
        sim.controller.run_cycle = timing(sim.controller.run_cycle, "cycles_s")  # type: ignore[method-assign]
        sim.run_until(scenario.end)
        sim.result()
        total = time.process_time() - began
    ran = sim.cycles - sim.skipped
    return {**{key: round(value, 2) for key, value in spent.items()},
            "rest_s": round(total - spent["world_s"] - spent["cycles_s"], 2), "total_s": round(total, 2),
            "ms_per_cycle_run": round(spent["cycles_s"] / max(1, ran) * 1000, 3)}


def run(runs: int = 3, compare: bool = True) -> dict[str, Any]:
    cpus, sim, report = [], None, {}
    for _ in range(runs):
        cpu, sim, report = _timed(SCALE)
        cpus.append(cpu)
    assert sim is not None
    scale = {"scenario": report["scenario"], "runs": runs, "median_cpu_s": round(statistics.median(cpus), 2),
             "min_cpu_s": round(min(cpus), 2), "max_cpu_s": round(max(cpus), 2),
             "engines": len(sim.topology.engines),
             "replicas": sum(len(e.replicas) for e in sim.topology.engines.values()),
             "vantage_points": len(sim.world.vantages), "simulated_hours": sim.scenario.duration / 3600,
             "ticks": sim.cycles, "cycles_run": sim.cycles - sim.skipped,
             "skipped_share": round(sim.skipped / sim.cycles, 3), "orders_acknowledged": report["orders_acknowledged"],
             "failovers": report["failovers"], "expectations_met": all(report["expectations"].values()),
             "goal_cpu_s": GOAL_CPU_S, "met": statistics.median(cpus) <= GOAL_CPU_S}
    single_cpu, single, _ = _timed(SINGLE)
    result: dict[str, Any] = {
        "exchange-10": scale, "where the time goes": _parts(SCALE),
        "hk-2022": {"cpu_s": round(single_cpu, 2), "ticks": single.cycles,
                    "cycles_run": single.cycles - single.skipped},
    }
    if compare:
        tick_cpu, tick_sim, tick_report = _timed(SCALE, "tick")
        result["tick by tick"] = {
            "cpu_s": round(tick_cpu, 2), "cycles_run": tick_sim.cycles - tick_sim.skipped,
            "report_identical": json.dumps(tick_report, sort_keys=True) == json.dumps(report, sort_keys=True),
            "speedup": round(tick_cpu / statistics.median(cpus), 1)}
    return result


def figures(result: dict[str, Any]) -> list[Figure]:
    scale, single = result["exchange-10"], result["hk-2022"]
    tick = result.get("tick by tick")
    found = [
        Figure(GROUP, f"24 simulated hours, {scale['engines']} engines x 3 replicas x {scale['vantage_points']} "
                      f"vantage points", scale["median_cpu_s"], "CPU s", f"median of {scale['runs']}",
               goal=GOAL_CPU_S, peer=tick["cpu_s"] if tick else None,
               peer_name="every cycle run (tick by tick)" if tick else None),
        Figure(GROUP, "ticks accounted for without a controller cycle", round(scale["skipped_share"] * 100, 1), "%",
               f"{scale['cycles_run']:,} of {scale['ticks']:,} cycles ran"),
        Figure(GROUP, "exchange-10 met its expectations (4 failovers, nothing lost, no false failover)",
               scale["expectations_met"], "", goal=True, op="=="),
        Figure(GROUP, "14 simulated hours of hk-2022, 1 engine", single["cpu_s"], "CPU s"),
    ]
    if tick:
        found.append(Figure(GROUP, "exchange-10's report, event-driven = tick by tick, byte for byte",
                            tick["report_identical"], "", goal=True, op="=="))
    return found


def render(result: dict[str, Any]) -> str:
    scale, parts, single = result["exchange-10"], result["where the time goes"], result["hk-2022"]
    lines = [f"== simulator at exchange scale: {scale['scenario']}, {scale['simulated_hours']:g} simulated hours, "
             f"{scale['engines']} engines x 3 replicas ({scale['replicas']}) x {scale['vantage_points']} vantage "
             f"points, {scale['orders_acknowledged']:,} orders acknowledged, {scale['failovers']} failovers",
             f"   CPU {scale['median_cpu_s']} s (median of {scale['runs']}; {scale['min_cpu_s']}-"
             f"{scale['max_cpu_s']}), goal <= {scale['goal_cpu_s']:g} s: {'met' if scale['met'] else 'MISSED'}; "
             f"{scale['cycles_run']:,} of {scale['ticks']:,} controller cycles ran "
             f"({scale['skipped_share']:.1%} of ticks accounted for without one); expectations "
             f"{'met' if scale['expectations_met'] else 'NOT met'}",
             f"   where the time goes (one run, {parts['total_s']} CPU s): the world {parts['world_s']} s (orders, "
             f"book, replication, every tick), controller cycles {parts['cycles_s']} s "
             f"({parts['ms_per_cycle_run']} ms each), the rest {parts['rest_s']} s (runner, stepper, report)",
             f"   hk-2022 (14 h, one engine): {single['cpu_s']} CPU s, {single['cycles_run']:,} of "
             f"{single['ticks']:,} cycles ran"]
    tick = result.get("tick by tick")
    if tick:
        lines.append(f"   tick by tick (every cycle run): {tick['cpu_s']} CPU s, {tick['speedup']}x the event-driven "
                     f"run; report byte for byte the same: {'yes' if tick['report_identical'] else 'NO'}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(run()))
