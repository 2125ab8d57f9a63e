"""Route 53 Application Recovery Controller (ARC) routing controls: the traffic switch AWS recommends for failover.

Why: moving a Route 53 record goes through Route 53's control plane, which lives in one region (us-east-1); in a
regional outage that is the plane one least wants to depend on. ARC's routing controls are on/off switches served by
a cluster's data plane, five endpoints in five regions; each control gates a Route 53 health check, and the
engine's record is a failover (or weighted) record set whose members carry those health checks, so the DNS answer
follows the switches without any record being written.

The router keeps the `TrafficRouter` contract: the "target" is the address whose control is On. `point_to(address)`
sets that control On and every other control Off in one `UpdateRoutingControlStates` call (all or nothing, and the
cluster's safety rules apply to the whole batch). Every call is tried on each endpoint in turn, starting with the one
that last answered, until one answers: AWS's guidance, since any endpoint of the cluster serves the same state.
The record itself is never written, so `zone_id` and `record` in the configuration only name it for people.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

import boto3
import botocore.exceptions

from orchestrator.core.errors import ProviderError
from orchestrator.core.model import DnsTarget
from providers.arc_specs import ArcOptions
from providers.aws import TRANSPORT_ERRORS, _AwsErrors, _config, _session
from providers.traffic import TrafficRouter

log = logging.getLogger(__name__)


class ArcRouter(_AwsErrors, TrafficRouter):
    """Routing controls of one ARC cluster. Options: `ArcOptions`. Extra keyword: `session` (for tests)."""

    kind: ClassVar[str] = "aws-arc"

    def __init__(self, *, options: ArcOptions, endpoint_url: str | None = None,
                 session: boto3.Session | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options = options
        self._session = session
        self._clients: dict[str, Any] = {}
        self._first = 0  # the endpoint that answered last: tried first next time

    @property
    def scope(self) -> str:
        return "route53 arc"

    def _cluster_client(self, index: int) -> Any:
        endpoint = self.options.cluster_endpoints[index]
        with self._lock:
            if endpoint.url not in self._clients:
                session = self._session or _session(self.options.profile, endpoint.region, endpoint.url)
                self._clients[endpoint.url] = session.client(
                    "route53-recovery-cluster", region_name=endpoint.region, endpoint_url=endpoint.url,
                    config=_config(min(self.request_timeout, self.call_deadline)))
            return self._clients[endpoint.url]

    def _sdk(self, service: str, method: str) -> Callable[..., Any]:
        """The call on each endpoint in turn until one answers; an endpoint that cannot be reached or answers 5xx
        or throttles passes the call on. What the last one raised is raised (and retried, or mapped, by the caller)."""
        def call(**kwargs: Any) -> Any:
            count = len(self.options.cluster_endpoints)
            failure: Exception | None = None
            for step in range(count):
                index = (self._first + step) % count
                try:
                    answer = getattr(self._cluster_client(index), method)(**kwargs)
                except Exception as exc:
                    if not self._retryable(exc):
                        raise
                    log.info("%s: endpoint %s failed (%s); trying the next", self.scope,
                             self.options.cluster_endpoints[index].url, type(exc).__name__)
                    failure = exc
                    continue
                self._first = index
                return answer
            assert failure is not None
            raise failure

        return call

    def _retryable(self, exc: Exception) -> bool:
        if isinstance(exc, (*TRANSPORT_ERRORS, botocore.exceptions.ConnectionError)):
            return True
        return super()._retryable(exc)

    def states(self) -> dict[str, str]:
        """Each address and its control's state ("On" / "Off")."""
        with self._deadline(self.call_deadline):
            return {address: self._state(arn) for address, arn in self.options.controls.items()}

    def _state(self, arn: str) -> str:
        answer = self._read("route53-recovery-cluster.get_routing_control_state",
                            self._sdk("route53-recovery-cluster", "get_routing_control_state"),
                            subject=f"control {arn}", RoutingControlArn=arn)
        return str(answer["RoutingControlState"])

    def _current_target(self, dns: DnsTarget) -> str | None:
        on = [address for address, arn in self.options.controls.items() if self._state(arn) == "On"]
        return on[0] if len(on) == 1 else None  # none or several On: no single target; a point_to fixes it

    def _point_to(self, dns: DnsTarget, address: str) -> None:
        if address not in self.options.controls:
            known = ", ".join(sorted(self.options.controls))
            raise ProviderError(f"{self.scope}: no routing control for {address} (controls: {known})")
        entries = [{"RoutingControlArn": arn, "RoutingControlState": "On" if key == address else "Off"}
                   for key, arn in self.options.controls.items()]
        self._write("route53-recovery-cluster.update_routing_control_states",
                    self._sdk("route53-recovery-cluster", "update_routing_control_states"),
                    subject=f"record {dns.record}", UpdateRoutingControlStateEntries=entries)
