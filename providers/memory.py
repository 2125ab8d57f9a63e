"""A tiny in-memory cloud and its adapter: the reference implementation of the provider hooks.

It exists so that the contract suite has an adapter with no SDK under it, and as a model for the simulated cloud
(`providers/local.py`): a `MemoryCloud` holds zones, instances and DNS records behind a lock, and a few methods
inject what the real clouds do to us (a zone going down, an impaired instance, throttling, 5xx, slow transitions).
Several `MemoryProvider`s (one per site) may share one cloud, as sites of one provider share its API.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from orchestrator.core.errors import FailoverError, ProviderAuthError, ProviderNotFound
from orchestrator.core.model import DnsTarget, Site, Status
from providers.base import Capability, CloudProvider, InstanceHealth, InstanceState, simple_health
from providers.options import NoOptions
from providers.traffic import TrafficRouter


class MemoryApiError(Exception):
    """What the in-memory API raises: an HTTP-like status and, for throttling, a Retry-After in seconds."""

    def __init__(self, status: int, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(f"{status} {message}".strip())
        self.status = status
        self.retry_after = retry_after


@dataclass
class MemoryInstance:
    zone: str
    state: InstanceState = InstanceState.RUNNING
    impaired: bool = False
    pending: InstanceState | None = None  # the state a transition ends in
    steps_left: int = 0  # reads before it gets there


@dataclass
class MemoryCloud:
    """The state of one in-memory cloud. `transition_reads`: how many reads a start or stop takes to complete."""

    zones: dict[str, Status] = field(default_factory=dict)
    instances: dict[str, MemoryInstance] = field(default_factory=dict)
    records: dict[tuple[str, str], str] = field(default_factory=dict)
    transition_reads: int = 0
    _faults: deque[MemoryApiError] = field(default_factory=deque)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # --- set-up and fault injection --------------------------------------------------------------------------

    def add_zone(self, zone: str, status: Status = Status.OK) -> None:
        with self._lock:
            self.zones[zone] = status

    def add_instance(self, instance: str, zone: str, state: InstanceState = InstanceState.RUNNING) -> None:
        with self._lock:
            self.zones.setdefault(zone, Status.OK)
            self.instances[instance] = MemoryInstance(zone, state)

    def set_zone(self, zone: str, status: Status) -> None:
        self.add_zone(zone, status)

    def impair(self, instance: str, impaired: bool = True) -> None:
        with self._lock:
            self.instances[instance].impaired = impaired

    def fail_next(self, count: int = 1, *, status: int = 503, retry_after: float | None = None) -> None:
        """The next `count` API calls fail with `status` (429 or 5xx are retried by the adapter)."""
        with self._lock:
            self._faults.extend(MemoryApiError(status, "injected", retry_after) for _ in range(count))

    # --- the API an adapter calls ----------------------------------------------------------------------------

    def describe_zones(self, names: Iterable[str] = ()) -> dict[str, Status]:
        with self._lock:
            self._maybe_fail()
            wanted = list(names) or list(self.zones)
            return {zone: self.zones[zone] for zone in wanted if zone in self.zones}

    def describe_instances(self, ids: Sequence[str]) -> dict[str, tuple[str, InstanceState, bool]]:
        """Existing instances only: id → (zone, state, impaired)."""
        with self._lock:
            self._maybe_fail()
            found = {}
            for instance_id in ids:
                instance = self.instances.get(instance_id)
                if instance is not None:
                    self._advance(instance)
                    found[instance_id] = (instance.zone, instance.state, instance.impaired)
            return found

    def start_instance(self, instance_id: str) -> None:
        self._transition(instance_id, InstanceState.PENDING, InstanceState.RUNNING)

    def stop_instance(self, instance_id: str) -> None:
        self._transition(instance_id, InstanceState.STOPPING, InstanceState.STOPPED)

    def get_record(self, zone_id: str, name: str) -> str | None:
        with self._lock:
            self._maybe_fail()
            return self.records.get((zone_id, name))

    def put_record(self, zone_id: str, name: str, address: str) -> None:
        with self._lock:
            self._maybe_fail()
            self.records[(zone_id, name)] = address

    def _transition(self, instance_id: str, via: InstanceState, to: InstanceState) -> None:
        with self._lock:
            self._maybe_fail()
            if instance_id not in self.instances:
                raise MemoryApiError(404, f"instance {instance_id} does not exist")
            instance = self.instances[instance_id]
            if instance.state is to:
                return
            instance.state, instance.pending, instance.steps_left = via, to, self.transition_reads
            self._advance(instance, read=False)

    @staticmethod
    def _advance(instance: MemoryInstance, read: bool = True) -> None:
        if instance.pending is None:
            return
        if read:
            instance.steps_left -= 1
        if instance.steps_left <= 0:
            instance.state, instance.pending = instance.pending, None

    def _maybe_fail(self) -> None:
        if self._faults:
            raise self._faults.popleft()


class _MemoryErrors:
    """Error mapping shared by the memory provider and router: 401/403 auth, 404 not found, 429/5xx retried."""

    def _translate(self, exc: Exception) -> FailoverError | None:
        if isinstance(exc, MemoryApiError) and exc.status in (401, 403):
            return ProviderAuthError(str(exc))
        if isinstance(exc, MemoryApiError) and exc.status == 404:
            return ProviderNotFound(str(exc))
        return None

    def _retryable(self, exc: Exception) -> bool:
        return isinstance(exc, MemoryApiError) and (exc.status == 429 or exc.status >= 500)

    def _retry_after(self, exc: Exception) -> float | None:
        return exc.retry_after if isinstance(exc, MemoryApiError) else None


class MemoryProvider(_MemoryErrors, CloudProvider):
    kind: ClassVar[str] = "memory"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)

    def __init__(self, site: Site, *, options: NoOptions | None = None, cloud: MemoryCloud | None = None,
                 **kwargs: Any) -> None:
        super().__init__(site, **kwargs)
        self.cloud = cloud if cloud is not None else MemoryCloud(zones=dict.fromkeys(site.zones, Status.OK))

    def _zone_statuses(self) -> Mapping[str, Status]:
        return self._read("memory.describe_zones", self.cloud.describe_zones, names=self.site.zones)

    def _instance_healths(self, instances: Sequence[str]) -> Mapping[str, InstanceHealth]:
        found = self._read("memory.describe_instances", self.cloud.describe_instances, ids=instances)
        return {instance: simple_health(instance, zone, state, impaired)
                for instance, (zone, state, impaired) in found.items()}

    def _start(self, instance: str) -> None:
        self._write("memory.start_instance", self.cloud.start_instance, subject=f"instance {instance}",
                    instance_id=instance)

    def _stop(self, instance: str) -> None:
        self._write("memory.stop_instance", self.cloud.stop_instance, subject=f"instance {instance}",
                    instance_id=instance)


class MemoryRouter(_MemoryErrors, TrafficRouter):
    kind: ClassVar[str] = "memory"

    def __init__(self, *, options: NoOptions | None = None, cloud: MemoryCloud | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cloud = cloud if cloud is not None else MemoryCloud()

    def _current_target(self, dns: DnsTarget) -> str | None:
        return self._read("memory.get_record", self.cloud.get_record, zone_id=dns.zone_id, name=dns.record)

    def _point_to(self, dns: DnsTarget, address: str) -> None:
        self._write("memory.put_record", self.cloud.put_record, subject=f"record {dns.record}",
                    zone_id=dns.zone_id, name=dns.record, address=address)
