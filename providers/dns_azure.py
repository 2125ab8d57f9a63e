"""Azure DNS: the engine's record in a public or private DNS zone, through azure-mgmt-dns (ARM).

Calls: `record_sets.list_by_dns_zone` filtered by the record's relative name (read), `record_sets.create_or_update`
(PUT) and `record_sets.delete` (write). ARM applies a record set PUT before it answers (no long-running operation,
unlike a VM's start), so a write is live when the call returns.

Concurrency: every write carries the etag of the record set as read (`If-Match`), or `If-None-Match: *` when creating
one, so a record someone else changed since our read is never overwritten: ARM answers 412, the step fails this
attempt, reads again and decides again. Azure DNS has no atomic batch across record types and refuses a CNAME beside
an A record, so a type change (A → CNAME) deletes the old set first, then creates the new one: the name answers
NXDOMAIN for the moment between the two calls (clients keep their cached answer for its TTL). Same type: one PUT.

`zone_id` is the zone's name (`engine.example.internal`); the record is a name inside it. Credentials as for the
Azure adapter (providers/azure.py): an injected `credential`, else DefaultAzureCredential, and a placeholder token
with its own bearer policy for a plain-http loopback endpoint (a local fake).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from azure.mgmt.dns import DnsManagementClient
from azure.mgmt.dns.models import AaaaRecord, ARecord, CnameRecord, RecordSet

from orchestrator.core.errors import ConfigError, FailoverError
from orchestrator.core.model import DnsTarget
from providers.azure import (
    StaticTokenCredential,
    _default_credential,
    _LoopbackBearerPolicy,
    azure_error,
    azure_retryable,
)
from providers.base import loopback_http
from providers.calls import parse_retry_after
from providers.dns_specs import AzureDnsOptions
from providers.traffic import TrafficRouter, record_type

ADDRESS_TYPES = ("A", "AAAA", "CNAME")


class AzureDnsRouter(TrafficRouter):
    """A simple record in an Azure DNS zone. Options: `AzureDnsOptions` (`subscription`, `resource_group`). Extra
    keywords: `endpoint_url` (ARM's root), `credential` (a TokenCredential, for tests)."""

    kind: ClassVar[str] = "azure"

    def __init__(self, *, options: AzureDnsOptions, endpoint_url: str | None = None, credential: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.subscription = options.subscription
        self.resource_group = options.resource_group
        self.endpoint_url = endpoint_url
        self._credential = credential
        self._used_credential: Any = None  # the credential the clients were built with
        self._client: Any = None

    @property
    def scope(self) -> str:
        return "azure dns"

    def _records(self) -> Any:
        """The `record_sets` operations; the client is built on first use, inside a counted call, its retries off."""
        with self._lock:
            if self._client is None:
                options: dict[str, Any] = {"retry_total": 0}
                credential = self._credential
                if loopback_http(self.endpoint_url):
                    credential = credential or StaticTokenCredential()
                    options["authentication_policy"] = _LoopbackBearerPolicy(credential)
                elif credential is None:
                    credential = _default_credential()
                if self.endpoint_url:
                    options["base_url"] = self.endpoint_url
                self._used_credential = credential
                self._client = DnsManagementClient(credential, self.subscription, **options)
            return self._client.record_sets

    def _sdk(self, method: str) -> Callable[..., Any]:
        return lambda **kwargs: getattr(self._records(), method)(**kwargs)

    def _timeout_kwargs(self, timeout: float) -> dict[str, Any]:
        return {"connection_timeout": timeout, "read_timeout": timeout}

    # --- the record ----------------------------------------------------------------------------------------------

    def record_sets(self, dns: DnsTarget) -> list[RecordSet]:
        """The record's address sets (A, AAAA, CNAME) as ARM returns them, with their etags."""
        relative = relative_name(dns)
        found = self._read("dns.record_sets.list_by_dns_zone",
                           lambda **kw: list(self._records().list_by_dns_zone(**kw)), subject=f"zone {dns.zone_id}",
                           resource_group_name=self.resource_group, zone_name=dns.zone_id,
                           recordsetnamesuffix=relative)
        return [rs for rs in found if rs.name == relative and _type(rs) in ADDRESS_TYPES]

    def _current_target(self, dns: DnsTarget) -> str | None:
        for rrset in self.record_sets(dns):
            value = _value(rrset)
            if value:
                return value.rstrip(".")
        return None

    def _point_to(self, dns: DnsTarget, address: str) -> None:
        kind = record_type(address)
        relative = relative_name(dns)
        where = {"resource_group_name": self.resource_group, "zone_name": dns.zone_id,
                 "relative_record_set_name": relative}
        same = None
        for rrset in self.record_sets(dns):
            if _type(rrset) == kind:
                same = rrset
                continue
            self._write("dns.record_sets.delete", self._sdk("delete"), subject=f"record {dns.record}",
                        record_type=_type(rrset), if_match=rrset.etag, **where)
        guard = {"if_match": same.etag} if same is not None else {"if_none_match": "*"}
        self._write("dns.record_sets.create_or_update", self._sdk("create_or_update"), subject=f"record {dns.record}",
                    record_type=kind, parameters=_record_set(kind, address, dns.ttl), **guard, **where)

    def effective_permissions(self, dns: DnsTarget) -> tuple[list[str], list[str]]:
        """The caller's actions and not-actions on the zone (the permissions API, azure-mgmt-authorization): what
        `failover plan --check-permissions` matches the writes against."""
        from azure.mgmt.authorization import AuthorizationManagementClient

        def ask(**kwargs: Any) -> list[Any]:
            self._records()  # the credential and options, built once
            client = AuthorizationManagementClient(self._used_credential, self.subscription,
                                                   **self._authorization_options())
            return list(client.permissions.list_for_resource(**kwargs))

        found = self._read("authorization.permissions.list_for_resource", ask, subject=f"zone {dns.zone_id}",
                           resource_group_name=self.resource_group, resource_provider_namespace="Microsoft.Network",
                           parent_resource_path="", resource_type="dnsZones", resource_name=dns.zone_id)
        return ([a for p in found for a in (p.actions or [])], [a for p in found for a in (p.not_actions or [])])

    def _authorization_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"retry_total": 0}
        if loopback_http(self.endpoint_url):
            options["authentication_policy"] = _LoopbackBearerPolicy(self._used_credential)
        if self.endpoint_url:
            options["base_url"] = self.endpoint_url
        return options

    # --- errors (as providers.azure maps them) -------------------------------------------------------------------

    def _translate(self, exc: Exception) -> FailoverError | None:
        return azure_error(exc)

    def _retryable(self, exc: Exception) -> bool:
        return azure_retryable(exc)


    def _retry_after(self, exc: Exception) -> float | None:
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        return parse_retry_after(headers.get("Retry-After"))


def relative_name(dns: DnsTarget) -> str:
    """The record's name inside its zone (`spot` for `spot.engine.example.internal`; `@` for the apex)."""
    record, zone = dns.record.rstrip(".").lower(), dns.zone_id.rstrip(".").lower()
    if record == zone:
        return "@"
    if not record.endswith("." + zone):
        raise ConfigError(f"dns record {dns.record}: not inside the Azure DNS zone {dns.zone_id}")
    return record[: -len(zone) - 1]


def _type(rrset: RecordSet) -> str:
    return str(rrset.type or "").rsplit("/", 1)[-1].upper()


def _value(rrset: RecordSet) -> str | None:
    if rrset.a_records:
        return str(rrset.a_records[0].ipv4_address)
    if rrset.aaaa_records:
        return str(rrset.aaaa_records[0].ipv6_address)
    if rrset.cname_record is not None:
        return str(rrset.cname_record.cname)
    return None


def _record_set(kind: str, address: str, ttl: int) -> RecordSet:
    if kind == "A":
        return RecordSet(ttl=ttl, a_records=[ARecord(ipv4_address=address)])
    if kind == "AAAA":
        return RecordSet(ttl=ttl, aaaa_records=[AaaaRecord(ipv6_address=address)])
    return RecordSet(ttl=ttl, cname_record=CnameRecord(cname=address))
