"""Azure: virtual machines through azure-mgmt-compute.

Instance health is one call per VM: `virtual_machines.get(expand="instanceView")` gives the zone, the power state
(`PowerState/running`, `.../deallocated`, ...), the provisioning state (`ProvisioningState/failed/...` means the
platform could not do what was asked, e.g. AllocationFailed) and, when the Application Health extension is
installed, `vmHealth`. An instance is `ok` when running with nothing failed or unhealthy.

Zone health: Azure has no zone status API. What we can map is derived from the resource group's VMs
(`virtual_machines.list`, one call): a zone whose VMs all show a failed provisioning state is `down`, some
`degraded`, none `ok`, and a zone with no VM of ours is `unknown`. That is weaker than the zone status of AWS or GCP,
so this adapter does not declare `zone_health`.

Resource Health (azure-mgmt-resourcehealth, `availabilityStatuses/current` of each VM) is a source of its own,
`provider:azure-resource-health` (`providers.base.PolledSignal`: read every `signal_interval`, its last answer voting
until `signal_stale_after`): Available is `ok`, Degraded `degraded`, Unavailable `down`, Unknown `unknown`; a status
Azure last checked (`reportedTime`) longer ago than `signal_stale_after` is `unknown`, not the old verdict.

Fencing (option `fence`) is the fastest stop ARM offers: `powerOff` with `skipShutdown=true` (the guest is not asked
to shut down; the VM stays allocated), then, once the VM is stopped, a `deallocate` begun without waiting
(`deallocate_after_fence`): the VM counts as fenced while it deallocates (we remember that we powered it off). A 409
to the power-off (ARM refuses to power off a deallocated VM) counts as fenced only when a fresh read then shows the
VM stopped or deallocated; otherwise it is an error. `fence: deallocate` is the graceful fence of old. A planned stop
(option `stop`) deallocates, or powers off with a guest shutdown. Long-running operations are awaited through the
SDK's poller, which waits what ARM's `Retry-After` says between reads (`poll_interval` when it says nothing), bounded
by the deadline; an operation not seen to succeed never counts.

Credentials: an injected `credential`, else `DefaultAzureCredential` (environment, workload or managed identity,
Azure CLI; one per process, shared by every Azure site). A plain-http loopback endpoint (a local fake) gets a
placeholder credential, so that no real token is ever sent to it; see `_LoopbackBearerPolicy` for why it also
replaces the authentication policy there.
An instance is a VM name in the site's resource group, or `resource_group/name`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.compute import ComputeManagementClient

from orchestrator.core.errors import FailoverError, ProviderAuthError, ProviderError, ProviderNotFound
from orchestrator.core.model import Observation, Site, Status
from providers.base import (
    Capability,
    CloudProvider,
    InstanceHealth,
    InstanceState,
    PolledSignal,
    aggregate_zones,
    loopback_http,
)
from providers.calls import parse_retry_after
from providers.options import AzureOptions

log = logging.getLogger(__name__)

SCOPE = "https://management.azure.com/.default"
POWER_STATES = {
    "running": InstanceState.RUNNING,
    "starting": InstanceState.PENDING,
    "stopping": InstanceState.STOPPING,
    "deallocating": InstanceState.STOPPING,
    "stopped": InstanceState.STOPPED,
    "deallocated": InstanceState.STOPPED,
}
FENCED_OFF = "azure-fenced-off"  # the kind of `names` entry: a VM our fence powered off (then deallocated)
AVAILABILITY = {"Available": Status.OK, "Degraded": Status.DEGRADED, "Unavailable": Status.DOWN}


_DEFAULT: list[Any] = []  # DefaultAzureCredential, made once per process
_DEFAULT_LOCK = threading.Lock()


def _default_credential() -> Any:
    """`DefaultAzureCredential` once per process: every Azure site shares its chain (environment, workload and
    managed identity, Azure CLI: a subprocess) and the tokens it caches."""
    with _DEFAULT_LOCK:
        if not _DEFAULT:
            from azure.identity import DefaultAzureCredential

            _DEFAULT.append(DefaultAzureCredential())
        return _DEFAULT[0]


class StaticTokenCredential:
    """A credential that always returns the same placeholder token: for local fakes only, never a real cloud."""

    def __init__(self, token: str = "placeholder-token") -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


class _LoopbackBearerPolicy(SansIOHTTPPolicy[Any, Any]):
    """Sets the bearer header for a plain-http loopback endpoint.

    The SDK's bearer policy refuses non-TLS URLs (and its retry policy retries that refusal for ~5 s). The way around
    it per call, `enforce_https=False`, would have to reach every call, including the pollers of long-running
    operations, and one forgotten call fails slowly. Replacing the policy once, at client construction, and only
    for an http://127.0.0.1-style endpoint, covers every request and leaves production clients untouched.
    """

    def __init__(self, credential: Any) -> None:
        self._credential = credential
        self._client: Any = None

    def on_request(self, request: PipelineRequest[Any]) -> None:
        token = self._credential.get_token(SCOPE)
        request.http_request.headers["Authorization"] = f"Bearer {token.token}"


class AzureProvider(CloudProvider):
    """VM health and start/stop for one site (a subscription, a resource group, a region and its zones).
    Options: `AzureOptions` (`subscription`, `resource_group`, `fence`, `stop`, `resource_health`, ...). Extra
    keyword: `credential` (a TokenCredential, for tests)."""

    kind: ClassVar[str] = "azure"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.INSTANCE_HEALTH, Capability.START, Capability.STOP, Capability.FENCE}
    )

    def __init__(self, site: Site, *, options: AzureOptions | None = None, credential: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(site, **kwargs)
        self.options = options if options is not None else AzureOptions.parse(site.options, self.scope)
        self.subscription: str = self.options.subscription
        self.resource_group: str = self.options.resource_group
        self._credential = credential
        self._client: Any = None
        self._health_client: Any = None
        self._resource_health = PolledSignal(
            f"provider:{self.kind}-resource-health", self.options.signal_interval, self.options.signal_stale_after,
            self._read_resource_health) if self.options.resource_health else None
        self._replicas: dict[str, str] = {}  # instance -> replica, of the poll in progress

    def _vms(self) -> Any:
        """The `virtual_machines` operations; the client is built on first use (inside a counted call, so a
        credential problem is mapped like any other), with its own retries off (ours count)."""
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client.virtual_machines

    def _availability(self) -> Any:
        """The Resource Health `availability_statuses` operations, built on first use like `_vms`."""
        with self._lock:
            if self._health_client is None:
                from azure.mgmt.resourcehealth import ResourceHealthMgmtClient

                self._health_client = self._new_client(ResourceHealthMgmtClient)
            return self._health_client.availability_statuses

    def _new_client(self, cls: Any = ComputeManagementClient) -> Any:
        options: dict[str, Any] = {"retry_total": 0, "polling_interval": self.poll_interval}
        credential = self._credential
        if loopback_http(self.site.endpoint_url):
            credential = credential or StaticTokenCredential()
            options["authentication_policy"] = _LoopbackBearerPolicy(credential)
        elif credential is None:
            credential = _default_credential()
        if self.site.endpoint_url:
            options["base_url"] = self.site.endpoint_url
        return cls(credential, self.subscription, **options)

    def _sdk(self, method: str) -> Callable[..., Any]:
        return lambda **kwargs: getattr(self._vms(), method)(**kwargs)

    def _timeout_kwargs(self, timeout: float) -> dict[str, Any]:
        return {"connection_timeout": timeout, "read_timeout": timeout}

    def _where(self, instance: str) -> tuple[str, str]:
        group, _, name = instance.rpartition("/")
        return group or self.resource_group, name

    # --- health --------------------------------------------------------------------------------------------------

    def _zone_statuses(self) -> Mapping[str, Status]:
        """Derived from the resource group's VMs: see the module docstring."""
        vms = self._read("compute.virtual_machines.list", lambda **kw: list(self._vms().list(**kw)),
                         subject=f"resource group {self.resource_group}", resource_group_name=self.resource_group)
        by_zone: dict[str, dict[str, Status]] = {}
        for vm in vms:
            failed = str(getattr(vm.properties, "provisioning_state", "") or "") == "Failed"
            for zone in vm.zones or ():
                by_zone.setdefault(zone, {})[vm.name] = Status.DOWN if failed else Status.OK
        zones = self.site.zones or tuple(sorted(by_zone))
        return {zone: aggregate_zones(by_zone[zone])[0] for zone in zones if zone in by_zone}

    def _instance_healths(self, instances: Sequence[str]) -> Mapping[str, InstanceHealth]:
        healths = {}
        for instance in instances:
            group, name = self._where(instance)
            try:
                vm = self._read("compute.virtual_machines.get", self._sdk("get"), subject=f"instance {instance}",
                                resource_group_name=group, vm_name=name, expand="instanceView")
            except ProviderNotFound:
                continue
            healths[instance] = self._fenced_view(_health(instance, vm), _power(vm))
        return healths

    def _fenced_view(self, health: InstanceHealth, power: str) -> InstanceHealth:
        """A VM our fence powered off stays fenced while it deallocates (`deallocating` is STOPPING otherwise: from
        a running VM the guest may still be shutting down). Seen running or starting again, it is forgotten."""
        if health.state in (InstanceState.RUNNING, InstanceState.PENDING):
            if self._recall(FENCED_OFF, health.instance) is not None:
                self._forget(FENCED_OFF, health.instance)
            return health
        if power == "deallocating" and self._recall(FENCED_OFF, health.instance) is not None:
            return InstanceHealth(health.instance, InstanceState.STOPPED, health.status,
                                  health.detail + " (after our power-off fence)")
        return health

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def _start(self, instance: str) -> None:
        self._operation(instance, "begin_start")

    def _stop(self, instance: str) -> None:
        if self.options.stop == "power_off":
            self._operation(instance, "begin_power_off", skip_shutdown=False)
        else:
            self._operation(instance, "begin_deallocate")

    def _fence(self, instance: str) -> None:
        """Power off without a guest shutdown; then, the VM stopped, begin deallocating it (see the module doc)."""
        if self.options.fence == "deallocate":
            self._operation(instance, "begin_deallocate")
            return
        try:
            succeeded = self._operation(instance, "begin_power_off", skip_shutdown=True)
        except ProviderError as exc:
            if not _conflict(exc.__cause__) or not self._not_running(instance):
                raise
            # Stopped, or on its way there: the caller's state poll says when it is fenced, never this answer.
            log.info("%s: power-off of %s refused (409); the VM is no longer running", self.scope, instance)
            return
        if (succeeded or self.dry_run) and self.options.deallocate_after_fence:  # a plan lists what a run makes
            if not self.dry_run:
                self._remember(FENCED_OFF, instance, "power_off")
            group, name = self._where(instance)
            try:  # begun, not awaited: polling=False starts no poller thread
                self._write("compute.virtual_machines.begin_deallocate", self._sdk("begin_deallocate"),
                            subject=f"instance {instance}", resource_group_name=group, vm_name=name, polling=False)
            except FailoverError as exc:
                log.warning("%s: %s is fenced (powered off) but its deallocation was not begun: %s",
                            self.scope, instance, exc)

    def _not_running(self, instance: str) -> bool:
        """A fresh read after a 409: a VM stopped, deallocated or deallocating makes the refusal no error (the fence
        then waits for STOPPED as for any stop); a VM still running makes it one (another operation holds it)."""
        try:
            state = self.instance_state(instance)
        except FailoverError:
            return False
        return state in (InstanceState.STOPPED, InstanceState.STOPPING)

    def _operation(self, instance: str, method: str, **extra: Any) -> bool:
        """Begin a long-running operation and wait for it within the deadline; True when it was seen to succeed.
        A transient failure while polling is not final (the operation goes on at Azure): the caller's state poll
        decides (False). An operation still in progress at the deadline is an error: never counted done."""
        group, name = self._where(instance)
        operation = f"compute.virtual_machines.{method}"
        subject = f"instance {instance}"
        poller = self._write(operation, self._sdk(method), subject=subject,
                             resource_group_name=group, vm_name=name, **extra)
        if poller is None:
            return False
        deadline = self._operation_deadline()
        try:
            poller.result(timeout=deadline.remaining())
        except Exception as exc:
            if not self._retryable(exc):
                raise self._mapped(exc, operation, subject, deadline) from exc
            log.info("%s: polling %s for %s failed (%s); checking the VM instead", self.scope, method, instance, exc)
            return False
        if not poller.done():
            raise ProviderError(f"{self.scope}: {subject}: {method} still in progress after {deadline.seconds:g}s")
        return True

    # --- other sources -------------------------------------------------------------------------------------------

    def _signals(self, instances: Mapping[str, str], at: float) -> list[Observation]:
        if self._resource_health is None:
            return []
        self._replicas = dict(instances)
        return self._resource_health.observe(at, list(instances.values()))

    def _read_resource_health(self, now: float) -> list[tuple[str, Status, str]]:
        """Each replica's Resource Health; a VM Resource Health does not know (404) is `unknown` alone. Raises (the
        whole source unknown) when the API itself fails."""
        triples = []
        for instance, replica in self._replicas.items():
            group, name = self._where(instance)
            uri = (f"subscriptions/{self.subscription}/resourceGroups/{group}/providers/Microsoft.Compute/"
                   f"virtualMachines/{name}")
            try:
                status = self._read("resourcehealth.availability_statuses.get_by_resource",
                                    lambda **kw: self._availability().get_by_resource(**kw),
                                    subject=f"instance {instance}", resource_uri=uri)
            except ProviderNotFound:
                triples.append((replica, Status.UNKNOWN, f"{instance}: no Resource Health status (404)"))
                continue
            triples.append((replica, *_availability(instance, status, now, self.options.signal_stale_after)))
        return triples

    # --- errors --------------------------------------------------------------------------------------------------

    def _translate(self, exc: Exception) -> FailoverError | None:
        return azure_error(exc)

    def _retryable(self, exc: Exception) -> bool:
        return azure_retryable(exc)


    def _retry_after(self, exc: Exception) -> float | None:
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        millis = headers.get("x-ms-retry-after-ms")
        if millis is not None:
            return parse_retry_after(str(float(millis) / 1000))
        return parse_retry_after(headers.get("Retry-After"))


