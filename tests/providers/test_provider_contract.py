"""The contract every provider adapter keeps, run on each adapter against its fake (tooz style).

The runbook relies on exactly these behaviours, whatever the cloud: observations in one shape, start/stop that
return only once the state holds, fences that are idempotent, missing instances named clearly, dry runs that
write nothing, and a failing control plane reported as unknown rather than as a down site.
"""

from __future__ import annotations

import pytest
from provider_helpers import Harness

from orchestrator.core.errors import ProviderError, ProviderNotFound
from orchestrator.core.model import Observation, Status
from providers import Capability, CloudProvider, InstanceState, check_capabilities, plan_recorder

pytestmark = pytest.mark.timeout(60)

WRITE_WORDS = ("start", "stop", "deallocate", "power_off", "put_record")


def _writes(h: Harness) -> int:
    return sum(h.provider.writes.values())


def _main(provider: CloudProvider, instances: dict[str, str]) -> list[Observation]:
    """What the adapter's main source (`provider:<kind>`) says; its other sources are checked on their own."""
    return [o for o in provider.observe(instances) if o.source == provider.source]


def _observe(h: Harness) -> tuple[Status, Status, str]:
    site, replica = _main(h.provider, {h.instance: "spot-replica"})
    return site.status, replica.status, replica.detail


def test_observe_healthy_site_and_replica(harness: Harness) -> None:
    everything = harness.provider.observe({harness.instance: "spot-replica"})
    observations = [o for o in everything if o.source == harness.provider.source]

    assert [o.subject for o in observations] == [harness.provider.site.name, "spot-replica"]
    assert observations == everything[:2]  # the main source first; other sources after it
    assert {o.source for o in observations} == {f"provider:{harness.provider.kind}"}
    assert {o.at for o in observations} == {1_700_000_000.0}
    replica = observations[1]
    assert replica.status is Status.OK, replica.detail
    assert harness.instance in replica.detail and "running" in replica.detail
    if Capability.ZONE_HEALTH in harness.provider.capabilities:
        assert observations[0].status is Status.OK, observations[0].detail


def test_stop_observe_down_then_start_again(harness: Harness) -> None:
    provider = harness.provider
    provider.stop(harness.instance, deadline=10)
    assert provider.instance_state(harness.instance) is InstanceState.STOPPED
    assert _observe(harness)[1] is Status.DOWN

    provider.start(harness.instance, deadline=10)
    assert provider.instance_state(harness.instance) is InstanceState.RUNNING
    assert _observe(harness)[1] is Status.OK
    assert _writes(harness) == 2


def test_start_of_a_running_instance_writes_nothing(harness: Harness) -> None:
    harness.provider.start(harness.instance, deadline=10)
    assert _writes(harness) == 0


def test_fence_is_idempotent(harness: Harness) -> None:
    provider = harness.provider
    provider.fence(harness.instance, deadline=10)
    assert provider.instance_state(harness.instance) in (InstanceState.STOPPED, InstanceState.TERMINATED)
    # Azure's fence powers off, then begins a deallocate (not awaited): two writes, the VM fenced after the first.
    later = 1 if getattr(getattr(provider, "options", None), "deallocate_after_fence", False) else 0
    assert _writes(harness) == 1 + later

    provider.calls.clear()
    provider.fence(harness.instance, deadline=10)
    provider.fence(harness.instance, deadline=10)
    assert _writes(harness) == 1 + later
    assert not [op for op in provider.calls if any(word in op for word in WRITE_WORDS)]


def test_missing_instance_is_not_found_and_named(harness: Harness) -> None:
    provider = harness.provider
    for action in (provider.instance_state, lambda i: provider.start(i, deadline=5),
                   lambda i: provider.stop(i, deadline=5), lambda i: provider.fence(i, deadline=5)):
        with pytest.raises(ProviderNotFound) as caught:
            action(harness.missing)
        message = str(caught.value)
        assert provider.site.name in message and harness.missing in message and "\n" not in message

    _site, present, absent = _main(provider, {harness.instance: "here", harness.missing: "ghost"})
    assert present.status is Status.OK
    assert absent.status is Status.DOWN and "not found" in absent.detail


