"""An Azure Resource Manager fake for the virtual machine calls `providers.azure` makes, in ARM's JSON shapes.

Served paths (any `api-version`), under `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute`:
`GET virtualMachines` (list), `GET virtualMachines/{vm}` (`$expand=instanceView` adds the instance view),
`GET virtualMachines/{vm}/instanceView`, `POST virtualMachines/{vm}/start|deallocate|powerOff` (`skipShutdown` is
recorded in `received`), `PUT virtualMachines/{vm}` (create or update: a new VM answers 201 `Creating` with
`Azure-AsyncOperation`, is `starting` until the operation succeeds, then running; its `tags`, `hardwareProfile`,
`storageProfile` and `networkProfile` are kept and shown; a PUT of an existing VM updates its tags, 200); the
operation status
`GET /subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/operations/{id}` (with `monitor=true`: the
Location URL); and Resource Health's
`GET .../virtualMachines/{vm}/providers/Microsoft.ResourceHealth/availabilityStatuses/current`. Errors are
`{"error": {"code", "message"}}`; a 429 is the Compute resource provider's throttling answer (`OperationNotAllowed`
with a `TooManyRequests` detail naming the policy, and `x-ms-ratelimit-remaining-resource` headers); a powerOff of a
deallocated VM is refused with 409 `OperationNotAllowed`, as Azure does.

Long-running operations behave like ARM's: the POST answers 202 with `Azure-AsyncOperation`, `Location` and
`Retry-After` (`retry_after`: whole seconds, as ARM sends them and the SDK reads them; default 0), and the VM shows
the transitional power state (starting, deallocating, stopping); the operation says `InProgress` (with
`Retry-After`) until `settle_reads` reads of it or of the VM, then `Succeeded` and the VM is in its final state.
`fail_operations` makes the next ones fail (AllocationFailed by default: the VM stays deallocated with a failed
provisioning state).

Resource Health follows the VM (running: Available; stopped or deallocated: Unavailable, UserInitiated) unless
`inject_resource_health(vm_name, state, reason)` says otherwise (the drill calls it after the provider's delay).

State endpoints for drills: `POST /_fake/vms/{name} {"power": "running", "zone": "1", "provisioning": "succeeded",
"health": "unhealthy"}` (creates the VM if absent), `POST /_fake/resource-health/{name} {"state": "Unavailable",
"reason": "Unplanned"}`, `GET /_fake/state`.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.testbed.fakes._http import FakeApi, FakeRequest, FakeResponse
from orchestrator.testbed.fakes.gcp import rfc3339

VM_ROUTE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/virtualMachines"
    r"(?:/(?P<vm>[^/]+)(?:/(?P<action>start|deallocate|powerOff|instanceView"
    r"|providers/Microsoft\.ResourceHealth/availabilityStatuses/current))?)?$",
    re.IGNORECASE,
)
REASON_TYPES = ("Unplanned", "Planned", "UserInitiated")
OP_ROUTE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/operations/(?P<op>[^/]+)$",
    re.IGNORECASE,
)
TRANSITIONS = {  # action → (transitional power state, final power state)
    "start": ("starting", "running"),
    "deallocate": ("deallocating", "deallocated"),
    "poweroff": ("stopping", "stopped"),
}
CODES = {400: "BadRequest", 401: "AuthenticationFailed", 403: "AuthorizationFailed", 404: "ResourceNotFound",
         409: "Conflict", 429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}


@dataclass
class _Vm:
    zone: str
    power: str = "running"
    provisioning: str = "succeeded"  # or "failed/AllocationFailed"
    health: str | None = None  # the Application Health extension's verdict: "healthy", "unhealthy", or none
    resource_health: tuple[str, str, float | None] | None = None  # injected (state, reason, reported at)
    tags: dict[str, str] | None = None
    profile: dict[str, Any] | None = None  # what a PUT gave: hardwareProfile, storageProfile, networkProfile


@dataclass
class _Operation:
    vm: str
    final: str
    reads_left: int
    error: tuple[str, str] | None = None
    done: bool = False


class AzureComputeFake(FakeApi):
    """One subscription and resource group with zonal VMs: `AzureComputeFake(subscription, resource_group,
    location)`, then `add_vm(name, zone)`; faults with `set_vm`, `fail_operations`, `fail_next`, `hang_next`."""

    def __init__(
        self,
        subscription: str = "00000000-0000-0000-0000-000000000000",
        resource_group: str = "trading",
        location: str = "eastasia",
        settle_reads: int = 1,
        clock: Callable[[], float] = time.time,
        retry_after: int = 0,
    ) -> None:
        super().__init__()
        self.subscription, self.resource_group, self.location = subscription, resource_group, location
        self.settle_reads = settle_reads
        self.retry_after = retry_after
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.vms: dict[str, _Vm] = {}
            self.operations: dict[str, _Operation] = {}
            self._failures: list[tuple[str, str]] = []
            self._ids = itertools.count(1)
            self.on_create: Callable[[str, dict[str, Any]], None] | None = None  # (name, body) of a new VM

    # --- state, for tests and drills -----------------------------------------------------------------------------

    def add_vm(self, name: str, zone: str = "1", power: str = "running") -> None:
        with self.lock:
            self.vms[name] = _Vm(zone, power)

    def set_vm(self, name: str, *, power: str | None = None, provisioning: str | None = None,
               zone: str | None = None, health: str | None = None) -> None:
        with self.lock:
            vm = self.vms.setdefault(name, _Vm(zone or "1"))
            vm.power = power or vm.power
            vm.provisioning = provisioning or vm.provisioning
            vm.zone = zone or vm.zone
            vm.health = health or vm.health

    def power(self, name: str) -> str:
        with self.lock:
            return self.vms[name].power

    def inject_resource_health(self, vm_name: str, state: str, reason: str, *,
                               reported_at: float | None = None) -> None:
        """What Resource Health says of a VM from now on: `state` Available, Degraded, Unavailable or Unknown;
        `reason` a reasonType (Unplanned, Planned, UserInitiated) or a summary (then the reasonType is Unplanned).
        `reported_at`: when Azure last checked (default: at every read, i.e. fresh)."""
        with self.lock:
            self.vms[vm_name].resource_health = (state, reason, reported_at)

    def fail_operations(self, count: int = 1, code: str = "AllocationFailed",
                        message: str = "Allocation failed. We do not have sufficient capacity in this zone.") -> None:
        with self.lock:
            self._failures.extend([(code, message)] * count)

    # --- the API -------------------------------------------------------------------------------------------------

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        op_match = OP_ROUTE.match(request.path)
        if op_match is not None and op_match["sub"] == self.subscription:
            return self._operation_status(op_match["op"], request)
        match = VM_ROUTE.match(request.path)
        if match is None or match["sub"] != self.subscription or match["rg"].lower() != self.resource_group.lower():
            return self._error(404, "ResourceGroupNotFound", f"Resource group '{match and match['rg']}' not found.")
        if match["vm"] is None:
            return FakeResponse(200, {"value": [self._vm_json(name, expand=False) for name in self.vms]})
        name, action = match["vm"], (match["action"] or "").lower()
        if name not in self.vms and request.method == "PUT" and not action:
            return self._create_or_update(name, request)
        if name not in self.vms:
            return self._error(404, "ResourceNotFound", f"The Resource 'Microsoft.Compute/virtualMachines/{name}' "
                                                        f"under resource group '{self.resource_group}' was not found.")
        if action in TRANSITIONS and request.method == "POST":
            if action == "poweroff" and self.vms[name].power in ("deallocated", "deallocating"):
                return self._error(409, "OperationNotAllowed", f"Operation 'powerOff' is not allowed on VM '{name}' "
                                   "since the VM is deallocated or marked to be deallocated.")
            return self._begin(name, action, request)
        if request.method == "PUT" and not action:
            return self._create_or_update(name, request)
        if action.startswith("providers/"):
            return FakeResponse(200, self._availability_status(name))
        self._settle(lambda op: op.vm == name)
        if action == "instanceview":
            return FakeResponse(200, self._instance_view(name))
        return FakeResponse(200, self._vm_json(name, expand=request.query.get("$expand") == "instanceView"))

    def _create_or_update(self, name: str, request: FakeRequest) -> FakeResponse:
        """virtualMachines.createOrUpdate: 201 and a long-running operation for a new VM, 200 for an existing one
        (its tags replaced). A body without hardwareProfile.vmSize or a location is 400 `InvalidParameter`."""
        body = request.json()
        properties = body.get("properties") or {}
        if name in self.vms:
            vm = self.vms[name]
            vm.tags = dict(body.get("tags") or vm.tags or {})
            return FakeResponse(200, self._vm_json(name, expand=False))
        if not (properties.get("hardwareProfile") or {}).get("vmSize") or not body.get("location"):
            return self._error(400, "InvalidParameter", "The value of parameter vmSize (or location) is invalid.")
        zones = body.get("zones") or ["1"]
        self.vms[name] = _Vm(str(zones[0]), power="starting", provisioning="creating",
                             tags=dict(body.get("tags") or {}),
                             profile={key: properties.get(key) for key in ("hardwareProfile", "storageProfile",
                                                                            "networkProfile")})
        response = self._begin(name, "start", request)
        response.status, response.body = 201, self._vm_json(name, expand=False)
        if self.on_create is not None:
            self.on_create(name, body)
        return response

    def _begin(self, name: str, action: str, request: FakeRequest) -> FakeResponse:
        vm = self.vms[name]
        via, final = TRANSITIONS[action]
        op_id = f"{next(self._ids):08d}-0000-0000-0000-000000000000"
        noop = vm.power == final
        error = self._failures.pop(0) if self._failures and not noop else None
        operation = _Operation(name, final, 0 if noop else self.settle_reads, error)
        self.operations[op_id] = operation
        if not noop:
            vm.power = via
        self._settle(lambda op: op is operation, read=False)
        base = f"http://{request.host}/subscriptions/{self.subscription}/providers/Microsoft.Compute/locations/" \
               f"{self.location}/operations/{op_id}"
        headers = {"Azure-AsyncOperation": f"{base}?api-version=2024-07-01",
                   "Location": f"{base}?monitor=true&api-version=2024-07-01", "Retry-After": str(self.retry_after)}
        return FakeResponse(202, None, headers)

    def _operation_status(self, op_id: str, request: FakeRequest) -> FakeResponse:
        operation = self.operations.get(op_id)
        if operation is None:
            return self._error(404, "ResourceNotFound", f"operation {op_id} not found")
        self._settle(lambda op: op is operation)
        pending = {"Retry-After": str(self.retry_after)}
        if request.query.get("monitor") == "true":
            return FakeResponse(200 if operation.done else 202, None, {} if operation.done else pending)
        body: dict[str, Any] = {"name": op_id, "startTime": "2026-11-27T00:00:00Z",
                                "status": "InProgress" if not operation.done else "Succeeded"}
        if operation.done and operation.error is not None:
            code, message = operation.error
            body.update(status="Failed", error={"code": code, "message": message})
        return FakeResponse(200, body, {} if operation.done else pending)

    def _settle(self, which: Any, read: bool = True) -> None:
        for operation in self.operations.values():
            if operation.done or not which(operation):
                continue
            if read:
                operation.reads_left -= 1
            if operation.reads_left <= 0:
                operation.done = True
                vm = self.vms[operation.vm]
                if operation.error is None:
                    vm.power, vm.provisioning = operation.final, "succeeded"
                else:
                    vm.power, vm.provisioning = "deallocated", f"failed/{operation.error[0]}"

    # --- shapes --------------------------------------------------------------------------------------------------

    def _vm_json(self, name: str, expand: bool) -> dict[str, Any]:
        vm = self.vms[name]
        properties: dict[str, Any] = {
            "vmId": f"{abs(hash(name)) % 10**8:08d}-0000-0000-0000-000000000000",
            "provisioningState": "Failed" if vm.provisioning.startswith("failed")
            else "Creating" if vm.provisioning == "creating" else "Succeeded",
            "hardwareProfile": {"vmSize": "Standard_D8s_v5"},
        }
        properties.update({key: value for key, value in (vm.profile or {}).items() if value})
        if expand:
            properties["instanceView"] = self._instance_view(name)
        body = {"id": f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/"
                      f"Microsoft.Compute/virtualMachines/{name}",
                "name": name, "type": "Microsoft.Compute/virtualMachines", "location": self.location,
                "zones": [vm.zone], "properties": properties}
        if vm.tags is not None:
            body["tags"] = vm.tags
        return body

    def _instance_view(self, name: str) -> dict[str, Any]:
        vm = self.vms[name]
        provisioning = {"code": f"ProvisioningState/{vm.provisioning}", "level": "Info",
                        "displayStatus": "Provisioning succeeded"}
        if vm.provisioning.startswith("failed"):
            provisioning.update(level="Error", displayStatus="Provisioning failed")
        view: dict[str, Any] = {"computerName": name, "statuses": [
            provisioning,
            {"code": f"PowerState/{vm.power}", "level": "Info", "displayStatus": f"VM {vm.power}"},
        ]}
        if vm.health:
            view["vmHealth"] = {"status": {"code": f"HealthState/{vm.health}", "level": "Info"}}
        return view

    def _availability_status(self, name: str) -> dict[str, Any]:
        """Resource Health's `availabilityStatuses/current` for a VM, in the API's shape (2025-05-01)."""
        vm = self.vms[name]
        now = self.clock()
        if vm.resource_health is not None:
            state, reason, reported = vm.resource_health
        elif vm.power in ("running", "starting"):
            state, reason, reported = "Available", "", None
        else:
            state, reason, reported = "Unavailable", "UserInitiated", None
        reason_type = reason if reason in REASON_TYPES else ("Unplanned" if reason else "")
        summary = reason if reason and reason not in REASON_TYPES else {
            "Available": "There aren't any known Azure platform problems affecting this virtual machine.",
            "Unavailable": "This virtual machine is unavailable.",
            "Degraded": "This virtual machine is degraded.",
        }.get(state, "We are currently unable to determine the health of this virtual machine.")
        properties: dict[str, Any] = {
            "availabilityState": state, "title": state, "summary": summary,
            "occuredTime": rfc3339(reported if reported is not None else now),
            "reportedTime": rfc3339(reported if reported is not None else now),
        }
        if state != "Available":
            properties.update(reasonType=reason_type or "Unplanned", reasonChronicity="Transient",
                              context="Platform" if reason_type != "UserInitiated" else "Customer",
                              category="Unplanned" if reason_type != "Planned" else "Planned")
        vm_id = (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/"
                 f"Microsoft.Compute/virtualMachines/{name}")
        return {"id": f"{vm_id}/providers/Microsoft.ResourceHealth/availabilityStatuses/current", "name": "current",
                "type": "Microsoft.ResourceHealth/AvailabilityStatuses", "location": self.location,
                "properties": properties}

    def _error_body(self, status: int, message: str) -> Any:
        if status == 429:  # the Compute resource provider's throttling answer
            return {"error": {"code": "OperationNotAllowed", "message": "The server rejected the request because "
                              "too many requests have been received for this subscription.",
                              "details": [{"code": "TooManyRequests", "target": "HighCostGet3Min",
                                           "message": '{"operationGroup":"HighCostGet3Min","allowedRequestCount":'
                                                      '200,"measuredRequestCount":211}'}]}}
        return {"error": {"code": CODES.get(status, "InternalServerError"), "message": message}}

    def _error_headers(self, status: int) -> dict[str, str]:
        if status != 429:
            return {}
        return {"x-ms-ratelimit-remaining-resource": "Microsoft.Compute/HighCostGet3Min;0,"
                                                     "Microsoft.Compute/HighCostGet30Min;789",
                "x-ms-ratelimit-remaining-subscription-reads": "11990", "x-ms-request-charge": "1"}

    def _error(self, status: int, code: str, message: str) -> FakeResponse:
        return FakeResponse(status, {"error": {"code": code, "message": message}})

    # --- drill control -------------------------------------------------------------------------------------------

    def _control_state(self, request: FakeRequest) -> FakeResponse:
        parts = request.path.strip("/").split("/")[1:]
        if parts == ["state"]:
            return FakeResponse(200, {name: vars(vm) for name, vm in self.vms.items()})
        if len(parts) == 2 and parts[0] == "vms" and request.method == "POST":
            spec = request.json()
            self.set_vm(parts[1], power=spec.get("power"), provisioning=spec.get("provisioning"),
                        zone=spec.get("zone"), health=spec.get("health"))
            return FakeResponse(200, {"ok": True})
        if len(parts) == 2 and parts[0] == "resource-health" and request.method == "POST":
            spec = request.json()
            self.inject_resource_health(parts[1], str(spec["state"]), str(spec.get("reason", "")),
                                        reported_at=spec.get("reported_at"))
            return FakeResponse(200, {"ok": True})
        return super()._control_state(request)
