"""The cloud provider interface: public methods do the bookkeeping, adapters implement four small hooks.

Patroni's `AbstractDCS` shape: `observe`, `start`, `stop`, `fence` and friends are written once here (deadlines,
retries, error mapping, idempotence, dry runs, turning raw health into `Observation`s); each cloud implements only
`_zone_statuses`, `_instance_healths`, `_start`, `_stop` (and `_translate` / `_retryable` for its errors). That keeps
the behaviour the runbook relies on identical across AWS, GCP, Azure and the in-memory clouds of the tests and the
simulator, and lets one contract suite check it on every adapter.

Rules every adapter follows: it imports only `orchestrator.core` and its own SDK; it reads credentials only from its
cloud's standard chain (or an injected credential, for tests); it never logs or stores a secret; and every SDK call
goes through `self._read` / `self._write` so that it is counted, retried, bounded and mapped.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence, Set
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import urlsplit

from orchestrator.core.errors import FailoverError, ProviderError, ProviderNotFound
from orchestrator.core.model import Cause, Observation, Site, Status
from providers.calls import ApiCaller

log = logging.getLogger(__name__)

_T = TypeVar("_T")

API_FAILED = "provider API failed"  # the detail of an `unknown` observation whose API call failed


class Capability(StrEnum):
    """What an adapter guarantees; `check_capabilities` refuses a configuration that needs more (tooz style)."""

    ZONE_HEALTH = "zone_health"
    INSTANCE_HEALTH = "instance_health"
    START = "start"
    STOP = "stop"
    FENCE = "fence"
    TRAFFIC = "traffic"


class InstanceState(StrEnum):
    """A machine's lifecycle state, common to all clouds (each adapter maps its own names onto these)."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATED = "terminated"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class InstanceHealth:
    """What the provider says of one instance: its lifecycle state and whether it can serve (`status`)."""

    instance: str
    state: InstanceState
    status: Status
    detail: str = ""


RUNNING = frozenset({InstanceState.RUNNING})
GONE = frozenset({InstanceState.STOPPED, InstanceState.TERMINATED})
MOVING_TO = {RUNNING: InstanceState.PENDING, GONE: InstanceState.STOPPING}  # already on the way: nothing to write


def simple_health(instance: str, zone: str, state: InstanceState, impaired: bool) -> InstanceHealth:
    """Health from a lifecycle state and one status check, as the in-memory and simulated clouds report it."""
    if state is not InstanceState.RUNNING:
        return InstanceHealth(instance, state, Status.DOWN, f"zone {zone}")
    if impaired:
        return InstanceHealth(instance, state, Status.DOWN, f"zone {zone}; status check impaired")
    return InstanceHealth(instance, state, Status.OK, f"zone {zone}")


def aggregate_zones(zones: Mapping[str, Status]) -> tuple[Status, str]:
    """One status for a site from its zones: all ok → ok, some impaired → degraded, all impaired → down.

    A zone the provider could not tell us about is `unknown`, which is not impaired: if every zone is unknown the
    site is unknown; otherwise the unknown zones only show in the detail.
    """
    detail = "zones: " + ", ".join(f"{zone}={status}" for zone, status in zones.items()) if zones else "no zones"
    impaired = sum(status in (Status.DEGRADED, Status.DOWN) for status in zones.values())
    unknown = sum(status is Status.UNKNOWN for status in zones.values())
    if not zones or unknown == len(zones):
        return Status.UNKNOWN, detail
    if impaired == len(zones):
        return Status.DOWN, detail
    if impaired:
        return Status.DEGRADED, detail
    return Status.OK, detail


class NameCache(Protocol):
    """Where a provider keeps what it found out about a configured name: the instance id behind an AWS `Name` tag,
    the zone a GCP instance lives in. Keys are `site/kind/name`.

    A cron run is a new process each minute; without a cache that outlives it, every run would pay the look-ups
    again (`drivers.wiring.StoreNameCache` keeps them in the store). An entry may go stale (the machine was
    replaced): the adapter drops it when the remembered value answers "not found" and looks the name up again.
    Implementations never raise: a cache that cannot be read is an empty one.
    """

    def get(self, key: str) -> str | None: ...
    def put(self, key: str, value: str) -> None: ...
    def drop(self, key: str) -> None: ...


