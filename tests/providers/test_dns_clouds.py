"""What is particular to each DNS router beyond the contract: a record changed by someone else since our read is
never overwritten (Cloud DNS's exact deletions, Azure DNS's etags), routing-policy records are refused, zones can be
named by their DNS name, and a record outside the zone is a configuration error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from provider_helpers import ROUTER_FAST

from orchestrator.core.errors import ConfigError, ProviderError
from orchestrator.core.model import DnsTarget
from orchestrator.testbed.fakes import FakeServer
from orchestrator.testbed.fakes.dns_azure import AzureDnsFake
from orchestrator.testbed.fakes.dns_gcp import CloudDnsFake
from providers import build_router

pytestmark = pytest.mark.timeout(60)

RECORD = "spot.engine.example.internal"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
FAST = {**ROUTER_FAST, "poll_interval": 0.01}


@pytest.fixture
def cloud_dns() -> Iterator[tuple[CloudDnsFake, str]]:
    fake = CloudDnsFake("exchange-prod", settle_reads=1)
    fake.add_zone("engine-zone", "engine.example.internal.")
    with FakeServer(fake) as server:
        yield fake, server.url


@pytest.fixture
def azure_dns() -> Iterator[tuple[AzureDnsFake, str]]:
    fake = AzureDnsFake(SUBSCRIPTION, "dns")
    fake.add_zone("engine.example.internal")
    with FakeServer(fake) as server:
        yield fake, server.url


def _gcp(url: str, zone: str = "engine-zone") -> DnsTarget:
    return DnsTarget("gcp", zone, RECORD, ttl=15, endpoint_url=url, options={"project": "exchange-prod"})


def _azure(url: str, record: str = RECORD) -> DnsTarget:
    return DnsTarget("azure", "engine.example.internal", record, ttl=15, endpoint_url=url,
                     options={"subscription": SUBSCRIPTION, "resource_group": "dns"})


def test_cloud_dns_moves_a_record_in_one_atomic_change(cloud_dns: tuple[CloudDnsFake, str]) -> None:
    fake, url = cloud_dns
    dns = _gcp(url, zone="engine.example.internal")  # named by its DNS name: looked up once
    router = build_router(dns, **FAST)
    router.point_to(dns, "10.0.1.10")
    router.point_to(dns, "spot-gcp.engine.example.internal")

    assert [(r["type"], r["ttl"], r["rrdatas"]) for r in fake.rrsets("engine-zone")] == [
        ("CNAME", 15, ["spot-gcp.engine.example.internal."])]
    assert router.calls["dns.managedZones.list"] == 1
    assert router.writes == {"dns.changes.create": 2}


def test_cloud_dns_never_overwrites_a_record_changed_since_it_was_read(
        cloud_dns: tuple[CloudDnsFake, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url = cloud_dns
    dns = _gcp(url)
    router: Any = build_router(dns, **FAST)
    router.point_to(dns, "10.0.1.10")
    stale = router.record_sets(dns)
    fake.zones["engine-zone"].rrsets[(RECORD + ".", "A")]["rrdatas"] = ["10.9.9.9"]  # someone else's change
    monkeypatch.setattr(router, "record_sets", lambda dns: stale)

    with pytest.raises(ProviderError, match=r"412|Precondition"):
        router.point_to(dns, "10.2.1.10")
    assert [r["rrdatas"] for r in fake.rrsets("engine-zone")] == [["10.9.9.9"]]


def test_cloud_dns_refuses_a_routing_policy_record(cloud_dns: tuple[CloudDnsFake, str]) -> None:
    fake, url = cloud_dns
    fake.add_rrset("engine-zone", {"name": RECORD + ".", "type": "A", "ttl": 30, "routingPolicy": {
        "geo": {"items": [{"location": "asia-east2", "rrdatas": ["10.0.0.1"]}]}}})
    with pytest.raises(ProviderError, match="routing-policy"):
        build_router(_gcp(url), **FAST).point_to(_gcp(url), "10.0.0.2")


def test_azure_dns_writes_carry_the_etag_read(azure_dns: tuple[AzureDnsFake, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url = azure_dns
    dns = _azure(url)
    router: Any = build_router(dns, **FAST)
    router.point_to(dns, "10.0.1.10")
    stale = router.record_sets(dns)
    fake.touch("engine.example.internal", "A", "spot")  # someone else rewrote it: its etag changed
    monkeypatch.setattr(router, "record_sets", lambda dns: stale)

    with pytest.raises(ProviderError, match=r"PreconditionFailed|412"):
        router.point_to(dns, "10.2.1.10")
    [record] = fake.record_sets("engine.example.internal")
    assert record["properties"]["ARecords"] == [{"ipv4Address": "10.0.1.10"}]


def test_azure_dns_type_change_deletes_then_creates(azure_dns: tuple[AzureDnsFake, str]) -> None:
    fake, url = azure_dns
    dns = _azure(url)
    router = build_router(dns, **FAST)
    router.point_to(dns, "10.0.1.10")
    router.point_to(dns, "spot-gcp.engine.example.internal")

    [record] = fake.record_sets("engine.example.internal")
    assert (record["type"], record["properties"]["TTL"], record["properties"]["CNAMERecord"]) == (
        "Microsoft.Network/dnszones/CNAME", 15, {"cname": "spot-gcp.engine.example.internal"})
    assert router.writes == {"dns.record_sets.create_or_update": 2, "dns.record_sets.delete": 1}
    assert [m for m, p in fake.requests if m != "GET"] == ["PUT", "DELETE", "PUT"]


def test_azure_dns_record_outside_its_zone_is_a_config_error(azure_dns: tuple[AzureDnsFake, str]) -> None:
    _, url = azure_dns
    dns = _azure(url, record="spot.elsewhere.example")
    with pytest.raises(ConfigError, match=r"not inside the Azure DNS zone engine\.example\.internal"):
        build_router(dns, **FAST).current_target(dns)


def test_unknown_router_options_are_refused_at_build() -> None:
    dns = DnsTarget("gcp", "engine-zone", RECORD, options={"projct": "x"})
    with pytest.raises(ConfigError, match="projct"):
        build_router(dns)


# --- Route 53 ARC routing controls ------------------------------------------------------------------------------------

ARN = "arn:aws:route53-recovery-control::111122223333:controlpanel/p/routingcontrol/{}"


@pytest.fixture
def arc() -> Iterator[tuple[Any, list[FakeServer], DnsTarget]]:
    """A cluster whose HK control is On, served by three regional endpoints; its safety rule keeps one On."""
    from orchestrator.testbed.fakes.arc import ArcClusterFake
    from providers.arc_specs import ARC
    from providers.catalog import ROUTERS

    controls = {"10.0.1.10": ARN.format("hk"), "10.3.1.10": ARN.format("sg")}
    fake = ArcClusterFake({ARN.format("hk"): "On", ARN.format("sg"): "Off"}, min_on=1)
    ROUTERS.register("aws-arc", ARC)
    servers = [FakeServer(fake).start() for _ in range(3)]
    try:
        endpoints = [{"url": s.url, "region": r} for s, r in zip(servers, ("us-east-1", "us-west-2", "eu-west-1"),
                                                                 strict=True)]
        yield fake, servers, DnsTarget("aws-arc", "engine.example.internal", RECORD,
                                       options={"cluster_endpoints": endpoints, "controls": controls})
    finally:
        for server in servers:
            server.stop()
        ROUTERS.unregister("aws-arc")


def test_arc_switches_both_controls_in_one_batch(arc: tuple[Any, list[FakeServer], DnsTarget]) -> None:
    fake, _, dns = arc
    router: Any = build_router(dns, **FAST)
    assert router.current_target(dns) == "10.0.1.10"
    router.point_to(dns, "10.3.1.10")
    assert fake.controls == {ARN.format("hk"): "Off", ARN.format("sg"): "On"}
    assert (fake.updates, router.writes["route53-recovery-cluster.update_routing_control_states"]) == (1, 1)


def test_arc_moves_on_to_the_next_endpoint_when_a_region_is_lost(arc: tuple[Any, list[FakeServer], DnsTarget]) -> None:
    fake, servers, dns = arc
    router: Any = build_router(dns, **FAST)
    servers[0].stop()  # the first endpoint's region is gone: connection refused
    router.point_to(dns, "10.3.1.10")
    assert fake.controls[ARN.format("sg")] == "On"
    assert router.current_target(dns) == "10.3.1.10"
    assert router._first == 1  # the endpoint that answered is asked first next time


def test_arc_refuses_an_address_without_a_control_and_keeps_the_safety_rule(
        arc: tuple[Any, list[FakeServer], DnsTarget]) -> None:
    fake, _, dns = arc
    router: Any = build_router(dns, **FAST)
    with pytest.raises(ProviderError, match=r"no routing control for 10\.9\.9\.9"):
        router.point_to(dns, "10.9.9.9")
    fake.controls = dict.fromkeys(fake.controls, "Off")
    fake.min_on = 2  # a rule the batch cannot meet: the cluster refuses it whole
    with pytest.raises(ProviderError, match="ConflictException"):
        router.point_to(dns, "10.3.1.10")
    assert set(fake.controls.values()) == {"Off"}
