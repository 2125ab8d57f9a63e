"""The in-memory cloud: `LocalCloud` (one cloud's control plane and DNS), `LocalProvider` and `LocalRouter`.

Why: the simulator must run the production runbook against something that behaves like a cloud API — instances
that take time to stop, a status page that lags the data plane, throttling and 5xx — without any SDK, network or
wall clock; and the provider contract suite, the step tests and the benchmarks need an adapter with no SDK under it.
One cloud serves both, so that what the tests check of it is what the simulator runs on. `LocalCloud` holds that
state; its owner (the simulated world, a test) drives it through the fault-injection methods; the adapters below
are ordinary `CloudProvider` / `TrafficRouter` subclasses, so every public method the runbook uses (`observe`,
`fence`, `start`, `point_to`...) is the production code path with its deadlines, retries and error mapping.

What the simulated cloud models, and why:
- a lifecycle transition (start, stop) completes `start_time` / `stop_time` seconds after it was asked for, on the
  cloud's injected clock (0: at the next read); while the zone's data plane is down it hangs (a stop asked of a lost
  data centre stays `stopping` until the data centre returns, which is what clouds do and why the runbook must not
  rely on it). A test that wants a transition to last a few polls gives the cloud the virtual clock its adapter
  sleeps on, and a transition time of that many poll intervals;
- zone statuses and instance impairment are what the API *reports*, set by the owner independently of the data
  plane, so a status page that lags (or never notices) an outage is expressible;
- API failures are per site (a region's endpoint throttles, answers 5xx, refuses the credentials: for a while with
  `fail_api`, or for the next few calls with `fail_next`) or for every call (`set_caller_offline`: the caller's own
  network is down); the DNS API is the site `DNS`;
- DNS records keep their history so that clients can be modelled as resolving through a TTL.

Several adapters (one per site) may share one cloud, as the sites of one provider share its API, from several
threads (the daemon polls each site on its own): every method holds the cloud's lock.
Retries here are deterministic (exponential backoff without jitter unless asked for): a simulation must give the
same result for the same seed. Built without a `cloud` (from the provider registry), each adapter gets a fresh
cloud of its own on the wall clock, its site's zones reported ok.
This module depends on the core's model and errors only (docs/design.md §1).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from orchestrator.core.errors import FailoverError, ProviderAuthError, ProviderNotFound
from orchestrator.core.model import DnsTarget, Site, Status
from providers.base import Capability, CloudProvider, InstanceHealth, InstanceState, simple_health
from providers.options import NoOptions
from providers.traffic import TrafficRouter

OFFLINE = 0  # the status of a call that never reached the API (connection refused, no route)
DNS = "dns"  # the site name the DNS API's calls are gated under (`fail_api(DNS, ...)` breaks the record calls)


class LocalApiError(Exception):
    """What the simulated API raises: an HTTP-like status (0 when unreachable) and an optional Retry-After."""

    def __init__(self, status: int, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(f"{status or 'unreachable'} {message}".strip())
        self.status = status
        self.retry_after = retry_after


@dataclass(slots=True)
class LocalInstance:
    site: str
    zone: str
    state: InstanceState = InstanceState.RUNNING
    impaired: bool = False
    pending: InstanceState | None = None  # the state an ongoing transition ends in
    ready_at: float = 0.0  # when that transition completes, if the data plane is up


@dataclass(slots=True)
class _ApiFault:
    status: int
    until: float
    retry_after: float | None


@dataclass
class LocalCloud:
    """One simulated cloud (`aws`, `gcp`, ...): zones, instances per site, DNS records, injected API faults."""

    name: str
    clock: Callable[[], float]
    start_time: float = 30.0
    stop_time: float = 5.0
    zones: dict[str, Status] = field(default_factory=dict)
    instances: dict[str, dict[str, LocalInstance]] = field(default_factory=dict)  # site -> id -> instance
    records: dict[tuple[str, str], list[tuple[float, str]]] = field(default_factory=dict)  # history per record
    calls: int = 0
    _down_zones: set[str] = field(default_factory=set)
    _api_faults: dict[str, _ApiFault] = field(default_factory=dict)
    _next_faults: dict[str, deque[LocalApiError]] = field(default_factory=dict)
    _offline: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    # --- set-up and fault injection ------------------------------------------------------------------------------

    def add_instance(self, site: str, instance: str, zone: str,
                     state: InstanceState = InstanceState.RUNNING) -> None:
        with self._lock:
            self.zones.setdefault(zone, Status.OK)
            self.instances.setdefault(site, {})[instance] = LocalInstance(site, zone, state)

    def set_zone_status(self, zone: str, status: Status) -> None:
        """What the API reports for the zone (the status page), whatever the data plane does."""
        with self._lock:
            self.zones[zone] = status

    def set_data_plane(self, zone: str, up: bool) -> None:
        """Whether machines in the zone can be reached; transitions of its instances hang while it is down."""
        with self._lock:
            if up:
                self._down_zones.discard(zone)
            else:
                self._down_zones.add(zone)

    def impair(self, site: str, impaired: bool = True, *, instance: str | None = None) -> None:
        """The instance status checks of every instance of `site` (or of `instance` only) fail, or pass again."""
        with self._lock:
            for name, found in self.instances.get(site, {}).items():
                if instance is None or name == instance:
                    found.impaired = impaired

    def fail_api(self, site: str, *, status: int = 503, until: float = math.inf,
                 retry_after: float | None = None) -> None:
        """Every call about `site` fails with `status` until `until` (429 and 5xx are retried by the adapters)."""
        with self._lock:
            self._api_faults[site] = _ApiFault(status, until, retry_after)

    def fail_next(self, site: str, count: int = 1, *, status: int = 503, retry_after: float | None = None) -> None:
        """The next `count` calls about `site` fail with `status`, whatever the clock says: throttling that lifts
        after two answers (429 with a Retry-After), a 5xx burst, a credential refused once (401/403)."""
        with self._lock:
            queued = self._next_faults.setdefault(site, deque())
            queued.extend(LocalApiError(status, f"injected failure for {site}", retry_after) for _ in range(count))

    def heal_api(self, site: str) -> None:
        with self._lock:
            self._api_faults.pop(site, None)
            self._next_faults.pop(site, None)

    def set_caller_offline(self, offline: bool) -> None:
        """The caller's own network is down: every call fails before reaching the API."""
        with self._lock:
            self._offline = offline

    # --- what clients and the world read (not API calls: never fail) ------------------------------------------

    def state_of(self, site: str, instance: str) -> InstanceState:
        """The instance's lifecycle state now, completing a due transition first."""
        with self._lock:
            found = self.instances[site][instance]
            self._advance(found)
            return found.state

    def resolve(self, zone_id: str, record: str, at: float) -> str | None:
        """The address the record held at time `at` (a client resolving through a cache sees an older `at`)."""
        with self._lock:
            history = self.records.get((zone_id, record))
            if not history:
                return None
            index = bisect.bisect_right(history, (at, "\uffff")) - 1
            return history[index][1] if index >= 0 else None

    def changed_at(self, zone_id: str, record: str, at: float) -> float:
        """When the record last changed at or before `at` (0.0 if it never did)."""
        with self._lock:
            history = self.records.get((zone_id, record)) or []
            index = bisect.bisect_right(history, (at, "\uffff")) - 1
            return history[index][0] if index >= 0 else 0.0

    def seed_record(self, zone_id: str, record: str, address: str, at: float) -> None:
        with self._lock:
            self.records[(zone_id, record)] = [(at, address)]

    # --- the API an adapter calls --------------------------------------------------------------------------------

    def describe_zones(self, site: str, names: Iterable[str] = ()) -> dict[str, Status]:
        with self._lock:
            self._gate(site)
            wanted = list(names) or sorted({i.zone for i in self.instances.get(site, {}).values()})
            return {zone: self.zones[zone] for zone in wanted if zone in self.zones}

    def describe_instances(self, site: str, ids: Sequence[str]) -> dict[str, tuple[str, InstanceState, bool]]:
        """Existing instances only: id → (zone, state, impaired)."""
        with self._lock:
            self._gate(site)
            found = {}
            for instance_id in ids:
                instance = self.instances.get(site, {}).get(instance_id)
                if instance is not None:
                    self._advance(instance)
                    found[instance_id] = (instance.zone, instance.state, instance.impaired)
            return found

    def start_instance(self, site: str, instance_id: str) -> None:
        self._transition(site, instance_id, InstanceState.PENDING, InstanceState.RUNNING, self.start_time)

    def stop_instance(self, site: str, instance_id: str) -> None:
        self._transition(site, instance_id, InstanceState.STOPPING, InstanceState.STOPPED, self.stop_time)

    def get_record(self, zone_id: str, name: str) -> str | None:
        with self._lock:
            self._gate(DNS)
            history = self.records.get((zone_id, name))
            return history[-1][1] if history else None

    def put_record(self, zone_id: str, name: str, address: str) -> None:
        with self._lock:
            self._gate(DNS)
            self.records.setdefault((zone_id, name), []).append((self.clock(), address))

    # --- internals (called with the lock held) -------------------------------------------------------------------

    def _gate(self, site: str) -> None:
        self.calls += 1
        if self._offline:
            raise LocalApiError(OFFLINE, "cannot reach the API: the caller's network is down")
        fault = self._api_faults.get(site)
        if fault is not None:
            if self.clock() < fault.until:
                raise LocalApiError(fault.status, f"injected failure for {site}", fault.retry_after)
            del self._api_faults[site]
        queued = self._next_faults.get(site)
        if queued:
            raise queued.popleft()

    def _transition(self, site: str, instance_id: str, via: InstanceState, to: InstanceState, takes: float) -> None:
        with self._lock:
            self._gate(site)
            instance = self.instances.get(site, {}).get(instance_id)
            if instance is None:
                raise LocalApiError(404, f"instance {instance_id} does not exist")
            self._advance(instance)
            if instance.state is to or instance.pending is to:
                return
            instance.state, instance.pending, instance.ready_at = via, to, self.clock() + takes

    def _advance(self, instance: LocalInstance) -> None:
        if instance.pending is None or instance.zone in self._down_zones:
            return
        if self.clock() >= instance.ready_at:
            instance.state, instance.pending = instance.pending, None


