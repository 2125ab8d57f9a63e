"""A gray failure's evidence in the daemon: each answered probe carries its round trip (`gray.Measured`), in the
pooled round and in the one-at-a-time round alike, so a primary answering within the timeout but far slower than
its normal is seen by `policy.gray` in production, not only in the simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.daemon_scale_bench import OneAtATime, StatusServer, topology
from orchestrator.core.gray import Measured
from orchestrator.core.model import Status
from orchestrator.drivers.probe import EngineProber
from orchestrator.engine.client import HttpEngineClient

pytestmark = pytest.mark.slow  # starts a server process

SLOW = "e1-1"
SLOW_S = 0.4  # well within the probe's deadline: it answers, late


@pytest.fixture
def client() -> Iterator[HttpEngineClient]:
    with HttpEngineClient(read_timeout=3.0, connect_timeout=3.0, attempts=1) as engines:
        yield engines


@pytest.mark.parametrize("how", ["pooled", "one at a time"])
def test_each_answer_carries_its_round_trip_and_a_slow_one_shows(client: HttpEngineClient, how: str) -> None:
    with StatusServer(3, slow=[SLOW], slow_s=SLOW_S) as server:
        topo = topology(server, 9)
        engines = client if how == "pooled" else OneAtATime(client)
        answered = [o for o in EngineProber(topo, engines).probe(1000.0).observations
                    if o.status is Status.OK and not o.subject.startswith("site-")]
    assert len(answered) == 9 and all(isinstance(o, Measured) and o.latency is not None for o in answered)
    trips = {o.subject: o.latency for o in answered if isinstance(o, Measured)}
    assert trips[SLOW] is not None and trips[SLOW] >= SLOW_S
    assert all(t is not None and t > 0 for t in trips.values())
