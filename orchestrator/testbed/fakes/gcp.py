"""A Compute Engine and Service Health REST API fake, in the APIs' own JSON shapes, for what `providers.gcp` uses.

Served paths (under `/compute/v1/projects/{project}`):
`GET regions/{r}`, `GET zones/{z}`, `GET zones/{z}/instances/{i}`, `POST zones/{z}/instances/{i}/start|stop`
(`?noGracefulShutdown=true` is recorded in `received`), `GET zones/{z}/operations/{op}`, and
`GET aggregated/operations` (the host-error operations, `filter=operationType="compute.instances.hostError"`),
`POST zones/{z}/instances` (insert: an Instance body, `requestId` and `sourceInstanceTemplate` honoured; a PENDING
`insert` operation, the instance PROVISIONING until it is DONE, then RUNNING with a `networkIP`) and
`GET zones/{z}/instances` (list, `filter=labels.KEY="VALUE"`);
and Personalized Service Health's `GET /v1/projects/{project}/locations/global/events` (`filter=state=ACTIVE`,
`pageSize`, `pageToken`). Errors are `{"error": {"code", "message", "status", "errors": [{"reason", "domain"}]}}`;
a 429 is Google's quota answer (`RESOURCE_EXHAUSTED`, reason `rateLimitExceeded`, domain `usageLimits`).

Start and stop behave like the real API: the POST answers a PENDING operation and moves the instance to STAGING or
STOPPING; each read of the operation (or of the instance) counts, the operation is RUNNING from the first read and
DONE after `settle_reads` reads, the instance then RUNNING or TERMINATED. `fail_operations` makes the next operations
finish DONE with `error.errors`, `httpErrorStatusCode` and `httpErrorMessage` (as a capacity failure would).
`inject_service_health_event(zone, started, ended)` publishes an incident on Compute Engine in a zone (the drill
calls it after the provider's own delay: status pages confirm late); `inject_host_error(name)` records a host error.

State endpoints for drills (another process): `POST /_fake/zones/{zone} {"status": "DOWN"}`,
`POST /_fake/regions/{region} {"status": "DOWN"}`, `POST /_fake/instances/{zone}/{name} {"status": "RUNNING"}`
(creates it if absent), `POST /_fake/service-health {"zone": "asia-east2-a", "started": 1764565200.0, "ended": null}`,
`POST /_fake/host-errors/{zone}/{name} {"at": null}`, `GET /_fake/state`.
"""

from __future__ import annotations

import datetime
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.testbed.fakes._http import FakeApi, FakeRequest, FakeResponse

API = "https://www.googleapis.com/compute/v1"
ROUTE = re.compile(
    r"^/compute/v1/projects/(?P<project>[^/]+)/(?:"
    r"regions/(?P<region>[^/]+)"
    r"|zones/(?P<zone>[^/]+)(?:/instances/(?P<instance>[^/]+)(?:/(?P<verb>start|stop))?"
    r"|/operations/(?P<operation>[^/]+)|/(?P<collection>instances))?"
    r"|(?P<aggregated>aggregated/operations))$"
)
EVENTS_ROUTE = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/global/events$")
REASONS = {400: "badRequest", 401: "authError", 403: "forbidden", 404: "notFound", 409: "conflict",
           429: "rateLimitExceeded", 500: "backendError", 503: "backendError"}
STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
            409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
HTTP_MESSAGES = {400: "BAD REQUEST", 403: "FORBIDDEN", 409: "CONFLICT", 412: "PRECONDITION FAILED",
                 503: "SERVICE UNAVAILABLE"}
COMPUTE_PRODUCT = {"productName": "Google Compute Engine", "id": "L3MkI8HmmuIHhD3vjX2f"}
HOST_ERROR = "compute.instances.hostError"


