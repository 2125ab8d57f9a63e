"""The bookkeeping every adapter inherits: retries bounded by deadlines, Retry-After, error mapping, waits, dry runs.

Run on the in-memory cloud (`providers.local`) with a virtual clock, shared by the adapter's waits and the cloud's
transitions, so that waiting costs no real time and every sleep is visible.
"""

from __future__ import annotations

import email.utils
import time

import pytest
from provider_helpers import VirtualClock

from orchestrator.core.errors import ProviderAuthError, ProviderError, ProviderNotFound
from orchestrator.core.model import DnsTarget, Site, Status
from providers import InstanceState, aggregate_zones, plan_recorder
from providers.calls import parse_retry_after
from providers.local import DNS, LocalCloud, LocalProvider, LocalRouter

pytestmark = pytest.mark.timeout(30)

SITE = Site("local-site", "local", "local-region", ("local-a",))
POLL = 2.0


def _world(clock: VirtualClock, takes: float = 0.0, state: InstanceState = InstanceState.RUNNING,
           **kwargs: object) -> tuple[LocalCloud, LocalProvider]:
    """Instance vm-1 in `state`; a start or stop completes `takes` seconds of the virtual clock after it is asked."""
    cloud = LocalCloud("local", clock.time, start_time=takes, stop_time=takes)
    cloud.add_instance(SITE.name, "vm-1", "local-a", state)
    options = {"poll_interval": POLL, "call_deadline": 20.0, **clock.kwargs(), **kwargs}
    return cloud, LocalProvider(SITE, cloud=cloud, **options)


def test_throttling_waits_at_least_retry_after_then_succeeds() -> None:
    clock = VirtualClock()
    cloud, provider = _world(clock)
    cloud.fail_next(SITE.name, 2, status=429, retry_after=3.0)

    assert provider.instance_state("vm-1") is InstanceState.RUNNING
    assert clock.sleeps == [3.0, 3.0]  # the backoff alone would have waited 0.2 s, then 0.4 s
    assert provider.calls["local.describe_instances"] == 3


def test_retry_after_beyond_the_deadline_gives_up_at_once() -> None:
    clock = VirtualClock()
    cloud, provider = _world(clock, call_deadline=5.0)
    cloud.fail_next(SITE.name, 1, status=429, retry_after=60.0)

    with pytest.raises(ProviderError, match=r"5\.0s deadline ran out"):
        provider.instance_state("vm-1")
    assert clock.sleeps == []


def test_persistent_5xx_is_retried_until_the_deadline_then_one_clear_error() -> None:
    clock = VirtualClock()
    cloud, provider = _world(clock, call_deadline=10.0)
    cloud.fail_api(SITE.name, status=503)  # until healed: never, here

    with pytest.raises(ProviderError) as caught:
        provider.instance_state("vm-1")
    assert type(caught.value) is ProviderError
    assert str(caught.value).startswith("site local-site: ") and "\n" not in str(caught.value)
    assert caught.value.__cause__ is not None
    assert clock.now <= 10.0 and provider.calls["local.describe_instances"] > 3


def test_auth_failure_is_not_retried() -> None:
    clock = VirtualClock()
    cloud, provider = _world(clock)
    cloud.fail_next(SITE.name, 1, status=403)

    with pytest.raises(ProviderAuthError, match="site local-site"):
        provider.instance_state("vm-1")
    assert provider.calls["local.describe_instances"] == 1 and clock.sleeps == []


def test_observe_survives_an_auth_failure_as_unknown() -> None:
    clock = VirtualClock()
    cloud, provider = _world(clock)
    cloud.fail_next(SITE.name, 2, status=401)

    observations = provider.observe({"vm-1": "spot-local"})
    assert [o.status for o in observations] == [Status.UNKNOWN, Status.UNKNOWN]
    assert "401" in observations[1].detail


def test_start_waits_through_pending_on_the_virtual_clock() -> None:
    clock = VirtualClock()
    _, provider = _world(clock, takes=3 * POLL, state=InstanceState.STOPPED)

    provider.start("vm-1", deadline=60)
    assert provider.instance_state("vm-1") is InstanceState.RUNNING
    assert provider.writes == {"local.start_instance": 1}
    assert clock.sleeps == [2.0, 2.0, 2.0]


def test_stop_that_never_completes_fails_at_its_deadline_naming_the_state() -> None:
    """A stop asked of a machine whose data centre is lost stays `stopping`: the cloud cannot reach it either."""
    clock = VirtualClock()
    cloud, provider = _world(clock, takes=5.0)
    cloud.set_data_plane("local-a", up=False)

    with pytest.raises(ProviderError, match="vm-1 still stopping, not stopped or terminated, after 30s"):
        provider.stop("vm-1", deadline=30)
    assert 30.0 <= clock.now <= 31.0
    assert provider.writes == {"local.stop_instance": 1}  # asked once, then waited
    cloud.set_data_plane("local-a", up=True)
    assert provider.instance_state("vm-1") is InstanceState.STOPPED  # it completes once the zone is back


