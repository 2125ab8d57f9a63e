"""An Azure DNS (Microsoft.Network/dnsZones) fake, in ARM's JSON shapes, for the calls `providers.dns_azure` makes.

Served paths (any `api-version`), under `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network`:
`GET dnsZones/{zone}`, `GET dnsZones/{zone}/recordsets[?$recordsetnamesuffix=]`, `GET|PUT|DELETE
dnsZones/{zone}/{type}/{name}`, and `GET dnsZones/{zone}/providers/Microsoft.Authorization/permissions` (what the
caller may do on the zone). Errors are `{"error": {"code", "message"}}`.

Record sets behave like ARM's: each has an `etag` that changes on every write; a PUT or DELETE with `If-Match` that
is not the current etag is 412 `PreconditionFailed`, a PUT with `If-None-Match: *` over an existing set is 412 too;
a CNAME beside another set of the same name (or another beside a CNAME) is 409 `Conflict`. A PUT answers 201 when it
created the set, 200 when it replaced it, and is applied when it answers (no long-running operation).

`granted` (ARM actions, wildcards allowed: a custom role's `Actions`): each call needs its action, else 403
`AuthorizationFailed`, and the permissions endpoint answers them. None: everything allowed.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterable
from typing import Any

from orchestrator.testbed.fakes._http import FakeApi, FakeRequest, FakeResponse
from providers.permissions.actions import allows

ROUTE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Network/+dnsZones/"
    r"(?P<zone>[^/]+)(?:/(?P<perms>providers/Microsoft\.Authorization/permissions)|/(?P<list>recordsets)"
    r"|/(?P<type>A|AAAA|CNAME|TXT|MX|NS|SOA|SRV|PTR|CAA)/(?P<name>[^/]+))?$",
    re.IGNORECASE,
)
RECORD_KEYS = {"A": "ARecords", "AAAA": "AAAARecords", "CNAME": "CNAMERecord"}
VERBS = {"GET": "read", "PUT": "write", "DELETE": "delete"}


class AzureDnsFake(FakeApi):
    """DNS zones in one subscription and resource group: `AzureDnsFake(subscription, resource_group)`, then
    `add_zone(name)`."""

    def __init__(self, subscription: str = "00000000-0000-0000-0000-000000000000", resource_group: str = "dns",
                 granted: Iterable[str] | None = None) -> None:
        super().__init__()
        self.subscription, self.resource_group = subscription, resource_group
        self.granted = None if granted is None else tuple(granted)
        self.reset()

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.zones: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}  # zone -> (TYPE, name) -> set
            self._etags = itertools.count(1)

    def add_zone(self, name: str) -> None:
        with self.lock:
            self.zones[name.lower()] = {}

    def record_sets(self, zone: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(rs) for rs in self.zones[zone.lower()].values()]

    def touch(self, zone: str, kind: str, name: str) -> None:
        """Someone else rewrote this set (its etag changes): our next write with the old etag must be refused."""
        with self.lock:
            self.zones[zone.lower()][(kind, name)]["etag"] = self._etag()

    # --- the API -------------------------------------------------------------------------------------------------

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        match = ROUTE.match(request.path)
        if (match is None or match["sub"] != self.subscription
                or match["rg"].lower() != self.resource_group.lower()):
            return self._error(404, "ResourceGroupNotFound", f"Resource group not found for {request.path}.")
        zone_name = match["zone"].lower()
        scope = (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                 f"/providers/Microsoft.Network/dnsZones/{zone_name}")
        if match["perms"]:
            return FakeResponse(200, {"value": [{"actions": list(self.granted or ["*"]), "notActions": [],
                                                 "dataActions": [], "notDataActions": []}]})
        kind = (match["type"] or "").upper()
        action = ("Microsoft.Network/dnsZones/recordsets/read" if match["list"]
                  else f"Microsoft.Network/dnsZones/{kind}/{VERBS.get(request.method, 'write')}" if kind
                  else "Microsoft.Network/dnsZones/read")
        if self.granted is not None and not allows(self.granted, (), action):
            return self._error(403, "AuthorizationFailed", f"The client does not have authorization to perform "
                                                           f"action '{action}' over scope '{scope}'.")
        zone = self.zones.get(zone_name)
        if zone is None:
            return self._error(404, "ResourceNotFound", f"The Resource 'Microsoft.Network/dnszones/{zone_name}' "
                                                        f"under resource group '{self.resource_group}' was not found.")
        if match["list"]:
            suffix = request.query.get("$recordsetnamesuffix", "").lower()
            return FakeResponse(200, {"value": [copy.deepcopy(rs) for (_, name), rs in zone.items()
                                                if not suffix or name.endswith(suffix)]})
        if not kind:
            return FakeResponse(200, {"id": scope, "name": zone_name, "type": "Microsoft.Network/dnszones",
                                      "location": "global", "properties": {"numberOfRecordSets": len(zone)}})
        return self._record(request, zone, scope, kind, match["name"].lower())

    def _record(self, request: FakeRequest, zone: dict[tuple[str, str], dict[str, Any]], scope: str, kind: str,
                name: str) -> FakeResponse:
        current = zone.get((kind, name))
        if request.method == "GET":
            if current is None:
                return self._error(404, "NotFound", f"The resource record '{name}' does not exist in resource group "
                                                    f"'{self.resource_group}' of subscription '{self.subscription}'.")
            return FakeResponse(200, copy.deepcopy(current))
        if_match, if_none = request.headers.get("if-match"), request.headers.get("if-none-match")
        if if_match is not None and (current is None or current["etag"] != if_match):
            return self._error(412, "PreconditionFailed", f"The Record set {name} has been modified (etag mismatch).")
        if request.method == "DELETE":
            zone.pop((kind, name), None)
            return FakeResponse(200 if current is not None else 204, None)
        if if_none == "*" and current is not None:
            return self._error(412, "PreconditionFailed", f"The Record set {name} exists already.")
        others = {k for (k, n) in zone if n == name and k != kind}
        if others and ("CNAME" in others or kind == "CNAME"):
            return self._error(409, "Conflict", f"The record set {name} conflicts with a record set of type "
                                                f"{', '.join(sorted(others))}: a CNAME cannot coexist with other sets.")
        body = request.json().get("properties", {})
        record = {"id": f"{scope}/{kind}/{name}", "name": name, "type": f"Microsoft.Network/dnszones/{kind}",
                  "etag": self._etag(),
                  "properties": {"TTL": body.get("TTL", 3600), "fqdn": f"{name}.{scope.rsplit('/', 1)[-1]}.",
                                 "provisioningState": "Succeeded",
                                 **{key: body[key] for key in RECORD_KEYS.values() if key in body}}}
        zone[(kind, name)] = record
        return FakeResponse(201 if current is None else 200, copy.deepcopy(record))

    def _etag(self) -> str:
        return f"{next(self._etags):08x}-0000-0000-0000-000000000000"

    def _error_body(self, status: int, message: str) -> Any:
        codes = {403: "AuthorizationFailed", 404: "NotFound", 409: "Conflict", 412: "PreconditionFailed",
                 429: "TooManyRequests", 503: "ServiceUnavailable"}
        return {"error": {"code": codes.get(status, "InternalServerError"), "message": message}}

    def _error(self, status: int, code: str, message: str) -> FakeResponse:
        return FakeResponse(status, {"error": {"code": code, "message": message}})
