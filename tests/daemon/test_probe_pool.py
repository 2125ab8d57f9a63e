"""The pooled prober (docs/daemon-scale.md), against real HTTP on loopback: one status server process answering for
many replicas (benchmarks.daemon_scale_bench.StatusServer), the real `HttpEngineClient`, the real `EngineProber`.

What an operator relies on: a round says what the old one-at-a-time round said; one replica that hangs or resets
its connection costs its own probe and nothing else; no more requests are in flight than configured; connections
are kept from round to round and the memory a round takes does not grow with the rounds."""

from __future__ import annotations

import gc
import resource
import tracemalloc
from collections.abc import Iterator

import pytest

from benchmarks.daemon_scale_bench import OneAtATime, StatusServer, topology
from orchestrator.core.model import Engine, Replica, Status, Topology
from orchestrator.drivers.probe import EngineProber
from orchestrator.engine.client import HttpEngineClient
from orchestrator.testbed.ports import free_port

pytestmark = pytest.mark.slow  # starts a server process

SLOW, RESET = "e1-1", "e2-2"
TIMEOUT = 1.0  # the probe's answer deadline: a loaded machine answers the others well within it


@pytest.fixture
def client() -> Iterator[HttpEngineClient]:
    with HttpEngineClient(read_timeout=TIMEOUT, connect_timeout=TIMEOUT, attempts=1) as engines:
        yield engines


def with_dead_port(topo: Topology) -> Topology:
    """One more engine whose replicas are on a port where nothing listens (connection refused)."""
    dead = f"http://127.0.0.1:{free_port()}"
    replicas = tuple(Replica(f"dead-{k}", "dead", f"site-{k}", f"vm-dead-{k}", f"{dead}/dead-{k}", k)
                     for k in range(3))
    return Topology(sites=topo.sites, engines={**topo.engines, "dead": Engine("dead", "dead-0", replicas)})


def words(detail: str) -> str:
    """A down observation's detail up to its cause's wording: who, where, and "timed out" or "unreachable"."""
    where, _, cause = detail.partition("/v1/status: ")
    return f"{where}/v1/status: {cause.split(' (')[0]}"


def test_a_pooled_round_observes_what_a_round_of_single_calls_observed(client: HttpEngineClient) -> None:
    with StatusServer(3, slow=[SLOW], slow_s=30.0, reset=[RESET]) as server:
        topo = with_dead_port(topology(server, 30))
        pooled = EngineProber(topo, client).probe(1000.0)
        single = EngineProber(topo, OneAtATime(client)).probe(1000.0)
    assert pooled.statuses == single.statuses
    assert len(pooled.statuses) == 30 - 2  # every replica but the slow one and the reset one
    assert [(o.subject, o.source, o.status) for o in pooled.observations] == \
        [(o.subject, o.source, o.status) for o in single.observations]
    down = {o.subject: words(o.detail) for o in pooled.observations if o.status is Status.DOWN}
    assert down == {o.subject: words(o.detail) for o in single.observations if o.status is Status.DOWN}
    assert down[SLOW].endswith("timed out") and down[RESET].endswith("unreachable")
    assert down["dead-0"].endswith("unreachable")
    assert {o.subject: o.status for o in pooled.observations if o.subject.startswith("site-")} == \
        {"site-0": Status.DEGRADED, "site-1": Status.DEGRADED, "site-2": Status.DEGRADED}


def test_a_hung_replica_and_a_reset_one_hold_up_no_other_probe(client: HttpEngineClient) -> None:
    """The server logs when each request arrived and ended: every other replica's request arrives and is answered
    while the hung replica's is still open (the client hangs up on it only at its own deadline)."""
    with StatusServer(3, slow=[SLOW], slow_s=30.0, reset=[RESET], log=True) as server:
        topo = topology(server, 60)
        replicas = sorted((r for e in topo.engines.values() for r in e.replicas), key=lambda r: r.name != SLOW)
        prober = EngineProber(topo, client, replicas=replicas)  # the hung one asked first
        round_ = prober.probe(1000.0)
        events = server.stats()["events"]
    assert set(round_.statuses) == {r.name for e in topo.engines.values() for r in e.replicas} - {SLOW, RESET}
    hung_up = next(t for what, name, t in events if name == SLOW and what == "client hung up")
    others = [(what, name, t) for what, name, t in events if name not in (SLOW, RESET)]
    assert len(others) == 2 * 58  # each arrived and was answered
    assert all(t < hung_up for _, _, t in others)


def test_no_more_requests_in_flight_than_the_limit(client: HttpEngineClient) -> None:
    with StatusServer(2, delay_s=0.2) as server:
        topo = topology(server, 60)
        prober = EngineProber(topo, client, workers=8)
        server.stats(reset=True)
        answered = len(prober.probe(1000.0).statuses)
        most = server.stats()["most_in_flight"]
    assert answered == 60
    assert 1 < most <= 8


def test_a_low_open_file_limit_bounds_the_requests_in_flight_to_a_quarter_of_it() -> None:
    """At most half the descriptors go to probes, half of those in flight: a daemon left at a soft limit of 256
    probes in waves of 64 rather than run out of descriptors (which would make healthy replicas unreachable)."""
    with StatusServer(2, delay_s=0.2) as server:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        try:
            client = HttpEngineClient(read_timeout=TIMEOUT, connect_timeout=TIMEOUT, attempts=1)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        with client:
            prober = EngineProber(topology(server, 150), client, workers=1024)
            server.stats(reset=True)
            answered = len(prober.probe(1000.0).statuses)
            most = server.stats()["most_in_flight"]
    assert answered == 150
    assert 1 < most <= 64


def test_connections_are_kept_from_round_to_round(client: HttpEngineClient) -> None:
    with StatusServer(30) as server:  # one port per replica, as real replicas have
        prober = EngineProber(topology(server, 30), client)
        prober.probe(1000.0)
        server.stats(reset=True)
        rounds = [len(prober.probe(1000.0 + n).statuses) for n in range(1, 4)]
        stats = server.stats()
    assert rounds == [30, 30, 30]
    assert stats["requests"] == 90
    assert stats["connections"] == 1  # only the one this stats request came on


def test_a_server_that_closes_idle_connections_costs_no_probe(client: HttpEngineClient) -> None:
    """A replica whose keep-alive timeout is shorter than the probe interval (here: it closes after every answer)
    is answered every round, with a single attempt."""
    with StatusServer(3, close_after=True) as server:
        prober = EngineProber(topology(server, 30), client)
        rounds = [len(prober.probe(1000.0 + n).statuses) for n in range(4)]
    assert rounds == [30, 30, 30, 30]


def test_the_memory_a_round_takes_does_not_grow_with_the_rounds(client: HttpEngineClient) -> None:
    with StatusServer(3) as server:
        prober = EngineProber(topology(server, 30), client)
        for n in range(5):
            prober.probe(1000.0 + n)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for n in range(40):
                prober.probe(1010.0 + n)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    ours = [tracemalloc.Filter(True, "*/orchestrator/*")]
    grown = sum(d.size_diff for d in after.filter_traces(ours).compare_to(before.filter_traces(ours), "filename"))
    # 40 rounds x 30 probes: keeping even 16 bytes per probe would be 19 KB
    assert grown < 16 * 1024, f"{grown} bytes kept after 40 rounds"
