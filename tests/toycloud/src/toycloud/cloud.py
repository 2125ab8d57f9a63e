"""The toy cloud's API, its cloud adapter and its DNS router (docs/extending.md, "Add a cloud" step 2, "Add a DNS
router" step 2).

The API is `state.json` in `state_dir`: zones, instances and DNS records, read and written whole under a lock, and
every call appended to `calls.log`, so that a test sees what the orchestrator asked of the toy cloud. The adapter
implements the four hooks of `CloudProvider` and the error mapping; everything else (deadlines, retries, dry runs,
observations) is failover's shared code.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from orchestrator.core.errors import FailoverError, ProviderNotFound
from orchestrator.core.model import DnsTarget, Site, Status
from providers.base import Capability, CloudProvider, InstanceHealth, InstanceState, simple_health
from providers.traffic import TrafficRouter
from toycloud.options import ToyDnsOptions, ToyOptions


class ToyApiError(Exception):
    """What the toy API raises: an HTTP-like status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status


class ToyCloud:
    """One toy cloud: `state.json` in `state_dir`. `seed` makes it; the test's faults edit it with `change`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @classmethod
    def seed(cls, state_dir: Path, zones: Mapping[str, str], instances: Mapping[str, str]) -> ToyCloud:
        """A new cloud whose `zones` are ok and whose `instances` (name → zone) are running."""
        state_dir.mkdir(parents=True, exist_ok=True)
        cloud = cls(state_dir)
        state = {"zones": {zone: "ok" for zone in zones},
                 "instances": {name: {"zone": zone, "state": "running", "impaired": False}
                               for name, zone in instances.items()},
                 "records": {}}
        with cloud._locked():
            cloud._save(state)
        return cloud

    # --- the API the adapter and the router call ---------------------------------------------------------------

    def describe_zones(self, names: Sequence[str]) -> dict[str, Status]:
        zones = self._call("describe_zones", lambda state: dict(state["zones"]))
        return {zone: Status(status) for zone, status in zones.items() if not names or zone in names}

    def describe_instances(self, ids: Sequence[str]) -> dict[str, tuple[str, InstanceState, bool]]:
        found = self._call("describe_instances", lambda state: {i: state["instances"][i] for i in ids
                                                                  if i in state["instances"]})
        return {name: (vm["zone"], InstanceState(vm["state"]), vm["impaired"]) for name, vm in found.items()}

    def set_instance_state(self, instance: str, state: str) -> None:
        def write(cloud: dict[str, Any]) -> None:
            if instance not in cloud["instances"]:
                raise ToyApiError(404, f"instance {instance} does not exist")
            cloud["instances"][instance]["state"] = state

        self._call(f"set_instance_state {instance} {state}", write, save=True)

    def get_record(self, zone_id: str, name: str) -> str | None:
        record: str | None = self._call("get_record", lambda state: state["records"].get(f"{zone_id}/{name}"))
        return record

    def put_record(self, zone_id: str, name: str, address: str) -> None:
        self._call(f"put_record {name} {address}",
                   lambda state: state["records"].__setitem__(f"{zone_id}/{name}", address), save=True)

    # --- what the test reads and changes (not API calls) --------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self._locked():
            return self._load()

    def change(self, edit: Callable[[dict[str, Any]], None]) -> None:
        with self._locked():
            state = self._load()
            edit(state)
            self._save(state)

    def calls(self) -> list[str]:
        log = self.state_dir / "calls.log"
        return log.read_text(encoding="utf-8").splitlines() if log.exists() else []

    # --- internals ---------------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[dict[str, Any]], Any], *, save: bool = False) -> Any:
        if not (self.state_dir / "state.json").exists():
            raise ToyApiError(503, f"no toy cloud in {self.state_dir}")
        with self._locked():
            state = self._load()
            result = fn(state)
            if save:
                self._save(state)
            with (self.state_dir / "calls.log").open("a", encoding="utf-8") as log:
                log.write(what + "\n")
        return result

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.state_dir / "state.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _load(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.state_dir / "state.json").read_text(encoding="utf-8"))
        return loaded

    def _save(self, state: dict[str, Any]) -> None:
        scratch = self.state_dir / "state.json.new"
        scratch.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.replace(scratch, self.state_dir / "state.json")


class _ToyErrors:
    """The toy API's errors → failover's (docs/extending.md: the error mapping every adapter provides)."""

    def _translate(self, exc: Exception) -> FailoverError | None:
        if isinstance(exc, ToyApiError) and exc.status == 404:
            return ProviderNotFound(str(exc))
        return None  # anything else: a ProviderError naming the call, made by the shared code

    def _retryable(self, exc: Exception) -> bool:
        return isinstance(exc, ToyApiError) and exc.status >= 500


class ToyProvider(_ToyErrors, CloudProvider):
    """A site on the toy cloud. Constructed by failover's registry as `ToyProvider(site, options=ToyOptions(...),
    clock=..., dry_run=..., ...)`; the keywords it does not know go to `CloudProvider`."""

    kind: ClassVar[str] = "toy"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.ZONE_HEALTH, Capability.INSTANCE_HEALTH, Capability.START, Capability.STOP, Capability.FENCE}
    )

    def __init__(self, site: Site, *, options: ToyOptions | None = None, **kwargs: Any) -> None:
        super().__init__(site, **kwargs)
        self.options = options if options is not None else ToyOptions.parse(site.options, self.scope)
        self.cloud = ToyCloud(Path(self.options.state_dir))

    def _zone_statuses(self) -> Mapping[str, Status]:
        return self._read("toy.describe_zones", self.cloud.describe_zones, names=self.site.zones)

    def _instance_healths(self, instances: Sequence[str]) -> Mapping[str, InstanceHealth]:
        found = self._read("toy.describe_instances", self.cloud.describe_instances, ids=instances)
        return {name: simple_health(name, zone, state, impaired) for name, (zone, state, impaired) in found.items()}

    def _start(self, instance: str) -> None:
        self._write("toy.start_instance", self.cloud.set_instance_state, subject=f"instance {instance}",
                    instance=instance, state=InstanceState.RUNNING.value)

    def _stop(self, instance: str) -> None:
        self._write("toy.stop_instance", self.cloud.set_instance_state, subject=f"instance {instance}",
                    instance=instance, state=InstanceState.STOPPED.value)


class ToyRouter(_ToyErrors, TrafficRouter):
    """DNS records kept by the toy cloud. Constructed as `ToyRouter(options=ToyDnsOptions(...), [endpoint_url=...],
    dry_run=..., ...)`."""

    kind: ClassVar[str] = "toy"

    def __init__(self, *, options: ToyDnsOptions, endpoint_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cloud = ToyCloud(Path(options.state_dir))

    def _current_target(self, dns: DnsTarget) -> str | None:
        return self._read("toy.get_record", self.cloud.get_record, zone_id=dns.zone_id, name=dns.record)

    def _point_to(self, dns: DnsTarget, address: str) -> None:
        self._write("toy.put_record", self.cloud.put_record, subject=f"record {dns.record}",
                    zone_id=dns.zone_id, name=dns.record, address=address)
