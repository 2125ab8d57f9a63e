"""An outage signal that hangs never makes the main source late.

A site's extra signals (AWS Health, Service Health, Resource Health: `PolledSignal`s) come from services of their
own, which struggle in the same outage as the cloud. A cron run waits `CRON_PROVIDER_WAIT` (2 s) for the clouds after
its probes; if the signals were read on the same thread as the main source (EC2, Compute, the VMs' instance view),
a Health read that hangs would hold the EC2 answer past that wait and the site would be reported `unknown` ("no
answer within 2s"). Each is polled on a thread of its own: the main source's answer is taken as soon as it comes,
the signal's whenever it comes (it votes then), and a new poll of the main source starts on time while the signal's
read is still hanging.

The cloud here is a small `CloudProvider` whose main API answers at once and whose signal's read blocks until the
test opens its gate: a hang as long as the test wants, without any wall-clock bound on how fast anything answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import pytest
from provider_helpers import OneZoneCloud

from orchestrator.core.model import Cause, Observation, Status
from orchestrator.drivers.modes import CRON_PROVIDER_WAIT
from orchestrator.drivers.provider_watch import ProviderWatch
from providers.base import CloudProvider, InstanceHealth, InstanceState, PolledSignal

pytestmark = pytest.mark.timeout(120)

GENEROUS = 30.0
SIGNAL = "provider:test-health"


class CloudWithHealth(OneZoneCloud):
    """One zone, one running instance, and a health signal whose API blocks until `gate` is opened."""

    def __init__(self, name: str) -> None:
        super().__init__(name, call_deadline=2 * GENEROUS)
        self.gate = threading.Event()
        self.signal_asked = threading.Event()
        self.main_polls = 0
        self.health = PolledSignal(SIGNAL, 0.0, GENEROUS, self._read_health)

    def _read_health(self, now: float) -> list[tuple[str, Status, str]]:
        self.signal_asked.set()
        if not self.gate.wait(GENEROUS):
            raise AssertionError("the test never opened the signal's gate")
        return [(self.site.name, Status.DOWN, "an open EC2 issue in zone-a")]

    def _signals(self, instances: Mapping[str, str], at: float) -> list[Observation]:
        return self.health.observe(at, [self.site.name])

    def _instance_healths(self, instances: Sequence[str]) -> Mapping[str, InstanceHealth]:
        with self._lock:
            self.main_polls += 1
        return {i: InstanceHealth(i, InstanceState.RUNNING, Status.OK) for i in instances}


def _watch(cloud: CloudWithHealth, interval: float = 0.0) -> ProviderWatch:
    return ProviderWatch({"aws-hk": cloud}, lambda site: {"i-hk": "spot-aws"}, interval=interval)


def _main(observations: Sequence[Observation], cloud: CloudProvider) -> dict[str, Observation]:
    return {o.subject: o for o in observations if o.source == cloud.source}


def test_a_hung_health_read_leaves_the_main_answer_in_time_for_cron() -> None:
    """The cron run's own wait, with the signal hanging for all of it: EC2's answer is in, healthy, not `unknown`."""
    cloud = CloudWithHealth("aws-hk")
    try:
        seen = _watch(cloud).collect(time.time(), wait=CRON_PROVIDER_WAIT)
        assert cloud.signal_asked.is_set() and not cloud.gate.is_set()  # the Health read was made, and hangs
        main = _main(seen, cloud)
        assert {subject: (o.status, o.cause) for subject, o in main.items()} == {
            "aws-hk": (Status.OK, None), "spot-aws": (Status.OK, None)}
        assert [o for o in seen if o.source == SIGNAL] == []  # no answer yet: no vote, never an old verdict
    finally:
        cloud.gate.set()


def test_the_signal_votes_once_its_read_comes_back() -> None:
    cloud = CloudWithHealth("aws-hk")
    watch = _watch(cloud, interval=3600.0)
    try:
        first = watch.collect(time.time())
        assert cloud.signal_asked.wait(GENEROUS)
        cloud.gate.set()
        signal: list[Observation] = [o for o in first if o.source == SIGNAL]
        deadline = time.monotonic() + GENEROUS
        while not signal and time.monotonic() < deadline:
            signal = [o for o in watch.collect(time.time(), wait=0.5) if o.source == SIGNAL]
        assert [(o.subject, o.status) for o in signal] == [("aws-hk", Status.DOWN)]
        assert watch.pending() == []
    finally:
        cloud.gate.set()


def test_the_main_source_is_polled_again_on_time_while_the_signal_hangs() -> None:
    """The daemon's way (no wait): each cycle takes what has come; a hung signal read holds back no later poll
    of the main source, and is not asked again while it hangs (one read in flight per signal)."""
    cloud = CloudWithHealth("aws-hk")
    watch = _watch(cloud)
    try:
        assert cloud.signal_asked.wait(GENEROUS) if watch.start(time.time()) else False
        answers: list[Observation] = []
        deadline = time.monotonic() + GENEROUS
        while cloud.main_polls < 3 and time.monotonic() < deadline:
            answers += watch.collect(time.time(), wait=0.5)
        assert cloud.main_polls >= 3 and not cloud.gate.is_set()
        main = [o for o in answers if o.source == cloud.source and o.subject == "spot-aws"]
        assert len(main) >= 2 and {o.status for o in main} == {Status.OK}
        assert not any(o.cause is Cause.API_FAILED for o in answers)
        assert watch.pending() == ["aws-hk"]  # the signal's read, still hanging
    finally:
        cloud.gate.set()


def test_gcp_service_health_hanging_leaves_compute_in_time_for_cron() -> None:
    """The real GCP adapter against its fake over HTTP: Service Health's endpoint hangs (the connection accepted, no
    answer, for longer than the run), Compute answers. The cron run's wait brings Compute's site and replica
    verdicts, healthy; the adapter's one HTTP session serves both threads."""
    from provider_helpers import gcp_site

    from orchestrator.testbed.fakes import FakeServer, GcpComputeFake
    from providers import build_provider

    fake = GcpComputeFake(zones=("asia-east2-a", "asia-east2-b"))
    fake.add_instance("spot-engine-1", "asia-east2-a")
    fake.hang_next(2 * GENEROUS, count=1000, path=r"/locations/global/events$")
    with FakeServer(fake) as server:
        provider = build_provider(gcp_site(server), call_deadline=2 * GENEROUS, request_timeout=2 * GENEROUS,
                                  backoff=(0.1, 0.5))
        watch = ProviderWatch({"gcp-hk": provider}, lambda site: {"spot-engine-1": "spot-gcp"}, interval=3600.0)
        seen = watch.collect(time.time(), wait=CRON_PROVIDER_WAIT)
        assert {subject: (o.status, o.cause) for subject, o in _main(seen, provider).items()} == {
            "gcp-hk": (Status.OK, None), "spot-gcp": (Status.OK, None)}
        assert any(path.endswith("/locations/global/events") for _, path in fake.requests)  # asked, hanging
        assert watch.pending() == ["gcp-hk"]


