"""The simulator's benchmark: our default policy against other tools' published defaults, and the speed figures.

`run()` returns these sections and `render()` prints them side by side:
- `policies`: every scenario of configs/scenarios under `default` and each preset (route53, route53-fast,
  patroni, naive), over several seeds: detection median and p99, halt time, failovers, false failovers, lost
  acknowledged orders, the most primaries at once, and how many runs met the scenario's expectations. Each seed
  also shifts every fault by a random fraction of the probe interval, because real outages do not start on a
  probe tick (without it a clean outage is always detected at exactly the same phase).
- `speed`: CPU seconds to simulate a 24-hour day at 1 s probes (a zone outage and some noise), and where the time
  per tick goes (world, probes, the rest of the controller cycle).
- `cycle_1000`: the cost of one `Controller.run_cycle` for 1,000 engines x 3 replicas x 4 vantage points, with
  a `SimProber` over a quiet world and the in-memory store; the first cycle (which also polls the providers for
  3,000 instances) is reported apart, and the cycle's hot spots by cProfile.
- `detections`: every detection time (simulated seconds) per policy, for the chart of their distributions.

`figures(result)` gives the targets, each beside its goal and a peer preset's figure from the same run.

Seeds: `run(default_seeds=, preset_seeds=, scale_seeds=)` (`make bench` passes 10, 5 and 1; `make bench-full`
50, 10 and None), which `FAILOVER_BENCH_SEEDS` and `FAILOVER_BENCH_PRESET_SEEDS` override. A scenario's cost grows
with its engines x simulated hours; one of at least `SCALE_ENGINE_HOURS` (exchange-10: 10 engines for 24 h, as
much CPU as the other scenarios together) runs at most `scale_seeds` seeds per policy, when that is given, so that
the seeds go where they are cheap. `cycles`: timed cycles for the 1,000 engines.
Runs go through a process pool of `FAILOVER_BENCH_WORKERS` (default: CPU count), and results do not depend on it
(every run is deterministic for its seed).

    python -m benchmarks --only sim_bench
"""

from __future__ import annotations

import cProfile
import logging
import math
import os
import pstats
import random
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure, line
from orchestrator.core.model import Engine, Policy, ProbeSettings, Replica, Site, Topology
from orchestrator.sim import PRESETS, Scenario, Simulation, load_scenario, run_scenario
from orchestrator.sim.faults import Fault, FaultKind
from orchestrator.sim.runner import quiet_adapters
from orchestrator.sim.scenario import WorldSettings

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "configs" / "scenarios"
POLICIES = tuple(PRESETS)  # default, route53, route53-fast, patroni, naive
DAY = 86400.0
SCALE_ENGINE_HOURS = 48.0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


def scenario_files() -> list[Path]:
    return sorted(path for path in SCENARIOS.glob("*.yaml") if path.name != "hk-topology.yaml")


def shifted(scenario: Scenario, seed: int, interval: float) -> Scenario:
    """Every fault moved by the same random fraction of a probe interval (drawn from the seed)."""
    offset = random.Random(f"phase:{seed}").random() * interval
    return replace(scenario, faults=tuple(replace(f, at=f.at + offset) for f in scenario.faults))


def _one(job: tuple[str, str, int]) -> dict[str, Any]:
    path, policy, seed = job
    scenario = load_scenario(path)
    interval = PRESETS[policy](scenario.topology).probes.interval
    result = run_scenario(shifted(scenario, seed, interval), seed=seed, policy=policy)
    return {"scenario": result.scenario, "policy": policy, "seed": seed, "detection_s": result.detection_s,
            "halt_s": result.halt_s, "failovers": result.failovers, "false_failovers": result.false_failovers,
            "orders_lost": result.orders_lost, "max_primaries": result.max_primaries,
            "trades_bad": result.trades_while_halted + result.trades_during_protection,
            "time_to_new_primary_s": result.time_to_new_primary_s, "passed": result.passed}


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    detections = [r["detection_s"] for r in rows if r["detection_s"] is not None]
    return {
        "runs": len(rows),
        "detected": len(detections),
        "detection_median_s": statistics.median(detections) if detections else None,
        "detection_p99_s": percentile(detections, 0.99),
        "halt_total_s": round(sum(r["halt_s"] for r in rows), 1),
        "failovers": sum(r["failovers"] for r in rows),
        "false_failovers": sum(r["false_failovers"] for r in rows),
        "orders_lost": sum(r["orders_lost"] for r in rows),
        "max_primaries": max(r["max_primaries"] for r in rows),
        "bad_trades": sum(r["trades_bad"] for r in rows),
        "expectations_met": sum(r["passed"] for r in rows),
    }


