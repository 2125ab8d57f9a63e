"""DNS / traffic steering: where clients of an engine are sent, behind one small interface.

Route 53 implements it today (`providers.aws.Route53Router`); Cloud DNS or Traffic Manager can implement the same two
hooks later. The orchestrator, not the DNS service, decides when traffic moves: a router only reads and writes the
record, after the runbook has fenced the old primary, so that DNS-side health checks can never flip traffic to a
replica that has not been promoted.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import ClassVar

from orchestrator.core.model import DnsTarget
from providers.calls import ApiCaller

log = logging.getLogger(__name__)


class TrafficRouter(ApiCaller, ABC):
    """Reads and moves the DNS record of an engine. Same bookkeeping as providers: counted, retried, dry-runnable."""

    kind: ClassVar[str]

    @property
    def scope(self) -> str:
        return f"{self.kind} dns"

    @abstractmethod
    def _current_target(self, dns: DnsTarget) -> str | None:
        """The address the record points to now, or None when there is no such record. `ProviderNotFound` when the
        zone itself does not exist."""

    @abstractmethod
    def _point_to(self, dns: DnsTarget, address: str) -> None:
        """Make the record point to `address` (one idempotent write through `self._write`)."""

    def current_target(self, dns: DnsTarget) -> str | None:
        with self._deadline(self.call_deadline):
            return self._current_target(dns)

    def point_to(self, dns: DnsTarget, address: str) -> None:
        """Point the record at `address`; no write when it already does (safe to repeat after a crash)."""
        with self._deadline(self.call_deadline):
            current = self._current_target(dns)
            if current is not None and current.rstrip(".") == address.rstrip("."):
                return
            log.info("%s: pointing %s at %s", self.scope, dns.record, address)
            self._point_to(dns, address)
