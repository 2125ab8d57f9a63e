"""How fast the status page answers with 50 engines (issue 16: "the page answers in under 50 ms with 50 engines").

A configuration of 50 engines x 3 replicas on three sites, a SQLite store holding what an eventful day leaves (the
last cycle's verdicts, a closed failover with its whole journal for 10 engines, a failover in protection and one
waiting for a human, a daemon's heartbeat), and the daemon's own HTTP server (`StatusServer`) serving
`page_routes` and, on a second loopback port, the public feed's `public_routes`. Each route is asked `requests`
times in a row over real HTTP (one kept-alive connection, as a browser polls), and the median and p95 of the wall
time per request are printed beside the 50 ms goal:

- warm: the documents are cached for `ttl` seconds (an hour here, so every request is served from the cache);
  that is what every browser but the first sees within a poll;
- cold: `ttl=0`, so every request rebuilds the document from the store: the cost one poll per `ttl` pays.

`GET /` is the page's HTML, read from the package once (so warm and cold are alike: a floor for the server). The
build alone (`PageSource` with no HTTP, cold) is printed as a breakdown, and CPU milliseconds per request (client
and server, one process) beside the wall time: on a shared machine wall time is partly other people's load.

Each series runs twice: as the daemon serves today, and with TCP_NODELAY set on the listening socket (accepted
connections inherit it on Linux). Without it, every answer on a kept-alive connection, as a polling browser holds,
waits about 40 ms: the server writes the headers and the body in two segments, Nagle's algorithm holds the second
until the first is acknowledged, and the client delays that acknowledgement (its delayed-ACK timer, 40 ms on
Linux). `engine.replica.serving.bind` is where the option belongs; here it is set around `bind` for the second
run only, so the two rows show what the change is worth (and agree once `bind` sets it).

    python -m benchmarks --only status_page_bench      (once registered in benchmarks/__main__.py)
    python -m benchmarks.status_page_bench
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from benchmarks.figures import Figure
from orchestrator.config import LoadedConfig, load_config
from orchestrator.drivers.daemon_http import StatusServer
from orchestrator.drivers.status import write_verdicts
from orchestrator.store import open_store
from orchestrator.web.routes import PageSource, page_routes, public_routes

ENGINES = 50
REQUESTS = 30
GOAL_MS = 50.0
SITES = {"aws-hk": ("aws", "ap-east-1"), "gcp-hk": ("gcp", "asia-east2"), "azure-hk": ("azure", "eastasia")}
SITE_OPTIONS = {"gcp": "    project: exchange-prod\n",
                "azure": "    subscription: 00000000-0000-0000-0000-000000000000\n    resource_group: trading\n"}
CLOSED_INCIDENTS = 10  # engines with a whole failover behind them (the page lists the last ones)
DAY = 1_670_036_400.0  # 2022-12-03 03:00 UTC


def _yaml(engines: int) -> str:
    sites = "".join(f"  {name}:\n    provider: {provider}\n    region: {region}\n{SITE_OPTIONS.get(provider, '')}"
                    for name, (provider, region) in SITES.items())
    lines = ["version: 1", "display_timezone: Asia/Hong_Kong", "store: sqlite:///state.db", "sites:", sites.rstrip(),
             "probes: {interval: 1s, timeout: 500ms, vantage_points: [aws-hk, gcp-hk, azure-hk]}",
             "protection_window: {duration: 20m, allow: [cancel, post_only, add_margin]}", "engines:"]
    for n in range(engines):
        lines.append(f"  market-{n:02d}:\n    primary: market-{n:02d}-aws\n    replicas:")
        for site, (provider, _) in SITES.items():
            lines.append(f"      market-{n:02d}-{provider}: {{site: {site}, instance: m{n:02d}-{provider}, "
                         f"control_url: \"http://127.0.0.1:{9000 + n}\"}}")
    return "\n".join(lines) + "\n"


def _failover(store: Any, engine: str, at: float, *, status: str, steps: int) -> str:
    """An incident and the journal a failover leaves, `steps` steps of it."""
    incident = store.create_incident(engine, "failover", "aws-hk is down (3 of 3 vantage points)", at,
                                     source=f"{engine}-aws", target=f"{engine}-gcp", status="running")
    journal = [("halt", {}), ("fence_old_primary", {}), ("wait_caught_up", {}), ("promote", {}),
               ("switch_traffic", {}), ("open_protection", {"until": at + 1201}), ("announce", {}), ("reopen", {})]
    for n, (step, detail) in enumerate(journal[:steps]):
        store.append_journal(incident.id, step, "started", at + n * 0.2)
        store.append_journal(incident.id, step, "done", at + n * 0.2 + 0.1, detail)
    if steps == len(journal):
        store.append_journal(incident.id, "reopen", "done", at + 1201)
    if status != "running":
        store.update_incident(incident.id, at=at + 1202, status=status)
    return str(incident.id)


def build_world(directory: Path, engines: int = ENGINES) -> tuple[LoadedConfig, dict[str, Any]]:
    """The configuration and its store, and the daemon's `/status` document the page shows beside them."""
    path = directory / "failover.yaml"
    path.write_text(_yaml(engines))
    loaded = load_config(path)
    names = list(loaded.topology.engines)
    with open_store(loaded.store_url) as store:
        for n, engine in enumerate(names[:CLOSED_INCIDENTS]):
            _failover(store, engine, DAY - 86_400 + n * 3600, status="closed", steps=8)
        _failover(store, names[-1], DAY, status="running", steps=6)  # in its protection window
        _failover(store, names[-2], DAY + 5, status="needs_human", steps=2)
        store.heartbeat("daemon-a", DAY, {"leader": True, "may_lead": True, "clock_offset": 0.01})
    verdicts = {name: "healthy" for name in SITES} | {
        replica.name: "healthy" for engine in loaded.topology.engines.values() for replica in engine.replicas}
    verdicts["aws-hk"] = "down"
    _write_verdicts(loaded, verdicts)
    daemon = {"identity": "daemon-a", "leader": True, "cycles": 1200, "last_cycle_at": DAY, "error": None,
              "healthy": True, "message": "", "verdicts": verdicts}
    return loaded, daemon


