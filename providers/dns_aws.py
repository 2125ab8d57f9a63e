"""Route 53 with the wait AWS documents: a change is `PENDING` until every Route 53 name server serves it, then
`INSYNC` (`GetChange`). The runbook's traffic step is done only once the change is `INSYNC`.

The record logic (a simple record, UPSERT, an atomic type change, routing-policy records refused) is
`providers.aws.Route53Router`'s; this subclass keeps the id of each change it makes and waits for it, bounded by the
step's deadline (`TrafficRouter.point_to`). It catches the id where the SDK answers (`_sdk`), so the change batch
itself is built in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.core.model import DnsTarget
from providers.aws import Route53Router as _Route53Records
from providers.traffic import fqdn


class Route53Router(_Route53Records):
    """`providers.aws.Route53Router` whose writes are done at `INSYNC`. Extra keyword: `poll_interval`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._change_ids: dict[str, str] = {}  # record name (fqdn) -> the id of the change last made to it

    def _sdk(self, service: str, method: str) -> Callable[..., Any]:
        call = super()._sdk(service, method)
        if method != "change_resource_record_sets":
            return call

        def recorded(**kwargs: Any) -> Any:
            answer = call(**kwargs)
            name = kwargs["ChangeBatch"]["Changes"][-1]["ResourceRecordSet"]["Name"]
            with self._lock:
                self._change_ids[fqdn(name)] = str(answer["ChangeInfo"]["Id"])
            return answer

        return recorded

    def _point_to(self, dns: DnsTarget, address: str) -> str | None:
        super()._point_to(dns, address)
        with self._lock:
            return self._change_ids.pop(fqdn(dns.record), None)

    def _change_applied(self, dns: DnsTarget, change: str) -> bool:
        answer = self._read("route53.get_change", self._sdk("route53", "get_change"), subject=f"change {change}",
                            Id=change)
        return str(answer["ChangeInfo"]["Status"]) == "INSYNC"
