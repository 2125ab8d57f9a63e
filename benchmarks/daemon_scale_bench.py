"""The daemon at exchange scale (issue 17 item 6): one probe round for 300 and 1,000 replicas over loopback HTTP,
before and after the pooled prober, and one controller cycle for 1,000 and 10,000 engines.

The replicas: one server process (`serve`, below: asyncio, HTTP/1.1 with keep-alive, no framework) answering
`GET /<replica>/v1/status` with the reference replica's full status body, serialised per request, on `ports`
loopback ports (replica i on port i mod ports; by default one port per replica, so the prober keeps one
connection per replica as it would against real ones). One process for every replica keeps the machine's two
cores for the measurement; its own CPU per round is reported beside ours so that a slow server is seen, not
mistaken for a slow prober. The prober parses every answer for real (JSON, then `ReplicaStatus`).

- `before`: `EngineProber` asking `HttpEngineClient.status` one replica at a time from a thread pool (what every
  daemon did until the pooled prober: one httpx request per replica, 32 threads as in `drivers.wiring`);
- `after`: `EngineProber` over `HttpEngineClient.statuses` (kept-alive connections on one event loop, at most
  `probe.IN_FLIGHT` requests in flight).

Per round: the median and p95 wall milliseconds, our CPU milliseconds (this process, every thread) and the
server's. The controller cycle is `sim_bench`'s (`Controller.run_cycle` over a quiet simulated world, 3 replicas
and 4 vantage points per engine, the in-memory store) for 1,000 and 10,000 engines, with the share of it spent in
the garbage collector. The load average is recorded before and after: on a shared machine, read the figures with it.

A mass failover (docs/mass-failover.md): `sim_bench`'s big topology with the primaries' site (aws-hk) going dark,
so that one controller cycle opens a failover for every engine and runs each runbook as far as it goes. The CPU
seconds of that cycle and of the cycles after it, with the simulator's call latencies (each call's wait lets the
simulated world live through it: most of the CPU is the world's, not ours) and with instant calls (what the
controller, the runbook driver and the store cost on their own). Default: 100 engines with latencies and 1,000
instant, one run each; full: 1,000 with latencies as well, two runs (30-40 CPU s a run).

    python -m benchmarks --only daemon_scale_bench      (once registered)
    python -m benchmarks.daemon_scale_bench             this module alone
    python -m benchmarks.daemon_scale_bench --mass-failover 100,1000 [--instant] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure
from orchestrator.core.model import Engine, Phase, Replica, ReplicaStatus, Site, Status, Topology
from orchestrator.drivers.probe import EngineProber
from orchestrator.engine.base import EngineControl
from orchestrator.engine.client import HttpEngineClient

ROOT = Path(__file__).resolve().parents[1]
SIZES = (300, 1000)
ROUNDS = 5
BEFORE_ROUNDS = 2
CYCLE_ENGINES = (1000, 10000)
CYCLES = 2
GOAL_ROUND_MS = 400.0
GOAL_CYCLE_10000_MS = 100.0
MASS_FAILOVER = 100  # engines failing over at once, with the simulator's call latencies (0: none)
MASS_INSTANT = 1000  # ... with instant calls: the controller's own cost (0: none)
MASS_RUNS = 1
MASS_FOLLOWING = 3  # cycles measured after the one that opens the failovers
OUTAGE_AT = 5.0  # seconds after the start; detected by the third cycle after it (tick 7)
THREADS_BEFORE = 32  # what drivers.wiring gave every daemon's prober


# ---- the replicas' status server ------------------------------------------------------------------------------


def _body(name: str) -> bytes:
    """The reference replica's status body (orchestrator/engine/replica/node.py `status`), for replica `name`."""
    primary = name.endswith("-0")
    return json.dumps({
        "replica": name, "role": "primary" if primary else "standby", "epoch": 1_000_001, "phase": "open",
        "phase_until": None, "last_seq": 52_341, "applied_seq": 52_341, "journal_epoch": 1_000_001,
        "cloud": "aws", "synchronous": True, "following": None if primary else name[:-2] + "-0",
        "replicated_seq": 52_341 if primary else None, "error": None, "unreplicated_age_s": None,
        "replication_timeouts": 0, "standbys": {}, "primary_contact_age_s": None if primary else 0.02,
    }).encode()


