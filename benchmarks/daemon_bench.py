"""One daemon cycle's wall time for 300 replicas (100 engines x 3) probed over loopback HTTP.

The replicas are one threaded HTTP server answering `/v1/status` for 300 control URLs (a reference replica per
process would measure process count, not the orchestrator); the cycle is the real one: concurrent probes through
`HttpEngineClient`, provider health through the in-memory cloud's adapter, health evaluation, decision, and the SQLite
store the daemon uses by default. Reported: median and p95 over cycles, the probe phase alone, and the ratio of
the cycle to a 1 s probe interval (below 1 means a cycle fits in its interval).
"""

from __future__ import annotations

import collections
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure
from orchestrator.core.model import Engine, Replica, Site, Topology
from orchestrator.drivers.controller import Controller
from orchestrator.drivers.events import EventLog
from orchestrator.drivers.modes import ControllerSettings, Mode
from orchestrator.drivers.probe import EngineProber
from orchestrator.drivers.wiring import Edges
from orchestrator.engine.client import HttpEngineClient
from orchestrator.store import open_store
from orchestrator.testbed.ports import free_port
from providers.local import LocalCloud, LocalProvider

ENGINES = 100
CYCLES = 15


STATUS_APP = """
import json, sys
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
import uvicorn

async def status(request):
    name = request.path_params["name"]
    body = {"replica": name, "role": "primary" if name.endswith("-0") else "standby", "epoch": 1, "phase": "open",
            "phase_until": None, "last_seq": 100, "applied_seq": 100}
    return Response(json.dumps(body), media_type="application/json")

app = Starlette(routes=[Route("/{name}/v1/status", status)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
"""


def _serve(port: int) -> subprocess.Popen[bytes]:
    """The 300 replicas' status endpoints, in their own process (as real replicas would be: not sharing our GIL)."""
    process = subprocess.Popen([sys.executable, "-c", STATUS_APP, str(port)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("status server did not start")


def _topology(base_url: str) -> Topology:
    sites = {f"site-{k}": Site(f"site-{k}", "local", f"region-{k}", (f"zone-{k}",)) for k in range(3)}
    engines = {}
    for e in range(ENGINES):
        replicas = tuple(Replica(f"e{e}-{k}", f"e{e}", f"site-{k}", f"vm-{e}-{k}", f"{base_url}/e{e}-{k}", k)
                         for k in range(3))
        engines[f"e{e}"] = Engine(f"e{e}", f"e{e}-0", replicas)
    return Topology(sites=sites, engines=engines)


def run(cycles: int = CYCLES) -> dict[str, Any]:
    port = free_port()
    server = _serve(port)
    topology = _topology(f"http://127.0.0.1:{port}")
    clouds = {}
    for name, site in topology.sites.items():
        cloud = LocalCloud(name, clock=time.time)
        for engine in topology.engines.values():
            for replica in engine.replicas:
                if replica.site == name:
                    cloud.add_instance(name, replica.instance, site.zones[0])
        clouds[name] = LocalProvider(site, cloud=cloud)
    client = HttpEngineClient(read_timeout=0.5, connect_timeout=0.5, attempts=1)
    prober = EngineProber(topology, client, workers=64)
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
    server.terminate()
    server.wait(timeout=10)
    durations.sort()
    return {"daemon.cycle (300 replicas over loopback HTTP)": {
        "cycles": cycles,
        "cycle": {"median_ms": statistics.median(durations) * 1000,
                  "p95_ms": durations[int(0.95 * (len(durations) - 1))] * 1000,
                  "per_replica_ms": statistics.median(durations) * 1000 / (ENGINES * 3),
                  "ratio_to_1s_interval": statistics.median(durations) / 1.0},
        "probe_phase": {"median_ms": statistics.median(probes) * 1000},
        "last_verdicts": dict(verdicts), "reasons": dict(reasons),
    }}


def figures(result: dict[str, Any]) -> list[Figure]:
    """The cycle as a share of its 1 s interval (below 1 it fits), and its milliseconds for context."""
    data = result["daemon.cycle (300 replicas over loopback HTTP)"]
    stat = f"median of {data.get('cycles', CYCLES)} cycles"
    return [Figure("daemon", "one cycle, 300 replicas over loopback HTTP, as a share of a 1 s interval",
                   round(data["cycle"]["ratio_to_1s_interval"], 3), "x interval", stat, goal=1.0),
            Figure("daemon", "one cycle, 300 replicas over loopback HTTP", round(data["cycle"]["median_ms"], 1),
                   "ms wall", stat)]


def render(result: dict[str, Any]) -> str:
    data = result["daemon.cycle (300 replicas over loopback HTTP)"]
    cycle = data["cycle"]
    return "\n".join([
        "== daemon: one cycle, 300 replicas (100 engines x 3) probed over loopback HTTP, SQLite store",
        f"   cycle median {cycle['median_ms']:.0f} ms, p95 {cycle['p95_ms']:.0f} ms "
        f"({cycle['per_replica_ms']:.2f} ms per replica); probes alone {data['probe_phase']['median_ms']:.0f} ms",
        f"   ratio of the cycle to a 1 s probe interval: {cycle['ratio_to_1s_interval']:.2f}",
        f"   verdicts after the last cycle: {data['last_verdicts']}",
    ])


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
