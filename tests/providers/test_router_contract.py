"""The DNS router contract, one suite for every router (tooz's way): the in-memory cloud, Route 53 on moto, Cloud
DNS and Azure DNS on their fakes, and Route 53 ARC routing controls on a fake of the cluster's data plane.
What the runbook's traffic step relies on:

- a record that does not exist reads None; a zone that does not exist is `ProviderNotFound`;
- `point_to` moves the record (A for IPv4, AAAA for IPv6, CNAME for a name, and between them), makes no write when
  the record already points there, and returns only once the DNS service says the change is live;
- a dry run records the write and changes nothing;
- a failing API is retried within the deadline and then fails with one line; a refused credential is an auth error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from provider_helpers import ROUTER_FAST, AwsWorld

from orchestrator.core.errors import ProviderAuthError, ProviderError, ProviderNotFound
from orchestrator.core.model import DnsTarget
from orchestrator.testbed.fakes import FakeServer
from orchestrator.testbed.fakes.dns_azure import AzureDnsFake
from orchestrator.testbed.fakes.dns_gcp import CloudDnsFake
from providers import TrafficRouter, build_router, plan_recorder
from providers.local import DNS, LocalCloud

pytestmark = pytest.mark.timeout(60)

RECORD = "spot.engine.example.internal"
FAST = {**ROUTER_FAST, "poll_interval": 0.01}
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


@dataclass
class RouterHarness:
    """One router on its fake, a zone holding no record yet, and ways to break the API."""

    name: str
    router: TrafficRouter
    dns: DnsTarget
    break_api: Callable[[], None]
    refuse: Callable[[], None]
    missing_zone: DnsTarget | None
    write_op: str
    extra: dict[str, Any] = field(default_factory=dict)


class Route53Faults:
    """Route 53 answers chosen operations from a botocore before-send hook (moto never says PENDING or fails)."""

    def __init__(self) -> None:
        self.rules: list[dict[str, Any]] = []
        self.pending_left = 0

    def before_send(self, request: Any, **kwargs: Any) -> Any:
        from botocore.awsrequest import AWSResponse
        from provider_helpers import RawBody

        operation = kwargs["event_name"].rsplit(".", 1)[-1]
        if operation == "GetChange" and self.pending_left > 0:
            self.pending_left -= 1
            change = request.url.rsplit("/", 1)[-1]
            body = ('<?xml version="1.0" encoding="UTF-8"?><GetChangeResponse xmlns="https://route53.amazonaws.com/'
                    f'doc/2013-04-01/"><ChangeInfo><Id>/change/{change}</Id><Status>PENDING</Status>'
                    "<SubmittedAt>2026-12-01T00:00:00Z</SubmittedAt></ChangeInfo></GetChangeResponse>")
            return AWSResponse(request.url, 200, {}, RawBody(body.encode()))
        for rule in self.rules:
            if rule["count"] > 0:
                rule["count"] -= 1
                body = ('<?xml version="1.0"?><ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
                        f'<Error><Type>Sender</Type><Code>{rule["code"]}</Code><Message>injected</Message></Error>'
                        "<RequestId>r-1</RequestId></ErrorResponse>")
                return AWSResponse(request.url, rule["status"], {}, RawBody(body.encode()))
        return None


def _local() -> RouterHarness:
    cloud = LocalCloud(DNS, clock=time.time)
    dns = DnsTarget("local", "zone-1", RECORD)
    return RouterHarness("local", build_router(dns, cloud=cloud, **FAST), dns,
                         break_api=lambda: cloud.fail_api(DNS, status=503),
                         refuse=lambda: cloud.fail_api(DNS, status=403), missing_zone=None,
                         write_op="local.put_record")


def _route53(world: AwsWorld) -> Iterator[RouterHarness]:
    route53 = world.session.client("route53", endpoint_url=world.endpoint_url)
    zone = route53.create_hosted_zone(Name="engine.example.internal", CallerReference=str(time.time()))
    dns = DnsTarget("aws", str(zone["HostedZone"]["Id"]).rsplit("/", 1)[-1], RECORD)
    faults = Route53Faults()
    world.session.events.register_first("before-send.route53", faults.before_send)
    try:
        yield RouterHarness(
            "route53", build_router(dns, session=world.session, **FAST), dns,
            break_api=lambda: faults.rules.append({"status": 503, "code": "ServiceUnavailable", "count": 10_000}),
            refuse=lambda: faults.rules.append({"status": 403, "code": "AccessDenied", "count": 10_000}),
            missing_zone=DnsTarget("aws", "Z0000000000NOPE", RECORD), write_op="route53.change_resource_record_sets",
            extra={"faults": faults})
    finally:
        world.session.events.unregister("before-send.route53", faults.before_send)


def _cloud_dns() -> Iterator[RouterHarness]:
    fake = CloudDnsFake("exchange-prod", settle_reads=3)
    fake.add_zone("engine-zone", "engine.example.internal.")
    with FakeServer(fake) as server:
        dns = DnsTarget("gcp", "engine-zone", RECORD, endpoint_url=server.url, options={"project": "exchange-prod"})
        yield RouterHarness(
            "cloud-dns", build_router(dns, **FAST), dns,
            break_api=lambda: fake.fail_next(503, count=10_000), refuse=lambda: fake.fail_next(403, count=10_000),
            missing_zone=DnsTarget("gcp", "no-such-zone", RECORD, endpoint_url=server.url,
                                   options={"project": "exchange-prod"}),
            write_op="dns.changes.create", extra={"fake": fake})


def _azure_dns() -> Iterator[RouterHarness]:
    fake = AzureDnsFake(SUBSCRIPTION, "dns")
    fake.add_zone("engine.example.internal")
    with FakeServer(fake) as server:
        options = {"subscription": SUBSCRIPTION, "resource_group": "dns"}
        dns = DnsTarget("azure", "engine.example.internal", RECORD, endpoint_url=server.url, options=options)
        yield RouterHarness(
            "azure-dns", build_router(dns, **FAST), dns,
            break_api=lambda: fake.fail_next(503, count=10_000), refuse=lambda: fake.fail_next(403, count=10_000),
            missing_zone=DnsTarget("azure", "nope.example.internal", "spot.nope.example.internal",
                                   endpoint_url=server.url, options=options),
            write_op="dns.record_sets.create_or_update", extra={"fake": fake})


ARC_ADDRESSES = ("10.0.1.10", "spot-gcp.engine.example.internal", "2001:db8::10", "10.2.1.10", "10.3.1.10")


def _arc() -> Iterator[RouterHarness]:
    """Route 53 ARC: one cluster state served by three regional endpoints; a control per address, all Off."""
    from orchestrator.testbed.fakes.arc import ArcClusterFake
    from providers.arc_specs import ARC
    from providers.catalog import ROUTERS

    controls = {address: f"arn:aws:route53-recovery-control::111122223333:controlpanel/p/routingcontrol/c{n}"
                for n, address in enumerate(ARC_ADDRESSES)}
    fake = ArcClusterFake(dict.fromkeys(controls.values(), "Off"), min_on=0)
    ROUTERS.register("aws-arc", ARC)
    try:
        with FakeServer(fake) as one, FakeServer(fake) as two, FakeServer(fake) as three:
            endpoints = [{"url": s.url, "region": r} for s, r in
                         ((one, "us-east-1"), (two, "us-west-2"), (three, "ap-southeast-2"))]
            dns = DnsTarget("aws-arc", "engine.example.internal", RECORD,
                            options={"cluster_endpoints": endpoints, "controls": controls})
            yield RouterHarness(
                "arc", build_router(dns, **FAST), dns,
                break_api=lambda: fake.fail_next(503, count=10_000), refuse=lambda: fake.fail_next(403, count=1),
                missing_zone=None, write_op="route53-recovery-cluster.update_routing_control_states",
                extra={"fake": fake, "servers": (one, two, three)})
    finally:
        ROUTERS.unregister("aws-arc")


@pytest.fixture(params=["local", "route53-moto", "cloud-dns-fake", "azure-dns-fake", "arc-fake"])
def routed(request: pytest.FixtureRequest) -> Iterator[RouterHarness]:
    if request.param == "local":
        yield _local()
    elif request.param == "arc-fake":
        yield from _arc()
    elif request.param == "route53-moto":
        yield from _route53(request.getfixturevalue("aws"))
    elif request.param == "cloud-dns-fake":
        yield from _cloud_dns()
    else:
        yield from _azure_dns()


def test_a_record_moves_between_types_and_reads_back(routed: RouterHarness) -> None:
    router, dns = routed.router, routed.dns
    assert router.current_target(dns) is None

    router.point_to(dns, "10.0.1.10")
    assert router.current_target(dns) == "10.0.1.10"
    router.point_to(dns, "spot-gcp.engine.example.internal")  # A -> CNAME
    assert router.current_target(dns) == "spot-gcp.engine.example.internal"
    router.point_to(dns, "2001:db8::10")  # CNAME -> AAAA
    assert router.current_target(dns) == "2001:db8::10"
    router.point_to(dns, "10.2.1.10")
    router.point_to(dns, "10.2.1.10")  # already there: no write

    assert router.current_target(dns) == "10.2.1.10"
    assert router.writes[routed.write_op] == 4


def test_point_to_returns_only_once_the_change_is_live(routed: RouterHarness) -> None:
    """Route 53 says PENDING twice then INSYNC; Cloud DNS pending twice then done; the others apply at once."""
    if routed.name == "route53":
        routed.extra["faults"].pending_left = 2
    routed.router.point_to(routed.dns, "10.0.1.10")
    reads = routed.router.calls["route53.get_change"] + routed.router.calls["dns.changes.get"]
    assert reads == {"route53": 3, "cloud-dns": 3}.get(routed.name, 0)


def test_a_change_still_pending_at_the_deadline_is_waited_for_by_the_retry(routed: RouterHarness) -> None:
    if routed.name not in ("route53", "cloud-dns"):
        pytest.skip(f"{routed.name} applies a write before it answers")
    if routed.name == "route53":
        routed.extra["faults"].pending_left = 10_000
    else:
        routed.extra["fake"].settle_reads = 10_000
    with pytest.raises(ProviderError, match="not applied after"):
        routed.router.point_to(routed.dns, "10.0.1.10", deadline=0.3)
    writes = routed.router.writes[routed.write_op]

    if routed.name == "route53":
        routed.extra["faults"].pending_left = 1
    else:
        routed.extra["fake"].settle_reads = 0
        for zone in routed.extra["fake"].zones.values():
            zone.reads_left = dict.fromkeys(zone.reads_left, 1)
    before = sum(routed.router.calls[op] for op in ("route53.get_change", "dns.changes.get"))
    routed.router.point_to(routed.dns, "10.0.1.10")  # the record already reads right: no write, but a wait
    after = sum(routed.router.calls[op] for op in ("route53.get_change", "dns.changes.get"))
    assert routed.router.writes[routed.write_op] == writes
    assert after > before


def test_dry_run_records_the_write_and_changes_nothing(routed: RouterHarness) -> None:
    routed.router.point_to(routed.dns, "10.0.1.10")
    with plan_recorder(routed.router) as planned:
        routed.router.point_to(routed.dns, "10.3.1.10")
    assert routed.write_op in [call.operation for call in planned]
    assert routed.router.current_target(routed.dns) == "10.0.1.10"


def test_unknown_zone_is_not_found(routed: RouterHarness) -> None:
    if routed.missing_zone is None:
        pytest.skip(f"{routed.name} has no zones to be missing")
    with pytest.raises(ProviderNotFound, match="not found"):
        routed.router.current_target(routed.missing_zone)


def test_a_failing_api_is_retried_then_fails_in_one_line(routed: RouterHarness) -> None:
    routed.break_api()
    with pytest.raises(ProviderError) as caught:
        routed.router.current_target(routed.dns)
    assert "\n" not in str(caught.value) and "deadline" in str(caught.value)
    assert sum(routed.router.calls.values()) >= 2


def test_a_refused_credential_is_an_auth_error(routed: RouterHarness) -> None:
    routed.refuse()
    with pytest.raises(ProviderAuthError):
        routed.router.point_to(routed.dns, "10.0.1.10")
    assert sum(routed.router.calls.values()) == 1  # a refusal is final: not retried