class _Server:
    """Counts what the prober must be judged by: requests in flight at once (from arrival until answered, or until
    the client hung up), connections opened; with `log`, when each request arrived and ended, for the tests."""

    def __init__(self, slow: set[str], slow_s: float, reset: set[str], delay_s: float, log: bool,
                 close_after: bool) -> None:
        self.slow, self.slow_s, self.reset, self.delay_s = slow, slow_s, reset, delay_s
        self.log, self.close_after = log, close_after
        self.in_flight = self.most_in_flight = self.requests = self.connections = 0
        self.events: list[tuple[str, str, float]] = []
        self.loop = asyncio.get_running_loop()

    def answer(self, connection: _Connection, target: str) -> None:
        transport = connection.transport
        assert transport is not None
        if target in ("/_stats", "/_reset"):
            stats = {"most_in_flight": self.most_in_flight, "requests": self.requests,
                     "connections": self.connections, "events": self.events}
            if target == "/_reset":
                self.most_in_flight = self.requests = self.connections = 0
                self.events = []
            _write(transport, json.dumps(stats).encode())
            return
        name = target.split("/")[1]
        self.requests += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self._log("arrived", name)
        if name in self.reset:
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a RST
            transport.abort()
            self._ended(name, "reset")
            return
        delay = self.slow_s if name in self.slow else self.delay_s
        if delay:
            connection.pending = (name, self.loop.call_later(delay, self._finish, connection, name))
        else:
            self._finish(connection, name)

    def _finish(self, connection: _Connection, name: str) -> None:
        connection.pending = None
        self._ended(name, "answered")
        assert connection.transport is not None
        _write(connection.transport, _body(name))
        if self.close_after:  # as a server whose keep-alive timeout is shorter than the probe interval
            connection.transport.close()

    def hung_up(self, connection: _Connection) -> None:
        if connection.pending is not None:
            name, timer = connection.pending
            timer.cancel()
            connection.pending = None
            self._ended(name, "client hung up")

    def _ended(self, name: str, how: str) -> None:
        self.in_flight -= 1
        self._log(how, name)

    def _log(self, what: str, name: str) -> None:
        if self.log:
            self.events.append((what, name, time.monotonic()))


def _write(transport: asyncio.Transport, body: bytes) -> None:
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(body), body))


