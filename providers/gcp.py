"""GCP: Compute Engine through its REST API (v1), authenticated by google-auth.

Health: `GET regions/{r}` (status UP / DOWN; a region DOWN takes all its zones down) and `GET zones/{z}` per
configured zone; `GET zones/{z}/instances/{i}` per instance. GCP has no per-instance status checks like EC2's, so an
instance is `ok` when RUNNING and `down` otherwise.

Other sources, each an observation source of its own (`providers.base.PolledSignal`: read every `signal_interval`,
its last answer voting until `signal_stale_after`): Personalized Service Health
(`GET servicehealth.googleapis.com/v1/projects/{p}/locations/global/events?filter=state=ACTIVE`, every page) gives
the site `provider:gcp-service-health`: an active incident on Compute Engine (or the VPC) in the site's region or
all its zones is `down`, in some zones or still emerging `degraded`; and Compute's host-error operations
(`GET aggregated/operations?filter=operationType="compute.instances.hostError"`) give each replica
`provider:gcp-host-errors`: `down` for `host_error_window` after a host error on its instance. Service Health is
called through the same session as Compute, not through google-cloud-servicehealth: that client is gRPC, and
importing it (with grpc) would slow every CLI start that configures a GCP site.

Lifecycle: `POST .../instances/{i}/start|stop` returns an Operation (PENDING, RUNNING, then DONE; a failed one is
DONE with `error.errors` and `httpErrorStatusCode`), which we poll with `GET .../operations/{op}` every
`poll_interval` in our own loop bounded by the deadline. A fence is a stop with `noGracefulShutdown=true` (option
`fence`): the guest gets no graceful-shutdown period, so a host in trouble cannot hold the stop up.

Why not the `google-cloud-compute` client: importing `google.cloud.compute_v1` costs about two seconds of CPU (every
Compute service and all its message types load at once, whichever one is used), which was most of a `failover
check` run, paid again by every cron run. The five calls here are plain JSON, sent through google-auth's
`AuthorizedSession`: the session the client's REST transport uses underneath, with the same token handling (a 401
refreshes the token once). HTTP errors become `google.api_core.exceptions` through `from_http_response`, as that
transport maps them, so the error mapping below is the client's. One session per provider, kept for its life: one
keep-alive connection instead of a client (and a connection) per service.

An instance is named `zone/name`, or just `name`: then it is looked up in the site's zones in order, and in a site
of several zones the zone it was found in is remembered (`self.names`, kept in the store by `failover check`), and
forgotten when the instance is no longer there. Credentials: an injected `credentials`, else Google's Application
Default Credentials (`google.auth.default()`, on the first call, not at construction, and once per process); a
plain-http loopback endpoint (a local fake) gets `AnonymousCredentials` so that no real token is sent to it.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import google.auth
import google.auth.exceptions
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession

from orchestrator.core.errors import FailoverError, ProviderAuthError, ProviderError, ProviderNotFound
from orchestrator.core.model import Observation, Site, Status
from providers.base import Capability, CloudProvider, InstanceHealth, InstanceState, PolledSignal, loopback_http
from providers.calls import brief, parse_retry_after
from providers.options import GcpOptions

API_ENDPOINT = "https://compute.googleapis.com"
SERVICE_HEALTH_ENDPOINT = "https://servicehealth.googleapis.com"
SCOPES = ["https://www.googleapis.com/auth/compute", "https://www.googleapis.com/auth/cloud-platform"]
HOST_ERROR = "compute.instances.hostError"
PRODUCTS = ("Compute Engine", "Virtual Private Cloud")  # an incident on these can take our engines down
MAX_PAGES = 5  # of active events (100 each): more than any real outage has had
STATES = {
    "RUNNING": InstanceState.RUNNING,
    "PROVISIONING": InstanceState.PENDING,
    "STAGING": InstanceState.PENDING,
    "REPAIRING": InstanceState.PENDING,  # a host failure being repaired: not serving, will come back
    "STOPPING": InstanceState.STOPPING,
    "PENDING_STOP": InstanceState.STOPPING,  # in its graceful-shutdown period: the guest still runs
    "SUSPENDING": InstanceState.STOPPING,
    "STOPPED": InstanceState.STOPPED,
    "SUSPENDED": InstanceState.STOPPED,
    "TERMINATED": InstanceState.STOPPED,  # GCP's word for a stopped VM; it can be started again
}
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
ZONE_OF = "gcp-zone"  # the kind of look-up `names` remembers: bare instance name -> zone

_ADC: list[tuple[Credentials, str | None]] = []  # Application Default Credentials, found once per process
_ADC_LOCK = threading.Lock()


def _default_credentials() -> tuple[Credentials, str | None]:
    """`google.auth.default()` once per process: every GCP site shares the look-up (files, environment, and on a
    machine outside GCP a metadata-server probe that only times out). A failed look-up is not kept."""
    with _ADC_LOCK:
        if not _ADC:
            _ADC.append(google.auth.default(scopes=SCOPES))
        return _ADC[0]


class GcpProvider(CloudProvider):
    """Compute Engine health and start/stop for one site. Options: `GcpOptions` (`project`). Extra keyword:
    `credentials` (google-auth credentials, for tests). The API endpoint is `site.endpoint_url` when set."""

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
        **kwargs: Any,
    ) -> None:
        super().__init__(site, **kwargs)
        if credentials is None and loopback_http(site.endpoint_url):
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        self._credentials = credentials
        self.options = options if options is not None else GcpOptions.parse(site.options, self.scope)
        self._project: str | None = self.options.project
        self._endpoint = (site.endpoint_url or API_ENDPOINT).rstrip("/")
        self._health_endpoint = (site.endpoint_url or SERVICE_HEALTH_ENDPOINT).rstrip("/")
        self._session: AuthorizedSession | None = None
        opts = self.options
        self._sources = [
            PolledSignal(f"provider:{self.kind}-service-health", opts.signal_interval, opts.signal_stale_after,
                         self._read_service_health) if opts.service_health else None,
            PolledSignal(f"provider:{self.kind}-host-errors", opts.signal_interval, opts.signal_stale_after,
                         self._read_host_errors) if opts.host_errors else None,
        ]
        self._replicas: dict[str, str] = {}  # instance -> replica, of the poll in progress

    # --- the HTTP session, made on first use so that ADC is only consulted when a call is made -----------------

    def _http(self) -> AuthorizedSession:
        with self._lock:
            if self._session is None:
                if self._credentials is None:
                    self._credentials, adc_project = _default_credentials()
                    self._project = self._project or adc_project
                self._session = AuthorizedSession(self._credentials)  # type: ignore[no-untyped-call]
            return self._session

    @property
    def project(self) -> str:
        if not self._project:
            raise ProviderError(f"{self.scope}: no GCP project configured and none in the default credentials")
        return self._project

    def _call(self, method: str, path: str, timeout: float, params: Mapping[str, str] | None = None,
              api: str = "compute") -> dict[str, Any]:
        """One request to `projects/{project}/{path}` of Compute (or of Service Health, `api="servicehealth"`); an
        HTTP error raised as the client library would raise it. The session (and the credential look-up) is made
        inside the counted call, so a missing credential becomes a mapped `ProviderAuthError` like any other API
        failure."""
        session = self._http()
        base = f"{self._endpoint}/compute/v1" if api == "compute" else f"{self._health_endpoint}/v1"
        url = f"{base}/projects/{quote(self.project, safe='')}/{path}"
        response = session.request(method, url, params=params, timeout=timeout)  # type: ignore[no-untyped-call]
        if response.status_code >= 400:
            raise gexc.from_http_response(response)  # type: ignore[no-untyped-call]
        answer: dict[str, Any] = response.json()
        return answer

    def _get(self, operation: str, path: str, subject: str, params: Mapping[str, str] | None = None,
             api: str = "compute") -> dict[str, Any]:
        return self._read(operation, self._call, subject=subject, method="GET", path=path, params=params, api=api)

    def _timeout_kwargs(self, timeout: float) -> dict[str, Any]:
        return {"timeout": timeout}

    # --- health --------------------------------------------------------------------------------------------------

    def _zone_statuses(self) -> Mapping[str, Status]:
        region = self._get("compute.regions.get", f"regions/{_seg(self.site.region)}",
                           subject=f"region {self.site.region}")
        zones = self.site.zones or tuple(str(url).rsplit("/", 1)[-1] for url in region.get("zones", ()))
        statuses = {}
        for zone in zones:
            answer = self._get("compute.zones.get", f"zones/{_seg(zone)}", subject=f"zone {zone}")
            statuses[zone] = Status.OK if answer.get("status") == "UP" else Status.DOWN
        if region.get("status") != "UP":
            statuses = dict.fromkeys(statuses, Status.DOWN)
        return statuses

    def _instance_healths(self, instances: Sequence[str]) -> Mapping[str, InstanceHealth]:
        healths = {}
        for instance in instances:
            found = self._get_instance(instance)
            if found is None:
                continue
            zone, answer = found
            status_text = str(answer.get("status", ""))
            state = STATES.get(status_text, InstanceState.UNKNOWN)
            status = Status.OK if state is InstanceState.RUNNING else Status.DOWN
            if state is InstanceState.UNKNOWN:
                status = Status.UNKNOWN
            healths[instance] = InstanceHealth(instance, state, status, f"zone {zone}; status {status_text}")
        return healths

    def _get_instance(self, instance: str) -> tuple[str, dict[str, Any]] | None:
        """(zone, Instance) or None when no candidate zone has it. A remembered zone that no longer has it is
        forgotten and the other zones are asked in the same call: the instance was rebuilt elsewhere."""
        name = instance.rsplit("/", 1)[-1]
        known = self._known_zone(instance)
        for zone in self._candidate_zones(instance, known):
            try:
                answer = self._get("compute.instances.get", f"zones/{_seg(zone)}/instances/{_seg(name)}",
                                   subject=f"instance {instance}")
            except ProviderNotFound:
                if zone == known and self._recall(ZONE_OF, instance) == zone:
                    self._forget(ZONE_OF, instance)
                continue
            if zone != known:
                self._remember(ZONE_OF, instance, zone)
            return zone, answer
        return None

    def _known_zone(self, instance: str) -> str | None:
        """The zone of an instance without asking the API: its `zone/` prefix, the site's only zone, or the zone
        it was last found in."""
        if "/" in instance:
            return instance.split("/", 1)[0]
        if len(self.site.zones) == 1:
            return self.site.zones[0]
        return self._recall(ZONE_OF, instance)

    def _candidate_zones(self, instance: str, known: str | None) -> list[str]:
        if "/" in instance or len(self.site.zones) == 1:
            return [known] if known else []
        return ([known] if known else []) + [zone for zone in self.site.zones if zone != known]

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def _start(self, instance: str) -> None:
        self._act(instance, "start")

    def _stop(self, instance: str) -> None:
        self._act(instance, "stop")

    def _fence(self, instance: str) -> None:
        """The fastest stop Compute offers: no graceful-shutdown period (option `fence: stop` restores it)."""
        if self.options.fence == "no_graceful_stop":
            self._act(instance, "stop", no_graceful_shutdown=True)
        else:
            self._act(instance, "stop")

    def _act(self, instance: str, verb: str, **flags: bool) -> None:
        zone = self._zone(instance)
        name = instance.rsplit("/", 1)[-1]
        operation = self._write(f"compute.instances.{verb}", self._verb_call(verb), subject=f"instance {instance}",
                                zone=zone, instance=name, **flags)  # what a dry run records
        if operation is not None:
            self._wait_operation(instance, zone, operation)

    def _verb_call(self, verb: str) -> Callable[..., dict[str, Any]]:
        def call(*, zone: str, instance: str, timeout: float, no_graceful_shutdown: bool = False) -> dict[str, Any]:
            params = {"noGracefulShutdown": "true"} if no_graceful_shutdown else None
            return self._call("POST", f"zones/{_seg(zone)}/instances/{_seg(instance)}/{verb}", timeout, params)

        return call

    def _zone(self, instance: str) -> str:
        known = self._known_zone(instance)
        if known is not None:
            return known
        found = self._get_instance(instance)
        if found is None:
            raise ProviderNotFound(f"{self.scope}: instance {instance} not found in zones {', '.join(self.site.zones)}")
        return found[0]

    def _wait_operation(self, instance: str, zone: str, operation: Mapping[str, Any]) -> None:
        """Poll the zonal operation (PENDING, RUNNING) until DONE, every `poll_interval` within the running
        operation's deadline; raise its error if any. An operation still running at the deadline is a failure: the
        caller never counts a stop it did not see finish."""
        deadline = self._operation_deadline()
        name = str(operation.get("name", ""))
        while operation.get("status") != "DONE":
            if deadline.expired:
                raise ProviderError(f"{self.scope}: instance {instance}: operation {name} still "
                                    f"{operation.get('status', 'unknown')}, not done after {deadline.seconds:g}s")
            self._pause(deadline, self.poll_interval)
            operation = self._get("compute.zone_operations.get", f"zones/{_seg(zone)}/operations/{_seg(name)}",
                                  subject=f"instance {instance}")
        errors = (operation.get("error") or {}).get("errors") or []
        if errors or operation.get("httpErrorStatusCode"):
            reasons = "; ".join(f"{error.get('code')}: {error.get('message')}" for error in errors) or "no details"
            http = f" (HTTP {operation.get('httpErrorStatusCode')} {operation.get('httpErrorMessage', '')})".rstrip()
            raise ProviderError(f"{self.scope}: instance {instance}: operation {name} failed{http}: {reasons}")

    # --- other sources -------------------------------------------------------------------------------------------

    def _signals(self, instances: Mapping[str, str], at: float) -> list[Observation]:
        self._replicas = dict(instances)
        subjects = {f"provider:{self.kind}-service-health": [self.site.name],
                    f"provider:{self.kind}-host-errors": list(instances.values())}
        return [obs for source in self._sources if source is not None
                for obs in source.observe(at, subjects[source.source])]

    def _read_service_health(self, now: float) -> list[tuple[str, Status, str]]:
        """The site's status from the active Service Health incidents that name Compute Engine (or the VPC) in its
        region or zones."""
        events: list[Mapping[str, Any]] = []
        token = ""
        for _ in range(MAX_PAGES):
            params = {"filter": "state=ACTIVE", "pageSize": "100", **({"pageToken": token} if token else {})}
            page = self._get("servicehealth.events.list", "locations/global/events", "Service Health", params,
                             api="servicehealth")
            events.extend(page.get("events") or ())
            token = str(page.get("nextPageToken") or "")
            if not token:
                break
        return [(self.site.name, *self._incidents(events, now))]

    def _incidents(self, events: Sequence[Mapping[str, Any]], now: float) -> tuple[Status, str]:
        scope = set(self.site.zones) or {self.site.region}  # what must all be hit for the site to be down
        hit: set[str] = set()
        titles, emerging = [], False
        for event in events:
            ended = _timestamp(event.get("endTime"))
            if event.get("relevance") == "NOT_IMPACTED" or (ended is not None and ended <= now):
                continue
            places = {str((impact.get("location") or {}).get("locationName", ""))
                      for impact in event.get("eventImpacts") or ()
                      if any(word in str((impact.get("product") or {}).get("productName", "")) for word in PRODUCTS)}
            if self.site.region in places:
                ours = scope
            else:  # zones of ours; in a site with no zones configured, any zone of its region
                ours = (scope & places) or {place for place in places if place.startswith(f"{self.site.region}-")}
            if not ours:
                continue
            hit |= ours
            emerging = emerging or event.get("detailedCategory") == "EMERGING_INCIDENT"
            titles.append(f"{event.get('title', event.get('name'))} ({', '.join(sorted(ours))})")
        if not titles:
            return Status.OK, "no active incident on Compute Engine in its region or zones"
        whole = hit >= scope and not emerging
        return (Status.DOWN if whole else Status.DEGRADED), "; ".join(titles)

    def _read_host_errors(self, now: float) -> list[tuple[str, Status, str]]:
        """Each replica's status from Compute's host-error operations: `down` for `host_error_window` after one."""
        answer = self._get("compute.global_operations.aggregated_list", "aggregated/operations", "host errors",
                           {"filter": f'operationType="{HOST_ERROR}"', "maxResults": "500",
                            "returnPartialSuccess": "true"})
        window = self.options.host_error_window
        latest: dict[str, float] = {}
        for scope in (answer.get("items") or {}).values():
            for operation in scope.get("operations") or ():
                inserted = _timestamp(operation.get("insertTime"))
                target = str(operation.get("targetLink", ""))
                if inserted is not None and now - inserted <= window and "/zones/" in target:
                    key = target.split("/zones/", 1)[1].replace("/instances/", "/")  # zone/name
                    latest[key] = max(latest.get(key, inserted), inserted)
        triples = []
        for instance, replica in self._replicas.items():
            zone = self._known_zone(instance)
            name = instance.rsplit("/", 1)[-1]
            found = [at for key, at in latest.items() if key.rsplit("/", 1)[-1] == name
                     and (zone is None or key.split("/", 1)[0] == zone)]
            if found:
                ago = now - max(found)
                triples.append((replica, Status.DOWN, f"{instance}: host error {ago:.0f}s ago"))
            else:
                triples.append((replica, Status.OK, f"{instance}: no host error in the last {window:g}s"))
        return triples

    # --- errors --------------------------------------------------------------------------------------------------

    def _translate(self, exc: Exception) -> FailoverError | None:
        return google_error(exc)

    def _retryable(self, exc: Exception) -> bool:
        return google_retryable(exc)


    def _retry_after(self, exc: Exception) -> float | None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        return parse_retry_after(headers.get("Retry-After")) if headers is not None else None


def _timestamp(value: Any) -> float | None:
    """Epoch seconds from an RFC 3339 timestamp (`2026-12-01T05:00:00.123Z`), or None."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _seg(value: str) -> str:
    """One path segment: a configured name never changes which resource the URL names."""
    return quote(value, safe="")


