"""The AWS Health API as a source of its own (`provider:aws-health`), against the Health fake served over real HTTP
on 127.0.0.1 (its two endpoints, us-east-1 active and us-east-2 passive) and moto for EC2.

What an SRE relies on: the events of every page are read; when us-east-1 fails, us-east-2 answers and is asked first
afterwards; an answer older than its staleness limit has no vote; an issue in every zone of the site says `down`,
in some of them or region-wide only `degraded`; and it can be turned on from the YAML config.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from provider_helpers import AWS_REGION, AWS_ZONES, FAST, AwsWorld, impair_zone

from orchestrator.config import load_config
from orchestrator.core.errors import ConfigError
from orchestrator.core.health import HealthSettings, HealthState, assess, ingest
from orchestrator.core.model import Observation, Status, Verdict
from orchestrator.testbed.fakes._http import FakeServer
from orchestrator.testbed.fakes.aws_health import AwsHealthFake
from providers import CloudProvider, build_provider
from providers.aws import HEALTH_SOURCE

pytestmark = pytest.mark.timeout(60)
T0 = 1_700_000_000.0
EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "example.yaml"


@dataclass
class Endpoints:
    active: AwsHealthFake  # us-east-1
    passive: AwsHealthFake  # us-east-2, the same events
    urls: tuple[str, str]


@pytest.fixture
def health() -> Iterator[Endpoints]:
    active = AwsHealthFake("us-east-1")
    passive = active.standby("us-east-2")
    with FakeServer(active) as one, FakeServer(passive) as two:
        yield Endpoints(active, passive, (one.url, two.url))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _provider(aws: AwsWorld, urls: tuple[str, ...], clock: Clock | None = None, **options: Any) -> CloudProvider:
    settings = {"health_api": True, "signal_interval": "1m", "signal_stale_after": "5m",
                "health_endpoint_urls": list(urls), **options}
    # 8 s a poll, as a loaded machine needs for three pages: 4 s for the signals, 2 s (and a 2 s client timeout)
    # for each endpoint
    return build_provider(aws.site(options=settings), session=aws.session,
                          **{**FAST, "call_deadline": 8.0, "clock": clock or Clock()})


def _health(provider: CloudProvider) -> Observation:
    [found] = [o for o in provider.observe({}) if o.source == HEALTH_SOURCE]
    return found


def test_every_page_is_read_and_an_issue_on_the_last_page_counts(aws: AwsWorld, health: Endpoints) -> None:
    first = health.active.add_event(AWS_REGION, AWS_ZONES[0], start=T0 - 600)  # oldest update: listed last
    for n in range(330):  # unrelated noise, updated later: other regions, closed, other services
        region = AWS_REGION if n % 3 else "us-west-2"
        arn = health.active.add_event(region, AWS_ZONES[1] if region == AWS_REGION else None,
                                      service="EC2" if n % 5 else "RDS", start=T0 - 500 + n)
        if n % 7 == 0 and region == AWS_REGION:
            health.active.end_event(arn, T0 - 100)
    health.active.add_event(AWS_REGION, AWS_ZONES[1], start=T0 - 60)
    provider = _provider(aws, health.urls)

    observed = _health(provider)

    assert observed.status is Status.DOWN  # both zones of the site have an open EC2 issue
    assert AWS_ZONES[0] in observed.detail and AWS_ZONES[1] in observed.detail
    matching = [e for e in health.active.open_events() if e.service == "EC2" and e.region == AWS_REGION]
    pages = -(-len(matching) // 100)
    assert pages >= 2 and provider.calls["health.describe_events"] == pages == health.active.pages_served
    health.active.end_event(first, T0)
    assert _health(_provider(aws, health.urls)).status is Status.DEGRADED


def test_the_active_endpoint_failing_the_passive_one_answers_and_is_asked_first_after(
    aws: AwsWorld, health: Endpoints
) -> None:
    health.active.add_event(AWS_REGION, AWS_ZONES[0])
    health.active.fail_next(503, count=1_000)
    clock = Clock()
    provider = _provider(aws, health.urls, clock)

    assert _health(provider).status is Status.DEGRADED  # one zone of two
    assert health.active.requests and health.passive.pages_served == 1
    assert provider.health_region == "us-east-2"  # type: ignore[attr-defined]
    asked_active = len(health.active.requests)
    clock.now += 60
    assert _health(provider).status is Status.DEGRADED
    assert len(health.active.requests) == asked_active and health.passive.pages_served == 2


def test_an_active_endpoint_that_refuses_connections_fails_over_too(aws: AwsWorld, health: Endpoints) -> None:
    health.active.add_event(AWS_REGION, AWS_ZONES[0])
    with FakeServer(AwsHealthFake("us-east-1")) as dead:
        dead_url = dead.url  # nothing listens there any more: connection refused
    provider = _provider(aws, (dead_url, health.urls[1]))
    observed = _health(provider)
    assert observed.status is Status.DEGRADED and health.passive.pages_served == 1
    assert provider.calls["health.describe_events"] >= 2  # the refused tries, then one page from us-east-2


def test_a_refused_subscription_is_not_failed_over(aws: AwsWorld, health: Endpoints) -> None:
    from orchestrator.testbed.fakes._http import Fault

    health.active.add_fault(Fault(status=400, count=10, body={
        "__type": "SubscriptionRequiredException", "message": "The AWS Support plan does not allow this"}))
    observed = _health(_provider(aws, health.urls))
    assert observed.status is Status.UNKNOWN and "SubscriptionRequiredException" in observed.detail
    assert health.passive.requests == []


def test_a_stale_answer_has_no_vote(aws: AwsWorld, health: Endpoints) -> None:
    health.active.add_event(AWS_REGION, AWS_ZONES[0])
    health.active.add_event(AWS_REGION, AWS_ZONES[1])
    clock = Clock()
    provider = _provider(aws, health.urls, clock)
    assert _health(provider).status is Status.DOWN
    for fake in (health.active, health.passive):
        fake.fail_next(503, count=100_000)

    clock.now = T0 + 240  # every endpoint failing since, but the answer is 4 min old: still counts
    kept = _health(provider)
    assert kept.status is Status.DOWN and kept.at == T0 + 240
    clock.now = T0 + 301  # older than health_stale_after (5m): unknown, with why
    stale = _health(provider)
    assert stale.status is Status.UNKNOWN
    assert "no answer for over 300s" in stale.detail and "us-east-2" in stale.detail
    for fake in (health.active, health.passive):
        fake.clear_faults()
    clock.now = T0 + 400
    assert _health(provider).status is Status.DOWN


def test_a_failed_read_is_not_retried_before_the_interval(aws: AwsWorld, health: Endpoints) -> None:
    health.active.fail_next(503, count=100_000)
    health.passive.fail_next(503, count=100_000)
    clock = Clock()
    provider = _provider(aws, health.urls, clock)
    assert _health(provider).status is Status.UNKNOWN
    tries = provider.calls["health.describe_events"]
    clock.now += 30  # within health_interval (1m): the EC2 poll goes on, Health is not asked
    assert _health(provider).status is Status.UNKNOWN
    assert provider.calls["health.describe_events"] == tries


def test_region_wide_issues_degrade_and_upcoming_changes_only_show(aws: AwsWorld, health: Endpoints) -> None:
    health.active.add_event(AWS_REGION, None, status="upcoming")
    provider = _provider(aws, health.urls)
    observed = _health(provider)
    assert (observed.status, observed.detail) == (Status.OK, "AWS Health: 1 upcoming; from us-east-1")
    health.active.add_event(AWS_REGION, None, start=T0)
    region_wide = _health(_provider(aws, health.urls))
    assert region_wide.status is Status.DEGRADED
    assert f"EC2 issue open in {AWS_REGION} since 2023-11-14T22:13:20Z" in region_wide.detail


def test_health_and_ec2_are_two_votes_for_the_site(
    aws: AwsWorld, health: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each source alone is one vote, below a quorum of two; EC2's zone states and AWS Health together fail it."""
    settings = HealthSettings(quorum=2)
    for zone in AWS_ZONES:
        health.active.add_event(AWS_REGION, zone)
    state, verdicts = assess(ingest(HealthState(), _provider(aws, health.urls).observe({})), T0, settings)
    assert verdicts["aws-sg"].verdict is not Verdict.DOWN
    for zone in AWS_ZONES:
        impair_zone(monkeypatch, zone, "unavailable")
    _, verdicts = assess(ingest(state, _provider(aws, health.urls, _later()).observe({})), T0 + 1, settings)
    assert verdicts["aws-sg"].verdict is Verdict.DOWN
    assert verdicts["aws-sg"].failing == ("provider:aws", HEALTH_SOURCE)