def _availability(instance: str, status: Any, now: float, stale_after: float) -> tuple[Status, str]:
    """(status, detail) from an AvailabilityStatus; a status Azure checked too long ago is `unknown`."""
    properties = getattr(status, "properties", None)
    raw = getattr(properties, "availability_state", None) or "Unknown"
    state = str(getattr(raw, "value", raw))  # the SDK's enum, or a plain string for a value it does not know
    reason = getattr(properties, "reason_type", None)
    summary = getattr(properties, "summary", None)
    detail = f"{instance}: {state}" + (f" ({reason})" if reason else "") + (f": {summary}" if summary else "")
    reported = getattr(properties, "reported_time", None)
    if reported is not None and now - reported.timestamp() > stale_after:
        return Status.UNKNOWN, f"{detail}; stale: Azure last checked it {now - reported.timestamp():.0f}s ago"
    return AVAILABILITY.get(state, Status.UNKNOWN), detail


def _conflict(exc: BaseException | None) -> bool:
    """A 409 from ARM (OperationNotAllowed, Conflict): the request clashed with the VM's state."""
    return isinstance(exc, HttpResponseError) and exc.status_code == 409


def _power(vm: Any) -> str:
    """The power state word of the instance view (`running`, `deallocating`, ...), or `unknown`."""
    view = getattr(vm.properties, "instance_view", None)
    codes = [status.code or "" for status in (getattr(view, "statuses", None) or [])]
    return next((code.split("/", 1)[1] for code in codes if code.startswith("PowerState/")), "unknown")


