"""Fixtures for the provider adapters: moto (in-process and as a threaded server) and the GCP / Azure fakes.

Everything talks to 127.0.0.1 only. Faults are injected where each fake keeps its state: moto's backend (patched
with monkeypatch, undone after each test), the fakes' `fail_next` / `set_zone` / `set_vm`, or a botocore
`before-send` hook that answers an EC2 call with an error before it leaves the client.

`harness` is the contract suite's parameter: one running instance on a two-zone site behind each adapter, with the
same handles to break things.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from provider_helpers import (
    FAST,
    AwsFaults,
    AwsWorld,
    Harness,
    aws_harness,
    aws_session,
    azure_site,
    gcp_site,
    local_harness,
)

from orchestrator.testbed.fakes import AzureComputeFake, FakeServer, GcpComputeFake
from providers import build_provider


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No test may find real AWS credentials or reach an instance metadata service."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def boto() -> tuple[Any, AwsFaults]:
    """One boto3 session for the run (its service models load once: ~0.2 s per client otherwise). Made after
    moto is imported, so that it carries moto's hook."""
    import moto  # noqa: F401

    return aws_session()


@pytest.fixture
def aws(boto: tuple[Any, AwsFaults]) -> Iterator[AwsWorld]:
    """moto in-process (`mock_aws`)."""
    from moto import mock_aws

    session, faults = boto
    faults.rules.clear()
    with mock_aws():
        yield AwsWorld(session, faults)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_server(moto_server: str, boto: tuple[Any, AwsFaults]) -> Iterator[AwsWorld]:
    """moto's threaded server, reached through `endpoint_url`; state reset after each test."""
    import requests

    session, faults = boto
    faults.rules.clear()
    yield AwsWorld(session, faults, endpoint_url=moto_server)
    requests.post(f"{moto_server}/moto-api/reset", timeout=5)


# --- GCP and Azure fakes -----------------------------------------------------------------------------------------


@pytest.fixture
def gcp() -> Iterator[tuple[GcpComputeFake, FakeServer]]:
    fake = GcpComputeFake(zones=("asia-east2-a", "asia-east2-b"))
    fake.add_instance("spot-engine-1", "asia-east2-a")
    with FakeServer(fake) as server:
        yield fake, server


@pytest.fixture
def azure() -> Iterator[tuple[AzureComputeFake, FakeServer]]:
    fake = AzureComputeFake()
    fake.add_vm("spot-engine-1", "1")
    fake.add_vm("spot-engine-2", "2")
    with FakeServer(fake) as server:
        yield fake, server


@pytest.fixture(params=["local", "aws-moto", "aws-moto-server", "gcp-fake", "azure-fake"])
def harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    kind = request.param
    if kind == "local":
        yield local_harness()
    elif kind == "aws-moto":
        yield aws_harness(request.getfixturevalue("aws"), monkeypatch)
    elif kind == "aws-moto-server":
        yield aws_harness(request.getfixturevalue("aws_server"), monkeypatch)
    elif kind == "gcp-fake":
        fake, server = request.getfixturevalue("gcp")
        provider = build_provider(gcp_site(server), **FAST)
        yield Harness("gcp", provider, "spot-engine-1", "no-such-vm", ("asia-east2-a", "asia-east2-b"),
                      break_api=lambda: fake.fail_next(503, count=10_000),
                      impair_zone=lambda zone: fake.set_zone(zone, "DOWN"))
    else:
        fake, server = request.getfixturevalue("azure")
        provider = build_provider(azure_site(server), **FAST)
        yield Harness("azure", provider, "spot-engine-1", "no-such-vm", ("1", "2"),
                      break_api=lambda: fake.fail_next(503, count=10_000),
                      impair_instance=lambda: fake.set_vm("spot-engine-1", health="unhealthy"))
