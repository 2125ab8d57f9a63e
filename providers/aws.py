"""AWS: EC2 for health and lifecycle, Route 53 for traffic, and (optionally) the AWS Health API as a source of its own.

Health comes from two EC2 calls per cycle: `describe_availability_zones` (zone state) and
`describe_instance_status(IncludeAllInstances=True)`, which gives the lifecycle state and both status checks (system:
the host and its network; instance: the guest) in one answer. Instances are selected with an `instance-id` *filter*
rather than `InstanceIds`, so that one unknown id leaves a gap in the answer instead of failing the whole batch.

The AWS Health API (`health_api: true`; Business support plan and up) is a second, independent source,
`provider:aws-health`: open EC2 issues posted for the site's zones or its whole region. It is read on its own
interval, from the active one of AWS's two endpoints (us-east-1, else us-east-2), and an answer older than its
staleness limit has no vote. It never changes what the EC2 source says: two sources, two votes.

A fence is a stop with `Force=True` unless the site says `fence: stop`. The fence is done only when EC2 *reads*
stopped or terminated: a `stopping` instance, or a stop call that timed out, is not fenced (base.py's `_drive`). A
Name tag whose instance was terminated (and not replaced) still resolves to it, so that a terminated old primary
counts as fenced instead of "not found".

Credentials come from boto3's standard chain (the site's `profile` option, else the environment, else the instance
role) or an injected `session`. botocore's own retries are switched off (`total_max_attempts=1`): our bookkeeping
retries, bounded by the call deadline, and counts every attempt.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import boto3
import botocore.config
import botocore.exceptions

from orchestrator.core.errors import FailoverError, ProviderAuthError, ProviderError, ProviderNotFound
from orchestrator.core.model import DnsTarget, Observation, Site, Status
from providers.base import Capability, CloudProvider, InstanceHealth, InstanceState, PolledSignal, loopback_http
from providers.calls import parse_retry_after
from providers.options import AwsOptions, Route53Options
from providers.traffic import TrafficRouter, fqdn, record_type

log = logging.getLogger(__name__)

STATES = {
    "pending": InstanceState.PENDING,
    "running": InstanceState.RUNNING,
    "stopping": InstanceState.STOPPING,
    "shutting-down": InstanceState.STOPPING,
    "stopped": InstanceState.STOPPED,
    "terminated": InstanceState.TERMINATED,
}
EPOCH = datetime.datetime.fromtimestamp(0, datetime.UTC)
LIVE_STATES = frozenset({"pending", "running", "stopping", "stopped"})  # a Name tag names one of these first
ZONE_STATES = {
    "available": Status.OK,
    "information": Status.OK,
    "impaired": Status.DEGRADED,
    "constrained": Status.DEGRADED,
    "unavailable": Status.DOWN,
}
AUTH_CODES = frozenset({
    "AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken",
    "RequestExpired", "AccessDenied", "AccessDeniedException", "OptInRequired", "UnrecognizedClientException",
    "SubscriptionRequiredException",  # AWS Health without a Business support plan: asking again will not help
})
RETRY_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled", "TooManyRequestsException",
    "PriorRequestNotComplete", "InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable",
    "InsufficientInstanceCapacity",
})
TRANSPORT_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
)
HEALTH_SOURCE = "provider:aws-health"
# AWS Health's two endpoints, active and passive; global.health.amazonaws.com is a CNAME to the active one. We do
# not resolve it (a stuck resolver has no timeout in the standard library): we ask the one that answered last first.
HEALTH_REGIONS = ("us-east-1", "us-east-2")
PLACEHOLDER_KEYS = {"aws_access_key_id": "placeholder", "aws_secret_access_key": "placeholder"}
NAME_TAG = "ec2-name"  # the kind of look-up `names` remembers: Name tag -> instance id


class _AwsErrors:
    """botocore exceptions → ours (`ClientError` carries the API's error code and HTTP status), and late binding."""

    def _client(self, service: str) -> Any:
        raise NotImplementedError

    def _sdk(self, service: str, method: str) -> Callable[..., Any]:
        """A client method bound on call: building the session and client (a missing profile) happens inside the
        counted, mapped call."""
        return lambda **kwargs: getattr(self._client(service), method)(**kwargs)

    def _translate(self, exc: Exception) -> FailoverError | None:
        if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
            return ProviderAuthError("no AWS credentials found (profile, environment or instance role)")
        if isinstance(exc, botocore.exceptions.ProfileNotFound):
            return ProviderAuthError(f"AWS profile not found: {exc.kwargs.get('profile')}")
        if isinstance(exc, botocore.exceptions.ClientError):
            code = _code(exc)
            if code in AUTH_CODES:
                return ProviderAuthError(f"AWS refused the credentials or permission ({code})")
            if code.endswith(("NotFound", ".Malformed")) or code.startswith("NoSuch"):
                return ProviderNotFound(f"not found ({code})")
        return None

    def _retryable(self, exc: Exception) -> bool:
        if isinstance(exc, TRANSPORT_ERRORS):
            return True
        if isinstance(exc, botocore.exceptions.ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return _code(exc) in RETRY_CODES or status == 429 or status >= 500
        return False

    def _retry_after(self, exc: Exception) -> float | None:
        if isinstance(exc, botocore.exceptions.ClientError):
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            return parse_retry_after(headers.get("retry-after"))
        return None


def health_answer(events: Sequence[Mapping[str, Any]], site: Site) -> tuple[Status, str]:
    """The site's status from its region's open and upcoming EC2 events.

    An open *issue* posted for a zone of the site fails that zone; every configured zone failed is `down` (AWS
    confirms the data centre is in trouble), some is `degraded`. An open issue for the whole region (no zone) is
    `degraded` only: AWS posts those for API error rates and capacity too, which do not stop running instances.
    Upcoming events (scheduled changes) only show in the detail. A site with no zones configured is at worst
    `degraded`: without its zone list we cannot say every zone is hit."""
    issues = [e for e in events if e.get("statusCode") == "open" and e.get("eventTypeCategory", "issue") == "issue"]
    zoned = [e for e in issues if e.get("availabilityZone") and (not site.zones or e["availabilityZone"] in site.zones)]
    region_wide = [e for e in issues if not e.get("availabilityZone")]
    upcoming = [e for e in events if e.get("statusCode") == "upcoming"]
    hit = {str(e["availabilityZone"]) for e in zoned}
    if site.zones and hit >= set(site.zones):
        status = Status.DOWN
    elif hit or region_wide:
        status = Status.DEGRADED
    else:
        status = Status.OK
    parts = [f"EC2 issue open in {e['availabilityZone']} since {_when(e.get('startTime'))} "
             f"({e.get('eventTypeCode', '?')})" for e in zoned]
    parts += [f"EC2 issue open in {site.region} since {_when(e.get('startTime'))} ({e.get('eventTypeCode', '?')})"
              for e in region_wide]
    if upcoming:
        parts.append(f"{len(upcoming)} upcoming")
    return status, "AWS Health: " + ("; ".join(parts) if parts else "no open EC2 issue")


def _when(value: Any) -> str:
    """An event time as botocore gives it (a datetime), in UTC."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "?"


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _session(profile: str | None, region: str | None, endpoint_url: str | None) -> boto3.Session:
    """The standard chain; placeholder keys only for a plain-http loopback endpoint (moto, localstack) without a
    profile, so that a drill needs no AWS credentials and real ones are never sent to an emulator."""
    if profile is None and loopback_http(endpoint_url):
        return boto3.Session(region_name=region, **PLACEHOLDER_KEYS)
    return boto3.Session(profile_name=profile, region_name=region)


def _config(request_timeout: float) -> botocore.config.Config:
    """botocore fixes timeouts per client, not per call: a hung request can outlive a short deadline by up to this."""
    return botocore.config.Config(
        retries={"total_max_attempts": 1, "mode": "standard"},  # one attempt: ours retry and count
        connect_timeout=request_timeout,
        read_timeout=request_timeout,
    )


class AwsProvider(_AwsErrors, CloudProvider):
    """EC2 health and start/stop for one site (a region and its zones), and the AWS Health API when the site turns
    it on. Extra keyword: `session` (a `boto3.Session`, for tests). Options: `AwsOptions` (`profile`, `health_api`
    and its interval, staleness and endpoints, `fence`)."""

    kind: ClassVar[str] = "aws"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)

    def __init__(
        self,
        site: Site,
        *,
        options: AwsOptions | None = None,
        session: boto3.Session | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(site, **kwargs)
        self.options = options if options is not None else AwsOptions.parse(site.options, self.scope)
        self._session = session
        self._clients: dict[str, Any] = {}
        self.health = PolledSignal(HEALTH_SOURCE, self.options.signal_interval, self.options.signal_stale_after,
                                   self._read_health) if self.options.health_api else None
        self.health_region = HEALTH_REGIONS[0]  # the Health endpoint that answered last: asked first next time

    def _client(self, service: str) -> Any:
        """One boto3 client per service (`health@us-east-2`: per Health endpoint), made on first use (inside a
        counted call, so that a missing profile is mapped like any other failure) and kept for the provider's life.
        A Health client signs for the region of the endpoint it talks to, as AWS requires."""
        with self._lock:
            if service not in self._clients:
                if self._session is None:
                    self._session = _session(self.options.profile, self.site.region, self.site.endpoint_url)
                name, _, region = service.partition("@")
                endpoint = self._health_endpoint(region) if name == "health" else self.site.endpoint_url
                # botocore fixes timeouts per client: a Health endpoint's must fit its share of the signals' budget
                # (half the poll's, split between two endpoints), or a hung us-east-1 would leave us-east-2 nothing
                budget = self.call_deadline / 4 if name == "health" else self.call_deadline
                self._clients[service] = self._session.client(
                    name, region_name=region or self.site.region, endpoint_url=endpoint,
                    config=_config(min(self.request_timeout, budget)),
                )
            return self._clients[service]

    def _zone_statuses(self) -> Mapping[str, Status]:
        params: dict[str, Any] = {"ZoneNames": list(self.site.zones)} if self.site.zones else {}
        answer = self._read(
            "ec2.describe_availability_zones", self._sdk("ec2", "describe_availability_zones"), **params
        )
        return {
            zone["ZoneName"]: ZONE_STATES.get(zone.get("State", ""), Status.UNKNOWN)
            for zone in answer.get("AvailabilityZones", [])
        }

    # --- the AWS Health API: a source of its own ----------------------------------------------------------------

    def _signals(self, instances: Mapping[str, str], at: float) -> list[Observation]:
        """With `health_api`, the site as AWS Health last told it (`PolledSignal`: read every `signal_interval`, a
        failed read not retried sooner, an answer older than `signal_stale_after` unknown)."""
        return self.health.observe(at, [self.site.name]) if self.health is not None else []

    def _read_health(self, now: float) -> list[tuple[str, Status, str]]:
        status, detail = health_answer(self._health_events(), self.site)
        return [(self.site.name, status, f"{detail}; from {self.health_region}")]

    def _health_events(self) -> list[dict[str, Any]]:
        """Open and upcoming EC2 events of the site's region, every page, from the first endpoint that answers:
        the one that answered last, then the other (AWS runs them active-passive). Each endpoint gets an equal share
        of the budget, so a hung us-east-1 leaves us-east-2 its turn. An auth refusal is not failed over: the other
        endpoint would refuse the same credentials."""
        regions = sorted(self._health_regions(), key=lambda region: region != self.health_region)
        problems: list[str] = []
        for turn, region in enumerate(regions):
            try:
                with self._deadline(self._active_deadline().remaining() / (len(regions) - turn)):
                    events = self._health_pages(region)
            except ProviderAuthError:
                raise
            except FailoverError as exc:
                problems.append(str(exc))
                continue
            self.health_region = region
            return events
        raise ProviderError(f"{self.scope}: no AWS Health endpoint answered: {'; '.join(problems)}")

    def _health_pages(self, region: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"filter": {"services": ["EC2"], "regions": [self.site.region],
                                                 "eventStatusCodes": ["open", "upcoming"]}, "maxResults": 100}
            if token:
                params["nextToken"] = token
            answer = self._read("health.describe_events", self._sdk(f"health@{region}", "describe_events"),
                                subject=f"AWS Health in {region}", **params)
            events.extend(answer.get("events", []))
            token, previous = answer.get("nextToken"), token
            if not token:
                return events
            if token == previous or self._active_deadline().expired:  # a server paging in circles, or too slowly
                raise ProviderError(f"{self.scope}: AWS Health in {region}: {len(events)} events read, more pages "
                                    "left when the deadline ran out or the same nextToken came back")

    def _health_regions(self) -> tuple[str, ...]:
        """us-east-1 and us-east-2; only the first when a single endpoint URL is configured."""
        return HEALTH_REGIONS[:1] if len(self.options.health_endpoint_urls) == 1 else HEALTH_REGIONS

    def _health_endpoint(self, region: str) -> str | None:
        """A configured endpoint (a fake, an emulator), else the site's endpoint (an emulator serving every
        service), else None: boto3's own `health.<region>.amazonaws.com`."""
        urls = self.options.health_endpoint_urls
        if urls:
            return urls[HEALTH_REGIONS.index(region)] if region in HEALTH_REGIONS[:len(urls)] else urls[0]
        return self.site.endpoint_url

    def _instance_healths(self, instances: Sequence[str]) -> Mapping[str, InstanceHealth]:
        """Health by configured name. A `Name` tag is turned into the id of the live instance carrying it, and that
        id is remembered (`self.names`) for later polls and later runs. A remembered id that is gone (terminated,
        or no longer listed) means the machine was replaced: the tag is looked up again in this same poll, so a
        rebuilt instance is never reported down for its predecessor's state."""
        ids, remembered = self._ids_for(instances, refresh=False)
        healths = self._healths_for(ids)
        stale = [name for name in remembered if _gone(healths.get(name))]
        if stale:
            log.info("%s: remembered id of %s is gone; looking the Name tag up again", self.scope, ", ".join(stale))
            for name in stale:
                self._forget(NAME_TAG, name)
                healths.pop(name, None)
            healths.update(self._healths_for(self._ids_for(stale, refresh=True)[0]))
        return healths

    def _ids_for(self, instances: Sequence[str], *, refresh: bool) -> tuple[dict[str, str], set[str]]:
        """id -> configured name for every name that names an instance (ids as they are, `Name` tags remembered
        or looked up), and the names whose id was remembered rather than looked up now."""
        ids: dict[str, str] = {}
        remembered: set[str] = set()
        for name in instances:
            if _is_id(name):
                ids[name] = name
                continue
            known = None if refresh else self._recall(NAME_TAG, name)
            if known is not None:
                ids[known] = name
                remembered.add(name)
            elif (found := self._look_up(name)) is not None:
                ids[found] = name
        return ids, remembered

    def _look_up(self, name: str) -> str | None:
        """The id of the one live instance whose `Name` tag is `name` (stable across re-creation, and what a CI
        config against moto can name before the ids exist); None when there is none, or more than one.

        With no live one, the most recently launched of those going or gone (shutting-down, terminated; EC2 lists
        them for about an hour): a terminated old primary is then *fenced*, where "not found" left the fence to
        the epoch rule alone. Such an id is not remembered: a replacement launched later must win."""
        answer = self._read(
            "ec2.describe_instances", self._sdk("ec2", "describe_instances"), subject=f"instance {name}",
            Filters=[{"Name": "tag:Name", "Values": [name]}],
        )
        found = [i for r in answer.get("Reservations", []) for i in r.get("Instances", [])]
        live = [str(i["InstanceId"]) for i in found if i.get("State", {}).get("Name") in LIVE_STATES]
        if len(live) == 1:
            self._remember(NAME_TAG, name, live[0])
            return live[0]
        if live or not found:
            return None
        return str(max(found, key=lambda i: i.get("LaunchTime") or EPOCH)["InstanceId"])

    def _id(self, instance: str) -> str:
        """The id a lifecycle call names (health was read first, so a `Name` tag is already resolved)."""
        ids, _ = self._ids_for([instance], refresh=False)
        if not ids:
            raise ProviderNotFound(f"{self.scope}: no live instance has the Name tag {instance}")
        return next(iter(ids))

    def _healths_for(self, ids: Mapping[str, str]) -> dict[str, InstanceHealth]:
        if not ids:
            return {}
        return {ids[h.instance]: replace(h, instance=ids[h.instance])
                for h in self._healths_by_id(list(ids)).values() if h.instance in ids}

    def _healths_by_id(self, instances: Sequence[str]) -> Mapping[str, InstanceHealth]:
        healths: dict[str, InstanceHealth] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Filters": [{"Name": "instance-id", "Values": list(instances)}],
                                      "IncludeAllInstances": True}
            if token:
                params["NextToken"] = token
            answer = self._read("ec2.describe_instance_status", self._sdk("ec2", "describe_instance_status"), **params)
            for entry in answer.get("InstanceStatuses", []):
                health = _instance_health(entry)
                healths[health.instance] = health
            token = answer.get("NextToken")
            if not token:
                return healths

    def _start(self, instance: str) -> None:
        self._write("ec2.start_instances", self._sdk("ec2", "start_instances"), subject=f"instance {instance}",
                    InstanceIds=[self._id(instance)])

    def _stop(self, instance: str) -> None:
        self._write("ec2.stop_instances", self._sdk("ec2", "stop_instances"), subject=f"instance {instance}",
                    InstanceIds=[self._id(instance)])

    def _fence(self, instance: str) -> None:
        """The fastest stop EC2 offers (`Force=True`: no guest shutdown, no waiting on a host in trouble), unless
        the site asks for `fence: stop`. Only the stop is asked for here; `fence` returns once EC2 reads stopped."""
        self._write("ec2.stop_instances", self._sdk("ec2", "stop_instances"), subject=f"instance {instance}",
                    InstanceIds=[self._id(instance)], Force=self.options.fence == "force_stop")


