"""A Google Cloud DNS REST API (v1) fake, in the API's own JSON shapes, for the calls `providers.dns_gcp` makes.

Served paths (under `/dns/v1/projects/{project}`): `GET managedZones[?dnsName=]`, `GET managedZones/{zone}`,
`GET managedZones/{zone}/rrsets[?name=&type=]`, `POST managedZones/{zone}/changes`, `GET managedZones/{zone}/changes/
{id}`, and `POST managedZones/{zone}:testIamPermissions`. Errors are `{"error": {"code", "message", "errors":
[{"domain", "reason", "message"}]}}`.

Changes behave like Cloud DNS's: applied to the zone's record sets at once and atomically (every deletion must match
an existing set exactly, else 412 `conditionNotMet`; an addition over an existing set is 409 `alreadyExists`), and
answered `pending`; the change reads `done` after `settle_reads` reads of it (the name servers took it).

`granted` (a set of IAM permissions, e.g. a custom role's `includedPermissions`): each call needs its permission
(`PERMISSIONS`), else 403 `forbidden`, and testIamPermissions answers the granted subset. None: everything allowed.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.testbed.fakes._http import FakeApi, FakeRequest, FakeResponse

ROUTE = re.compile(
    r"^/dns/v1/projects/(?P<project>[^/]+)/managedZones(?:/(?P<zone>[^/:]+)"
    r"(?::(?P<test>testIamPermissions)|/(?P<kind>rrsets|changes)(?:/(?P<change>[^/]+))?)?)?$"
)
REASONS = {400: "invalid", 401: "authError", 403: "forbidden", 404: "notFound", 409: "alreadyExists",
           412: "conditionNotMet", 429: "rateLimitExceeded", 500: "backendError", 503: "backendError"}
PERMISSIONS = {  # (method, what) -> the IAM permission Cloud DNS checks
    ("GET", "zones"): "dns.managedZones.list",
    ("GET", "zone"): "dns.managedZones.get",
    ("GET", "rrsets"): "dns.resourceRecordSets.list",
    ("POST", "changes"): "dns.changes.create",
    ("GET", "changes"): "dns.changes.get",
}


@dataclass
class _Zone:
    name: str
    dns_name: str
    rrsets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (name, type) -> rrset
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    reads_left: dict[str, int] = field(default_factory=dict)


class CloudDnsFake(FakeApi):
    """One project's managed zones: `CloudDnsFake(project)`, then `add_zone(name, dns_name)`."""

    def __init__(self, project: str = "exchange-prod", settle_reads: int = 2,
                 granted: Iterable[str] | None = None) -> None:
        super().__init__()
        self.project = project
        self.settle_reads = settle_reads
        self.granted = None if granted is None else frozenset(granted)
        self.reset()

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.zones: dict[str, _Zone] = {}
            self._ids = itertools.count(1)

    def add_zone(self, name: str, dns_name: str) -> None:
        with self.lock:
            self.zones[name] = _Zone(name, _fqdn(dns_name))

    def add_rrset(self, zone: str, rrset: dict[str, Any]) -> None:
        """A record set made by someone else (a routing policy, a record we must not overwrite)."""
        with self.lock:
            self.zones[zone].rrsets[(_fqdn(rrset["name"]), rrset["type"])] = {"kind": "dns#resourceRecordSet",
                                                                               **rrset}

    def rrsets(self, zone: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(rrset) for rrset in self.zones[zone].rrsets.values()]

    # --- the API -------------------------------------------------------------------------------------------------

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        match = ROUTE.match(request.path)
        if match is None or match["project"] != self.project:
            return self._error(404, f"The resource '{request.path}' named was not found")
        if match["test"] and request.method == "POST":
            return self._test_permissions(request)
        what = match["kind"] or ("zone" if match["zone"] else "zones")
        needed = PERMISSIONS.get((request.method, what))
        if needed is None:
            return self._error(400, f"{request.method} {request.path} is not supported")
        if self.granted is not None and needed not in self.granted:
            return self._error(403, f"Forbidden: the caller does not have permission '{needed}'")
        if what == "zones":
            return self._list_zones(request.query.get("dnsName"))
        zone = self.zones.get(str(match["zone"]))
        if zone is None:
            return self._error(404, f"The 'parameters.managedZone' resource named '{match['zone']}' does not exist.")
        if what == "zone":
            return FakeResponse(200, self._zone_json(zone))
        if what == "rrsets":
            return self._list_rrsets(zone, request)
        if request.method == "POST":
            return self._create_change(zone, request.json())
        return self._get_change(zone, str(match["change"]))

    def _test_permissions(self, request: FakeRequest) -> FakeResponse:
        asked = [str(p) for p in request.json().get("permissions", [])]
        granted = [p for p in asked if self.granted is None or p in self.granted]
        return FakeResponse(200, {"permissions": granted} if granted else {})

    def _list_zones(self, dns_name: str | None) -> FakeResponse:
        zones = [z for z in self.zones.values() if dns_name is None or z.dns_name == _fqdn(dns_name)]
        return FakeResponse(200, {"kind": "dns#managedZonesListResponse",
                                  "managedZones": [self._zone_json(z) for z in zones]})

    def _zone_json(self, zone: _Zone) -> dict[str, Any]:
        return {"kind": "dns#managedZone", "name": zone.name, "dnsName": zone.dns_name, "id": str(abs(hash(zone.name))),
                "visibility": "public", "nameServers": ["ns-cloud-a1.googledomains.com."]}

    def _list_rrsets(self, zone: _Zone, request: FakeRequest) -> FakeResponse:
        name, kind = request.query.get("name"), request.query.get("type")
        found = [copy.deepcopy(r) for (n, t), r in zone.rrsets.items()
                 if (name is None or n == _fqdn(name)) and (kind is None or t == kind)]
        return FakeResponse(200, {"kind": "dns#resourceRecordSetsListResponse", "rrsets": found})

    def _create_change(self, zone: _Zone, body: dict[str, Any]) -> FakeResponse:
        deletions, additions = list(body.get("deletions") or []), list(body.get("additions") or [])
        keys: dict[tuple[str, str], None] = {}
        for index, rrset in enumerate(deletions):
            key = (_fqdn(rrset.get("name", "")), str(rrset.get("type")))
            current = zone.rrsets.get(key)
            if current is None or _comparable(current) != _comparable(rrset):
                return self._error(412, f"Precondition not met for 'entity.change.deletions[{index}]'")
            keys[key] = None
        for index, rrset in enumerate(additions):
            key = (_fqdn(rrset.get("name", "")), str(rrset.get("type")))
            if key in zone.rrsets and key not in keys:
                return self._error(409, f"The resource 'entity.change.additions[{index}]' named '{key[0]} "
                                        f"({key[1]})' already exists")
        for key in keys:
            del zone.rrsets[key]
        for rrset in additions:
            zone.rrsets[(_fqdn(rrset["name"]), rrset["type"])] = {"kind": "dns#resourceRecordSet", **rrset}
        change_id = str(next(self._ids))
        change = {"kind": "dns#change", "id": change_id, "status": "pending", "additions": additions,
                  "deletions": deletions, "startTime": "2026-12-01T00:00:00.000Z"}
        zone.changes[change_id] = change
        zone.reads_left[change_id] = self.settle_reads
        if self.settle_reads <= 0:
            change["status"] = "done"
        return FakeResponse(200, copy.deepcopy(change))

    def _get_change(self, zone: _Zone, change_id: str) -> FakeResponse:
        change = zone.changes.get(change_id)
        if change is None:
            return self._error(404, f"The 'parameters.changeId' resource named '{change_id}' does not exist.")
        zone.reads_left[change_id] -= 1
        if zone.reads_left[change_id] <= 0:
            change["status"] = "done"
        return FakeResponse(200, copy.deepcopy(change))

    def _error_body(self, status: int, message: str) -> Any:
        reason = REASONS.get(status, "backendError")
        return {"error": {"code": status, "message": message,
                          "errors": [{"domain": "global", "reason": reason, "message": message}]}}

    def _error(self, status: int, message: str) -> FakeResponse:
        return FakeResponse(status, self._error_body(status, message))


def _fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


def _comparable(rrset: dict[str, Any]) -> tuple[Any, ...]:
    return (_fqdn(rrset.get("name", "")), rrset.get("type"), rrset.get("ttl"), tuple(rrset.get("rrdatas") or ()),
            repr(rrset.get("routingPolicy")))
