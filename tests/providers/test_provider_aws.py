"""AWS adapter and Route 53 router against moto: in-process (`mock_aws`) and through moto's threaded server."""

from __future__ import annotations

import time

import pytest
from provider_helpers import (
    AWS_ZONES,
    FAST,
    ROUTER_FAST,
    AwsWorld,
    VirtualClock,
    impair_instances,
    impair_zone,
)

from orchestrator.core.errors import ProviderAuthError, ProviderError, ProviderNotFound
from orchestrator.core.model import DnsTarget, Site, Status
from providers import InstanceState, build_provider, build_router, plan_recorder

pytestmark = pytest.mark.timeout(60)


def _zone_id(world: AwsWorld) -> str:
    route53 = world.session.client("route53", endpoint_url=world.endpoint_url)
    answer = route53.create_hosted_zone(Name="engine.example.internal", CallerReference=str(time.time()))
    return str(answer["HostedZone"]["Id"]).rsplit("/", 1)[-1]


# --- health ------------------------------------------------------------------------------------------------------


def test_zone_states_map_to_statuses(aws: AwsWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    impair_zone(monkeypatch, AWS_ZONES[0], "unavailable")
    impair_zone(monkeypatch, AWS_ZONES[1], "information")
    provider = aws.provider()
    assert provider.zone_health() == {AWS_ZONES[0]: Status.DOWN, AWS_ZONES[1]: Status.OK}
    assert provider.observe({})[0].status is Status.DEGRADED


def test_failed_instance_check_is_down_and_initializing_is_degraded(
    aws: AwsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    sick, fine = aws.run_instance(), aws.run_instance()
    impair_instances(monkeypatch, {sick}, check="instance_status")
    provider = aws.provider()
    healths = provider.instance_health([sick, fine])
    assert healths[sick].status is Status.DOWN and "instance impaired" in healths[sick].detail
    assert healths[fine].status is Status.OK

    from moto.ec2.models.instances import Instance

    monkeypatch.setattr(Instance, "system_status", property(lambda self: {"Status": "initializing"}))
    assert provider.instance_health([fine])[fine].status is Status.DEGRADED


def test_throttling_is_retried_after_retry_after(aws: AwsWorld) -> None:
    instance = aws.run_instance()
    aws.faults.fail("DescribeInstanceStatus", 503, "RequestLimitExceeded", count=2, retry_after="1.5")
    clock = VirtualClock()
    provider = aws.provider(call_deadline=10.0, **clock.kwargs())

    assert provider.instance_state(instance) is InstanceState.RUNNING
    assert provider.calls["ec2.describe_instance_status"] == 3
    assert len(clock.sleeps) == 2 and min(clock.sleeps) >= 1.5


def test_auth_failure_is_one_line_naming_the_site(aws: AwsWorld) -> None:
    instance = aws.run_instance()
    aws.faults.fail("*", 401, "AuthFailure", count=5)
    provider = aws.provider()
    with pytest.raises(ProviderAuthError) as caught:
        provider.instance_state(instance)
    assert str(caught.value).startswith("site aws-sg: ") and "AuthFailure" in str(caught.value)
    assert "\n" not in str(caught.value) and provider.calls["ec2.describe_instance_status"] == 1
    assert [o.status for o in provider.observe({instance: "spot-aws"})] == [Status.UNKNOWN, Status.UNKNOWN]


def test_no_credentials_and_unknown_profile_are_auth_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    site = Site("aws-hk", "aws", "ap-east-1", ("ap-east-1a",))
    with pytest.raises(ProviderAuthError, match=r"site aws-hk: .*no AWS credentials"):
        build_provider(site, **FAST).zone_health()
    with pytest.raises(ProviderAuthError, match="profile not found: exchange-prod"):
        build_provider(Site("aws-hk", "aws", "ap-east-1", options={"profile": "exchange-prod"}), **FAST).zone_health()


def test_health_api_is_off_by_default_and_fails_soft(aws: AwsWorld) -> None:
    """moto serves no Health API (404): the Health source says unknown, which has no vote, and EC2's own two
    observations are as they were."""
    instance = aws.run_instance()
    off = aws.provider()
    assert [o.source for o in off.observe({instance: "spot-aws"})] == ["provider:aws", "provider:aws"]
    assert "health.describe_events" not in off.calls
    provider = build_provider(aws.site(options={"health_api": True, "health_endpoint_urls": ["http://127.0.0.1:9"]}),
                              session=aws.session, **FAST)
    observed = provider.observe({instance: "spot-aws"})
    assert [(o.source, o.status) for o in observed] == [
        ("provider:aws", Status.OK), ("provider:aws", Status.OK), ("provider:aws-health", Status.UNKNOWN)]
    assert observed[-1].cause is None  # a Health outage must not slow the EC2 polls down (provider_watch)


def test_malformed_instance_id_is_not_found(aws: AwsWorld) -> None:
    with pytest.raises(ProviderNotFound, match="instance not-an-id not found"):
        aws.provider().instance_state("not-an-id")


# --- the threaded server, as a drill or CI would reach it --------------------------------------------------------


def test_server_endpoint_with_placeholder_credentials(aws_server: AwsWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    instance = aws_server.run_instance()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    provider = build_provider(aws_server.site(), **FAST)  # no session: loopback endpoint → placeholder keys
    provider.stop(instance, deadline=10)
    assert [o.status for o in provider.observe({instance: "spot-aws"})] == [Status.OK, Status.DOWN]
    provider.start(instance, deadline=10)
    assert provider.instance_state(instance) is InstanceState.RUNNING


def test_failover_plan_through_the_server_writes_nothing(aws_server: AwsWorld) -> None:
    old, new = aws_server.run_instance(), aws_server.run_instance(AWS_ZONES[1])
    dns = DnsTarget("aws", _zone_id(aws_server), "spot.engine.example.internal", endpoint_url=aws_server.endpoint_url)
    provider = aws_server.provider()
    router = build_router(dns, session=aws_server.session)
    router.point_to(dns, "10.0.1.10")
    aws_server.ec2.stop_instances(InstanceIds=[new])

    with plan_recorder(provider, router) as planned:
        provider.fence(old, deadline=5)
        provider.start(new, deadline=5)
        router.point_to(dns, "10.1.1.10")

    assert [call.operation for call in planned] == [
        "ec2.stop_instances", "ec2.start_instances", "route53.change_resource_record_sets"]
    assert provider.instance_state(old) is InstanceState.RUNNING
    assert provider.instance_state(new) is InstanceState.STOPPED
    assert router.current_target(dns) == "10.0.1.10"


# --- Route 53 ----------------------------------------------------------------------------------------------------


def test_route53_upsert_read_back_and_type_change(aws: AwsWorld) -> None:
    dns = DnsTarget("aws", _zone_id(aws), "spot.engine.example.internal", ttl=15)
    router = build_router(dns, session=aws.session, **ROUTER_FAST)
    assert router.current_target(dns) is None

    router.point_to(dns, "10.0.1.10")
    assert router.current_target(dns) == "10.0.1.10"
    router.point_to(dns, "spot-gcp.engine.example.internal")  # A → CNAME: one atomic batch
    assert router.current_target(dns) == "spot-gcp.engine.example.internal"
    router.point_to(dns, "10.2.1.10")
    router.point_to(dns, "10.2.1.10")  # idempotent: no write

    assert router.current_target(dns) == "10.2.1.10"
    assert router.writes == {"route53.change_resource_record_sets": 3}
    route53 = aws.session.client("route53")
    records = route53.list_resource_record_sets(HostedZoneId=dns.zone_id)["ResourceRecordSets"]
    ours = [r for r in records if r["Name"] == "spot.engine.example.internal."]
    assert [(r["Type"], r["TTL"]) for r in ours] == [("A", 15)]


def test_route53_refuses_routing_policy_records(aws: AwsWorld) -> None:
    dns = DnsTarget("aws", _zone_id(aws), "spot.engine.example.internal")
    aws.session.client("route53").change_resource_record_sets(HostedZoneId=dns.zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": dns.record, "Type": "A", "TTL": 30, "SetIdentifier": "primary", "Failover": "PRIMARY",
            "ResourceRecords": [{"Value": "10.0.0.1"}]}}]})
    with pytest.raises(ProviderError, match="routing-policy records"):
        build_router(dns, session=aws.session, **ROUTER_FAST).point_to(dns, "10.0.0.2")


def test_route53_unknown_zone_is_not_found(aws: AwsWorld) -> None:
    dns = DnsTarget("aws", "Z0000000000NOPE", "spot.engine.example.internal")
    with pytest.raises(ProviderNotFound, match="route53: zone Z0000000000NOPE: not found"):
        build_router(dns, session=aws.session, **ROUTER_FAST).current_target(dns)