def _later() -> Clock:
    clock = Clock()
    clock.now = T0 + 1
    return clock


def test_turned_on_from_the_yaml_config(tmp_path: Path) -> None:
    config = tmp_path / "failover.yaml"
    shutil.copy(EXAMPLE, config)
    text = config.read_text(encoding="utf-8")
    profile = "    profile: exchange-prod "
    on = "    health_api: true\n    signal_interval: 30s\n    fence: force_stop\n" + profile
    config.write_text(text.replace(profile, on, 1), encoding="utf-8")
    site = load_config(config).topology.sites["aws-hk"]
    provider = build_provider(site)
    assert provider.options.health_api and provider.options.signal_interval == 30.0  # type: ignore[attr-defined]

    config.write_text(text.replace(profile, "    health_api: true\n    signal_interval: 30\n" + profile, 1),
                      encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    line = next(n for n, text in enumerate(config.read_text().splitlines(), 1) if "signal_interval" in text)
    assert f"failover.yaml:{line}: sites.aws-hk.signal_interval" in str(caught.value)


class _PagingInCircles(AwsHealthFake):
    """An endpoint whose every page points to the same next page."""

    def _describe_events(self, body: dict[str, Any]) -> Any:
        response = super()._describe_events(body)
        response.body["nextToken"] = "page-10"
        return response


def test_an_endpoint_paging_in_circles_is_not_read_forever(aws: AwsWorld) -> None:
    circling = _PagingInCircles("us-east-1")
    circling.add_event(AWS_REGION, AWS_ZONES[0])
    with FakeServer(circling) as server:
        provider = _provider(aws, (server.url,))
        observed = _health(provider)
    assert observed.status is Status.UNKNOWN and "the same nextToken came back" in observed.detail
    assert provider.calls["health.describe_events"] == 2


def test_a_hung_active_endpoint_leaves_the_passive_one_its_turn(aws: AwsWorld, health: Endpoints) -> None:
    """botocore fixes a client's timeouts: each Health client's must fit its endpoint's share of the budget."""
    health.active.add_event(AWS_REGION, AWS_ZONES[0])
    health.active.hang_next(60, count=100)
    provider = build_provider(aws.site(options={"health_api": True, "health_endpoint_urls": list(health.urls)}),
                              session=aws.session, **{**FAST, "call_deadline": 8.0})
    observed = _health(provider)
    assert observed.status is Status.DEGRADED and observed.detail.endswith("from us-east-2")
    assert health.active.requests and health.passive.pages_served == 1
    # the hung request was cut at the active endpoint's share (8 s / 2 for the signals / 2 endpoints), not at 8 s:
    # a poll that waits out a hung us-east-1 in full comes back after the cycle has moved on without it
    config = provider._client("health@us-east-1").meta.config  # type: ignore[attr-defined]
    assert config.read_timeout == config.connect_timeout == 2.0


def test_throttling_is_retried_at_the_active_endpoint_not_failed_over(aws: AwsWorld, health: Endpoints) -> None:
    """AWS Health throttles with HTTP 400 and `ThrottlingException` (JSON 1.1): worth another try where it is."""
    from orchestrator.testbed.fakes._http import Fault

    health.active.add_event(AWS_REGION, AWS_ZONES[0])
    health.active.add_fault(Fault(status=400, count=2, body={"__type": "ThrottlingException",
                                                             "message": "Rate exceeded"}))
    provider = _provider(aws, health.urls)
    assert _health(provider).status is Status.DEGRADED
    assert provider.calls["health.describe_events"] == 3 and health.passive.requests == []
