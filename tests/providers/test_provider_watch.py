"""Each cloud's API on its own deadline: one that does not answer holds up no other cloud and is never `healthy`.

`ProviderWatch` polls every site on a thread of its own. A cron run (`collect(now, wait)`) waits at most `wait`
seconds for the polls, takes the answers that came, and reports the sites still silent `unknown` with the cause
"provider API failed", so a verdict can never rest on a cloud that did not answer this run. The daemon (`wait` 0)
takes the late answer whenever it comes. Clouds here are small `CloudProvider`s whose API answers at once or
blocks until the test lets it go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import pytest
from provider_helpers import OneZoneCloud

from orchestrator.core.model import Cause, Observation, Status
from orchestrator.drivers.provider_watch import ProviderWatch
from providers.base import InstanceHealth, InstanceState

pytestmark = pytest.mark.timeout(60)

WAIT = 0.3  # the cron run's wait per cloud: short here, the slow cloud never answers within it
GENEROUS = 30.0


class Cloud(OneZoneCloud):
    """One zone, one running instance; `gate`, when set, makes every API call block until it is opened."""

    def __init__(self, name: str, gate: threading.Event | None = None) -> None:
        super().__init__(name, call_deadline=GENEROUS)
        self.gate = gate
        self.answered = threading.Event()

    def _api(self) -> None:
        if self.gate is not None and not self.gate.wait(GENEROUS):
            raise AssertionError("the test never opened the gate")

    def _zone_statuses(self) -> Mapping[str, Status]:
        self._api()
        return {"zone-a": Status.OK}

    def _instance_healths(self, instances: Sequence[str]) -> Mapping[str, InstanceHealth]:
        self._api()
        self.answered.set()
        return {i: InstanceHealth(i, InstanceState.RUNNING, Status.OK) for i in instances}


def watch(clouds: dict[str, Cloud]) -> ProviderWatch:
    return ProviderWatch(clouds, lambda site: {f"vm-{site}": f"replica-{site}"}, interval=0.0)


def by_subject(observations: Sequence[Observation]) -> dict[str, Observation]:
    return {o.subject: o for o in observations}


def test_a_silent_cloud_is_unknown_and_the_others_are_heard_without_it() -> None:
    gate = threading.Event()
    clouds = {"aws-hk": Cloud("aws-hk"), "gcp-hk": Cloud("gcp-hk", gate), "azure-hk": Cloud("azure-hk")}
    try:
        seen = by_subject(watch(clouds).collect(time.time(), wait=WAIT))
        assert not gate.is_set() and not clouds["gcp-hk"].answered.is_set()  # GCP is still asked, unanswered
        for site in ("aws-hk", "azure-hk"):
            assert (seen[site].status, seen[f"replica-{site}"].status) == (Status.OK, Status.OK)
        for subject in ("gcp-hk", "replica-gcp-hk"):
            late = seen[subject]
            assert (late.status, late.cause, late.source) == (Status.UNKNOWN, Cause.API_FAILED, "provider:test")
            assert late.detail == f"provider API failed: no answer within {WAIT:g}s"
    finally:
        gate.set()


def test_the_late_answer_is_taken_by_the_next_collect() -> None:
    gate = threading.Event()
    slow = Cloud("gcp-hk", gate)
    poller = watch({"gcp-hk": slow})
    first = by_subject(poller.collect(time.time(), wait=WAIT))
    assert first["gcp-hk"].status is Status.UNKNOWN
    assert poller.pending() == ["gcp-hk"]
    gate.set()
    assert slow.answered.wait(GENEROUS)
    later = by_subject(poller.collect(time.time(), wait=GENEROUS))  # the answer is in, or comes within the wait
    assert poller.pending() == []
    assert later["gcp-hk"].status is Status.OK and later["replica-gcp-hk"].status is Status.OK


def test_the_daemon_never_waits_and_reports_nothing_for_a_poll_in_flight() -> None:
    gate = threading.Event()
    poller = watch({"aws-hk": Cloud("aws-hk", gate)})
    try:
        assert poller.collect(time.time()) == []  # wait 0: the answer is taken when it comes, no stand-in
        assert poller.pending() == ["aws-hk"]
    finally:
        gate.set()


def test_polls_started_early_run_while_the_cycle_does_other_work() -> None:
    clouds = {"aws-hk": Cloud("aws-hk"), "azure-hk": Cloud("azure-hk")}
    poller = watch(clouds)
    assert poller.start(time.time()) == ["aws-hk", "azure-hk"]
    for cloud in clouds.values():
        assert cloud.answered.wait(GENEROUS)  # answered before anyone collected
    seen = by_subject(poller.collect(time.time(), wait=WAIT))
    assert {s: o.status for s, o in seen.items()} == dict.fromkeys(
        ["aws-hk", "azure-hk", "replica-aws-hk", "replica-azure-hk"], Status.OK)
