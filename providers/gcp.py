"""GCP: Compute Engine over REST (`google-cloud-compute`, `transport="rest"`).

Health: `ZonesClient.get` per configured zone (status UP / DOWN) and `RegionsClient.get` for the region (a region
DOWN takes all its zones down); `InstancesClient.get` per instance. GCP has no per-instance status checks like
EC2's, so an instance is `ok` when RUNNING and `down` otherwise.

Lifecycle: `start_unary` / `stop_unary` return an `Operation`, which we poll with `ZoneOperationsClient.get` in our
own loop bounded by the deadline. Not the SDK's `ExtendedOperation.result()`: its poller is a separate client built
without our `client_options`, so against any non-default endpoint it polls https://compute.googleapis.com, and its
default policy waits from 1 s up to 20 s between polls for 900 s.

An instance is named `zone/name`, or just `name`: then it is looked up in the site's zones in order and the zone it
is found in is remembered. Credentials: an injected `credentials`, else Google's Application Default Credentials
(`google.auth.default()`, resolved on the first call, not at construction); a plain-http loopback endpoint (a local
fake) gets `AnonymousCredentials` so that no real token is sent to it. The SDK's own retries are switched off
(`retry=None` on each call): ours are bounded by the deadline and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import google.auth
import google.auth.exceptions
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import compute_v1

from orchestrator.core.errors import FailoverError, ProviderAuthError, ProviderError, ProviderNotFound
from orchestrator.core.model import Site, Status
from providers.base import Capability, CloudProvider, InstanceHealth, InstanceState, loopback_http
from providers.calls import brief, parse_retry_after
from providers.options import GcpOptions

C = TypeVar("C")

SCOPES = ["https://www.googleapis.com/auth/compute"]
STATES = {
    "RUNNING": InstanceState.RUNNING,
    "PROVISIONING": InstanceState.PENDING,
    "STAGING": InstanceState.PENDING,
    "REPAIRING": InstanceState.PENDING,  # a host failure being repaired: not serving, will come back
    "STOPPING": InstanceState.STOPPING,
    "SUSPENDING": InstanceState.STOPPING,
    "STOPPED": InstanceState.STOPPED,
    "SUSPENDED": InstanceState.STOPPED,
    "TERMINATED": InstanceState.STOPPED,  # GCP's word for a stopped VM; it can be started again
}
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})


class GcpProvider(CloudProvider):
    """Compute Engine health and start/stop for one site. Options: `GcpOptions` (`project`). Extra keywords:
    `credentials` (google-auth credentials, for tests), `client_options` (merged over
    `api_endpoint=site.endpoint_url`)."""

    kind: ClassVar[str] = "gcp"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.ZONE_HEALTH, Capability.INSTANCE_HEALTH, Capability.START, Capability.STOP, Capability.FENCE}
    )

    def __init__(
        self,
        site: Site,
        *,
        options: GcpOptions | None = None,
        credentials: Credentials | None = None,
        client_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(site, **kwargs)
        if credentials is None and loopback_http(site.endpoint_url):
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        self._credentials = credentials
        self.options = options if options is not None else GcpOptions.parse(site.options, self.scope)
        self._project: str | None = self.options.project
        self._options = dict(client_options or {})
        if site.endpoint_url:
            self._options.setdefault("api_endpoint", site.endpoint_url)
        self._clients: dict[type[Any], Any] = {}
        self._zone_of: dict[str, str] = {}  # instance name → the zone it was found in

    # --- clients, built on first use so that ADC is only consulted when a call is made --------------------------

    def _client(self, cls: type[C]) -> C:
        with self._lock:
            if cls not in self._clients:
                if self._credentials is None:
                    self._credentials, adc_project = google.auth.default(scopes=SCOPES)
                    self._project = self._project or adc_project
                self._clients[cls] = cls(  # type: ignore[call-arg]
                    credentials=self._credentials, transport="rest", client_options=self._options or None
                )
            client: C = self._clients[cls]
            return client

    @property
    def project(self) -> str:
        if not self._project:
            raise ProviderError(f"{self.scope}: no GCP project configured and none in the default credentials")
        return self._project

    def _call_sdk(self, cls: type[Any], method: str) -> Callable[..., Any]:
        """A late-bound SDK method: the client (and the credential lookup) is created inside the counted call, so
        a missing credential becomes a mapped `ProviderAuthError` like any other API failure."""
        return lambda **kwargs: getattr(self._client(cls), method)(project=self.project, **kwargs)

    def _timeout_kwargs(self, timeout: float) -> dict[str, Any]:
        return {"timeout": timeout, "retry": None}

    # --- health --------------------------------------------------------------------------------------------------

    def _zone_statuses(self) -> Mapping[str, Status]:
        region = self._read("compute.regions.get", self._call_sdk(compute_v1.RegionsClient, "get"),
                            subject=f"region {self.site.region}", region=self.site.region)
        zones = self.site.zones or tuple(url.rsplit("/", 1)[-1] for url in region.zones)
        statuses = {}
        for zone in zones:
            answer = self._read("compute.zones.get", self._call_sdk(compute_v1.ZonesClient, "get"),
                                subject=f"zone {zone}", zone=zone)
            statuses[zone] = Status.OK if answer.status == "UP" else Status.DOWN
        if region.status != "UP":
            statuses = dict.fromkeys(statuses, Status.DOWN)
        return statuses

    def _instance_healths(self, instances: Sequence[str]) -> Mapping[str, InstanceHealth]:
        healths = {}
        for instance in instances:
            found = self._get_instance(instance)
            if found is None:
                continue
            zone, answer = found
            state = STATES.get(answer.status, InstanceState.UNKNOWN)
            status = Status.OK if state is InstanceState.RUNNING else Status.DOWN
            if state is InstanceState.UNKNOWN:
                status = Status.UNKNOWN
            healths[instance] = InstanceHealth(instance, state, status, f"zone {zone}; status {answer.status}")
        return healths

    def _get_instance(self, instance: str) -> tuple[str, Any] | None:
        """(zone, Instance) or None when no candidate zone has it."""
        for zone in self._candidate_zones(instance):
            name = instance.rsplit("/", 1)[-1]
            try:
                answer = self._read("compute.instances.get", self._call_sdk(compute_v1.InstancesClient, "get"),
                                    subject=f"instance {instance}", zone=zone, instance=name)
            except ProviderNotFound:
                continue
            self._zone_of[instance] = zone
            return zone, answer
        return None

    def _candidate_zones(self, instance: str) -> list[str]:
        if "/" in instance:
            return [instance.split("/", 1)[0]]
        known = self._zone_of.get(instance)
        return [known] if known else list(self.site.zones)

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def _start(self, instance: str) -> None:
        self._act(instance, "start")

    def _stop(self, instance: str) -> None:
        self._act(instance, "stop")

    def _act(self, instance: str, verb: str) -> None:
        zone = self._zone(instance)
        operation = self._write(
            f"compute.instances.{verb}", self._call_sdk(compute_v1.InstancesClient, f"{verb}_unary"),
            subject=f"instance {instance}", zone=zone, instance=instance.rsplit("/", 1)[-1],
        )
        if operation is not None:
            self._wait_operation(instance, zone, operation)

    def _zone(self, instance: str) -> str:
        if instance not in self._zone_of and self._get_instance(instance) is None:
            raise ProviderNotFound(f"{self.scope}: instance {instance} not found in zones {', '.join(self.site.zones)}")
        return self._zone_of.get(instance) or instance.split("/", 1)[0]

    def _wait_operation(self, instance: str, zone: str, operation: Any) -> None:
        """Poll the zonal operation until DONE, within the running operation's deadline; raise its error if any."""
        deadline = self._active_deadline()
        while operation.status != compute_v1.Operation.Status.DONE:
            if deadline.expired:
                raise ProviderError(
                    f"{self.scope}: instance {instance}: operation {operation.name} not done after "
                    f"{deadline.seconds:g}s"
                )
            self._pause(deadline, self.poll_interval)
            operation = self._read("compute.zone_operations.get",
                                   self._call_sdk(compute_v1.ZoneOperationsClient, "get"),
                                   subject=f"instance {instance}", zone=zone, operation=operation.name)
        errors = list(operation.error.errors) if operation.error else []
        if errors:
            reasons = "; ".join(f"{error.code}: {error.message}" for error in errors)
            raise ProviderError(f"{self.scope}: instance {instance}: operation {operation.name} failed: {reasons}")

    # --- errors --------------------------------------------------------------------------------------------------

    def _translate(self, exc: Exception) -> FailoverError | None:
        if isinstance(exc, google.auth.exceptions.DefaultCredentialsError | google.auth.exceptions.RefreshError):
            return ProviderAuthError(f"no usable Google credentials: {brief(exc, 160)}")
        if isinstance(exc, gexc.Unauthorized | gexc.Unauthenticated):
            return ProviderAuthError("Google refused the credentials (401)")
        if isinstance(exc, gexc.Forbidden | gexc.PermissionDenied) and not _rate_limited(exc):
            return ProviderAuthError(f"permission denied (403): {exc.message}")
        if isinstance(exc, gexc.NotFound):
            return ProviderNotFound("not found (404)")
        return None

    def _retryable(self, exc: Exception) -> bool:
        if isinstance(exc, gexc.TooManyRequests | gexc.ServerError):
            return True
        if isinstance(exc, gexc.GoogleAPICallError):
            return _rate_limited(exc)
        return isinstance(
            exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout
            | google.auth.exceptions.TransportError
        )

    def _retry_after(self, exc: Exception) -> float | None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        return parse_retry_after(headers.get("Retry-After")) if headers is not None else None


def _rate_limited(exc: gexc.GoogleAPICallError) -> bool:
    """Compute answers some rate limits with 403 and a reason, not 429."""
    return any(isinstance(error, dict) and error.get("reason") in RATE_LIMIT_REASONS for error in exc.errors or ())