class MemoryNameCache:
    """A `NameCache` for one process (the default; tests share one between providers to play two runs)."""

    def __init__(self) -> None:
        self._entries: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._entries[key] = value

    def drop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)


class CloudProvider(ApiCaller, ABC):
    """One site's view of its cloud: health, and the lifecycle actions the runbook needs.

    An adapter's constructor takes the site, `options=` (an instance of the options model it registered; see
    providers/options.py) and its own keywords, and passes the rest here. Keywords shared by every adapter: `clock`
    stamps observations (wall clock, or a virtual one); `poll_interval` paces waits for a state; `names` keeps
    name look-ups (a `NameCache`; default: this process only); and those of `ApiCaller`: `call_deadline` bounds
    one API call with its retries, `request_timeout` one HTTP request, `backoff` (first, largest wait) and
    `jitter` shape the retries, `timer` / `sleep` measure and spend time (inject both for a virtual clock),
    `dry_run` records writes in `planned` instead of making them.
    """

    kind: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]

    def __init__(
        self,
        site: Site,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 2.0,
        names: NameCache | None = None,
        **caller_kwargs: Any,
    ) -> None:
        super().__init__(**caller_kwargs)
        self.site = site
        self.poll_interval = poll_interval
        self.names: NameCache = names if names is not None else MemoryNameCache()
        self._clock = clock

    @property
    def scope(self) -> str:
        return f"site {self.site.name}"

    @property
    def source(self) -> str:
        return f"provider:{self.kind}"

    def _recall(self, kind: str, name: str) -> str | None:
        """What an earlier look-up of `name` found (`kind`: what was looked up, e.g. `ec2-name`), or None."""
        return self.names.get(f"{self.site.name}/{kind}/{name}")

    def _remember(self, kind: str, name: str, value: str) -> None:
        self.names.put(f"{self.site.name}/{kind}/{name}", value)

    def _forget(self, kind: str, name: str) -> None:
        self.names.drop(f"{self.site.name}/{kind}/{name}")

    # --- hooks ---------------------------------------------------------------------------------------------------

    @abstractmethod
    def _zone_statuses(self) -> Mapping[str, Status]:
        """Status of the site's zones (`self.site.zones`; all zones of the region when none are configured).
        A configured zone may be left out when the provider says nothing of it: it then counts as unknown.
        Raise (through `self._read`) when the API fails."""

    @abstractmethod
    def _instance_healths(self, instances: Sequence[str]) -> Mapping[str, InstanceHealth]:
        """Health of each instance that exists; leave out the ones the provider does not know (the caller turns
        them into `ProviderNotFound` or a `down` observation). Raise only when the API itself fails."""

    @abstractmethod
    def _start(self, instance: str) -> None:
        """Ask the provider to start a stopped instance (one idempotent write through `self._write`). May wait for
        the provider's own operation to finish within `self._active_deadline()`; need not wait for RUNNING."""

    @abstractmethod
    def _stop(self, instance: str) -> None:
        """Ask the provider to stop a running instance; the same rules as `_start`."""

    def _fence(self, instance: str) -> None:
        """Stop an instance so that it cannot act as primary. Default: `_stop`; adapters may use a harder stop."""
        self._stop(instance)

    # --- health --------------------------------------------------------------------------------------------------

    def observe(self, instances: Mapping[str, str]) -> list[Observation]:
        """One observation of the site and one per replica (`instances`: instance id → replica name), then the
        extra signals' (`observe_signals`), in this thread: the simulator's way, whose clock is virtual.

        Never raises for a provider failure: a control plane that cannot answer is not a down data plane, so its
        subjects are reported `unknown` with the error in the detail. The whole poll shares one `call_deadline`.
        """
        at = self._clock()
        return self._observe_core(instances, at) + self._observe_signals(instances, at)

    def observe_main(self, instances: Mapping[str, str]) -> list[Observation]:
        """The main source's observations alone (what `observe` gives under `self.source`). With `observe_signals`
        on another thread, a signal whose API hangs cannot make the main answer late (drivers/provider_watch.py)."""
        return self._observe_core(instances, self._clock())

    def observe_signals(self, instances: Mapping[str, str]) -> list[Observation]:
        """The extra signals' observations alone (`_signals`), each signal read on a thread of its own under a
        budget of its own (half `call_deadline`), so that one hanging API leaves the others their whole budget.

        Two passes over `_signals`: the first starts each due `PolledSignal`'s read (and returns nothing), the
        second waits for them, together, until the budget ends; a read still running then is left to finish
        (its signal is not asked again meanwhile) and its answer is taken by a later call. Safe to run beside
        `observe_main` on another thread: deadlines are per thread, and adapters build their clients under
        `self._lock`. `observe` (the simulator's) reads the signals inline instead."""
        at = self._clock()
        budget = self.call_deadline / 2

        def bounded(read: Callable[[], _T]) -> _T:
            with self._deadline(budget):  # on the reading thread: deadlines are per thread
                return read()

        until = time.monotonic() + budget
        for begin in (True, False):
            token = _ROUND.set(_SignalRound(begin, bounded, until))
            try:
                observations = self._signals(instances, at)
            finally:
                _ROUND.reset(token)
        return observations

    def _observe_signals(self, instances: Mapping[str, str], at: float) -> list[Observation]:
        with self._deadline(self.call_deadline / 2):  # the extra sources share a budget of their own
            return self._signals(instances, at)

    def _signals(self, instances: Mapping[str, str], at: float) -> list[Observation]:
        """Observations from the adapter's other sources (a status page API, per-VM health), each under a source
        name of its own (`provider:gcp-service-health`), appended after the main ones. Default: none. Never raises:
        a source that cannot be read says `unknown` (see `PolledSignal`), without `Cause.API_FAILED`, so that it
        never slows the polling of the main source. Make every read through a `PolledSignal`'s `observe`, none
        directly: `observe_signals` calls this hook twice per poll (one pass starts the reads, one collects them)."""
        return []

    def _observe_core(self, instances: Mapping[str, str], at: float) -> list[Observation]:
        with self._deadline(self.call_deadline):  # one budget for the whole poll...
            with self._deadline(self.call_deadline / 2):  # ...of which zones may use half: replicas matter more
                observations = [self._observe_site(at)]
            try:
                healths, missing = self._healths(list(instances))
            except FailoverError as exc:
                log.warning("%s: instance health unavailable: %s", self.scope, exc)
                return observations + [
                    Observation(at, replica, self.source, Status.UNKNOWN, f"{API_FAILED}: {exc}", Cause.API_FAILED)
                    for replica in instances.values()
                ]
        for instance, replica in instances.items():
            if instance in missing:
                detail = f"instance {instance} not found at the provider (terminated long ago, or misconfigured)"
                observations.append(Observation(at, replica, self.source, Status.DOWN, detail))
            else:
                health = healths[instance]
                detail = f"{instance} {health.state}" + (f": {health.detail}" if health.detail else "")
                observations.append(Observation(at, replica, self.source, health.status, detail))
        return observations

    def _observe_site(self, at: float) -> Observation:
        try:
            status, detail = aggregate_zones(self.zone_health())
        except FailoverError as exc:
            log.warning("%s: zone health unavailable: %s", self.scope, exc)
            return Observation(at, self.site.name, self.source, Status.UNKNOWN, f"{API_FAILED}: {exc}",
                               Cause.API_FAILED)
        return Observation(at, self.site.name, self.source, status, detail)

    def zone_health(self) -> dict[str, Status]:
        """Status per zone of the site: the configured zones in their order, or every zone the provider lists."""
        with self._deadline(self.call_deadline):
            reported = self._zone_statuses()
        zones = self.site.zones or tuple(sorted(reported))
        return {zone: reported.get(zone, Status.UNKNOWN) for zone in zones}

    def instance_health(self, instances: Sequence[str]) -> dict[str, InstanceHealth]:
        """Health per instance; `ProviderNotFound` naming every instance the provider does not know."""
        with self._deadline(self.call_deadline):
            healths, missing = self._healths(instances)
        if missing:
            raise ProviderNotFound(f"{self.scope}: instance {', '.join(missing)} not found")
        return healths

    def instance_state(self, instance: str) -> InstanceState:
        return self.instance_health([instance])[instance].state

    def _healths(self, instances: Sequence[str]) -> tuple[dict[str, InstanceHealth], list[str]]:
        wanted = list(dict.fromkeys(instances))
        found = dict(self._instance_healths(wanted)) if wanted else {}
        return found, [instance for instance in wanted if instance not in found]

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def start(self, instance: str, *, deadline: float) -> None:
        """Return once the instance is RUNNING (no write if it already is); `ProviderError` after `deadline` s."""
        self._drive(instance, "start", RUNNING, {InstanceState.STOPPED}, self._start, deadline)

    def stop(self, instance: str, *, deadline: float) -> None:
        """Return once the instance is STOPPED or TERMINATED (no write if it already is)."""
        self._drive(instance, "stop", GONE, {InstanceState.RUNNING}, self._stop, deadline)

    def fence(self, instance: str, *, deadline: float) -> None:
        """Make sure the instance cannot serve as primary: stopped (or terminated). Idempotent: no write when it
        already is; a fence that finds it stopping waits instead of asking again."""
        self._drive(instance, "fence", GONE, {InstanceState.RUNNING}, self._fence, deadline)

    def wait_for_state(self, instance: str, wanted: set[InstanceState], *, deadline: float) -> InstanceState:
        """Poll until the instance is in one of `wanted`; `ProviderError` naming the last state after `deadline`."""
        with self._deadline(deadline) as bound:
            while True:
                state = self.instance_state(instance)
                if state in wanted:
                    return state
                if bound.expired:
                    raise self._late(instance, state, wanted, deadline)
                self._pause(bound, self.poll_interval)

    def _drive(
        self,
        instance: str,
        verb: str,
        target: frozenset[InstanceState],
        act_from: set[InstanceState],
        action: Callable[[str], None],
        deadline: float,
    ) -> None:
        """Read, act once if the state calls for it, then poll until `target`. In a dry run the write that a real
        run would make is recorded and the method returns at once (nothing will change, so nothing to wait for)."""
        with self._deadline(deadline) as bound:
            acted = False
            while True:
                state = self.instance_state(instance)
                if state in target:
                    return
                if state is InstanceState.TERMINATED:
                    raise ProviderError(f"{self.scope}: instance {instance} is terminated; cannot {verb} it")
                if self.dry_run:
                    if state is not MOVING_TO[target]:
                        action(instance)
                    return
                if state in act_from and not acted:
                    log.info("%s: %s instance %s (it is %s)", self.scope, verb, instance, state)
                    action(instance)
                    acted = True
                    continue
                if bound.expired:
                    raise self._late(instance, state, target, deadline)
                self._pause(bound, self.poll_interval)

    def _late(
        self, instance: str, state: InstanceState, wanted: Set[InstanceState], deadline: float
    ) -> ProviderError:
        goal = " or ".join(sorted(wanted))
        return ProviderError(f"{self.scope}: instance {instance} still {state}, not {goal}, after {deadline:g}s")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(site={self.site.name!r})"