def test_fence_of_a_stopping_instance_waits_and_asks_nothing() -> None:
    clock = VirtualClock()
    cloud, provider = _world(clock, takes=2 * POLL)
    cloud.stop_instance(SITE.name, "vm-1")

    provider.fence("vm-1", deadline=60)
    assert provider.instance_state("vm-1") is InstanceState.STOPPED
    assert not provider.writes and clock.sleeps == [2.0, 2.0]


def test_terminated_instance_cannot_be_started() -> None:
    clock = VirtualClock()
    _, provider = _world(clock, state=InstanceState.TERMINATED)

    with pytest.raises(ProviderError, match="vm-1 is terminated; cannot start it"):
        provider.start("vm-1", deadline=10)
    provider.fence("vm-1", deadline=10)  # a terminated instance is fenced already


def test_wait_for_state_returns_the_state_reached() -> None:
    clock = VirtualClock()
    cloud, provider = _world(clock, takes=POLL)
    cloud.stop_instance(SITE.name, "vm-1")

    assert provider.wait_for_state("vm-1", {InstanceState.STOPPED}, deadline=10) is InstanceState.STOPPED
    with pytest.raises(ProviderError, match="still stopped, not running"):
        provider.wait_for_state("vm-1", {InstanceState.RUNNING}, deadline=5)


def test_instance_health_names_every_missing_instance() -> None:
    clock = VirtualClock()
    _, provider = _world(clock)
    with pytest.raises(ProviderNotFound, match="site local-site: instance vm-7, vm-8 not found"):
        provider.instance_health(["vm-1", "vm-7", "vm-8"])


def test_plan_recorder_collects_provider_and_router_writes_in_order() -> None:
    clock = VirtualClock()
    cloud, provider = _world(clock)
    router = LocalRouter(cloud=cloud, **clock.kwargs())
    dns = DnsTarget("local", "zone-1", "spot.engine.example.internal")
    router.point_to(dns, "10.0.0.1")

    with plan_recorder(provider, router) as planned:
        provider.fence("vm-1", deadline=10)
        router.point_to(dns, "10.0.0.2")
        router.point_to(dns, "10.0.0.1.")  # already there (trailing dot ignored): nothing to plan

    assert [call.operation for call in planned] == ["local.stop_instance", "local.put_record"]
    assert str(planned[1]) == ("local.put_record(zone_id='zone-1', name='spot.engine.example.internal', "
                               "address='10.0.0.2')")
    assert not provider.dry_run and not router.dry_run and provider.planned == []
    assert cloud.state_of(SITE.name, "vm-1") is InstanceState.RUNNING
    assert router.current_target(dns) == "10.0.0.1"
    assert router.writes == {"local.put_record": 1}


@pytest.mark.parametrize(
    ("zones", "expected"),
    [
        ({"a": Status.OK, "b": Status.OK}, Status.OK),
        ({"a": Status.OK, "b": Status.DEGRADED}, Status.DEGRADED),
        ({"a": Status.DOWN, "b": Status.OK}, Status.DEGRADED),
        ({"a": Status.DOWN, "b": Status.DEGRADED}, Status.DOWN),
        ({"a": Status.DOWN}, Status.DOWN),
        ({"a": Status.UNKNOWN, "b": Status.UNKNOWN}, Status.UNKNOWN),
        ({"a": Status.UNKNOWN, "b": Status.OK}, Status.OK),
        ({"a": Status.UNKNOWN, "b": Status.DOWN}, Status.DEGRADED),
        ({}, Status.UNKNOWN),
    ],
)
def test_aggregate_zones(zones: dict[str, Status], expected: Status) -> None:
    status, detail = aggregate_zones(zones)
    assert status is expected
    assert all(zone in detail for zone in zones)


def test_parse_retry_after() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (parse_retry_after(later) or 0) <= 31


def test_without_jitter_the_backoff_is_deterministic() -> None:
    clock = VirtualClock()
    cloud, provider = _world(clock, backoff=(0.5, 4.0), jitter=False)
    cloud.fail_next(SITE.name, 5, status=503)

    assert provider.instance_state("vm-1") is InstanceState.RUNNING
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_the_in_memory_cloud_retries_without_jitter_unless_asked() -> None:
    """The simulator replays a seed: its adapters' backoff must not draw random numbers (DNS calls included)."""
    clock = VirtualClock()
    cloud, provider = _world(clock)
    router = LocalRouter(cloud=cloud, **clock.kwargs())
    cloud.fail_next(SITE.name, 5, status=503)
    cloud.fail_next(DNS, 2, status=500)

    assert provider.instance_state("vm-1") is InstanceState.RUNNING
    assert router.current_target(DnsTarget("local", "zone-1", "spot.engine.example.internal")) is None
    assert clock.sleeps == [0.2, 0.4, 0.8, 1.6, 3.2, 0.2, 0.4]
    assert (provider.calls["local.describe_instances"], router.calls["local.get_record"]) == (6, 3)