def _is_id(instance: str) -> bool:
    return instance.startswith("i-")


def _gone(health: InstanceHealth | None) -> bool:
    """A remembered id the API no longer lists, or lists as terminated: its machine was replaced (or removed)."""
    return health is None or health.state is InstanceState.TERMINATED


def _instance_health(entry: Mapping[str, Any]) -> InstanceHealth:
    """One `InstanceStatuses` entry: running with both checks ok → ok; a check impaired → down (the host or the
    guest is unreachable); checks still initializing → degraded; not running → down."""
    instance = entry["InstanceId"]
    state = STATES.get(entry.get("InstanceState", {}).get("Name", ""), InstanceState.UNKNOWN)
    system = entry.get("SystemStatus", {}).get("Status", "not-applicable")
    guest = entry.get("InstanceStatus", {}).get("Status", "not-applicable")
    detail = f"zone {entry.get('AvailabilityZone', '?')}; system {system}, instance {guest}"
    events = [event.get("Code", "") for event in entry.get("Events", [])]
    if events:
        detail += f"; scheduled {', '.join(events)}"
    if state is InstanceState.UNKNOWN:
        return InstanceHealth(instance, state, Status.UNKNOWN, detail)
    if state is not InstanceState.RUNNING:
        return InstanceHealth(instance, state, Status.DOWN, detail)
    if "impaired" in (system, guest):
        return InstanceHealth(instance, state, Status.DOWN, detail)
    if system == guest == "ok":
        return InstanceHealth(instance, state, Status.OK, detail)
    return InstanceHealth(instance, state, Status.DEGRADED, detail)


