"""GCP in an outage, against the Compute and Service Health fake over real HTTP: operations that take several polls
or fail, Google's throttling answer, the non-graceful fence, and the signals Google publishes (Service Health
incidents, host-error operations), each a source of its own that goes stale on its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from provider_helpers import FAST, VirtualClock, gcp_site

from orchestrator.core.errors import ProviderError
from orchestrator.core.health import HealthSettings, HealthState, assess, ingest
from orchestrator.core.model import Observation, Status, Verdict
from orchestrator.testbed.fakes import FakeServer, GcpComputeFake
from providers import InstanceState, build_provider, plan_recorder

pytestmark = pytest.mark.timeout(60)
NOW = 1_700_000_000.0
SERVICE_HEALTH, HOST_ERRORS = "provider:gcp-service-health", "provider:gcp-host-errors"
STOP = "/instances/spot-engine-1/stop"


class Clock:
    """The wall clock both the fake and the adapter read: moved by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world() -> Iterator[tuple[GcpComputeFake, FakeServer, Clock]]:
    clock = Clock()
    fake = GcpComputeFake(zones=("asia-east2-a", "asia-east2-b"), clock=clock)
    fake.add_instance("spot-engine-1", "asia-east2-a")
    with FakeServer(fake) as server:
        yield fake, server, clock


World = tuple[GcpComputeFake, FakeServer, Clock]


def _provider(server: FakeServer, clock: Clock | None = None, options: dict[str, Any] | None = None,
              **kwargs: Any) -> Any:
    site = gcp_site(server, options={"project": "exchange-prod", **(options or {})})
    return build_provider(site, **{**FAST, **({"clock": clock} if clock else {}), **kwargs})


def _from(observations: list[Observation], source: str) -> list[tuple[str, Status]]:
    return [(o.subject, o.status) for o in observations if o.source == source]


# --- long-running operations -------------------------------------------------------------------------------------


def test_a_stop_operation_is_polled_pending_running_done(world: World) -> None:
    fake, server, _ = world
    fake.settle_reads = 3
    timer = VirtualClock()
    provider = _provider(server, poll_interval=0.5, **timer.kwargs())

    provider.stop("spot-engine-1", deadline=30)

    polls = [r for r in fake.received if "/operations/" in r.path]
    assert len(polls) == 3 and provider.calls["compute.zone_operations.get"] == 3
    assert timer.sleeps == [0.5, 0.5, 0.5]  # one poll interval before each read of the operation
    assert fake.instance_status("spot-engine-1", "asia-east2-a") == "TERMINATED"


def test_the_fake_answers_pending_then_running_then_done(world: World) -> None:
    fake, server, _ = world
    fake.settle_reads = 3
    base = f"{server.url}/compute/v1/projects/exchange-prod/zones/asia-east2-a"
    operation = requests.post(f"{base}/instances/spot-engine-1/stop", timeout=5).json()
    seen = [operation["status"]]
    for _ in range(3):
        seen.append(requests.get(f"{base}/operations/{operation['name']}", timeout=5).json()["status"])
    assert seen == ["PENDING", "RUNNING", "RUNNING", "DONE"]


def test_a_failed_operation_names_its_http_error_status(world: World) -> None:
    fake, server, _ = world
    provider = _provider(server)
    provider.stop("spot-engine-1", deadline=10)
    fake.fail_operations(1, http_status=503)

    with pytest.raises(ProviderError, match=r"failed \(HTTP 503 SERVICE UNAVAILABLE\): ZONE_RESOURCE_POOL_EXHAUSTED"):
        provider.start("spot-engine-1", deadline=10)
    assert provider.instance_state("spot-engine-1") is InstanceState.STOPPED


# --- throttling ---------------------------------------------------------------------------------------------------


def test_throttled_twice_then_served_with_exponential_backoff(world: World) -> None:
    fake, server, _ = world
    fake.fail_next(429, count=2, path="/instances/")
    throttled = requests.get(f"{server.url}/compute/v1/projects/exchange-prod/zones/asia-east2-a/instances/x",
                             timeout=5)
    assert throttled.status_code == 429
    error = throttled.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED" and error["errors"][0]["reason"] == "rateLimitExceeded"
    assert error["errors"][0]["domain"] == "usageLimits"

    timer = VirtualClock()
    provider = _provider(server, backoff=(0.2, 5.0), jitter=False, call_deadline=20.0, **timer.kwargs())
    assert provider.instance_state("spot-engine-1") is InstanceState.RUNNING
    assert provider.calls["compute.instances.get"] == 2  # the fault above took one of the two 429s
    fake.fail_next(429, count=3, path="/instances/")
    timer.sleeps.clear()
    assert provider.instance_state("spot-engine-1") is InstanceState.RUNNING
    assert timer.sleeps == [0.2, 0.4, 0.8]  # no Retry-After from Google: exponential backoff from 0.2 s