@dataclass(frozen=True)
class _SignalRound:
    """`observe_signals`' pass in progress: `begin` (start the reads) or not (wait for them until `until`, on the
    monotonic clock); `bounded` runs a read under the provider's signal budget."""

    begin: bool
    bounded: Callable[[Callable[[], Any]], Any]
    until: float


_ROUND: ContextVar[_SignalRound | None] = ContextVar("signal_round", default=None)


@dataclass
class _Read:
    """A read running on a thread of its own: when it was asked (`now`), and its answer or error once `done`."""

    now: float
    done: threading.Event = field(default_factory=threading.Event)
    answer: list[tuple[str, Status, str]] | None = None
    error: str = ""


class PolledSignal:
    """One extra source of an adapter, read at most every `interval` seconds (0: with every poll), whose last
    answer keeps its vote for `stale_after` seconds.

    Why a cache: the signals clouds publish during outages (a status page API, per-resource health) come from
    services of their own, which struggle in the same outage. Between reads, and while reads fail, the last answer
    is given again, stamped now and saying how old it is; once it is older than `stale_after` every subject is
    `unknown` (no vote), never the old verdict. `read(now)` returns `(subject, status, detail)` triples, or raises
    a `FailoverError`.

    Read inline by `CloudProvider.observe`; under `observe_signals` each read runs on a thread of its own (at most
    one at a time: a read still hanging is waited for again, not doubled), and an answer that comes late is taken
    by the next call, aged from when it was asked.
    """

    def __init__(self, source: str, interval: float, stale_after: float,
                 read: Callable[[float], list[tuple[str, Status, str]]]) -> None:
        self.source = source
        self.interval = interval
        self.stale_after = stale_after
        self._read = read
        self._answer: list[tuple[str, Status, str]] | None = None
        self._read_at = float("-inf")  # when the last answer was read
        self._tried_at = float("-inf")
        self._error = ""
        self._pending: _Read | None = None  # a read on its own thread (observe_signals)

    def observe(self, now: float, subjects: Sequence[str]) -> list[Observation]:
        round_ = _ROUND.get()
        if round_ is not None and round_.begin:
            self._begin(now, round_.bounded)
            return []
        if round_ is not None:
            self._await(round_.until)
        elif now - self._tried_at >= self.interval:
            self._tried_at = now
            read = _Read(now)
            self._attempt(read, contain=False)
            self._take(read)
        return self._observations(now, subjects)

    def _begin(self, now: float, bounded: Callable[[Callable[[], Any]], Any]) -> None:
        if self._pending is not None or now - self._tried_at < self.interval:
            return
        self._tried_at = now
        read = self._pending = _Read(now)
        threading.Thread(target=bounded, args=(lambda: self._attempt(read, contain=True),),
                         name=f"signal-{self.source}", daemon=True).start()

    def _await(self, until: float) -> None:
        read = self._pending
        if read is not None and read.done.wait(max(0.0, until - time.monotonic())):
            self._pending = None
            self._take(read)

    def _attempt(self, read: _Read, *, contain: bool) -> None:
        """Read once into `read`. A `FailoverError` is the signal's error; any other exception (a bug) is raised
        inline, and `contain`ed on a thread of its own, which must always report back."""
        try:
            read.answer = self._read(read.now)
        except FailoverError as exc:
            read.error = str(exc)
        except Exception as exc:
            if not contain:
                raise
            log.exception("%s: the read failed", self.source)
            read.error = f"{type(exc).__name__}: {exc}"
        finally:
            read.done.set()

    def _take(self, read: _Read) -> None:
        if read.answer is not None:
            self._answer, self._read_at, self._error = read.answer, read.now, ""
            return
        repeated = read.error == self._error  # a signal never granted would warn at every poll otherwise
        (log.debug if repeated else log.warning)("%s unavailable: %s", self.source, read.error)
        self._error = read.error

    def _observations(self, now: float, subjects: Sequence[str]) -> list[Observation]:
        age = now - self._read_at
        if self._answer is not None and age <= self.stale_after:
            note = "" if age <= 0 else f" (as read {age:.0f}s ago" + (f"; since: {self._error})" if self._error
                                                                           else ")")
            return [Observation(now, subject, self.source, status, detail + note)
                    for subject, status, detail in self._answer]
        why = f"no answer for over {self.stale_after:g}s" if self._answer is not None else "never answered"
        detail = f"{why}: {self._error}" if self._error else why
        return [Observation(now, subject, self.source, Status.UNKNOWN, detail) for subject in subjects]


def loopback_http(url: str | None) -> bool:
    """True for a plain-http endpoint on this host: a local fake or emulator, never a real cloud.

    Adapters use it to pick placeholder credentials (no real token is ever sent to a fake, or over plain http)."""
    if not url:
        return False
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")

