"""Azure adapter against the ARM fake: the real azure-mgmt-compute client, pollers included, over http://127.0.0.1."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from provider_helpers import FAST, VirtualClock, azure_site

from orchestrator.core.errors import ConfigError, ProviderAuthError, ProviderError
from orchestrator.core.model import Site, Status
from orchestrator.testbed.fakes import AzureComputeFake, FakeServer, werkzeug_handler
from providers import Capability, InstanceState, build_provider, check_capabilities, plan_recorder

pytestmark = pytest.mark.timeout(60)
HUNG, REQUEST_TIMEOUT = 50.0, 20.0  # a server that never answers in time, and a request timeout far above 1 s

Azure = tuple[AzureComputeFake, FakeServer]


def _provider(server: FakeServer, **kwargs: Any) -> Any:
    return build_provider(azure_site(server), **{**FAST, **kwargs})


def test_long_running_operations_are_awaited(azure: Azure) -> None:
    fake, server = azure
    fake.settle_reads = 3
    provider = _provider(server)

    provider.stop("spot-engine-1", deadline=10)
    assert fake.power("spot-engine-1") == "deallocated"
    provider.start("spot-engine-1", deadline=10)
    assert fake.power("spot-engine-1") == "running"
    assert provider.writes == {"compute.virtual_machines.begin_deallocate": 1,
                               "compute.virtual_machines.begin_start": 1}
    assert sum(1 for method, path in fake.requests if "/operations/" in path) >= 4


def test_allocation_failure_is_an_error_and_shows_in_health(azure: Azure) -> None:
    fake, server = azure
    provider = _provider(server)
    provider.stop("spot-engine-1", deadline=10)
    fake.fail_operations(1)

    with pytest.raises(ProviderError, match="AllocationFailed"):
        provider.start("spot-engine-1", deadline=10)
    replica = provider.observe({"spot-engine-1": "spot-azure"})[1]
    assert replica.status is Status.DOWN and "ProvisioningState/failed/AllocationFailed" in replica.detail


def test_power_off_mode(azure: Azure) -> None:
    fake, server = azure
    provider = build_provider(azure_site(server, options={**azure_site(server).options, "stop": "power_off",
                                                          "deallocate_after_fence": False}), **FAST)
    with plan_recorder(provider) as planned:
        provider.fence("spot-engine-1", deadline=5)
        provider.stop("spot-engine-1", deadline=5)
    assert [(call.operation, call.params["skip_shutdown"]) for call in planned] == [
        ("compute.virtual_machines.begin_power_off", True), ("compute.virtual_machines.begin_power_off", False)]

    provider.stop("spot-engine-1", deadline=10)
    assert fake.power("spot-engine-1") == "stopped"
    assert provider.instance_state("spot-engine-1") is InstanceState.STOPPED


def test_zone_health_is_derived_and_not_declared(azure: Azure) -> None:
    fake, server = azure
    provider = _provider(server)
    assert provider.zone_health() == {"1": Status.OK, "2": Status.OK}
    fake.set_vm("spot-engine-2", provisioning="failed/InternalOperationError")
    assert provider.zone_health() == {"1": Status.OK, "2": Status.DOWN}
    assert build_provider(azure_site(server, zones=("1", "3")), **FAST).zone_health()["3"] is Status.UNKNOWN
    with pytest.raises(ConfigError, match="site azure-hk: provider azure lacks zone_health"):
        check_capabilities(provider, {Capability.ZONE_HEALTH})


def test_429_waits_for_retry_after_and_5xx_is_retried(azure: Azure) -> None:
    fake, server = azure
    fake.fail_next(429, count=1, retry_after=2, path="/virtualMachines/")
    fake.fail_next(500, count=1, path="/virtualMachines/")
    clock = VirtualClock()
    provider = _provider(server, call_deadline=20.0, **clock.kwargs())

    assert provider.instance_state("spot-engine-1") is InstanceState.RUNNING
    assert provider.calls["compute.virtual_machines.get"] == 3
    assert clock.sleeps[0] >= 2.0


def test_hung_request_times_out_within_the_deadline(azure: Azure) -> None:
    fake, server = azure
    fake.hang_next(HUNG, count=5)
    provider = _provider(server, call_deadline=1.0, request_timeout=REQUEST_TIMEOUT)
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"1\.0s deadline ran out"):
        provider.instance_state("spot-engine-1")
    # The call deadline, not the request's own timeout nor the server, ended the wait. How close to 1 s it gave
    # up is measured by `make bench` (benchmarks/deadline_bench.py): a busy machine stretches it.
    assert time.monotonic() - started < REQUEST_TIMEOUT


def test_auth_failures(azure: Azure) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    fake, server = azure
    fake.fail_next(403, path="/virtualMachines/")
    with pytest.raises(ProviderAuthError, match=r"site azure-hk: instance spot-engine-1: .*AuthorizationFailed"):
        _provider(server).instance_state("spot-engine-1")

    class NoIdentity:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")

    provider = _provider(server, credential=NoIdentity())
    with pytest.raises(ProviderAuthError, match="Azure credential unusable: DefaultAzureCredential failed"):
        provider.instance_state("spot-engine-1")
    assert [o.status for o in provider.observe({"spot-engine-1": "spot-azure"})] == [Status.UNKNOWN] * 3


def test_site_needs_subscription_and_resource_group() -> None:
    """Built in code rather than from a validated file, a site's options still go through the adapter's model."""
    with pytest.raises(ConfigError) as missing:
        build_provider(Site("azure-hk", "azure", "eastasia", ("1",)))
    assert str(missing.value) == "site azure-hk: subscription: Field required; resource_group: Field required"
    with pytest.raises(ConfigError) as wrong:
        build_provider(Site("azure-hk", "azure", "eastasia", options={"subscription": 7, "resource_group": "rg",
                                                                      "projct": "p"}))
    assert str(wrong.value).startswith("site azure-hk: subscription: Input should be a valid string; projct: Extra")
    with pytest.raises(ConfigError, match="site azure-hk: fence: Input should be 'power_off' or 'deallocate'"):
        build_provider(Site("azure-hk", "azure", "eastasia", options={"subscription": "s", "resource_group": "rg",
                                                                      "fence": "x"}))


def test_fake_as_a_pytest_httpserver_handler_gets_the_placeholder_token(httpserver: Any) -> None:
    fake = AzureComputeFake()
    fake.add_vm("spot-engine-1")
    httpserver.expect_request(re.compile(".*")).respond_with_handler(werkzeug_handler(fake))
    site = Site("azure-hk", "azure", "eastasia", ("1",), options={"subscription": fake.subscription,
                                                                  "resource_group": "trading"},
                endpoint_url=httpserver.url_for("").rstrip("/"))
    provider = build_provider(site, **FAST)

    provider.stop("spot-engine-1", deadline=10)
    main = [o for o in provider.observe({"spot-engine-1": "spot-azure"}) if o.source == provider.source]
    assert [o.status for o in main] == [Status.OK, Status.DOWN]
    request, _ = httpserver.log[0]
    assert request.headers["Authorization"] == "Bearer placeholder-token"