# --- fencing ------------------------------------------------------------------------------------------------------


def test_a_fence_is_the_stop_without_graceful_shutdown(world: World) -> None:
    fake, server, _ = world
    provider = _provider(server)
    provider.fence("spot-engine-1", deadline=10)

    [stop] = [r for r in fake.received if r.method == "POST"]
    assert stop.path.endswith(STOP) and stop.query == {"noGracefulShutdown": "true"}
    assert provider.instance_state("spot-engine-1") is InstanceState.STOPPED

    provider.start("spot-engine-1", deadline=10)
    provider.stop("spot-engine-1", deadline=10)  # a planned stop keeps the guest's shutdown
    assert [r.query for r in fake.received if r.method == "POST" and r.path.endswith(STOP)][1] == {}


def test_the_graceful_fence_is_a_site_option_and_the_plan_shows_which(world: World) -> None:
    fake, server, _ = world
    provider = _provider(server, options={"fence": "stop"})
    provider.fence("spot-engine-1", deadline=10)
    assert [r.query for r in fake.received if r.method == "POST"] == [{}]

    provider.start("spot-engine-1", deadline=10)
    fast = _provider(server)
    with plan_recorder(fast) as planned:
        fast.fence("spot-engine-1", deadline=5)
    assert [str(call) for call in planned] == [
        "compute.instances.stop(zone='asia-east2-a', instance='spot-engine-1', no_graceful_shutdown=True)"]


def test_an_instance_still_stopping_is_not_fenced(world: World) -> None:
    fake, server, _ = world
    fake.settle_reads = 10_000  # the stop never finishes
    provider = _provider(server)
    with pytest.raises(ProviderError, match=r"operation operation-\d+-stop still RUNNING, not done after 3s"):
        provider.fence("spot-engine-1", deadline=3.0)
    assert provider.instance_state("spot-engine-1") is InstanceState.STOPPING


def test_a_stop_call_that_timed_out_never_counts_as_fenced(world: World) -> None:
    fake, server, _ = world
    fake.hang_next(50.0, count=20, path=f"{STOP}$")
    provider = _provider(server, call_deadline=1.0, request_timeout=20.0)
    still_failing = r"compute.instances.stop still failing when its [01]\.\ds deadline ran out"
    with pytest.raises(ProviderError, match=still_failing):
        provider.fence("spot-engine-1", deadline=1.0)
    assert fake.instance_status("spot-engine-1", "asia-east2-a") == "RUNNING"
    assert provider.writes["compute.instances.stop"] == 0


# --- Service Health and host errors: sources of their own --------------------------------------------------------


def test_a_service_health_incident_turns_the_site_signal_degraded_then_down(world: World) -> None:
    fake, server, clock = world
    provider = _provider(server, clock)
    site = provider.site.name
    assert _from(provider.observe({}), SERVICE_HEALTH) == [(site, Status.OK)]

    fake.inject_service_health_event("asia-east2-a", started=NOW - 120)
    degraded = [o for o in provider.observe({}) if o.source == SERVICE_HEALTH]
    assert [(o.subject, o.status) for o in degraded] == [(site, Status.DEGRADED)]
    assert "asia-east2-a" in degraded[0].detail

    fake.inject_service_health_event("asia-east2-b", started=NOW - 60)
    observations = provider.observe({})
    assert _from(observations, SERVICE_HEALTH) == [(site, Status.DOWN)]
    assert _from(observations, provider.source) == [(site, Status.OK)]  # Compute's zone status: still UP


def test_a_closed_incident_and_one_elsewhere_are_ignored(world: World) -> None:
    fake, server, clock = world
    fake.inject_service_health_event("asia-east2-a", started=NOW - 3600, ended=NOW - 60)
    fake.inject_service_health_event("us-central1-a", started=NOW - 60)
    provider = _provider(server, clock)
    assert _from(provider.observe({}), SERVICE_HEALTH) == [(provider.site.name, Status.OK)]


def test_service_health_reads_every_page(world: World) -> None:
    fake, server, clock = world
    for n in range(150):
        fake.inject_service_health_event("us-central1-a", started=NOW - 1000 + n)  # the newest come first
    fake.inject_service_health_event("asia-east2-a", started=NOW - 5000)  # on the second page
    provider = _provider(server, clock)
    assert _from(provider.observe({}), SERVICE_HEALTH) == [(provider.site.name, Status.DEGRADED)]
    assert provider.calls["servicehealth.events.list"] == 2


