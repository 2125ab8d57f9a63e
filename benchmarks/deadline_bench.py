"""How close to its deadline a cloud call gives up when the API hangs or an operation never finishes.

The provider tests check that a call gives up because of its deadline (the error says so, and it returns long
before the request's own timeout); how soon after the deadline it returns is a speed figure, which a busy machine
stretches, so it is measured here instead. Each case runs `REPEATS` times against the local GCP and Azure fakes
with a 1 s deadline and a 20 s request timeout; reported: median and worst seconds, and the worst as a ratio to the
deadline against its goal (the bounds the tests used to assert: 1.5x for a hung request, 2x for an operation).

    python -m benchmarks --only deadline_bench
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.figures import Figure
from orchestrator.core.errors import ProviderError
from orchestrator.core.model import Site
from orchestrator.testbed.fakes import AzureComputeFake, FakeServer, GcpComputeFake
from providers import build_provider

REPEATS = 5
DEADLINE = 1.0
REQUEST_TIMEOUT = 20.0
HUNG = 50.0  # seconds a hung request would wait for its answer: far beyond anything measured here
FAST = {"backoff": (0.01, 0.05), "poll_interval": 0.01}


def _gcp_site(server: FakeServer) -> Site:
    return Site("gcp-hk", "gcp", "asia-east2", ("asia-east2-a", "asia-east2-b"),
                options={"project": "exchange-prod"}, endpoint_url=server.url)


def _azure_site(server: FakeServer, fake: AzureComputeFake) -> Site:
    return Site("azure-hk", "azure", "eastasia", ("1", "2"),
                options={"subscription": fake.subscription, "resource_group": fake.resource_group},
                endpoint_url=server.url)


def _timed(call: Callable[[], object]) -> float:
    """Seconds until `call` raised ProviderError (it must: every case here ends at its deadline)."""
    began = time.monotonic()
    try:
        call()
    except ProviderError:
        return time.monotonic() - began
    raise RuntimeError("the call returned: the fault was not injected")


def gcp_hung_request() -> float:
    fake = GcpComputeFake(zones=("asia-east2-a", "asia-east2-b"))
    fake.add_instance("spot-engine-1", "asia-east2-a")
    with FakeServer(fake) as server:
        provider = build_provider(_gcp_site(server), call_deadline=DEADLINE, request_timeout=REQUEST_TIMEOUT, **FAST)
        fake.hang_next(HUNG, count=50)
        return _timed(lambda: provider.instance_state("spot-engine-1"))


def azure_hung_request() -> float:
    fake = AzureComputeFake()
    fake.add_vm("spot-engine-1", "1")
    with FakeServer(fake) as server:
        provider = build_provider(_azure_site(server, fake), call_deadline=DEADLINE,
                                  request_timeout=REQUEST_TIMEOUT, **FAST)
        fake.hang_next(HUNG, count=50)
        return _timed(lambda: provider.instance_state("spot-engine-1"))


def gcp_operation_never_done() -> float:
    fake = GcpComputeFake(zones=("asia-east2-a", "asia-east2-b"))
    fake.add_instance("spot-engine-1", "asia-east2-a")
    fake.settle_reads = 10_000
    with FakeServer(fake) as server:
        provider = build_provider(_gcp_site(server), request_timeout=REQUEST_TIMEOUT, **FAST)
        return _timed(lambda: provider.stop("spot-engine-1", deadline=DEADLINE))


CASES: dict[str, tuple[Callable[[], float], float]] = {  # name -> (measure, goal as a ratio to the deadline)
    "gcp: hung request, 1 s call deadline": (gcp_hung_request, 1.5),
    "azure: hung request, 1 s call deadline": (azure_hung_request, 1.5),
    "gcp: operation never done, 1 s deadline": (gcp_operation_never_done, 2.0),
}


def run(repeats: int = REPEATS) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    quiet = logging.getLogger("providers")  # each case logs its retries and the final failure: expected here
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        measured = {name: [measure() for _ in range(repeats)] for name, (measure, _) in CASES.items()}
    finally:
        quiet.setLevel(level)
    for name, (_, goal) in CASES.items():
        samples = measured[name]
        worst = max(samples)
        rows[name] = {"runs": repeats, "median_s": statistics.median(samples), "worst_s": worst,
                      "worst_ratio": worst / DEADLINE, "goal_ratio": goal, "met": worst / DEADLINE <= goal}
    return {"providers.deadline": rows}


def figures(result: dict[str, Any]) -> list[Figure]:
    """The worst give-up time of each case as a ratio to its deadline, beside the goal ratio."""
    return [Figure("deadlines", name, round(row["worst_ratio"], 3), "x deadline", f"worst of {row['runs']}",
                   goal=row["goal_ratio"]) for name, row in result["providers.deadline"].items()]


def render(result: dict[str, Any]) -> str:
    lines = ["== deadlines: a cloud call against a hung API gives up how long after its deadline"]
    for name, row in result["providers.deadline"].items():
        verdict = "met" if row["met"] else "MISSED"
        lines.append(f"   {name}: median {row['median_s']:.2f} s, worst {row['worst_s']:.2f} s = "
                     f"{row['worst_ratio']:.2f}x the deadline (goal <= {row['goal_ratio']:g}x: {verdict})")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(run()))