def _write_verdicts(loaded: LoadedConfig, verdicts: Mapping[str, str]) -> None:
    from orchestrator.core.health import Assessment
    from orchestrator.core.model import Verdict

    with open_store(loaded.store_url) as store:
        write_verdicts(store, DAY, {name: Assessment(name, Verdict(v), DAY - 60, reason="bench")
                                    for name, v in verdicts.items()})


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _series(ask: Callable[[], httpx.Response], requests: int) -> dict[str, Any]:
    """Wall milliseconds of each of `requests` requests, after one untimed (connection, first build)."""
    first = ask()
    first.raise_for_status()
    walls = []
    began_cpu = _cpu()
    size = len(first.content)
    for _ in range(requests):
        began = time.perf_counter()
        answer = ask()
        walls.append((time.perf_counter() - began) * 1000)
        if answer.status_code != 200:
            return {"failed": f"HTTP {answer.status_code}: {answer.text[:200]}"}
    walls.sort()
    return {"requests": requests, "median_ms": statistics.median(walls),
            "p95_ms": walls[min(len(walls) - 1, round(0.95 * len(walls)) - 1)], "max_ms": walls[-1],
            "cpu_ms_per_request": (_cpu() - began_cpu) * 1000 / requests, "bytes": size}


def _served(loaded: LoadedConfig, daemon: Mapping[str, Any], ttl: float, requests: int) -> dict[str, Any]:
    source = PageSource(loaded, lambda: daemon, ttl=ttl)
    rows: dict[str, Any] = {}
    with StatusServer("127.0.0.1", 0, page_routes(source)) as page, \
            StatusServer("127.0.0.1", 0, public_routes(source, "https://status.example")) as feed, \
            httpx.Client(timeout=30) as client:
        for name, url in (("GET /api/page", page.url + "/api/page"), ("GET /", page.url + "/"),
                          ("GET /status.json (public feed)", feed.url + "/status.json")):
            rows[name] = _series(lambda url=url: client.get(url), requests)  # type: ignore[misc]
    return rows


