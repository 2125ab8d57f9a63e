"""Health-poll cost per provider adapter, each against its local fake: latency of one `observe()` and SDK calls.

`run()` returns `{"providers.observe": {adapter: {...}}}` with, per adapter: `polls`, `median_ms`, `p99_ms`,
`max_ms`, `first_ms` (the first poll, which builds the SDK client; the adapter module's import is not counted),
`calls_per_cycle` (SDK calls per poll) and `calls` by operation for one poll. The site has two zones and one
replica instance, as in the example configuration. The fakes are on 127.0.0.1, so the numbers are the client-side
cost of each SDK (serialisation, auth policies, retries bookkeeping) plus a loopback round trip: a floor, not a
prediction of cloud latency.

    python -c "from benchmarks.providers_bench import run; import json; print(json.dumps(run(), indent=2))"
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks.figures import Figure
from orchestrator.core.model import Options, Site, Status
from orchestrator.testbed.fakes import AzureComputeFake, FakeServer, GcpComputeFake
from providers import CloudProvider, build_provider
from providers.local import LocalCloud

POLLS = 50

Setup = Callable[[], contextlib.AbstractContextManager[tuple[CloudProvider, str]]]


@contextlib.contextmanager
def _local() -> Iterator[tuple[CloudProvider, str]]:
    """The in-memory cloud: the adapter's own bookkeeping with no SDK and no network under it."""
    site = Site("local", "local", "local-region", ("local-a", "local-b"))
    cloud = LocalCloud("local", clock=time.time, zones=dict.fromkeys(site.zones, Status.OK))
    cloud.add_instance(site.name, "vm-1", "local-a")
    yield build_provider(site, cloud=cloud), "vm-1"


@contextlib.contextmanager
def _aws(server: bool) -> Iterator[tuple[CloudProvider, str]]:
    import boto3

    saved = {key: os.environ.get(key) for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    try:
        with _moto(server) as endpoint:
            # After moto is imported: a session made earlier lacks moto's hook and would call the real AWS.
            session = boto3.Session(region_name="ap-southeast-1", aws_access_key_id="bench",
                                    aws_secret_access_key="bench")
            ec2 = session.client("ec2", endpoint_url=endpoint)
            answer = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                       Placement={"AvailabilityZone": "ap-southeast-1a"})
            site = Site("aws-sg", "aws", "ap-southeast-1", ("ap-southeast-1a", "ap-southeast-1b"),
                        endpoint_url=endpoint)
            yield build_provider(site, session=session), answer["Instances"][0]["InstanceId"]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _moto(server: bool) -> Iterator[str | None]:
    if not server:
        from moto import mock_aws

        with mock_aws():
            yield None
        return
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        moto.stop()


@contextlib.contextmanager
def _gcp() -> Iterator[tuple[CloudProvider, str]]:
    fake = GcpComputeFake(zones=("asia-east2-a", "asia-east2-b"))
    fake.add_instance("spot-engine-1", "asia-east2-a")
    with FakeServer(fake) as server:
        site = Site("gcp-hk", "gcp", "asia-east2", ("asia-east2-a", "asia-east2-b"), endpoint_url=server.url,
                    options=Options({"project": fake.project}))
        yield build_provider(site), "spot-engine-1"


@contextlib.contextmanager
def _azure() -> Iterator[tuple[CloudProvider, str]]:
    fake = AzureComputeFake()
    fake.add_vm("spot-engine-1", "1")
    fake.add_vm("spot-engine-2", "2")
    with FakeServer(fake) as server:
        site = Site("azure-hk", "azure", "eastasia", ("1", "2"), endpoint_url=server.url,
                    options=Options({"subscription": fake.subscription, "resource_group": fake.resource_group}))
        yield build_provider(site), "spot-engine-1"


ADAPTERS: dict[str, Setup] = {
    "local": _local,
    "aws-moto": lambda: _aws(server=False),
    "aws-moto-server": lambda: _aws(server=True),
    "gcp-fake": _gcp,
    "azure-fake": _azure,
}


def measure(setup: Setup, polls: int = POLLS) -> dict[str, Any]:
    with setup() as (provider, instance):
        replicas = {instance: "spot-replica"}
        started = time.perf_counter()
        first = provider.observe(replicas)
        first_ms = (time.perf_counter() - started) * 1000
        assert [o.status.value for o in first][1] == "ok", first
        provider.calls.clear()
        samples = []
        for _ in range(polls):
            started = time.perf_counter()
            provider.observe(replicas)
            samples.append((time.perf_counter() - started) * 1000)
        per_poll = {operation: count / polls for operation, count in sorted(provider.calls.items())}
    return {
        "polls": polls,
        "median_ms": round(statistics.median(samples), 3),
        "p99_ms": round(statistics.quantiles(samples, n=100, method="inclusive")[98], 3),
        "max_ms": round(max(samples), 3),
        "first_ms": round(first_ms, 3),
        "calls_per_cycle": sum(per_poll.values()),
        "calls": per_poll,
    }


def run(polls: int = POLLS) -> dict[str, Any]:
    return {"providers.observe": {name: measure(setup, polls) for name, setup in ADAPTERS.items()}}


def figures(result: dict[str, Any]) -> list[Figure]:
    """Each adapter's median poll against its fake: a floor for context, with no goal (a real cloud sets the pace)."""
    return [Figure("cloud adapters", f"{name}: one health poll", row["median_ms"], "ms wall",
                   f"median of {row['polls']} polls") for name, row in result["providers.observe"].items()]


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