def test_dry_run_records_the_writes_and_makes_none(harness: Harness) -> None:
    provider = harness.provider
    with plan_recorder(provider) as planned:
        provider.start(harness.instance, deadline=5)  # already running: nothing to plan
        provider.fence(harness.instance, deadline=5)
        provider.stop(harness.instance, deadline=5)

    later = 1 if getattr(getattr(provider, "options", None), "deallocate_after_fence", False) else 0
    assert len(planned) == 2 + later  # Azure's fence plans its deallocation too: the plan lists what a run makes
    assert all(any(word in call.operation for word in WRITE_WORDS) for call in planned)
    assert any(harness.instance.rsplit("/", 1)[-1] in str(call) for call in planned)
    assert _writes(harness) == 0 and not provider.dry_run
    assert provider.instance_state(harness.instance) is InstanceState.RUNNING


def test_failing_api_is_unknown_not_down(harness: Harness) -> None:
    harness.break_api()
    harness.provider.call_deadline = 0.5
    everything = harness.provider.observe({harness.instance: "spot-replica"})
    observations = [o for o in everything if o.source == harness.provider.source]

    assert [o.status for o in observations] == [Status.UNKNOWN, Status.UNKNOWN]
    assert all("provider API failed" in o.detail for o in observations)
    others = [o for o in everything if o.source != harness.provider.source]
    assert all(o.status is Status.UNKNOWN and o.cause is None for o in others)  # no vote, and no back-off of the main
    with pytest.raises(ProviderError) as caught:
        harness.provider.instance_state(harness.instance)
    assert type(caught.value) is ProviderError and caught.value.__cause__ is not None
    assert sum(harness.provider.calls.values()) > 3  # it retried


def test_impaired_zones_degrade_then_down_the_site(harness: Harness) -> None:
    if harness.impair_zone is None:
        pytest.skip(f"{harness.name} does not offer zone health")
    harness.impair_zone(harness.zones[0])
    assert _observe(harness)[0] is Status.DEGRADED
    harness.impair_zone(harness.zones[1])
    assert _observe(harness)[0] is Status.DOWN


def test_impaired_running_instance_is_down(harness: Harness) -> None:
    if harness.impair_instance is None:
        pytest.skip(f"{harness.name} reports no status checks beyond the lifecycle state")
    harness.impair_instance()
    _site, replica, _detail = _observe(harness)
    assert replica is Status.DOWN
    assert harness.provider.instance_state(harness.instance) is InstanceState.RUNNING


def test_calls_are_counted_and_resettable(harness: Harness) -> None:
    harness.provider.observe({harness.instance: "spot-replica"})
    assert sum(harness.provider.calls.values()) >= 2
    harness.provider.calls.clear()
    assert not harness.provider.calls


def test_declares_lifecycle_capabilities(harness: Harness) -> None:
    check_capabilities(harness.provider, {Capability.INSTANCE_HEALTH, Capability.START, Capability.STOP,
                                          Capability.FENCE})


def test_other_sources_are_sources_of_their_own(harness: Harness) -> None:
    """Each extra signal (Service Health, host errors, Resource Health) is one more independent source: its own
    name under `provider:`, one observation per subject it speaks of, never the main source's name."""
    everything = harness.provider.observe({harness.instance: "spot-replica"})
    others = [o for o in everything if o.source != harness.provider.source]
    assert all(o.source.startswith(f"provider:{harness.provider.kind}-") for o in others)
    per_source: dict[str, list[str]] = {}
    for o in others:
        per_source.setdefault(o.source, []).append(o.subject)
    assert all(len(subjects) == len(set(subjects)) for subjects in per_source.values())
    assert all(o.status is Status.OK for o in others), [o.detail for o in others]