@contextlib.contextmanager
def _nodelay() -> Iterator[None]:
    """StatusServer's listening sockets with TCP_NODELAY, inherited by every connection they accept."""
    import orchestrator.drivers.daemon_http as daemon_http
    from orchestrator.engine.replica.serving import DEFAULT_BACKLOG, bind

    def bind_nodelay(host: str, port: int, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
        sock = bind(host, port, backlog)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    names = vars(daemon_http)  # the name StatusServer.start calls, replaced for this block only
    names["bind"] = bind_nodelay
    try:
        yield
    finally:
        names["bind"] = bind


def _build_only(loaded: LoadedConfig, daemon: Mapping[str, Any], requests: int) -> dict[str, Any]:
    """The cold build without HTTP: the store reads and the documents, in this thread."""
    source = PageSource(loaded, lambda: daemon, ttl=0.0)
    source.page()
    walls = []
    began_cpu = _cpu()
    for _ in range(requests):
        began = time.perf_counter()
        source.page()
        walls.append((time.perf_counter() - began) * 1000)
    walls.sort()
    return {"requests": requests, "median_ms": statistics.median(walls),
            "p95_ms": walls[min(len(walls) - 1, round(0.95 * len(walls)) - 1)], "max_ms": walls[-1],
            "cpu_ms_per_request": (_cpu() - began_cpu) * 1000 / requests}


def run(requests: int = REQUESTS, engines: int = ENGINES) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="status-page-bench-") as scratch:
        loaded, daemon = build_world(Path(scratch), engines)
        series = {"warm": _served(loaded, daemon, 3600.0, requests), "cold": _served(loaded, daemon, 0.0, requests)}
        with _nodelay():
            series["warm, TCP_NODELAY"] = _served(loaded, daemon, 3600.0, requests)
            series["cold, TCP_NODELAY"] = _served(loaded, daemon, 0.0, requests)
        series["build"] = {"PageSource.page(), cold, no HTTP": _build_only(loaded, daemon, requests)}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"status_page": series,
            "machine": {"load_1min": load, "cpus": os.cpu_count()},
            "engines": engines, "replicas": engines * len(SITES), "requests": requests, "goal_ms": GOAL_MS}


KINDS = {"warm": "as served today; documents cached for ttl", "cold": "as served today; ttl=0: every request rebuilds",
         "warm, TCP_NODELAY": "cached, with TCP_NODELAY on the listening socket",
         "cold, TCP_NODELAY": "rebuilt, with TCP_NODELAY on the listening socket"}


def figures(result: dict[str, Any]) -> list[Figure]:
    """Median and p95 of each route, warm and cold, beside the 50 ms goal; the build alone for context."""
    found = []
    engines = result["engines"]
    for kind in KINDS:
        for name, row in result["status_page"][kind].items():
            label = f"{name} {kind}, {engines} engines"
            if "failed" in row:
                found.append(Figure("status page", label, None, "ms", f"failed: {row['failed']}", goal=GOAL_MS))
                continue
            stat = f"of {row['requests']} requests"
            found.append(Figure("status page", f"{label}: median", round(row["median_ms"], 2), "ms",
                                f"median {stat}", goal=GOAL_MS))
            found.append(Figure("status page", f"{label}: p95", round(row["p95_ms"], 2), "ms", f"p95 {stat}",
                                goal=GOAL_MS))
    for name, row in result["status_page"]["build"].items():
        found.append(Figure("status page", f"{name}, {engines} engines", round(row["median_ms"], 2), "ms",
                            f"median of {row['requests']}"))
    return found


def render(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [f"== status page: wall ms per request over HTTP on loopback, {result['engines']} engines x 3 replicas, "
             f"{result['requests']} requests per row (load {machine['load_1min']:.1f} on {machine['cpus']} cpus); "
             f"goal < {result['goal_ms']:g} ms"]
    for kind, why in (*KINDS.items(), ("build", "the cold build alone")):
        lines.append(f"-- {kind} ({why})")
        for name, row in result["status_page"][kind].items():
            if "failed" in row:
                lines.append(f"   {name:34} FAILED ({row['failed']})")
                continue
            met = ", ".join(f"{stat} {'met' if row[f'{stat}_ms'] < result['goal_ms'] else 'MISSED'}"
                            for stat in ("median", "p95"))
            size = f", {row['bytes'] / 1024:.0f} KiB" if "bytes" in row else ""
            lines.append(f"   {name:34} median {row['median_ms']:7.2f}  p95 {row['p95_ms']:7.2f}  max "
                         f"{row['max_ms']:7.2f} ms; cpu {row['cpu_ms_per_request']:6.2f} ms/request{size}"
                         + (f"  goal: {met}" if kind != "build" else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(run()))
