"""The simulated clouds: `LocalCloud` (one cloud's control plane and DNS), `LocalProvider` and `LocalRouter`.

Why: the simulator must run the production runbook against something that behaves like a cloud API — instances
that take time to stop, a status page that lags the data plane, throttling and 5xx — without any SDK, network or
wall clock. `LocalCloud` holds that state; its owner (the simulated world) drives it through the fault-injection
methods; the adapters below are ordinary `CloudProvider` / `TrafficRouter` subclasses, so every public method the
runbook uses (`observe`, `fence`, `start`, `point_to`...) is the production code path with its deadlines, retries
and error mapping.

What the simulated cloud models, and why:
- a lifecycle transition (start, stop) completes `start_time` / `stop_time` seconds after it was asked for, on the
  cloud's injected clock; while the zone's data plane is down it hangs (a stop asked of a lost data centre stays
  `stopping` until the data centre returns, which is what clouds do and why the runbook must not rely on it);
- zone statuses and instance impairment are what the API *reports*, set by the owner independently of the data
  plane, so a status page that lags (or never notices) an outage is expressible;
- API failures are per site (a region's endpoint throttles or answers 5xx) or for every call (`set_caller_offline`:
  the caller's own network is down);
- DNS records keep their history so that clients can be modelled as resolving through a TTL.

Retries here are deterministic (no jitter): a simulation must give the same result for the same seed. Built without
a `cloud` (from the provider registry), each adapter gets a fresh cloud of its own on the wall clock.
This module depends on the core's model and errors only (docs/design.md §1).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import tenacity

from orchestrator.core.errors import FailoverError, ProviderAuthError, ProviderNotFound
from orchestrator.core.model import DnsTarget, Site, Status
from providers.base import Capability, CloudProvider, InstanceHealth, InstanceState, simple_health
from providers.options import NoOptions
from providers.traffic import TrafficRouter

OFFLINE = 0  # the status of a call that never reached the API (connection refused, no route)


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
    _offline: bool = False

    # --- set-up and fault injection ------------------------------------------------------------------------------

    def add_instance(self, site: str, instance: str, zone: str) -> None:
        self.zones.setdefault(zone, Status.OK)
        self.instances.setdefault(site, {})[instance] = LocalInstance(site, zone)

    def set_zone_status(self, zone: str, status: Status) -> None:
        """What the API reports for the zone (the status page), whatever the data plane does."""
        self.zones[zone] = status

    def set_data_plane(self, zone: str, up: bool) -> None:
        """Whether machines in the zone can be reached; transitions of its instances hang while it is down."""
        if up:
            self._down_zones.discard(zone)
        else:
            self._down_zones.add(zone)

    def impair(self, site: str, impaired: bool = True) -> None:
        """The instance status checks of every instance of `site` fail (or pass again)."""
        for instance in self.instances.get(site, {}).values():
            instance.impaired = impaired

    def fail_api(self, site: str, *, status: int = 503, until: float = math.inf,
                 retry_after: float | None = None) -> None:
        """Every call about `site` fails with `status` until `until` (429 and 5xx are retried by the adapters)."""
        self._api_faults[site] = _ApiFault(status, until, retry_after)

    def heal_api(self, site: str) -> None:
        self._api_faults.pop(site, None)

    def set_caller_offline(self, offline: bool) -> None:
        """The caller's own network is down: every call fails before reaching the API."""
        self._offline = offline

    # --- what clients and the world read (not API calls: never fail) ------------------------------------------

    def state_of(self, site: str, instance: str) -> InstanceState:
        """The instance's lifecycle state now, completing a due transition first."""
        found = self.instances[site][instance]
        self._advance(found)
        return found.state

    def resolve(self, zone_id: str, record: str, at: float) -> str | None:
        """The address the record held at time `at` (a client resolving through a cache sees an older `at`)."""
        history = self.records.get((zone_id, record))
        if not history:
            return None
        index = bisect.bisect_right(history, (at, "\uffff")) - 1
        return history[index][1] if index >= 0 else None

    def changed_at(self, zone_id: str, record: str, at: float) -> float:
        """When the record last changed at or before `at` (0.0 if it never did)."""
        history = self.records.get((zone_id, record)) or []
        index = bisect.bisect_right(history, (at, "\uffff")) - 1
        return history[index][0] if index >= 0 else 0.0

    def seed_record(self, zone_id: str, record: str, address: str, at: float) -> None:
        self.records[(zone_id, record)] = [(at, address)]

    # --- the API an adapter calls --------------------------------------------------------------------------------

    def describe_zones(self, site: str, names: Iterable[str] = ()) -> dict[str, Status]:
        self._gate(site)
        wanted = list(names) or sorted({i.zone for i in self.instances.get(site, {}).values()})
        return {zone: self.zones[zone] for zone in wanted if zone in self.zones}

    def describe_instances(self, site: str, ids: Sequence[str]) -> dict[str, tuple[str, InstanceState, bool]]:
        """Existing instances only: id → (zone, state, impaired)."""
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
        self._gate("dns")
        history = self.records.get((zone_id, name))
        return history[-1][1] if history else None

    def put_record(self, zone_id: str, name: str, address: str) -> None:
        self._gate("dns")
        self.records.setdefault((zone_id, name), []).append((self.clock(), address))

    # --- internals -----------------------------------------------------------------------------------------------

    def _gate(self, site: str) -> None:
        self.calls += 1
        if self._offline:
            raise LocalApiError(OFFLINE, "cannot reach the API: the caller's network is down")
        fault = self._api_faults.get(site)
        if fault is not None:
            if self.clock() < fault.until:
                raise LocalApiError(fault.status, f"injected failure for {site}", fault.retry_after)
            del self._api_faults[site]

    def _transition(self, site: str, instance_id: str, via: InstanceState, to: InstanceState, takes: float) -> None:
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
    """Error mapping and deterministic backoff shared by the provider and the router."""

    _backoff_range: tuple[float, float] = (0.2, 5.0)

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

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Exponential backoff without jitter (same seed, same run), never shorter than the API's Retry-After."""
        base, cap = self._backoff_range
        backoff = float(min(cap, base * 2.0 ** max(0, state.attempt_number - 1)))
        exc = state.outcome.exception() if state.outcome is not None else None
        hinted = self._retry_after(exc) if isinstance(exc, Exception) else None
        return backoff if hinted is None else max(backoff, hinted)


class LocalProvider(_LocalCalls, CloudProvider):
    """A site on a simulated cloud. Observations name the cloud the site claims (`provider:aws`), because the
    simulator stands in for that cloud and the health evaluator counts each provider API as its own source."""

    kind: ClassVar[str] = "local"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)

    def __init__(self, site: Site, *, options: NoOptions | None = None, cloud: LocalCloud | None = None,
                 **kwargs: Any) -> None:
        super().__init__(site, **kwargs)
        self._backoff_range = kwargs.get("backoff", (0.2, 5.0))
        self.cloud = cloud if cloud is not None else LocalCloud(site.provider, clock=kwargs.get("clock") or time.time)

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
        super().__init__(**kwargs)
        self._backoff_range = kwargs.get("backoff", (0.2, 5.0))
        self.cloud = cloud if cloud is not None else LocalCloud("dns", clock=time.time)

    def _current_target(self, dns: DnsTarget) -> str | None:
        return self._read("local.get_record", self.cloud.get_record, zone_id=dns.zone_id, name=dns.record)

    def _point_to(self, dns: DnsTarget, address: str) -> None:
        self._write("local.put_record", self.cloud.put_record, subject=f"record {dns.record}",
                    zone_id=dns.zone_id, name=dns.record, address=address)