def _health(instance: str, vm: Any) -> InstanceHealth:
    view = getattr(vm.properties, "instance_view", None)
    codes = [status.code or "" for status in (getattr(view, "statuses", None) or [])]
    power = _power(vm)
    state = POWER_STATES.get(power, InstanceState.UNKNOWN)
    failed = [code for code in codes if code.startswith("ProvisioningState/failed")]
    vm_health = getattr(getattr(getattr(view, "vm_health", None), "status", None), "code", None)
    zone = ",".join(vm.zones or ()) or "none"
    detail = f"zone {zone}; power {power}" + (f"; {', '.join(failed)}" if failed else "")
    if vm_health:
        detail += f"; {vm_health}"
    if state is InstanceState.UNKNOWN:
        status = Status.UNKNOWN
    elif state is not InstanceState.RUNNING or failed or vm_health == "HealthState/unhealthy":
        status = Status.DOWN
    else:
        status = Status.OK
    return InstanceHealth(instance, state, status, detail)


def _code(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    return str(getattr(error, "code", None) or exc.status_code)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def azure_error(exc: Exception) -> FailoverError | None:
    """Our error for what the SDK raised (None: not one we name); shared by the adapter and the DNS router."""
    if isinstance(exc, ClientAuthenticationError):
        return ProviderAuthError(f"Azure credential unusable: {_first_line(exc)}")
    if isinstance(exc, ResourceNotFoundError):
        return ProviderNotFound(f"not found ({_code(exc)})")
    if isinstance(exc, HttpResponseError) and exc.status_code == 403:
        return ProviderAuthError(f"Azure refused the permission ({_code(exc)})")
    return None


def azure_retryable(exc: Exception) -> bool:
    """Whether the SDK's error is worth another attempt; shared by the adapter and the DNS router."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True  # no connection, or no answer in time
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    return status is not None and (status == 429 or status >= 500)