def test_one_hanging_signal_leaves_the_others_their_whole_budget() -> None:
    """GCP's two signals under one budget (half `call_deadline`): Service Health hangs for all of it. Read one after
    the other, host errors would get what Service Health left (one last 0.1 s try, which its 0.5 s answer misses)
    and say `unknown`; each on its own thread,
    the host error on the replica's instance is seen (`down`), and Service Health alone has no answer."""
    from provider_helpers import gcp_site

    from orchestrator.testbed.fakes import FakeServer, GcpComputeFake
    from providers import build_provider

    fake = GcpComputeFake(zones=("asia-east2-a", "asia-east2-b"))
    fake.add_instance("spot-engine-1", "asia-east2-a")
    fake.inject_host_error("spot-engine-1", "asia-east2-a")
    fake.hang_next(4 * GENEROUS, count=1000, path=r"/locations/global/events$")
    fake.hang_next(0.5, path=r"/aggregated/operations$")  # then answers: an API slow in the outage, not down
    with FakeServer(fake) as server:
        provider = build_provider(gcp_site(server), call_deadline=GENEROUS / 1.5, backoff=(0.1, 0.5))
        seen = {o.source: o for o in provider.observe_signals({"spot-engine-1": "spot-gcp"})}
        assert (seen["provider:gcp-host-errors"].subject, seen["provider:gcp-host-errors"].status) == (
            "spot-gcp", Status.DOWN)
        assert seen["provider:gcp-service-health"].status is Status.UNKNOWN
