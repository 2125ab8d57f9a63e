"""Helpers for the provider tests: worlds to build adapters in, fault injectors, and the contract harness.

Kept out of conftest.py so that test modules can import them by name (`from provider_helpers import ...`).
"""

from __future__ import annotations

import collections.abc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.core.model import Site, Status
from orchestrator.testbed.fakes import FakeServer
from providers import CloudProvider, build_provider
from providers.local import LocalCloud

AWS_REGION = "ap-southeast-1"
AWS_ZONES = ("ap-southeast-1a", "ap-southeast-1b")
AMI = "ami-12c6146b"
ROUTER_FAST: dict[str, Any] = {"backoff": (0.01, 0.05), "call_deadline": 2.0}
FAST: dict[str, Any] = {**ROUTER_FAST, "poll_interval": 0.01, "clock": lambda: 1_700_000_000.0}


class AwsFaults:
    """Answers chosen EC2 calls with an error from a botocore `before-send` hook: the real client parses it."""

    def __init__(self) -> None:
        self.rules: list[dict[str, Any]] = []

    def fail(self, operation: str, status: int, code: str, *, count: int = 1, retry_after: str | None = None) -> None:
        self.rules.append({"operation": operation, "status": status, "code": code, "count": count,
                           "retry_after": retry_after})

    def install(self, session: Any) -> None:
        session.events.register_first("before-send.ec2", self._before_send)

    def _before_send(self, request: Any, **kwargs: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        operation = kwargs["event_name"].rsplit(".", 1)[-1]
        for rule in self.rules:
            if rule["operation"] in (operation, "*") and rule["count"] > 0:
                rule["count"] -= 1
                body = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{rule["code"]}'
                        f"</Code><Message>injected</Message></Error></Errors><RequestID>r-1</RequestID></Response>")
                headers = {"Retry-After": rule["retry_after"]} if rule["retry_after"] else {}
                return AWSResponse(request.url, rule["status"], headers, RawBody(body.encode()))
        return None


class RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._body


@dataclass
class AwsWorld:
    session: Any
    faults: AwsFaults
    endpoint_url: str | None = None

    @property
    def ec2(self) -> Any:
        return self.session.client("ec2", region_name=AWS_REGION, endpoint_url=self.endpoint_url)

    def run_instance(self, zone: str = AWS_ZONES[0]) -> str:
        answer = self.ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": zone})
        return str(answer["Instances"][0]["InstanceId"])

    def site(self, **overrides: Any) -> Site:
        fields = {"name": "aws-sg", "provider": "aws", "region": AWS_REGION, "zones": AWS_ZONES,
                  "endpoint_url": self.endpoint_url, **overrides}
        return Site(**fields)

    def provider(self, **kwargs: Any) -> CloudProvider:
        return build_provider(self.site(), session=self.session, **{**FAST, **kwargs})


def aws_session() -> tuple[Any, AwsFaults]:
    import boto3

    session = boto3.Session(region_name=AWS_REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    faults = AwsFaults()
    faults.install(session)
    return session, faults


def impair_zone(monkeypatch: pytest.MonkeyPatch, zone: str, state: str = "impaired") -> None:
    """moto's zones are class-level objects shared by every backend: patch one, monkeypatch undoes it."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    for candidate in ec2_backends[DEFAULT_ACCOUNT_ID][AWS_REGION].zones[AWS_REGION]:
        if candidate.name == zone:
            monkeypatch.setattr(candidate, "state", state)


def impair_instances(monkeypatch: pytest.MonkeyPatch, ids: collections.abc.Container[str],
                     check: str = "system_status") -> None:
    """Make moto report a failed status check (`system_status` or `instance_status`) for `ids`."""
    from moto.ec2.models.instances import Instance

    original = getattr(Instance, check)

    def impaired(self: Any) -> dict[str, Any]:
        if self.id in ids and self.state_code == 16:
            return {"Status": "impaired", "Details": [{"Name": "reachability", "Status": "failed"}]}
        return dict(original.fget(self))

    monkeypatch.setattr(Instance, check, property(impaired))


def gcp_site(server: FakeServer, **overrides: Any) -> Site:
    fields = {"name": "gcp-hk", "provider": "gcp", "region": "asia-east2", "zones": ("asia-east2-a", "asia-east2-b"),
              "options": {"project": "exchange-prod"}, "endpoint_url": server.url, **overrides}
    return Site(**fields)


def azure_site(server: FakeServer, **overrides: Any) -> Site:
    fields = {"name": "azure-hk", "provider": "azure", "region": "eastasia", "zones": ("1", "2"),
              "options": {"subscription": "00000000-0000-0000-0000-000000000000", "resource_group": "trading"},
              "endpoint_url": server.url, **overrides}
    return Site(**fields)


@dataclass
class Harness:
    """One adapter on its fake, with a running `instance` in `zones[0]` and ways to break the world."""

    name: str
    provider: CloudProvider
    instance: str
    missing: str
    zones: tuple[str, ...]
    break_api: Callable[[], None]
    impair_zone: Callable[[str], None] | None = None
    impair_instance: Callable[[], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def local_harness() -> Harness:
    """The in-memory cloud on the virtual clock its adapter sleeps on: a start or stop takes two polls."""
    zones = ("local-a", "local-b")
    clock = VirtualClock()
    transition = 2 * FAST["poll_interval"]
    cloud = LocalCloud("local", clock.time, start_time=transition, stop_time=transition)
    site = Site("local-site", "local", "local-region", zones)
    cloud.add_instance(site.name, "vm-1", zones[0])
    cloud.set_zone_status(zones[1], Status.OK)
    provider = build_provider(site, cloud=cloud, **{**FAST, **clock.kwargs()})
    return Harness("local", provider, "vm-1", "vm-404", zones,
                   break_api=lambda: cloud.fail_api(site.name, status=503),
                   impair_zone=lambda zone: cloud.set_zone_status(zone, Status.DOWN),
                   impair_instance=lambda: cloud.impair(site.name, instance="vm-1"),
                   extra={"cloud": cloud, "clock": clock})


def aws_harness(world: AwsWorld, monkeypatch: pytest.MonkeyPatch) -> Harness:
    instance = world.run_instance()
    return Harness("aws", world.provider(), instance, "i-0123456789abcdef0", AWS_ZONES,
                   break_api=lambda: world.faults.fail("*", 503, "Unavailable", count=10_000),
                   impair_zone=lambda zone: impair_zone(monkeypatch, zone),
                   impair_instance=lambda: impair_instances(monkeypatch, {instance}))


class VirtualClock:
    """A monotonic timer whose `sleep` only moves time forward: retries and waits cost no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def kwargs(self) -> dict[str, Any]:
        return {"timer": self.time, "sleep": self.sleep}


class OneZoneCloud(CloudProvider):
    """A cloud of one zone (`zone-a`, always ok) whose instances the test reports; nothing can be started or
    stopped. Subclasses say how instances look (`_instance_healths`) and may block or count calls."""

    kind = "test"
    capabilities = frozenset()

    def __init__(self, name: str, call_deadline: float) -> None:
        super().__init__(Site(name, "test", "region", ("zone-a",)), call_deadline=call_deadline)

    def _zone_statuses(self) -> Mapping[str, Status]:
        return {"zone-a": Status.OK}

    def _start(self, instance: str) -> None:
        raise NotImplementedError

    def _stop(self, instance: str) -> None:
        raise NotImplementedError

    def _translate(self, exc: Exception) -> None:
        return None

    def _retryable(self, exc: Exception) -> bool:
        return False
