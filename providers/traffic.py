"""DNS / traffic steering: where clients of an engine are sent, behind one small interface.

Route 53 (`providers.dns_aws`), Google Cloud DNS (`providers.dns_gcp`) and Azure DNS (`providers.dns_azure`)
implement it; the in-memory cloud (`providers.local.LocalRouter`) too. The orchestrator, not the DNS service, decides
when traffic moves: a router only reads and writes the record, after the runbook has fenced the old primary, so that
DNS-side health checks can never flip traffic to a replica that has not been promoted.

A write is done only once the DNS service says it is live: every DNS API accepts a change before its name servers
serve it (Route 53 `PENDING` until `INSYNC`, Cloud DNS `pending` until `done`). `point_to` waits for that within its
deadline, and a router remembers a change it has not yet seen applied, so that a retried step whose record already
reads right still waits for that change instead of announcing traffic moved while the name servers serve the old one.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from orchestrator.core.errors import ProviderError
from orchestrator.core.model import DnsTarget
from providers.calls import ApiCaller, Deadline

log = logging.getLogger(__name__)


class TrafficRouter(ApiCaller, ABC):
    """Reads and moves the DNS record of an engine. Same bookkeeping as providers: counted, retried, dry-runnable.
    Extra keyword: `poll_interval` (seconds between reads of a change not yet applied)."""

    kind: ClassVar[str]

    def __init__(self, *, poll_interval: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poll_interval = poll_interval
        self._unsettled: dict[tuple[str, str], str] = {}  # (zone, record) -> the id of a change not yet applied
        self._unsettled_lock = threading.Lock()

    @property
    def scope(self) -> str:
        return f"{self.kind} dns"

    @abstractmethod
    def _current_target(self, dns: DnsTarget) -> str | None:
        """The address the record points to now, or None when there is no such record. `ProviderNotFound` when the
        zone itself does not exist."""

    @abstractmethod
    def _point_to(self, dns: DnsTarget, address: str) -> str | None:
        """Make the record point to `address` (one idempotent write through `self._write`). Returns the id of the
        change when the service applies it later (then `_change_applied` is asked), or None when it is live."""

    def _change_applied(self, dns: DnsTarget, change: str) -> bool:
        """Whether the change `change` is live on the service's name servers (one read through `self._read`)."""
        return True

    def current_target(self, dns: DnsTarget) -> str | None:
        with self._deadline(self.call_deadline):
            return self._current_target(dns)

    def point_to(self, dns: DnsTarget, address: str, *, deadline: float | None = None) -> None:
        """Point the record at `address` and return once the change is live; no write when it already points there
        (safe to repeat after a crash), but a change of ours still pending is waited for. `deadline` (the step's,
        default `call_deadline`) bounds the reads, the write and the wait; past it, `ProviderError`, and the change
        is remembered for the next call."""
        with self._deadline(deadline if deadline is not None else self.call_deadline) as bound:
            current = self._current_target(dns)
            if current is None or current.rstrip(".") != address.rstrip("."):
                log.info("%s: pointing %s at %s", self.scope, dns.record, address)
                change = self._point_to(dns, address)
                if change is None or self.dry_run:
                    return
                self._remember_change(dns, change)
            self._settle(dns, bound)

    def _remember_change(self, dns: DnsTarget, change: str) -> None:
        with self._unsettled_lock:
            self._unsettled[(dns.zone_id, dns.record)] = change

    def _settle(self, dns: DnsTarget, bound: Deadline) -> None:
        """Wait for the remembered change of this record, if any, until it is applied or `bound` runs out."""
        key = (dns.zone_id, dns.record)
        with self._unsettled_lock:
            change = self._unsettled.get(key)
        if change is None:
            return
        wait_until(lambda: self._change_applied(dns, change), bound, self.poll_interval, self._pause,
                   f"{self.scope}: record {dns.record}: change {change} not applied after {bound.seconds:g}s")
        with self._unsettled_lock:
            if self._unsettled.get(key) == change:
                del self._unsettled[key]


def wait_until(applied: Callable[[], bool], bound: Deadline, interval: float,
               pause: Callable[[Deadline, float], None], late: str) -> None:
    """Ask `applied` every `interval` seconds until it is true; `ProviderError(late)` once `bound` has run out."""
    while not applied():
        if bound.expired:
            raise ProviderError(late)
        pause(bound, interval)


def fqdn(name: str) -> str:
    """A DNS name as every DNS API compares it: lower case, one trailing dot."""
    return name.rstrip(".").lower() + "."


def record_type(address: str) -> str:
    """The record an address needs: A for IPv4, AAAA for IPv6, CNAME for a name."""
    try:
        return "A" if ipaddress.ip_address(address).version == 4 else "AAAA"
    except ValueError:
        return "CNAME"