class Route53Router(_AwsErrors, TrafficRouter):
    """A *simple* Route 53 record (A for an IPv4 address, AAAA for IPv6, CNAME for a name) that the orchestrator
    moves with UPSERT.

    Why simple and not failover or weighted records: Route 53 would then flip traffic on its own health checks,
    possibly to a replica that is not yet promoted or before the old primary is fenced. Here the runbook decides and
    the record follows. A change of type (CNAME → A) is one atomic change batch: DELETE the old set, CREATE the new.
    Records with a routing policy (a SetIdentifier) under the same name are refused rather than overwritten.
    """

    kind: ClassVar[str] = "aws"

    def __init__(
        self,
        *,
        options: Route53Options | None = None,
        endpoint_url: str | None = None,
        session: boto3.Session | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_url = endpoint_url
        self._profile = (options or Route53Options()).profile
        self._session = session
        self._route53: Any = None
        self._zones: dict[str, str] = {}  # zone name -> hosted zone id

    @property
    def scope(self) -> str:
        return "route53"

    def _zone_id(self, dns: DnsTarget) -> str:
        """`zone_id` as configured: an id (Z0123...), or a zone's name (`engine.example.internal`, with a dot),
        resolved once; names survive re-creating a zone and let a CI config name a zone moto has not made yet."""
        if "." not in dns.zone_id:
            return dns.zone_id
        if dns.zone_id not in self._zones:
            wanted = fqdn(dns.zone_id)
            answer = self._read("route53.list_hosted_zones_by_name", self._sdk("route53", "list_hosted_zones_by_name"),
                                subject=f"zone {dns.zone_id}", DNSName=wanted, MaxItems="1")
            zones = [z for z in answer.get("HostedZones", []) if fqdn(z["Name"]) == wanted]
            if not zones:
                raise ProviderNotFound(f"route53: no hosted zone named {dns.zone_id}")
            self._zones[dns.zone_id] = str(zones[0]["Id"]).split("/")[-1]
        return self._zones[dns.zone_id]

    def _client(self, service: str) -> Any:
        with self._lock:
            if self._route53 is None:
                session = self._session or _session(self._profile, None, self.endpoint_url)
                self._route53 = session.client(
                    "route53", region_name="us-east-1", endpoint_url=self.endpoint_url,
                    config=_config(min(self.request_timeout, self.call_deadline)),
                )
            return self._route53

    def _record_sets(self, dns: DnsTarget) -> list[dict[str, Any]]:
        name = fqdn(dns.record)
        answer = self._read(
            "route53.list_resource_record_sets", self._sdk("route53", "list_resource_record_sets"),
            subject=f"zone {dns.zone_id}", HostedZoneId=self._zone_id(dns), StartRecordName=name, MaxItems="10",
        )
        return [rrset for rrset in answer.get("ResourceRecordSets", []) if fqdn(rrset["Name"]) == name]

    def _current_target(self, dns: DnsTarget) -> str | None:
        for rrset in self._record_sets(dns):
            if rrset["Type"] in ("A", "AAAA", "CNAME") and rrset.get("ResourceRecords"):
                value: str = rrset["ResourceRecords"][0]["Value"]
                return value.rstrip(".")
        return None

    def _point_to(self, dns: DnsTarget, address: str) -> str | None:
        new = {"Name": fqdn(dns.record), "Type": record_type(address), "TTL": dns.ttl,
               "ResourceRecords": [{"Value": address}]}
        changes: list[dict[str, Any]] = []
        for rrset in self._record_sets(dns):
            if rrset.get("SetIdentifier"):
                raise ProviderError(
                    f"route53: {dns.record} has routing-policy records ({rrset['SetIdentifier']}); "
                    "failover manages a simple record only"
                )
            if rrset["Type"] in ("A", "AAAA", "CNAME") and rrset["Type"] != new["Type"]:
                changes.append({"Action": "DELETE", "ResourceRecordSet": rrset})
        changes.append({"Action": "UPSERT", "ResourceRecordSet": new})
        self._write(
            "route53.change_resource_record_sets", self._sdk("route53", "change_resource_record_sets"),
            subject=f"record {dns.record}", HostedZoneId=self._zone_id(dns),
            ChangeBatch={"Comment": f"failover: {dns.record} -> {address}", "Changes": changes},
        )
        return None  # no wait for INSYNC here: providers.dns_aws.Route53Router adds it