def rfc3339(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Operation:
    name: str
    zone: str
    instance: str
    kind: str
    reads_left: int
    final: str  # the instance status once done
    error: tuple[str, str, int] | None = None  # (code, message, HTTP status) if it fails
    done: bool = False
    reads: int = 0  # reads of the operation so far: PENDING before the first, RUNNING after
    inserted: float = 0.0


@dataclass
class _Event:
    name: str
    zone: str
    started: float
    ended: float | None


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.project, self.region, self.settle_reads = project, region, settle_reads
        self.clock = clock
        self._initial_zones = zones
        self.reset()

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.region_status = "UP"
            self.zones: dict[str, str] = dict.fromkeys(self._initial_zones, "UP")
            self.instances: dict[tuple[str, str], str] = {}
            self.operations: dict[str, _Operation] = {}
            self._failures: list[tuple[str, str, int]] = []
            self._ids = itertools.count(1000)
            self.events: list[_Event] = []
            self.host_errors: list[_Operation] = []
            self.created: dict[tuple[str, str], dict[str, Any]] = {}  # inserted instances' labels, network, body
            self._requests_seen: dict[str, str] = {}  # requestId -> operation name (Compute's idempotency)
            self.on_insert: Callable[[str, str, dict[str, Any]], None] | None = None  # (zone, name, body)

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
                        message: str = "The zone does not have enough resources available",
                        http_status: int = 503) -> None:
        with self.lock:
            self._failures.extend([(code, message, http_status)] * count)

    def inject_service_health_event(self, zone: str, started: float, ended: float | None = None) -> None:
        """Publish a confirmed Compute Engine incident in `zone` that started at `started` (epoch seconds); it is
        ACTIVE until `ended` (None: still open), CLOSED after."""
        with self.lock:
            self.events.append(_Event(f"event-{next(self._ids)}", zone, started, ended))

    def inject_host_error(self, name: str, zone: str | None = None, at: float | None = None) -> None:
        """Record a host error on an instance (a DONE `compute.instances.hostError` operation inserted at `at`)."""
        with self.lock:
            zone = zone or next(iter(self.zones))
            operation = _Operation(f"systemevent-{next(self._ids)}", zone, name, HOST_ERROR, 0, "", done=True,
                                   inserted=self.clock() if at is None else at)
            self.host_errors.append(operation)

    # --- the API -------------------------------------------------------------------------------------------------

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        events = EVENTS_ROUTE.match(request.path)
        if events is not None and events["project"] == self.project:
            return self._list_events(request)
        match = ROUTE.match(request.path)
        if match is None or match["project"] != self.project:
            return self._error(404, f"The resource '{request.path}' was not found")
        if match["aggregated"]:
            return self._aggregated_operations(request)
        if match["region"]:
            return self._get_region(match["region"])
        zone = match["zone"]
        if zone not in self.zones:
            return self._error(404, f"The resource 'projects/{self.project}/zones/{zone}' was not found")
        if match["operation"]:
            return self._get_operation(zone, match["operation"])
        if match["collection"]:
            return self._insert(zone, request) if request.method == "POST" else self._list(zone, request)
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
        operation.reads += 1
        self._settle(lambda op: op.name == name)
        return FakeResponse(200, self._operation_json(operation))

    def _list_events(self, request: FakeRequest) -> FakeResponse:
        """Service Health's events.list: newest first, `filter=state=ACTIVE|CLOSED`, pages of `pageSize`."""
        wanted = re.fullmatch(r"\s*state\s*=\s*(\w+)\s*", request.query.get("filter", ""))
        events = [self._event_json(event) for event in sorted(self.events, key=lambda e: -e.started)]
        if wanted:
            events = [event for event in events if event["state"] == wanted[1]]
        size = max(1, min(100, int(request.query.get("pageSize") or 10)))
        start = int(request.query.get("pageToken") or 0)
        body: dict[str, Any] = {"events": events[start:start + size]}
        if start + size < len(events):
            body["nextPageToken"] = str(start + size)
        return FakeResponse(200, body)

    def _aggregated_operations(self, request: FakeRequest) -> FakeResponse:
        wanted = re.search(r'operationType\s*=\s*"?([\w.]+)"?', request.query.get("filter", ""))
        items: dict[str, Any] = {}
        for zone in self.zones:
            found = [self._operation_json(op) for op in [*self.operations.values(), *self.host_errors]
                     if op.zone == zone and (wanted is None or self._operation_type(op) == wanted[1])]
            items[f"zones/{zone}"] = {"operations": found} if found else {"warning": {
                "code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope 'zones/" + zone + "'"}}
        return FakeResponse(200, {"kind": "compute#operationAggregatedList", "id": f"projects/{self.project}/"
                                  "aggregated/operations", "items": items})

    def _insert(self, zone: str, request: FakeRequest) -> FakeResponse:
        """instances.insert: the same `requestId` answers the same operation (no second instance), a name taken
        is 409 `alreadyExists`."""
        seen = self._requests_seen.get(request.query.get("requestId", ""))
        if seen is not None:
            return FakeResponse(200, self._operation_json(self.operations[seen]))
        body = request.json()
        name = str(body.get("name", ""))
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name):
            return self._error(400, f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex "
                                    "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
        if (zone, name) in self.instances:
            return self._error(409, f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' already "
                                    "exists")
        template = request.query.get("sourceInstanceTemplate")
        if template is None and "machineType" not in body:
            return self._error(400, "Invalid value for field 'resource.machineType': ''. Machine type required.")
        self.instances[(zone, name)] = "PROVISIONING"
        self.created[(zone, name)] = {"labels": dict(body.get("labels") or {}), "template": template, "body": body,
                                      "networkIP": f"10.140.0.{len(self.created) + 10}"}
        operation = _Operation(f"operation-{next(self._ids)}-insert", zone, name, "insert", self.settle_reads,
                               "RUNNING", self._failures.pop(0) if self._failures else None, inserted=self.clock())
        self.operations[operation.name] = operation
        if request.query.get("requestId"):
            self._requests_seen[request.query["requestId"]] = operation.name
        if self.on_insert is not None:
            self.on_insert(zone, name, body)
        return FakeResponse(200, self._operation_json(operation))

    def _list(self, zone: str, request: FakeRequest) -> FakeResponse:
        wanted = re.fullmatch(r'\s*labels\.([\w-]+)\s*=\s*"?([\w-]*)"?\s*', request.query.get("filter", ""))
        items = [self._instance_json(z, name) for (z, name) in self.instances if z == zone
                 and (wanted is None or self.created.get((z, name), {}).get("labels", {}).get(wanted[1]) == wanted[2])]
        return FakeResponse(200, {"kind": "compute#instanceList", "id": f"projects/{self.project}/zones/{zone}/"
                                  "instances", "items": items,
                                  "selfLink": f"{API}/projects/{self.project}/zones/{zone}/instances"})

    def _begin(self, zone: str, instance: str, verb: str) -> _Operation:
        current = self.instances[(zone, instance)]
        final = "RUNNING" if verb == "start" else "TERMINATED"
        name = f"operation-{next(self._ids)}-{verb}"
        noop = current == final
        error = self._failures.pop(0) if self._failures and not noop else None
        operation = _Operation(name, zone, instance, verb, 0 if noop else self.settle_reads, final, error,
                               inserted=self.clock())
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
                elif operation.kind in ("start", "insert"):
                    self.instances[key] = "TERMINATED"  # capacity failure: it never came up

    # --- shapes --------------------------------------------------------------------------------------------------

    def _zone_json(self, zone: str) -> dict[str, Any]:
        return {"kind": "compute#zone", "id": "2231", "name": zone, "status": self.zones[zone],
                "region": f"{API}/projects/{self.project}/regions/{self.region}",
                "selfLink": f"{API}/projects/{self.project}/zones/{zone}"}

    def _instance_json(self, zone: str, instance: str) -> dict[str, Any]:
        link = f"{API}/projects/{self.project}/zones/{zone}/instances/{instance}"
        body: dict[str, Any] = {"kind": "compute#instance", "id": str(abs(hash(instance)) % 10**12), "name": instance,
                "zone": f"{API}/projects/{self.project}/zones/{zone}", "status": self.instances[(zone, instance)],
                "machineType": f"{API}/projects/{self.project}/zones/{zone}/machineTypes/c3-standard-8",
                "selfLink": link}
        created = self.created.get((zone, instance))
        if created is not None:
            body["labels"] = created["labels"]
            nic: dict[str, Any] = {"name": "nic0",
                                   "network": f"{API}/projects/{self.project}/global/networks/default"}
            if body["status"] == "RUNNING":
                nic["networkIP"] = created["networkIP"]
            body["networkInterfaces"] = [nic]
        return body

    @staticmethod
    def _operation_type(operation: _Operation) -> str:
        return operation.kind  # "start", "stop" (as Compute names them), or compute.instances.hostError

    def _operation_json(self, operation: _Operation) -> dict[str, Any]:
        zone_link = f"{API}/projects/{self.project}/zones/{operation.zone}"
        status = "DONE" if operation.done else "RUNNING" if operation.reads else "PENDING"
        body: dict[str, Any] = {
            "kind": "compute#operation", "id": str(abs(hash(operation.name)) % 10**12), "name": operation.name,
            "zone": zone_link, "operationType": self._operation_type(operation),
            "targetLink": f"{zone_link}/instances/{operation.instance}",
            "status": status, "progress": 100 if operation.done else 0, "user": "failover@exchange-prod.iam",
            "insertTime": rfc3339(operation.inserted), "selfLink": f"{zone_link}/operations/{operation.name}",
        }
        if status != "PENDING":
            body["startTime"] = rfc3339(operation.inserted)
        if operation.done:
            body["endTime"] = rfc3339(max(operation.inserted, self.clock()))
        if operation.kind == HOST_ERROR:
            body["statusMessage"] = "Instance terminated by Compute Engine."
        if operation.done and operation.error is not None:
            code, message, http_status = operation.error
            body["error"] = {"errors": [{"code": code, "message": message}]}
            body["httpErrorStatusCode"] = http_status
            body["httpErrorMessage"] = HTTP_MESSAGES.get(http_status, "ERROR")
        return body

    def _event_json(self, event: _Event) -> dict[str, Any]:
        """A Personalized Service Health Event (v1) for a confirmed Compute Engine incident in one zone."""
        closed = event.ended is not None and event.ended <= self.clock()
        body: dict[str, Any] = {
            "name": f"projects/{self.project}/locations/global/events/{event.name}",
            "title": f"Compute Engine instances unreachable in {event.zone}",
            "description": "We are investigating an issue with Google Compute Engine.",
            "category": "INCIDENT", "detailedCategory": "CONFIRMED_INCIDENT",
            "state": "CLOSED" if closed else "ACTIVE", "detailedState": "RESOLVED" if closed else "CONFIRMED",
            "eventImpacts": [{"product": COMPUTE_PRODUCT, "location": {"locationName": event.zone}}],
            "relevance": "RELATED",
            "updates": [{"updateTime": rfc3339(event.started), "title": "Investigating",
                         "description": "We are investigating an issue with Google Compute Engine."}],
            "updateTime": rfc3339(event.ended if closed and event.ended is not None else event.started),
            "startTime": rfc3339(event.started),
        }
        if event.ended is not None:
            body["endTime"] = rfc3339(event.ended)
        return body

    def _error_body(self, status: int, message: str) -> Any:
        reason = REASONS.get(status, "backendError")
        domain = "usageLimits" if status == 429 else "global"
        if status == 429:
            message = ("Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service "
                       f"'compute.googleapis.com' for consumer 'project_number:{abs(hash(self.project)) % 10**12}'.")
        return {"error": {"code": status, "message": message, "status": STATUSES.get(status, "UNKNOWN"),
                          "errors": [{"message": message, "domain": domain, "reason": reason}]}}

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
        elif parts == ["service-health"] and request.method == "POST":
            spec = request.json()
            self.inject_service_health_event(str(spec["zone"]), float(spec.get("started") or self.clock()),
                                             None if spec.get("ended") is None else float(spec["ended"]))
        elif len(parts) == 3 and parts[0] == "host-errors" and request.method == "POST":
            self.inject_host_error(parts[2], parts[1], request.json().get("at"))
        else:
            return super()._control_state(request)
        return FakeResponse(200, {"ok": True})
