"""Azure in an outage, against the ARM fake over real HTTP with the real SDKs (azure-mgmt-compute's pollers,
azure-mgmt-resourcehealth): operations InProgress over several reads with Retry-After, ARM's throttling answer, the
409 to a power-off of a deallocated VM, the fast fence and the deallocation after it, and Resource Health as a
source of its own, with its own staleness."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from provider_helpers import FAST, VirtualClock, azure_site

from orchestrator.core.errors import ProviderError
from orchestrator.core.model import Observation, Status
from orchestrator.testbed.fakes import AzureComputeFake, FakeServer
from providers import InstanceState, build_provider

pytestmark = pytest.mark.timeout(60)
NOW = 1_700_000_000.0
RESOURCE_HEALTH = "provider:azure-resource-health"
VM = "spot-engine-1"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


World = tuple[AzureComputeFake, FakeServer, Clock]


@pytest.fixture
def world() -> Iterator[World]:
    clock = Clock()
    fake = AzureComputeFake(clock=clock)
    fake.add_vm(VM, "1")
    with FakeServer(fake) as server:
        yield fake, server, clock


def _provider(server: FakeServer, clock: Clock | None = None, options: dict[str, Any] | None = None,
              **kwargs: Any) -> Any:
    base = dict(azure_site(server).options)
    site = azure_site(server, options={**base, **(options or {})})
    return build_provider(site, **{**FAST, **({"clock": clock} if clock else {}), **kwargs})


def _posts(fake: AzureComputeFake) -> list[tuple[str, dict[str, str]]]:
    return [(r.path.rsplit("/", 1)[-1], {k: v for k, v in r.query.items() if k != "api-version"})
            for r in fake.received if r.method == "POST"]


def _from(observations: list[Observation], source: str) -> list[tuple[str, Status]]:
    return [(o.subject, o.status) for o in observations if o.source == source]


# --- long-running operations and throttling ----------------------------------------------------------------------


def test_an_operation_in_progress_is_polled_as_retry_after_says(world: World) -> None:
    fake, server, _ = world
    fake.settle_reads, fake.retry_after = 3, 1
    provider = _provider(server, options={"deallocate_after_fence": False})
    started = time.monotonic()

    provider.fence(VM, deadline=30)

    reads = [r for r in fake.received if "/operations/" in r.path]
    status_reads = [r for r in reads if r.query.get("monitor") != "true"]
    assert len(status_reads) == 3  # Azure-AsyncOperation: InProgress, InProgress, Succeeded
    assert len(reads) - len(status_reads) == 1  # then the Location, once, for the result
    assert time.monotonic() - started >= 2.0  # two waits of Retry-After: 1 (the SDK's 0.01 s interval overridden)
    assert fake.power(VM) == "stopped" and provider.instance_state(VM) is InstanceState.STOPPED


def test_an_operation_past_the_deadline_is_not_a_fence(world: World) -> None:
    fake, server, _ = world
    fake.settle_reads, fake.retry_after = 10_000, 1
    provider = _provider(server)
    with pytest.raises(ProviderError, match=r"begin_power_off still in progress after 3s"):
        provider.fence(VM, deadline=3.0)
    assert provider.instance_state(VM) is InstanceState.STOPPING
    assert provider.writes["compute.virtual_machines.begin_deallocate"] == 0  # nothing "later" for an unfinished fence


def test_throttled_by_the_compute_provider_then_served(world: World) -> None:
    fake, server, _ = world
    fake.fail_next(429, count=1, path=f"/virtualMachines/{VM}$")
    answer = requests.get(f"{server.url}/subscriptions/{fake.subscription}/resourceGroups/trading/providers/"
                          f"Microsoft.Compute/virtualMachines/{VM}", timeout=5)
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == "OperationNotAllowed"
    assert answer.json()["error"]["details"][0]["code"] == "TooManyRequests"
    assert answer.headers["x-ms-ratelimit-remaining-resource"].startswith("Microsoft.Compute/HighCostGet3Min;0")

    timer = VirtualClock()
    provider = _provider(server, backoff=(0.2, 5.0), jitter=False, call_deadline=30.0, **timer.kwargs())
    fake.fail_next(429, count=1, retry_after=17, path=f"/virtualMachines/{VM}$")
    fake.fail_next(429, count=1, path=f"/virtualMachines/{VM}$")
    assert provider.instance_state(VM) is InstanceState.RUNNING
    assert timer.sleeps == [17.0, 0.4]  # Retry-After when ARM sends it, else exponential backoff
    assert provider.calls["compute.virtual_machines.get"] == 3


# --- fencing ------------------------------------------------------------------------------------------------------


def test_the_fence_powers_off_without_shutdown_then_deallocates(world: World) -> None:
    fake, server, _ = world
    fake.settle_reads = 3
    provider = _provider(server)

    provider.fence(VM, deadline=30)

    assert _posts(fake) == [("powerOff", {"skipShutdown": "true"}), ("deallocate", {})]
    assert fake.power(VM) == "deallocating"  # begun, not awaited
    assert provider.instance_state(VM) is InstanceState.STOPPED  # fenced throughout: we powered it off first
    for _ in range(3):
        provider.instance_state(VM)
    assert fake.power(VM) == "deallocated"
    provider.calls.clear()
    provider.fence(VM, deadline=10)
    assert not [op for op in provider.calls if "begin_" in op]


def test_throttled_while_polling_the_fence_waits_on_the_vm_itself(world: World) -> None:
    """The poller's 429 is not the fence's failure (the power-off goes on at Azure): the VM's own state decides, and
    the deallocation is begun only after a power-off seen to succeed."""
    fake, server, _ = world
    fake.settle_reads = 2
    fake.fail_next(429, count=1, retry_after=0, path="/operations/")
    provider = _provider(server)

    provider.fence(VM, deadline=30)

    assert provider.instance_state(VM) is InstanceState.STOPPED and fake.power(VM) == "stopped"
    assert _posts(fake) == [("powerOff", {"skipShutdown": "true"})]


def test_someone_elses_deallocation_is_not_a_fence(world: World) -> None:
    """Without our power-off first, a VM deallocating may still run its guest: it is STOPPING, not fenced."""
    fake, server, _ = world
    fake.set_vm(VM, power="deallocating")
    assert _provider(server).instance_state(VM) is InstanceState.STOPPING


def test_the_graceful_fence_is_a_site_option(world: World) -> None:
    fake, server, _ = world
    _provider(server, options={"fence": "deallocate"}).fence(VM, deadline=10)
    assert _posts(fake) == [("deallocate", {})]


def test_409_to_a_power_off_of_a_deallocated_vm_counts_once_the_vm_reads_stopped(world: World) -> None:
    fake, server, _ = world
    fake.before_next("/powerOff$", lambda: fake.set_vm(VM, power="deallocated"))  # deallocated after our read
    provider = _provider(server)

    provider.fence(VM, deadline=10)

    assert _posts(fake) == [("powerOff", {"skipShutdown": "true"})]  # refused with 409; nothing after it
    assert provider.instance_state(VM) is InstanceState.STOPPED and fake.power(VM) == "deallocated"
    assert provider.writes["compute.virtual_machines.begin_power_off"] == 0


def test_a_power_off_call_that_timed_out_never_counts_as_fenced(world: World) -> None:
    fake, server, _ = world
    fake.hang_next(50.0, count=20, path="/powerOff$")
    provider = _provider(server, call_deadline=1.0, request_timeout=20.0)
    with pytest.raises(ProviderError, match=r"begin_power_off still failing when its [01]\.\ds deadline ran out"):
        provider.fence(VM, deadline=1.0)
    assert fake.power(VM) == "running" and provider.writes["compute.virtual_machines.begin_power_off"] == 0


def test_409_while_the_vm_still_runs_is_not_a_fence(world: World) -> None:
    fake, server, _ = world
    fake.fail_next(409, path="/powerOff$")  # Conflict: another operation holds the VM
    provider = _provider(server)
    with pytest.raises(ProviderError, match=r"instance spot-engine-1: compute.virtual_machines.begin_power_off "
                                            r"failed: .*Conflict"):
        provider.fence(VM, deadline=10)
    assert fake.power(VM) == "running"


# --- Resource Health: a source of its own -------------------------------------------------------------------------


def test_resource_health_unavailable_downs_the_replica_signal(world: World) -> None:
    fake, server, clock = world
    provider = _provider(server, clock)
    replicas = {VM: "spot-azure"}
    assert _from(provider.observe(replicas), RESOURCE_HEALTH) == [("spot-azure", Status.OK)]

    fake.inject_resource_health(VM, "Unavailable", "Unplanned")
    observations = provider.observe(replicas)
    assert _from(observations, RESOURCE_HEALTH) == [("spot-azure", Status.DOWN)]
    assert _from(observations, provider.source)[1] == ("spot-azure", Status.OK)  # the instance view: running
    [down] = [o for o in observations if o.source == RESOURCE_HEALTH]
    assert "Unavailable (Unplanned)" in down.detail

    fake.inject_resource_health(VM, "Degraded", "Planned")
    assert _from(provider.observe(replicas), RESOURCE_HEALTH) == [("spot-azure", Status.DEGRADED)]


def test_a_status_azure_checked_long_ago_has_no_vote(world: World) -> None:
    fake, server, clock = world
    fake.inject_resource_health(VM, "Unavailable", "Unplanned", reported_at=NOW - 3600)
    provider = _provider(server, clock, options={"signal_stale_after": "15m"})
    [stale] = [o for o in provider.observe({VM: "spot-azure"}) if o.source == RESOURCE_HEALTH]
    assert stale.status is Status.UNKNOWN and "stale: Azure last checked it 3600s ago" in stale.detail


def test_a_failing_resource_health_api_keeps_its_last_answer_until_stale(world: World) -> None:
    fake, server, clock = world
    provider = _provider(server, clock, options={"signal_stale_after": "5m"})
    fake.inject_resource_health(VM, "Unavailable", "Unplanned")
    assert _from(provider.observe({VM: "spot-azure"}), RESOURCE_HEALTH) == [("spot-azure", Status.DOWN)]

    fake.fail_next(503, count=10_000, path="availabilityStatuses")
    provider.call_deadline = 0.5
    clock.now += 120
    assert _from(provider.observe({VM: "spot-azure"}), RESOURCE_HEALTH) == [("spot-azure", Status.DOWN)]
    clock.now += 181
    [gone] = [o for o in provider.observe({VM: "spot-azure"}) if o.source == RESOURCE_HEALTH]
    assert gone.status is Status.UNKNOWN and gone.cause is None


def test_resource_health_of_a_vm_it_does_not_know_is_unknown_alone(world: World) -> None:
    fake, server, clock = world
    fake.add_vm("spot-engine-2", "2")
    fake.fail_next(404, path="spot-engine-2/providers/Microsoft.ResourceHealth")
    provider = _provider(server, clock)
    observed = _from(provider.observe({VM: "spot-azure", "spot-engine-2": "spot-azure-2"}), RESOURCE_HEALTH)
    assert observed == [("spot-azure", Status.OK), ("spot-azure-2", Status.UNKNOWN)]


def test_a_drill_in_another_process_injects_over_http(world: World) -> None:
    _, server, clock = world
    requests.post(f"{server.url}/_fake/resource-health/{VM}", json={"state": "Unavailable", "reason": "Unplanned"},
                  timeout=5)
    assert _from(_provider(server, clock).observe({VM: "spot-azure"}), RESOURCE_HEALTH) == [("spot-azure", Status.DOWN)]