def engine_hours(path: Path) -> float:
    scenario = load_scenario(path)
    return len(scenario.topology.engines) * scenario.duration / 3600


def policy_runs(default_seeds: int, preset_seeds: int, workers: int,
                scale_seeds: int | None = None) -> list[dict[str, Any]]:
    """One row per scenario x policy x seed; at most `scale_seeds` seeds for an exchange-scale scenario."""
    scale = {path for path in scenario_files() if engine_hours(path) >= SCALE_ENGINE_HOURS}

    def seeds(path: Path, policy: str) -> int:
        count = default_seeds if policy == "default" else preset_seeds
        return min(count, scale_seeds) if scale_seeds is not None and path in scale else count

    jobs = [(str(path), policy, seed) for path in scenario_files() for policy in POLICIES
            for seed in range(seeds(path, policy))]
    jobs.sort(key=lambda job: "hk-2022" not in job[0])  # the long ones first, so the pool ends together
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(_one, jobs, chunksize=1))
    return [_one(job) for job in jobs]


def detections(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Every detection time per policy (the runs that detected something), sorted: the chart's distributions."""
    return {policy: sorted(r["detection_s"] for r in rows if r["policy"] == policy and r["detection_s"] is not None)
            for policy in POLICIES}


def policies(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for path in scenario_files():
        name = load_scenario(path).name
        for policy in POLICIES:
            mine = [r for r in rows if r["scenario"] == name and r["policy"] == policy]
            table[f"{name} / {policy}"] = _summary(mine)
    for policy in POLICIES:
        table[f"ALL / {policy}"] = _summary([r for r in rows if r["policy"] == policy])
    return table


# ---- speed -------------------------------------------------------------------------------------------------------


def day_scenario() -> Scenario:
    """24 hours at 1 s probes: a zone outage at 02:00, probe loss and a slow standby later in the day."""
    base = load_scenario(SCENARIOS / "zone-outage.yaml")
    faults = (Fault(FaultKind.OUTAGE, 7200.0, 2700.0, site="aws-hk"),
              Fault(FaultKind.PROBE_LOSS, 30000.0, 3600.0, site="gcp-hk", loss=0.3),
              Fault(FaultKind.DEGRADED, 50000.0, 1800.0, site="azure-hk", latency=0.2))
    return replace(base, name="day", duration=DAY, faults=faults, expect={})


def speed() -> dict[str, Any]:
    scenario = day_scenario()
    with quiet_adapters():
        began = time.process_time()
        result = run_scenario(scenario)
        cpu = time.process_time() - began
        parts = _tick_parts(scenario, ticks=3600)
    return {"simulated_hours": DAY / 3600, "cpu_s": round(cpu, 2),
            "simulated_hours_per_cpu_s": round(DAY / 3600 / cpu, 2), "cycles": result.cycles,
            "us_per_tick": round(cpu / result.cycles * 1e6, 1), "failovers": result.failovers, **parts}


def _tick_parts(scenario: Scenario, ticks: int) -> dict[str, float]:
    """Microseconds per tick spent in the world, in the probes, and in the rest of the controller cycle."""
    sim = Simulation(replace(scenario, faults=()))
    world = probe = cycle = 0.0
    for tick in range(ticks):
        at = scenario.start + tick
        a = time.process_time()
        sim.world.advance_to(at)
        b = time.process_time()
        sim.prober.probe(at)
        c = time.process_time()
        sim.controller.run_cycle()
        d = time.process_time()
        world, probe, cycle = world + b - a, probe + c - b, cycle + d - c
    return {"world_us": round(world / ticks * 1e6, 1), "probe_us": round(probe / ticks * 1e6, 1),
            "controller_us_without_probe": round((cycle - probe) / ticks * 1e6, 1)}


# ---- one cycle for 1,000 engines -------------------------------------------------------------------------------


def big_topology(engines: int = 1000) -> Topology:
    """3 sites on 3 clouds, `engines` engines with a replica on each, probed from the 3 sites and the host."""
    sites = {"aws-hk": Site("aws-hk", "aws", "ap-east-1", ("ap-east-1a",)),
             "gcp-hk": Site("gcp-hk", "gcp", "asia-east2", ("asia-east2-a",)),
             "azure-hk": Site("azure-hk", "azure", "eastasia", ("1",))}
    table = {}
    for number in range(engines):
        name = f"engine-{number:04d}"
        replicas = tuple(
            Replica(f"{name}-{site.split('-')[0]}", name, site, f"vm-{number}",
                    f"http://10.{index}.{number // 250}.{number % 250 + 1}:8700", index)
            for index, site in enumerate(sites))
        table[name] = Engine(name, replicas[0].name, replicas)
    return Topology(sites, table, Policy(), ProbeSettings(1.0, 0.5, tuple(sites)), display_timezone="UTC")


CYCLES = 30


def cycle_1000(cycles: int = CYCLES) -> dict[str, Any]:
    topology = big_topology()
    scenario = Scenario("cycle-1000", topology, start=1_671_332_400.0, duration=3600.0,
                        world=WorldSettings(order_rate=0.0))
    sim = Simulation(scenario)
    with quiet_adapters():
        began = time.perf_counter()
        sim.run_until(scenario.start)
        first = time.perf_counter() - began
        durations, probes = [], []
        for tick in range(1, cycles + 1):
            sim.world.advance_to(scenario.start + tick)
            began = time.perf_counter()
            sim.controller.run_cycle()
            durations.append(time.perf_counter() - began)
            began = time.perf_counter()
            sim.prober.probe(scenario.start + tick)
            probes.append(time.perf_counter() - began)
        profile = cProfile.Profile()
        profile.enable()
        for tick in range(cycles + 1, cycles + 6):
            sim.world.advance_to(scenario.start + tick)
            sim.controller.run_cycle()
        profile.disable()
    replicas = sum(len(engine.replicas) for engine in topology.engines.values())
    return {"engines": len(topology.engines), "replicas": replicas, "vantage_points": len(sim.world.vantages),
            "observations_per_cycle": (replicas + len(topology.sites)) * len(sim.world.vantages),
            "cycles": cycles, "first_cycle_ms": round(first * 1000, 1),
            "median_cycle_ms": round(statistics.median(durations) * 1000, 1),
            "max_cycle_ms": round(max(durations) * 1000, 1),
            "probe_ms": round(statistics.median(probes) * 1000, 1),
            "hot_spots": _hot_spots(profile, 5)}


def _hot_spots(profile: cProfile.Profile, cycles: int) -> dict[str, float]:
    """Milliseconds per cycle (cumulative, under the profiler) of the functions that matter most."""
    stats = pstats.Stats(profile)
    wanted = ("run_cycle", "probe", "ingest", "assess", "_isolated_sources", "site_observations", "snapshot",
              "decide", "_advance_running", "_page_holds", "_message")
    found: dict[str, float] = {}
    for (file, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        if function in wanted and ("orchestrator" in file or "providers" in file):
            key = f"{Path(file).stem}.{function}"
            found[key] = round(max(found.get(key, 0.0), row[3] / cycles * 1000), 2)
    return dict(sorted(found.items(), key=lambda item: -item[1]))


# ---- all of it -------------------------------------------------------------------------------------------------


def run(default_seeds: int = 50, preset_seeds: int = 10, scale_seeds: int | None = None,
        cycles: int = CYCLES) -> dict[str, Any]:
    logging.getLogger("providers").setLevel(logging.CRITICAL)
    default_seeds = _env_int("FAILOVER_BENCH_SEEDS", default_seeds)
    preset_seeds = _env_int("FAILOVER_BENCH_PRESET_SEEDS", preset_seeds)
    workers = _env_int("FAILOVER_BENCH_WORKERS", os.cpu_count() or 1)
    fast = speed()  # timed first, alone, before the pool competes for the CPU
    big = cycle_1000(cycles)
    rows = policy_runs(default_seeds, preset_seeds, workers, scale_seeds)
    table = policies(rows)
    return {"policies": table, "speed": fast, "cycle_1000": big,
            "seeds": {"default": default_seeds, "presets": preset_seeds, "scale": scale_seeds},
            "detections": detections(rows)}


PEER = "route53"  # the peer each detection figure is read against (README's headline comparison)
UNSAFE_PEER = "naive"  # the peer each safety figure is read against: what skipping quorum and thresholds costs


def figures(result: dict[str, Any]) -> list[Figure]:
    """The targets with their goals, each beside the preset that shows what the goal guards against."""
    table, fast, big = result["policies"], result["speed"], result["cycle_1000"]
    seeds = result["seeds"]
    group = "simulator"

    def total(policy: str, key: str) -> Any:
        rows = [row for name, row in table.items() if name.endswith(f"/ {policy}") and not name.startswith("ALL")]
        return max(r[key] for r in rows) if key == "max_primaries" else sum(r[key] for r in rows)

    clean, clean_peer = table.get("zone-outage / default", {}), table.get(f"zone-outage / {PEER}", {})
    everyone, everyone_peer = table.get("ALL / default", {}), table.get(f"ALL / {PEER}", {})
    runs = f"{everyone.get('runs', 0)} runs"
    figures = [
        Figure(group, "clean zone outage: detection (1 s probes)", clean.get("detection_median_s"), "s simulated",
               f"median of {seeds['default']} seeds", goal=5.0, peer=clean_peer.get("detection_median_s"),
               peer_name=PEER),
        Figure(group, "detection, every scenario with a fault", everyone.get("detection_median_s"), "s simulated",
               f"median of {everyone.get('detected', 0)}", peer=everyone_peer.get("detection_median_s"),
               peer_name=PEER),
        Figure(group, "detection p99, every scenario with a fault", everyone.get("detection_p99_s"), "s simulated",
               f"p99 of {everyone.get('detected', 0)}", peer=everyone_peer.get("detection_p99_s"), peer_name=PEER),
    ]
    for name, key, goal in (("false failovers", "false_failovers", 0), ("lost acknowledged orders", "orders_lost", 0),
                            ("trades while halted or in protection", "bad_trades", 0),
                            ("most primaries at once", "max_primaries", 1)):
        stat = "most in any run" if key == "max_primaries" else f"total of {runs}"
        figures.append(Figure(group, f"{name}, every scenario", total("default", key), "", stat, goal=goal,
                              op="==" if goal == 0 else "<=", peer=total(UNSAFE_PEER, key), peer_name=UNSAFE_PEER))
    figures += [
        Figure(group, "24 simulated hours, 1 engine x 3 replicas, 1 s probes", fast["cpu_s"], "CPU s", "one run",
               goal=10.0),
        Figure(group, "one controller cycle, 1,000 engines x 3 replicas x 4 vantage points", big["median_cycle_ms"],
               "ms", f"median of {big.get('cycles', CYCLES)} cycles", goal=50.0),
    ]
    return figures


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def render(result: dict[str, Any]) -> str:
    seeds = result["seeds"]
    lines = [f"== simulator: scenarios x policies (default: {seeds['default']} seeds, presets: {seeds['presets']})",
             f"{'scenario / policy':<34}{'det med':>8}{'det p99':>8}{'halt s':>10}{'failov':>7}{'false':>6}"
             f"{'lost':>6}{'prim':>5}{'bad tr':>7}{'expect':>8}"]
    for name, row in result["policies"].items():
        lines.append(f"{name:<34}{_cell(row['detection_median_s']):>8}{_cell(row['detection_p99_s']):>8}"
                     f"{_cell(row['halt_total_s']):>10}{row['failovers']:>7}{row['false_failovers']:>6}"
                     f"{row['orders_lost']:>6}{row['max_primaries']:>5}{row['bad_trades']:>7}"
                     f"{row['expectations_met']:>4}/{row['runs']:<3}")
    fast, big = result["speed"], result["cycle_1000"]
    lines += ["", f"== speed: 24 simulated hours at 1 s probes in {fast['cpu_s']} CPU s "
                  f"({fast['simulated_hours_per_cpu_s']} simulated h per CPU s, {fast['us_per_tick']} us per tick: "
                  f"world {fast['world_us']}, probes {fast['probe_us']}, "
                  f"rest of the controller cycle {fast['controller_us_without_probe']})",
              f"== one cycle, {big['engines']} engines x 3 replicas x {big['vantage_points']} vantage points "
              f"({big['observations_per_cycle']} observations): median {big['median_cycle_ms']} ms, "
              f"max {big['max_cycle_ms']} ms, first (with provider poll) {big['first_cycle_ms']} ms; "
              f"of which probes {big['probe_ms']} ms",
              "   hot spots, ms per cycle under cProfile: " +
              ", ".join(f"{k} {v}" for k, v in list(big["hot_spots"].items())[:8]), "", "== targets"]
    lines += [f"   {line(figure)}" for figure in figures(result)]
    return "\n".join(lines)


def main() -> None:
    print(render(run()))


if __name__ == "__main__":
    main()