class _LocalCalls:
    """Error mapping shared by the provider and the router: 401/403 auth, 404 not found; unreachable, 429 and 5xx
    retried (exponential backoff, never shorter than the API's Retry-After: `ApiCaller`'s own waits)."""

    def _translate(self, exc: Exception) -> FailoverError | None:
        if isinstance(exc, LocalApiError) and exc.status in (401, 403):
            return ProviderAuthError(str(exc))
        if isinstance(exc, LocalApiError) and exc.status == 404:
            return ProviderNotFound(str(exc))
        return None

    def _retryable(self, exc: Exception) -> bool:
        if not isinstance(exc, LocalApiError):
            return False
        return exc.status in (OFFLINE, 429) or exc.status >= 500

    def _retry_after(self, exc: Exception) -> float | None:
        return exc.retry_after if isinstance(exc, LocalApiError) else None


class LocalProvider(_LocalCalls, CloudProvider):
    """A site on a simulated cloud. Observations name the cloud the site claims (`provider:aws`), because the
    simulator stands in for that cloud and the health evaluator counts each provider API as its own source."""

    kind: ClassVar[str] = "local"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)

    def __init__(self, site: Site, *, options: NoOptions | None = None, cloud: LocalCloud | None = None,
                 **kwargs: Any) -> None:
        super().__init__(site, **{"jitter": False, **kwargs})
        if cloud is None:
            cloud = LocalCloud(site.provider, clock=kwargs.get("clock") or time.time,
                               zones=dict.fromkeys(site.zones, Status.OK))
        self.cloud = cloud

    @property
    def source(self) -> str:
        return f"provider:{self.site.provider}"

    def _zone_statuses(self) -> Mapping[str, Status]:
        return self._read("local.describe_zones", self.cloud.describe_zones, site=self.site.name,
                          names=self.site.zones)

    def _instance_healths(self, instances: Sequence[str]) -> Mapping[str, InstanceHealth]:
        found = self._read("local.describe_instances", self.cloud.describe_instances, site=self.site.name,
                           ids=instances)
        return {instance: simple_health(instance, zone, state, impaired)
                for instance, (zone, state, impaired) in found.items()}

    def _start(self, instance: str) -> None:
        self._write("local.start_instance", self.cloud.start_instance, subject=f"instance {instance}",
                    site=self.site.name, instance_id=instance)

    def _stop(self, instance: str) -> None:
        self._write("local.stop_instance", self.cloud.stop_instance, subject=f"instance {instance}",
                    site=self.site.name, instance_id=instance)


class LocalRouter(_LocalCalls, TrafficRouter):
    """DNS records kept by a simulated cloud (the one named by the engine's `dns.provider`)."""

    kind: ClassVar[str] = "local"

    def __init__(self, *, options: NoOptions | None = None, cloud: LocalCloud | None = None, **kwargs: Any) -> None:
        super().__init__(**{"jitter": False, **kwargs})
        self.cloud = cloud if cloud is not None else LocalCloud(DNS, clock=time.time)

    def _current_target(self, dns: DnsTarget) -> str | None:
        return self._read("local.get_record", self.cloud.get_record, zone_id=dns.zone_id, name=dns.record)

    def _point_to(self, dns: DnsTarget, address: str) -> None:
        self._write("local.put_record", self.cloud.put_record, subject=f"record {dns.record}",
                    zone_id=dns.zone_id, name=dns.record, address=address)
