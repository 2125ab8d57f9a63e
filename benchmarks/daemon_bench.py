"""One daemon cycle's wall time for 300 and 1,000 replicas (100 and 334 engines x 3) probed over loopback HTTP.

The replicas are `daemon_scale_bench.StatusServer`: one asyncio process answering `/<replica>/v1/status` with the
reference replica's status body, one loopback port per replica (a reference replica per process would measure
process count, not the orchestrator; one uvicorn process for all, as before, spent 0.25 ms of CPU per answer and
was the bottleneck at 1,000 replicas, not the daemon); the cycle is the real one:
a probe round through `HttpEngineClient.statuses` (kept-alive connections, at most `probe.IN_FLIGHT` in flight,
the prober `drivers.wiring` builds), provider health through the in-memory cloud's adapter, health evaluation,
decision, and the SQLite store the daemon uses by default. Reported: median and p95 over cycles, the probe phase
alone, and the ratio of the cycle to a 1 s probe interval (below 1 means a cycle fits in its interval).
`daemon_scale_bench` measures the probe round alone against one port per replica, before and after the pool.
"""

from __future__ import annotations

import collections
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.daemon_scale_bench import StatusServer
from benchmarks.daemon_scale_bench import topology as replicas_on
from benchmarks.figures import Figure
from orchestrator.drivers.controller import Controller
from orchestrator.drivers.events import EventLog
from orchestrator.drivers.modes import ControllerSettings, Mode
from orchestrator.drivers.probe import EngineProber
from orchestrator.drivers.wiring import Edges
from orchestrator.engine.client import HttpEngineClient
from orchestrator.store import open_store
from providers.local import LocalCloud, LocalProvider

ENGINES = (100, 334)
CYCLES = 15


def _name(replicas: int) -> str:
    return f"daemon.cycle ({replicas} replicas over loopback HTTP)"


def run(cycles: int = CYCLES, engines: Sequence[int] = ENGINES) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for count in engines:
        found.update(_run(cycles, count))
    return found


def _run(cycles: int, count: int) -> dict[str, Any]:
    server = StatusServer(count * 3)
    topology = replicas_on(server, count * 3)
    clouds = {}
    for name, site in topology.sites.items():
        cloud = LocalCloud(name, clock=time.time)
        for engine in topology.engines.values():
            for replica in engine.replicas:
                if replica.site == name:
                    cloud.add_instance(name, replica.instance, site.zones[0])
        clouds[name] = LocalProvider(site, cloud=cloud)
    client = HttpEngineClient(read_timeout=0.5, connect_timeout=0.5, attempts=1)
    prober = EngineProber(topology, client)  # as drivers.wiring builds it
    with tempfile.TemporaryDirectory() as tmp, open_store(f"sqlite:///{Path(tmp) / 'bench.db'}") as store:
        edges = Edges(store, client, dict(clouds), {}, prober, EventLog(), time.time)
        controller = Controller(topology, edges, Mode.DAEMON, ControllerSettings(provider_interval=0.0))
        durations, probes = [], []
        for _ in range(cycles):
            began = time.perf_counter()
            prober.probe(time.time())
            probes.append(time.perf_counter() - began)
            began = time.perf_counter()
            result = controller.run_cycle()
            durations.append(time.perf_counter() - began)
        verdicts = collections.Counter(a.verdict.value for a in result.verdicts.values())
        reasons = collections.Counter(a.reason for a in result.verdicts.values())
    prober.close()
    client.close()
    server.close()
    durations.sort()
    return {_name(count * 3): {
        "cycles": cycles, "replicas": count * 3, "load_1min": os.getloadavg()[0],
        "cycle": {"median_ms": statistics.median(durations) * 1000,
                  "p95_ms": durations[int(0.95 * (len(durations) - 1))] * 1000,
                  "per_replica_ms": statistics.median(durations) * 1000 / (count * 3),
                  "ratio_to_1s_interval": statistics.median(durations) / 1.0},
        "probe_phase": {"median_ms": statistics.median(probes) * 1000},
        "last_verdicts": dict(verdicts), "reasons": dict(reasons),
    }}


def figures(result: dict[str, Any]) -> list[Figure]:
    """The cycle as a share of its 1 s interval (below 1 it fits), and its milliseconds for context."""
    found = []
    for data in result.values():
        replicas = data.get("replicas", 300)
        stat = f"median of {data.get('cycles', CYCLES)} cycles"
        found += [Figure("daemon", f"one cycle, {replicas:,} replicas over loopback HTTP, as a share of a 1 s "
                         "interval", round(data["cycle"]["ratio_to_1s_interval"], 3), "x interval", stat, goal=1.0),
                  Figure("daemon", f"one cycle, {replicas:,} replicas over loopback HTTP",
                         round(data["cycle"]["median_ms"], 1), "ms wall", stat)]
    return found


def render(result: dict[str, Any]) -> str:
    lines = []
    for data in result.values():
        cycle, replicas = data["cycle"], data.get("replicas", 300)
        lines += [
            f"== daemon: one cycle, {replicas} replicas ({replicas // 3} engines x 3) probed over loopback HTTP, "
            f"SQLite store (load {data.get('load_1min', float('nan')):.1f})",
            f"   cycle median {cycle['median_ms']:.0f} ms, p95 {cycle['p95_ms']:.0f} ms "
            f"({cycle['per_replica_ms']:.2f} ms per replica); probes alone {data['probe_phase']['median_ms']:.0f} ms",
            f"   ratio of the cycle to a 1 s probe interval: {cycle['ratio_to_1s_interval']:.2f}",
            f"   verdicts after the last cycle: {data['last_verdicts']}",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
