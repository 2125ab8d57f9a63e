"""A Compute Engine REST API fake, in the API's own JSON shapes, for the subset `providers.gcp` uses.

Served paths (under `/compute/v1/projects/{project}`):
`GET regions/{r}`, `GET zones/{z}`, `GET zones/{z}/instances/{i}`, `POST zones/{z}/instances/{i}/start|stop`,
`GET zones/{z}/operations/{op}`. Errors are `{"error": {"code", "message", "errors": [{"reason", ...}]}}`.

Start and stop behave like the real API: the POST answers a RUNNING operation and moves the instance to STAGING or
STOPPING; after `settle_reads` further reads of the operation or the instance, the operation is DONE and the
instance RUNNING or TERMINATED. `fail_operations` makes the next operations finish with an error (as a quota or
capacity failure would).

State endpoints for drills (another process): `POST /_fake/zones/{zone} {"status": "DOWN"}`,
`POST /_fake/regions/{region} {"status": "DOWN"}`, `POST /_fake/instances/{zone}/{name} {"status": "RUNNING"}`
(creates it if absent), `GET /_fake/state`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from orchestrator.testbed.fakes._http import FakeApi, FakeRequest, FakeResponse

API = "https://www.googleapis.com/compute/v1"
ROUTE = re.compile(
    r"^/compute/v1/projects/(?P<project>[^/]+)/(?:"
    r"regions/(?P<region>[^/]+)"
    r"|zones/(?P<zone>[^/]+)(?:/instances/(?P<instance>[^/]+)(?:/(?P<verb>start|stop))?"
    r"|/operations/(?P<operation>[^/]+))?)$"
)
REASONS = {400: "badRequest", 401: "authError", 403: "forbidden", 404: "notFound", 409: "conflict",
           429: "rateLimitExceeded", 500: "backendError", 503: "backendError"}


@dataclass
class _Operation:
    name: str
    zone: str
    instance: str
    kind: str
    reads_left: int
    final: str  # the instance status once done
    error: tuple[str, str] | None = None  # (code, message) if it fails
    done: bool = False


class GcpComputeFake(FakeApi):
    """One project with regions, zones and instances. `GcpComputeFake(project, region, zones)`; add instances with
    `add_instance(name, zone)`; make things fail with `set_zone`, `set_region`, `fail_operations`, `fail_next`,
    `hang_next`."""

    def __init__(
        self,
        project: str = "exchange-prod",
        region: str = "asia-east2",
        zones: tuple[str, ...] = ("asia-east2-a",),
        settle_reads: int = 1,
    ) -> None:
        super().__init__()
        self.project, self.region, self.settle_reads = project, region, settle_reads
        self._initial_zones = zones
        self.reset()

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.region_status = "UP"
            self.zones: dict[str, str] = dict.fromkeys(self._initial_zones, "UP")
            self.instances: dict[tuple[str, str], str] = {}
            self.operations: dict[str, _Operation] = {}
            self._failures: list[tuple[str, str]] = []
            self._ids = itertools.count(1000)

    # --- state, for tests and drills -----------------------------------------------------------------------------

    def add_instance(self, name: str, zone: str | None = None, status: str = "RUNNING") -> None:
        with self.lock:
            zone = zone or next(iter(self.zones))
            self.zones.setdefault(zone, "UP")
            self.instances[(zone, name)] = status

    def set_zone(self, zone: str, status: str) -> None:
        with self.lock:
            self.zones[zone] = status

    def set_region(self, status: str) -> None:
        with self.lock:
            self.region_status = status

    def instance_status(self, name: str, zone: str | None = None) -> str:
        with self.lock:
            return self.instances[(zone or next(iter(self.zones)), name)]

    def fail_operations(self, count: int = 1, code: str = "ZONE_RESOURCE_POOL_EXHAUSTED",
                        message: str = "The zone does not have enough resources available") -> None:
        with self.lock:
            self._failures.extend([(code, message)] * count)

    # --- the API -------------------------------------------------------------------------------------------------

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        match = ROUTE.match(request.path)
        if match is None or match["project"] != self.project:
            return self._error(404, f"The resource '{request.path}' was not found")
        if match["region"]:
            return self._get_region(match["region"])
        zone = match["zone"]
        if zone not in self.zones:
            return self._error(404, f"The resource 'projects/{self.project}/zones/{zone}' was not found")
        if match["operation"]:
            return self._get_operation(zone, match["operation"])
        if match["instance"] is None:
            return FakeResponse(200, self._zone_json(zone))
        instance = match["instance"]
        if (zone, instance) not in self.instances:
            return self._error(404, f"The resource 'projects/{self.project}/zones/{zone}/instances/{instance}' "
                                    "was not found")
        if match["verb"] and request.method == "POST":
            return FakeResponse(200, self._operation_json(self._begin(zone, instance, match["verb"])))
        self._settle(lambda op: op.zone == zone and op.instance == instance)
        return FakeResponse(200, self._instance_json(zone, instance))

    def _get_region(self, region: str) -> FakeResponse:
        if region != self.region:
            return self._error(404, f"The resource 'projects/{self.project}/regions/{region}' was not found")
        zones = [f"{API}/projects/{self.project}/zones/{zone}" for zone in self.zones]
        return FakeResponse(200, {"kind": "compute#region", "id": "1220", "name": region,
                                  "status": self.region_status, "zones": zones,
                                  "selfLink": f"{API}/projects/{self.project}/regions/{region}"})

    def _get_operation(self, zone: str, name: str) -> FakeResponse:
        operation = self.operations.get(name)
        if operation is None or operation.zone != zone:
            return self._error(404, f"The resource 'projects/{self.project}/zones/{zone}/operations/{name}' "
                                    "was not found")
        self._settle(lambda op: op.name == name)
        return FakeResponse(200, self._operation_json(operation))

    def _begin(self, zone: str, instance: str, verb: str) -> _Operation:
        current = self.instances[(zone, instance)]
        final = "RUNNING" if verb == "start" else "TERMINATED"
        name = f"operation-{next(self._ids)}-{verb}"
        noop = current == final
        error = self._failures.pop(0) if self._failures and not noop else None
        operation = _Operation(name, zone, instance, verb, 0 if noop else self.settle_reads, final, error)
        if not noop:
            self.instances[(zone, instance)] = "STAGING" if verb == "start" else "STOPPING"
        self.operations[name] = operation
        self._settle(lambda op: op is operation, read=False)
        return operation

    def _settle(self, which: Any, read: bool = True) -> None:
        """Count one read against each pending operation `which` selects; finish those that have waited enough."""
        for operation in self.operations.values():
            if operation.done or not which(operation):
                continue
            if read:
                operation.reads_left -= 1
            if operation.reads_left <= 0:
                operation.done = True
                key = (operation.zone, operation.instance)
                if operation.error is None:
                    self.instances[key] = operation.final
                elif operation.kind == "start":
                    self.instances[key] = "TERMINATED"  # capacity failure: it never came up

    # --- shapes --------------------------------------------------------------------------------------------------

    def _zone_json(self, zone: str) -> dict[str, Any]:
        return {"kind": "compute#zone", "id": "2231", "name": zone, "status": self.zones[zone],
                "region": f"{API}/projects/{self.project}/regions/{self.region}",
                "selfLink": f"{API}/projects/{self.project}/zones/{zone}"}

    def _instance_json(self, zone: str, instance: str) -> dict[str, Any]:
        link = f"{API}/projects/{self.project}/zones/{zone}/instances/{instance}"
        return {"kind": "compute#instance", "id": str(abs(hash(instance)) % 10**12), "name": instance,
                "zone": f"{API}/projects/{self.project}/zones/{zone}", "status": self.instances[(zone, instance)],
                "machineType": f"{API}/projects/{self.project}/zones/{zone}/machineTypes/c3-standard-8",
                "selfLink": link}

    def _operation_json(self, operation: _Operation) -> dict[str, Any]:
        zone_link = f"{API}/projects/{self.project}/zones/{operation.zone}"
        body: dict[str, Any] = {
            "kind": "compute#operation", "id": str(abs(hash(operation.name)) % 10**12), "name": operation.name,
            "zone": zone_link, "operationType": operation.kind,
            "targetLink": f"{zone_link}/instances/{operation.instance}",
            "status": "DONE" if operation.done else "RUNNING", "progress": 100 if operation.done else 0,
            "selfLink": f"{zone_link}/operations/{operation.name}",
        }
        if operation.done and operation.error is not None:
            code, message = operation.error
            body["error"] = {"errors": [{"code": code, "message": message}]}
        return body

    def _error_body(self, status: int, message: str) -> Any:
        reason = REASONS.get(status, "backendError")
        return {"error": {"code": status, "message": message,
                          "errors": [{"message": message, "domain": "global", "reason": reason}]}}

    def _error(self, status: int, message: str) -> FakeResponse:
        return FakeResponse(status, self._error_body(status, message))

    # --- drill control -------------------------------------------------------------------------------------------

    def _control_state(self, request: FakeRequest) -> FakeResponse:
        parts = request.path.strip("/").split("/")[1:]
        status = str(request.json().get("status", "")) if request.method == "POST" else ""
        if parts == ["state"]:
            return FakeResponse(200, {"region": self.region_status, "zones": self.zones,
                                      "instances": {f"{z}/{i}": s for (z, i), s in self.instances.items()}})
        if len(parts) == 2 and parts[0] == "zones" and status:
            self.set_zone(parts[1], status)
        elif len(parts) == 2 and parts[0] == "regions" and status:
            self.set_region(status)
        elif len(parts) == 3 and parts[0] == "instances" and status:
            self.add_instance(parts[2], parts[1], status)
        else:
            return super()._control_state(request)
        return FakeResponse(200, {"ok": True})