def test_a_host_error_downs_the_replica_for_its_window(world: World) -> None:
    fake, server, clock = world
    provider = _provider(server, clock)
    replicas = {"spot-engine-1": "spot-gcp"}
    assert _from(provider.observe(replicas), HOST_ERRORS) == [("spot-gcp", Status.OK)]

    fake.inject_host_error("spot-engine-1", "asia-east2-a", at=NOW - 30)
    assert _from(provider.observe(replicas), HOST_ERRORS) == [("spot-gcp", Status.DOWN)]
    clock.now += 600  # the 600 s window passes
    assert _from(provider.observe(replicas), HOST_ERRORS) == [("spot-gcp", Status.OK)]


def test_a_failing_signal_keeps_its_last_answer_until_stale_then_has_no_vote(world: World) -> None:
    fake, server, clock = world
    provider = _provider(server, clock, options={"signal_stale_after": "5m"})
    fake.inject_service_health_event("asia-east2-a", started=NOW - 60)
    fake.inject_service_health_event("asia-east2-b", started=NOW - 60)
    assert _from(provider.observe({}), SERVICE_HEALTH) == [(provider.site.name, Status.DOWN)]

    fake.fail_next(503, count=10_000, path="/events$")
    provider.call_deadline = 0.5
    clock.now += 200
    [kept] = [o for o in provider.observe({}) if o.source == SERVICE_HEALTH]
    assert kept.status is Status.DOWN and "as read 200s ago" in kept.detail and kept.at == clock.now
    clock.now += 101
    [stale] = [o for o in provider.observe({}) if o.source == SERVICE_HEALTH]
    assert stale.status is Status.UNKNOWN and "no answer for over 300s" in stale.detail and stale.cause is None
    main = [o for o in provider.observe({}) if o.source == provider.source]
    assert [o.status for o in main] == [Status.OK]  # Compute itself answers: the main source is untouched


def test_signals_are_read_at_their_own_interval_and_can_be_turned_off(world: World) -> None:
    _, server, clock = world
    provider = _provider(server, clock, options={"signal_interval": "1m"})
    for _ in range(3):
        provider.observe({"spot-engine-1": "spot-gcp"})
        clock.now += 20
    assert provider.calls["servicehealth.events.list"] == 1
    assert provider.calls["compute.global_operations.aggregated_list"] == 1
    clock.now += 1
    provider.observe({})
    assert provider.calls["servicehealth.events.list"] == 2

    quiet = _provider(server, clock, options={"service_health": False, "host_errors": False})
    assert {o.source for o in quiet.observe({"spot-engine-1": "spot-gcp"})} == {"provider:gcp"}


def test_a_drill_in_another_process_injects_over_http(world: World) -> None:
    _, server, clock = world
    provider = _provider(server, clock)
    for zone in ("asia-east2-a", "asia-east2-b"):
        requests.post(f"{server.url}/_fake/service-health", json={"zone": zone, "started": NOW - 10}, timeout=5)
    requests.post(f"{server.url}/_fake/host-errors/asia-east2-a/spot-engine-1", json={"at": NOW - 5}, timeout=5)
    observations = provider.observe({"spot-engine-1": "spot-gcp"})
    assert _from(observations, SERVICE_HEALTH) == [(provider.site.name, Status.DOWN)]
    assert _from(observations, HOST_ERRORS) == [("spot-gcp", Status.DOWN)]


def test_the_incident_is_one_vote_of_its_own_and_a_stale_one_is_none(world: World) -> None:
    """Through the real evaluator: Service Health's `down` plus one probe's make the quorum of two that Compute's
    own `ok` zone status could never give; once Service Health's answer is stale, the probe alone is not enough."""
    fake, server, clock = world
    provider = _provider(server, clock, options={"signal_stale_after": "5m"})
    settings = HealthSettings(failure_threshold=1, quorum=2, provider_stale_after=900.0, probe_stale_after=900.0)
    site = provider.site.name

    def verdict() -> tuple[Verdict, tuple[str, ...]]:
        probe = Observation(clock.now, site, "probe:aws-hk", Status.DOWN, "timeout")
        _, verdicts = assess(ingest(HealthState(), [*provider.observe({}), probe]), clock.now, settings)
        return verdicts[site].verdict, verdicts[site].failing

    for zone in ("asia-east2-a", "asia-east2-b"):
        fake.inject_service_health_event(zone, started=NOW - 60)
    assert verdict() == (Verdict.DOWN, ("probe:aws-hk", SERVICE_HEALTH))

    fake.fail_next(503, count=10_000, path="/events$")
    provider.call_deadline = 0.5
    clock.now += 301
    assert verdict()[0] is not Verdict.DOWN