def _rate_limited(exc: gexc.GoogleAPICallError) -> bool:
    """Compute answers some rate limits with 403 and a reason, not 429."""
    return any(isinstance(error, dict) and error.get("reason") in RATE_LIMIT_REASONS for error in exc.errors or ())


def google_error(exc: Exception) -> FailoverError | None:
    """Our error for what the SDK raised (None: not one we name); shared by the adapter and the DNS router."""
    if isinstance(exc, google.auth.exceptions.DefaultCredentialsError | google.auth.exceptions.RefreshError):
        return ProviderAuthError(f"no usable Google credentials: {brief(exc, 160)}")
    if isinstance(exc, gexc.Unauthorized | gexc.Unauthenticated):
        return ProviderAuthError("Google refused the credentials (401)")
    if isinstance(exc, gexc.Forbidden | gexc.PermissionDenied) and not _rate_limited(exc):
        return ProviderAuthError(f"permission denied (403): {exc.message}")
    if isinstance(exc, gexc.NotFound):
        return ProviderNotFound("not found (404)")
    return None


def google_retryable(exc: Exception) -> bool:
    """Whether the SDK's error is worth another attempt; shared by the adapter and the DNS router."""
    if isinstance(exc, gexc.TooManyRequests | gexc.ServerError):
        return True
    if isinstance(exc, gexc.GoogleAPICallError):
        return _rate_limited(exc)
    return isinstance(
        exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout
        | google.auth.exceptions.TransportError
    )