class _Connection(asyncio.Protocol):
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.pending: tuple[str, asyncio.TimerHandle] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0 and self.transport is not None:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            self.server.answer(self, head.split(b" ", 2)[1].decode("latin-1"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.hung_up(self)


async def _serve(ports: int, slow: set[str], slow_s: float, reset: set[str], delay_s: float, log: bool,
                 close_after: bool, tls: ssl.SSLContext | None = None) -> None:
    server = _Server(slow, slow_s, reset, delay_s, log, close_after)
    loop = asyncio.get_running_loop()
    bound: list[int] = []
    pick = random.SystemRandom()
    while len(bound) < ports:  # below the ephemeral range, as orchestrator.testbed.ports picks
        port = pick.randrange(20000, 32000)
        try:
            await loop.create_server(lambda: _Connection(server), "127.0.0.1", port, backlog=1024, ssl=tls)
        except OSError:
            continue
        bound.append(port)
    print(json.dumps(bound), flush=True)
    await asyncio.Event().wait()


class StatusServer:
    """The server process: `ports` loopback ports, every replica name answered on each (see `serve`)."""

    def __init__(self, ports: int = 1, *, slow: Sequence[str] = (), slow_s: float = 0.0, reset: Sequence[str] = (),
                 delay_s: float = 0.0, log: bool = False, close_after: bool = False,
                 tls: tuple[str, str] | None = None) -> None:
        """`tls`: the paths of a certificate (chain) and its key, to serve https."""
        command = [sys.executable, "-m", "benchmarks.daemon_scale_bench", "--serve", str(ports), "--slow-s",
                   str(slow_s), "--delay-s", str(delay_s), "--slow", ",".join(slow), "--reset", ",".join(reset)]
        command += ["--log"] * log + ["--close-after-answer"] * close_after
        command += ["--tls-cert", tls[0], "--tls-key", tls[1]] if tls else []
        self.scheme = "https" if tls else "http"
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)  # -m benchmarks
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"status server exited with {self.process.wait()}")
        self.ports: list[int] = json.loads(line)

    def url(self, index: int) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ports[index % len(self.ports)]}"

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Requests, connections and most requests in flight since the last reset (and the events, if logged)."""
        context = ssl._create_unverified_context() if self.scheme == "https" else None  # our own test server
        with urllib.request.urlopen(f"{self.url(0)}/{'_reset' if reset else '_stats'}", timeout=10,
                                    context=context) as answer:
            found: dict[str, Any] = json.loads(answer.read())
        return found

    def cpu_s(self) -> float:
        fields = open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def __enter__(self) -> StatusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def topology(server: StatusServer, replicas: int) -> Topology:
    """`replicas` / 3 engines (rounded up) of 3 replicas on 3 sites, replica i on the server's port i mod ports."""
    sites = {f"site-{k}": Site(f"site-{k}", "local", f"region-{k}", (f"zone-{k}",)) for k in range(3)}
    engines = {}
    for e in range(-(-replicas // 3)):
        members = tuple(Replica(f"e{e}-{k}", f"e{e}", f"site-{k}", f"vm-{e}-{k}",
                                f"{server.url(3 * e + k)}/e{e}-{k}", k) for k in range(3))
        engines[f"e{e}"] = Engine(f"e{e}", f"e{e}-0", members)
    return Topology(sites=sites, engines=engines)


class OneAtATime(EngineControl):
    """`HttpEngineClient` asked one replica at a time (no `statuses`): the prober as it was before the pool."""

    def __init__(self, client: HttpEngineClient) -> None:
        self.client = client

    def status(self, replica: Replica) -> ReplicaStatus:
        return self.client.status(replica)

    def set_phase(self, replica: Replica, phase: Phase, until: float | None, epoch: int) -> ReplicaStatus:
        raise NotImplementedError

    def promote(self, replica: Replica, epoch: int, *, force: bool = False) -> ReplicaStatus:
        raise NotImplementedError

    def fence(self, replica: Replica, epoch: int) -> ReplicaStatus:
        raise NotImplementedError


# ---- measuring ------------------------------------------------------------------------------------------------


def _rounds(prober: EngineProber, server: StatusServer, rounds: int) -> dict[str, Any]:
    prober.probe(time.time())  # connections, first parse of every URL
    server.stats(reset=True)
    walls, answered, unanswered = [], 0, 0
    cpu, server_cpu = time.process_time(), server.cpu_s()
    for _ in range(rounds):
        began = time.perf_counter()
        found = prober.probe(time.time())
        walls.append(time.perf_counter() - began)
        answered = len(found.statuses)
        unanswered += sum(1 for o in found.observations
                          if o.status is Status.DOWN and not o.subject.startswith("site-"))
    cpu, server_cpu = time.process_time() - cpu, server.cpu_s() - server_cpu
    stats = server.stats()
    walls.sort()
    return {"rounds": rounds, "median_ms": statistics.median(walls) * 1000,
            "p95_ms": walls[math.ceil(0.95 * len(walls)) - 1] * 1000,  # of 2-19 rounds: the slowest
            "cpu_ms": cpu / rounds * 1000,
            "server_cpu_ms": server_cpu / rounds * 1000, "answered": answered, "unanswered": unanswered,
            "requests": stats["requests"], "connections_opened": stats["connections"]}


def probe_rounds(replicas: int, rounds: int, before_rounds: int, ports: int | None = None) -> dict[str, Any]:
    with StatusServer(ports or -(-replicas // 3) * 3) as server:
        topo = topology(server, replicas)
        found: dict[str, Any] = {"replicas": sum(len(e.replicas) for e in topo.engines.values()),
                                 "ports": len(server.ports)}
        with HttpEngineClient(read_timeout=0.5, connect_timeout=0.5, attempts=1) as client:
            if before_rounds:
                prober = EngineProber(topo, OneAtATime(client), workers=THREADS_BEFORE)
                found["before"] = _rounds(prober, server, before_rounds)
                prober.close()
            prober = EngineProber(topo, client)
            found["after"] = _rounds(prober, server, rounds)
            prober.close()
    return found


def controller_cycle(engines: int, cycles: int) -> dict[str, Any]:
    """`Controller.run_cycle` for `engines` engines as `sim_bench.cycle_1000` measures it (its simulated probes
    included), in CPU time (this process's: the cycle runs on one thread, and on a shared machine wall time is
    mostly other people's load; the wall median is kept beside it), and the garbage collector's share of it."""
    # numpy first (a controller with this many replicas judges health over arrays, and imports it when built):
    # OpenBLAS's threads spin for a while after the import, CPU this process's clock would charge to the first
    # cycles measured right after (1,000 engines: 5-7 CPU ms for a 3 ms cycle)
    import numpy  # noqa: F401

    from benchmarks.sim_bench import big_topology
    from orchestrator.drivers.gc_tuning import tune_gc
    from orchestrator.sim import Scenario, Simulation
    from orchestrator.sim.runner import quiet_adapters
    from orchestrator.sim.scenario import WorldSettings

    scenario = Scenario("cycle", big_topology(engines), start=1_671_332_400.0, duration=3600.0,
                        world=WorldSettings(order_rate=0.0))
    sim = Simulation(scenario)
    collecting: list[float] = []
    timing = [False]

    def gc_clock(phase: str, info: dict[str, int]) -> None:
        if timing[0]:
            collecting.append(-time.process_time() if phase == "start" else time.process_time())

    walls, cpus, probes = [], [], []
    thresholds = gc.get_threshold()
    tune_gc()  # what the daemon runs (drivers/daemon.py) and the simulator (sim/runner.py `run`)
    with quiet_adapters():
        sim.run_until(scenario.start)
        gc.callbacks.append(gc_clock)
        try:
            for tick in range(1, cycles + 1):
                sim.world.advance_to(scenario.start + tick)
                began, cpu = time.perf_counter(), time.process_time()
                timing[0] = True
                sim.controller.run_cycle()
                timing[0] = False
                cpus.append(time.process_time() - cpu)
                walls.append(time.perf_counter() - began)
                cpu = time.process_time()
                if sim.controller.columnar:  # the round as the cycle asks for it
                    sim.prober.probe_columns(scenario.start + tick)
                else:
                    sim.prober.probe(scenario.start + tick)
                probes.append(time.process_time() - cpu)
        finally:
            gc.callbacks.remove(gc_clock)
            gc.set_threshold(*thresholds)
    return {"engines": engines, "cycles": cycles, "cpu_median_ms": statistics.median(cpus) * 1000,
            "wall_median_ms": statistics.median(walls) * 1000, "cpu_max_ms": max(cpus) * 1000,
            "probe_cpu_ms": statistics.median(probes) * 1000,
            "gc_cpu_ms_per_cycle": sum(collecting) / cycles * 1000 if len(collecting) % 2 == 0 else None}


def mass_failover(engines: int, *, instant: bool = False, following: int = MASS_FOLLOWING) -> dict[str, Any]:
    """One simulated mass failover: `engines` engines of `sim_bench.big_topology`, their primaries' site (aws-hk)
    dark from `OUTAGE_AT` s on. Cycles run tick by tick (no event stepping: every cycle is measured) until the one
    that opens the failovers, then `following` more; each one's CPU seconds (this process) and virtual seconds
    (how long the simulated calls it waited on took: runbooks run one after another within a cycle)."""
    import numpy  # noqa: F401  (see controller_cycle)

    from benchmarks.sim_bench import big_topology
    from orchestrator.drivers.gc_tuning import tune_gc
    from orchestrator.sim import Scenario, Simulation
    from orchestrator.sim.faults import Fault, FaultKind
    from orchestrator.sim.latency import LatencyTable
    from orchestrator.sim.runner import quiet_adapters
    from orchestrator.sim.scenario import WorldSettings

    start = 1_671_332_400.0
    scenario = Scenario("mass-failover", big_topology(engines), start=start, duration=7200.0,
                        world=WorldSettings(order_rate=0.0), latencies=LatencyTable(instant=instant),
                        faults=(Fault(FaultKind.OUTAGE, OUTAGE_AT, 7000.0, site="aws-hk"),))
    sim = Simulation(scenario, stepping="tick")
    thresholds = gc.get_threshold()
    tune_gc()
    cycles: list[dict[str, Any]] = []
    opening: int | None = None
    try:
        with quiet_adapters():
            sim.run_until(start + OUTAGE_AT - 1)
            tick = start + OUTAGE_AT
            while opening is None or len(cycles) <= opening + following:
                if len(cycles) > 10:
                    raise RuntimeError(f"mass failover of {engines} engines: no failover opened by tick {tick}")
                sim.world.advance_to(tick)
                began, cpu = sim.clock(), time.process_time()
                result = sim.controller.run_cycle()
                cpu = time.process_time() - cpu
                opened = sum(1 for a in result.actions if a.kind.value == "failover")
                cycles.append({"at": tick - start, "cpu_s": cpu, "virtual_s": sim.clock() - began,
                               "opened": opened, "open": len(sim.store.incidents(open_only=True))})
                if opening is None and opened:
                    opening = len(cycles) - 1
                tick = max(tick + sim.topology.probes.interval, sim.clock())
    finally:
        gc.set_threshold(*thresholds)
    assert opening is not None
    return {"engines": engines, "instant": instant, "opening": cycles[opening],
            "following": cycles[opening + 1:]}


def mass_failovers(engines: int, instant: bool, runs: int) -> dict[str, Any]:
    """`runs` mass failovers; the median CPU of the opening cycle and of the following ones."""
    found = [mass_failover(engines, instant=instant) for _ in range(runs)]
    return {"engines": engines, "instant": instant, "runs": runs,
            "opening_cpu_s": statistics.median(r["opening"]["cpu_s"] for r in found),
            "opening_virtual_s": statistics.median(r["opening"]["virtual_s"] for r in found),
            "opened": found[0]["opening"]["opened"],
            "following_cpu_s": [statistics.median(r["following"][i]["cpu_s"] for r in found)
                                for i in range(len(found[0]["following"]))],
            "following_virtual_s": [statistics.median(r["following"][i]["virtual_s"] for r in found)
                                    for i in range(len(found[0]["following"]))],
            "open_after": found[0]["following"][-1]["open"] if found[0]["following"] else None}


def run(rounds: int = ROUNDS, before_rounds: int = BEFORE_ROUNDS, cycles: int = CYCLES,
        sizes: Sequence[int] = SIZES, cycle_engines: Sequence[int] = CYCLE_ENGINES,
        mass_failover: int = MASS_FAILOVER, mass_instant: int = MASS_INSTANT, mass_runs: int = MASS_RUNS,
        ) -> dict[str, Any]:
    load = os.getloadavg()[0]
    probes = {str(n): probe_rounds(n, rounds, before_rounds) for n in sizes}
    load_after_probes = os.getloadavg()[0]
    cycle = {str(n): controller_cycle(n, cycles) for n in cycle_engines}
    mass = [mass_failovers(n, instant, mass_runs) for n, instant in ((mass_failover, False), (mass_instant, True))
            if n]
    return {"daemon.scale": {"probe_rounds": probes, "controller_cycle": cycle, "mass_failover": mass,
                             "load_1min": {"start": load, "after_probes": load_after_probes,
                                           "end": os.getloadavg()[0]}, "cpus": os.cpu_count()}}


def figures(result: dict[str, Any]) -> list[Figure]:
    data = result["daemon.scale"]
    found = []
    for size, row in data["probe_rounds"].items():
        after = row["after"]
        size = str(row.get("replicas", size))
        found.append(Figure("daemon at scale", f"one probe round, {int(size):,} replicas over loopback HTTP",
                            round(after["median_ms"], 1), "ms wall", f"median of {after['rounds']} rounds",
                            goal=GOAL_ROUND_MS if int(size) >= 1000 else None,
                            peer=round(row["before"]["median_ms"], 1) if "before" in row else None,
                            peer_name="before (httpx, 32 threads)" if "before" in row else None))
        found.append(Figure("daemon at scale", f"one probe round, {int(size):,} replicas: our CPU",
                            round(after["cpu_ms"], 1), "CPU ms", f"mean of {after['rounds']} rounds",
                            peer=round(row["before"]["cpu_ms"], 1) if "before" in row else None,
                            peer_name="before (httpx, 32 threads)" if "before" in row else None))
    for engines, row in data["controller_cycle"].items():
        found.append(Figure("daemon at scale", f"one controller cycle, {int(engines):,} engines x 3 replicas x 4 "
                            "vantage points", round(row["cpu_median_ms"], 1), "CPU ms",
                            f"median of {row['cycles']} cycles",
                            goal=GOAL_CYCLE_10000_MS if int(engines) >= 10000 else None))
    for row in data.get("mass_failover", ()):
        calls = "instant calls" if row["instant"] else "simulated call latencies"
        found.append(Figure("daemon at scale", f"mass failover: the cycle opening {row['engines']:,} failovers "
                            f"({calls})", round(row["opening_cpu_s"], 2), "CPU s",
                            f"median of {row['runs']} run{'s' * (row['runs'] > 1)}"))
    return found


def render(result: dict[str, Any]) -> str:
    data = result["daemon.scale"]
    load = data["load_1min"]
    lines = [f"== daemon at scale (load {load['start']:.1f} at start, {load['after_probes']:.1f} after the probe "
             f"rounds, {load['end']:.1f} at end, on {data['cpus']} cpus)"]
    for row in data["probe_rounds"].values():
        for name in ("before", "after"):
            if name in row:
                r = row[name]
                lines.append(f"   {row['replicas']:>5} replicas on {row['ports']} ports, {name:6}: median "
                             f"{r['median_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms; our cpu {r['cpu_ms']:.0f} ms, "
                             f"server cpu {r['server_cpu_ms']:.0f} ms per round; {r['answered']} answered in the "
                             f"last, {r['unanswered']} probes unanswered in all (a loaded machine's late answers); "
                             f"{r['connections_opened']} connections opened for {r['requests']} requests")
    for engines, row in data["controller_cycle"].items():
        collector = row["gc_cpu_ms_per_cycle"]
        lines.append(f"   controller cycle, {int(engines):>6,} engines: median {row['cpu_median_ms']:.0f} CPU ms (max "
                     f"{row['cpu_max_ms']:.0f}; wall {row['wall_median_ms']:.0f} ms; garbage collector "
                     f"{'?' if collector is None else f'{collector:.0f}'} ms of it; a simulated probe round alone "
                     f"{row['probe_cpu_ms']:.0f} ms)")
    lines.extend(render_mass(data.get("mass_failover", ())))
    return "\n".join(lines)


def render_mass(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        calls = "instant calls" if row["instant"] else "simulated latencies"
        following = ", ".join(f"{cpu:.2f}" for cpu in row["following_cpu_s"])
        lines.append(f"   mass failover, {row['engines']:>6,} engines ({calls}): the cycle opening {row['opened']} "
                     f"failovers {row['opening_cpu_s']:.2f} CPU s ({row['opening_virtual_s']:.0f} virtual s of "
                     f"calls waited on); the next {len(row['following_cpu_s'])}: {following} CPU s; "
                     f"{row['open_after']} incidents still open (median of {row['runs']})")
    return lines


def _names(text: str) -> set[str]:
    return {name for name in text.split(",") if name}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, metavar="PORTS", help="run the status server on PORTS ports")
    parser.add_argument("--slow", default="", help="replicas (comma-separated) that answer after --slow-s")
    parser.add_argument("--slow-s", type=float, default=0.0)
    parser.add_argument("--reset", default="", help="replicas (comma-separated) whose connection is reset")
    parser.add_argument("--delay-s", type=float, default=0.0, help="every other answer after this delay")
    parser.add_argument("--log", action="store_true", help="keep every request's arrival and end for /_stats")
    parser.add_argument("--close-after-answer", action="store_true", help="close each connection after answering")
    parser.add_argument("--tls-cert", help="serve https with this certificate (chain) ...")
    parser.add_argument("--tls-key", help="... and this key")
    parser.add_argument("--only-cycle", action="store_true",
                        help="only the controller cycle (no status server, no probe rounds)")
    parser.add_argument("--cycles", type=int, default=CYCLES, help=f"controller cycles per size (default {CYCLES})")
    parser.add_argument("--engines", default=",".join(map(str, CYCLE_ENGINES)),
                        help="controller cycle sizes, comma-separated engine counts (default %(default)s)")
    parser.add_argument("--mass-failover", metavar="ENGINES",
                        help="only mass failovers: engine counts, comma-separated (docs/mass-failover.md)")
    parser.add_argument("--instant", action="store_true", help="with --mass-failover: instant simulated calls")
    parser.add_argument("--runs", type=int, default=MASS_RUNS, help="with --mass-failover: runs per size")
    args = parser.parse_args(argv)
    if args.mass_failover:
        print("\n".join(render_mass([mass_failovers(int(n), args.instant, args.runs)
                                     for n in args.mass_failover.split(",") if n])))
    elif args.serve:
        tls = None
        if args.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        asyncio.run(_serve(args.serve, _names(args.slow), args.slow_s, _names(args.reset), args.delay_s, args.log,
                           args.close_after_answer, tls))
    elif args.only_cycle:
        engines = [int(n) for n in args.engines.split(",") if n]
        print(render(run(cycles=args.cycles, sizes=(), cycle_engines=engines, mass_failover=0, mass_instant=0)))
    else:
        print(render(run(cycles=args.cycles, cycle_engines=[int(n) for n in args.engines.split(",") if n])))


if __name__ == "__main__":
    main()
