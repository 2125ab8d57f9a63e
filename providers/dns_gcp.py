"""Google Cloud DNS: the engine's record in a managed zone, through the Cloud DNS REST API (v1).

Why REST through google-auth's `AuthorizedSession`, as providers/gcp.py does, and not the `google-cloud-dns`
library: that library is not installed, and it would add a dependency for four JSON calls; the session is the same
token handling the Google clients use (a 401 refreshes the token once), and HTTP errors are mapped by
`google.api_core.exceptions.from_http_response`, as the client libraries map them. No grpc is involved either way.

Calls: `GET managedZones/{zone}/rrsets?name=` (read), `POST managedZones/{zone}/changes` (write), `GET
managedZones/{zone}/changes/{id}` until `status` is `done` (a change is `pending` until Cloud DNS's name servers
serve it). A change is atomic: it deletes the record's old sets (exactly as read: Cloud DNS refuses a deletion that
does not match, 412 `conditionNotMet`, so a record changed by someone else since our read is never overwritten) and
adds the new one, so an A → CNAME switch never leaves the name without an answer. A record with a routing policy
(geo, weighted) is refused: failover manages a simple record only, as with Route 53.

`zone_id` is the managed zone's name (`engine-zone`) or its DNS name (`engine.example.internal`, with a dot), looked
up once. Credentials: an injected `credentials`, else Application Default Credentials (shared with the GCP
adapter, one look-up per process); a plain-http loopback endpoint (a local fake) gets `AnonymousCredentials`.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession

from orchestrator.core.errors import FailoverError, ProviderError, ProviderNotFound
from orchestrator.core.model import DnsTarget
from providers.base import loopback_http
from providers.calls import parse_retry_after
from providers.dns_specs import CloudDnsOptions
from providers.gcp import _default_credentials, google_error, google_retryable
from providers.traffic import TrafficRouter, fqdn, record_type

API_ENDPOINT = "https://dns.googleapis.com"
ADDRESS_TYPES = ("A", "AAAA", "CNAME")


class CloudDnsRouter(TrafficRouter):
    """A simple record in a Cloud DNS managed zone. Options: `CloudDnsOptions` (`project`). Extra keywords:
    `endpoint_url` (the API's root), `credentials` (google-auth credentials, for tests), `poll_interval`."""

    kind: ClassVar[str] = "gcp"

    def __init__(self, *, options: CloudDnsOptions, endpoint_url: str | None = None,
                 credentials: Credentials | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if credentials is None and loopback_http(endpoint_url):
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        self.project = options.project
        self._credentials = credentials
        self._endpoint = (endpoint_url or API_ENDPOINT).rstrip("/")
        self._session: AuthorizedSession | None = None
        self._zones: dict[str, str] = {}  # DNS name -> managed zone name

    @property
    def scope(self) -> str:
        return "cloud dns"

    # --- HTTP ----------------------------------------------------------------------------------------------------

    def _http(self) -> AuthorizedSession:
        with self._lock:
            if self._session is None:
                if self._credentials is None:
                    self._credentials = _default_credentials()[0]
                self._session = AuthorizedSession(self._credentials)  # type: ignore[no-untyped-call]
            return self._session

    def _call(self, method: str, path: str, timeout: float, params: dict[str, str] | None = None,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self._endpoint}/dns/v1/projects/{_seg(self.project)}/{path}"
        response = self._http().request(method, url, params=params, json=body,  # type: ignore[no-untyped-call]
                                        timeout=timeout)
        if response.status_code >= 400:
            raise gexc.from_http_response(response)  # type: ignore[no-untyped-call]
        answer: dict[str, Any] = response.json()
        return answer

    def _timeout_kwargs(self, timeout: float) -> dict[str, Any]:
        return {"timeout": timeout}

    # --- the record ----------------------------------------------------------------------------------------------

    def managed_zone(self, dns: DnsTarget) -> str:
        """The managed zone's name: `zone_id` itself, or the zone whose DNS name it is (looked up once)."""
        if "." not in dns.zone_id:
            return dns.zone_id
        if dns.zone_id not in self._zones:
            wanted = fqdn(dns.zone_id)
            answer = self._read("dns.managedZones.list", self._call, subject=f"zone {dns.zone_id}", method="GET",
                                path="managedZones", params={"dnsName": wanted})
            found = [z for z in answer.get("managedZones", []) if fqdn(str(z.get("dnsName", ""))) == wanted]
            if len(found) != 1:
                raise ProviderNotFound(f"{self.scope}: zone {dns.zone_id}: no managed zone with that DNS name "
                                       f"in project {self.project}")
            self._zones[dns.zone_id] = str(found[0]["name"])
        return self._zones[dns.zone_id]

    def record_sets(self, dns: DnsTarget) -> list[dict[str, Any]]:
        """Every record set at the record's name (any type), as Cloud DNS returns them."""
        zone = self.managed_zone(dns)
        answer = self._read("dns.resourceRecordSets.list", self._call, subject=f"zone {dns.zone_id}", method="GET",
                            path=f"managedZones/{_seg(zone)}/rrsets", params={"name": fqdn(dns.record)})
        return [rrset for rrset in answer.get("rrsets", []) if fqdn(str(rrset.get("name", ""))) == fqdn(dns.record)]

    def _current_target(self, dns: DnsTarget) -> str | None:
        for rrset in self.record_sets(dns):
            if rrset.get("type") in ADDRESS_TYPES and rrset.get("rrdatas"):
                return str(rrset["rrdatas"][0]).rstrip(".")
        return None

    def _point_to(self, dns: DnsTarget, address: str) -> str | None:
        kind = record_type(address)
        value = fqdn(address) if kind == "CNAME" else address
        new = {"name": fqdn(dns.record), "type": kind, "ttl": dns.ttl, "rrdatas": [value]}
        deletions = []
        for rrset in self.record_sets(dns):
            if rrset.get("routingPolicy"):
                raise ProviderError(f"{self.scope}: {dns.record} has a routing-policy record set ({rrset['type']}); "
                                    "failover manages a simple record only")
            if rrset.get("type") in ADDRESS_TYPES:
                deletions.append(rrset)
        zone = self.managed_zone(dns)
        change = self._write("dns.changes.create", self._call, subject=f"record {dns.record}", method="POST",
                             path=f"managedZones/{_seg(zone)}/changes",
                             body={"additions": [new], "deletions": deletions})
        if change is None or change.get("status") == "done":
            return None
        return str(change["id"])

    def _change_applied(self, dns: DnsTarget, change: str) -> bool:
        zone = self.managed_zone(dns)
        answer = self._read("dns.changes.get", self._call, subject=f"change {change}", method="GET",
                            path=f"managedZones/{_seg(zone)}/changes/{_seg(change)}")
        return answer.get("status") == "done"

    def held_permissions(self, dns: DnsTarget, wanted: list[str]) -> set[str]:
        """Which of `wanted` the caller holds on the managed zone (`managedZones.testIamPermissions`, which needs
        no permission itself): what `failover plan --check-permissions` asks about the writes."""
        zone = self.managed_zone(dns)
        answer = self._read("dns.managedZones.testIamPermissions", self._call, subject=f"zone {dns.zone_id}",
                            method="POST", path=f"managedZones/{_seg(zone)}:testIamPermissions",
                            body={"permissions": wanted})
        return {str(p) for p in answer.get("permissions", [])}

    # --- errors (as providers.gcp maps them) -----------------------------------------------------------------------

    def _translate(self, exc: Exception) -> FailoverError | None:
        return google_error(exc)

    def _retryable(self, exc: Exception) -> bool:
        return google_retryable(exc)


    def _retry_after(self, exc: Exception) -> float | None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
        return parse_retry_after(headers.get("Retry-After")) if headers is not None else None


def _seg(value: str) -> str:
    return quote(value, safe="")
