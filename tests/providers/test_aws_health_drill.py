"""The drill's faults post each cloud's outage signal late, as the clouds did in the seed's outage: after the
scenario's `provider_delay`, dated from when the data centre was lost, and closed when the fault ends. Runs the
drill's `FaultInjector` on the real testbed (moto, the AWS Health fake on its two ports, the GCP and Azure fakes,
three replica processes) at 300x, and reads the signal back through the AWS adapter built from the testbed's own
configuration, as the orchestrator's daemon does."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.core.model import Status
from orchestrator.drill.faults import FaultInjector
from orchestrator.sim.faults import Fault, FaultKind
from orchestrator.sim.scenario import load_scenario
from orchestrator.testbed.world import AWS_ZONE, GCP_ZONE, GENEROUS, Testbed, wait_until
from orchestrator.testbed.world import testbed as running_testbed
from providers import build_provider
from providers.aws import HEALTH_SOURCE

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
SCENARIOS = Path(__file__).resolve().parents[2] / "configs" / "scenarios"
SPEED = 300.0  # scenario seconds per drill second: the 5-minute provider delay lasts 1 s


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    with running_testbed(tmp_path_factory.mktemp("bed"), aws_health_api=True) as started:
        yield started


def _injector(bed: Testbed, *faults: Fault) -> FaultInjector:
    scenario = dataclasses.replace(load_scenario(SCENARIOS / "zone-outage.yaml"), faults=faults)
    return FaultInjector(bed, scenario, SPEED, origin=240.0)  # the faults at 300 s fall 0.2 s into the run


def _health(bed: Testbed) -> tuple[Status, str]:
    provider = build_provider(load_config(bed.config_path).topology.sites["aws-hk"])
    [seen] = [o for o in provider.observe({}) if o.source == HEALTH_SOURCE]
    return seen.status, seen.detail


def test_aws_health_posts_the_issue_after_the_provider_delay_dated_from_the_data_plane(bed: Testbed) -> None:
    assert _health(bed) == (Status.OK, "AWS Health: no open EC2 issue; from us-east-1")
    outage = Fault(FaultKind.OUTAGE, at=300.0, duration=1500.0, site="aws-hk", provider_delay=300.0)
    injector = _injector(bed, outage).start()
    try:
        wait_until(lambda: any(item.signal for item in injector.applied), "the AWS Health issue to be posted")
        dark = next(item.at for item in injector.applied if "data plane out" in item.action)
        [posted] = [item for item in injector.applied if item.signal]
        assert posted.signal == HEALTH_SOURCE and posted.started
        assert posted.at - dark >= 300.0 / SPEED * 0.9  # never before the provider's delay
        assert posted.late_s == pytest.approx(posted.at - dark, abs=0.3)
        [event] = bed.aws_health.open_events() if bed.aws_health else []
        assert (event.region, event.zone, event.service, event.status) == ("ap-east-1", AWS_ZONE, "EC2", "open")
        assert event.start == pytest.approx(dark, abs=0.3)  # dated from the loss, not from the posting
        status, detail = _health(bed)
        assert status is Status.DOWN and f"EC2 issue open in {AWS_ZONE}" in detail

        wait_until(lambda: any(not item.started and item.signal for item in injector.applied),
                   "the fault to end", timeout=GENEROUS)
        assert bed.aws_health is not None and bed.aws_health.open_events() == []
        assert _health(bed)[0] is Status.OK
    finally:
        injector.stop()


def test_gcp_and_azure_signals_are_posted_by_the_same_faults(bed: Testbed) -> None:
    if not (hasattr(bed.gcp, "inject_service_health_event") and hasattr(bed.azure, "inject_resource_health")):
        pytest.skip("the GCP and Azure fakes do not serve their outage signals yet")
    faults = [Fault(FaultKind.OUTAGE, at=300.0, duration=1500.0, site=site, provider_delay=300.0)
              for site in ("gcp-hk", "azure-hk")]
    injector = _injector(bed, *faults).start()
    try:
        wait_until(lambda: len([item for item in injector.applied if item.signal]) == 2, "both signals posted")
        assert {item.signal for item in injector.applied if item.signal} == {
            "provider:gcp-service-health", "provider:azure-resource-health"}
        assert bed.gcp is not None and bed.azure is not None
        events = [event for event in bed.gcp.events if event.zone == GCP_ZONE]
        dark = min(item.at for item in injector.applied if "data plane out" in item.action)
        assert len(events) == 1 and events[0].started == pytest.approx(dark, abs=0.3)
        assert events[0].ended is not None and events[0].ended > time.time()  # open until the fault's end
        assert bed.azure.vms["spot-engine-azure"].resource_health == ("Unavailable", "Unplanned", None)
    finally:
        injector.stop()
