"""Engine calls recorded as they go out, the way `providers.calls` records cloud writes in a dry run.

Why: `failover plan` must list the engine calls a failover would make, and those must be the calls `failover
execute` makes. Writing them out by hand beside the runbook drifts; running the runbook's own step code against a
recording client cannot. Two pieces, composed:

- `RecordingEngine(inner)` implements `EngineControl` by passing every call to `inner` and logging each control
  call (`set_phase`, `promote`, `fence`) as an `EngineCall`, failed ones included (marked, not left out: the call
  was made). Around the real `HttpEngineClient` it shows what a run did; reads are only counted.
- `AssumedEngine(statuses)` answers from statuses given up front (as the replicas reported them when the plan was
  made, or as `--assume-primary-lost` assumes them) and changes them as the engine protocol says a replica changes
  (`engine.base`; the same rules as the reference replica and the simulator's): the epoch rule first, then the
  role, then the effect. A replica absent from `statuses` does not answer. Nothing real is touched.

A plan runs the runbook's steps against `RecordingEngine(AssumedEngine(...))`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.core.errors import EngineError, FailoverError, StaleEpoch
from orchestrator.core.model import Phase, Replica, ReplicaStatus, Role
from orchestrator.engine import protocol as wire
from orchestrator.engine.base import EngineControl

PATHS = {"phase": wire.PHASE, "promote": wire.PROMOTE, "fence": wire.FENCE}


@dataclass(frozen=True, slots=True)
class EngineCall:
    """One control call as it went out. `window` is `until` as seconds after the call, rounded to whole seconds
    (a protection window's length), so that a plan made now and a run made later show the same call."""

    verb: str  # "phase", "promote" or "fence"
    replica: str
    url: str
    epoch: int
    phase: Phase | None = None
    window: float | None = None
    force: bool = False
    failed: str = field(default="", compare=False)  # the refusal or transport error, when the call failed

    def __str__(self) -> str:
        body = []
        if self.phase is not None:
            body.append(f"phase: {self.phase}")
        if self.window is not None:
            body.append(f"until: now+{self.window:g}s")
        body.append(f"epoch: {self.epoch}")
        if self.force:
            body.append("force: true")
        return f"POST {self.url}{PATHS[self.verb]} {{{', '.join(body)}}}"


class RecordingEngine(EngineControl):
    """Passes every call to `inner`; logs each control call in `calls` (and to `on_call`), counts reads by replica.
    Other attributes (`stats`, `journal`, `close`) are `inner`'s, so a driver that looks for them finds them."""

    def __init__(self, inner: EngineControl, *, clock: Callable[[], float] = time.time,
                 on_call: Callable[[EngineCall], None] | None = None) -> None:
        self.inner = inner
        self.clock = clock
        self.on_call = on_call
        self.calls: list[EngineCall] = []
        self.reads: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def status(self, replica: Replica) -> ReplicaStatus:
        self.reads[replica.name] += 1
        return self.inner.status(replica)

    def set_phase(self, replica: Replica, phase: Phase, until: float | None, epoch: int) -> ReplicaStatus:
        window = None if until is None else float(round(until - self.clock()))
        call = EngineCall("phase", replica.name, replica.control_url, epoch, phase, window)
        return self._made(call, lambda: self.inner.set_phase(replica, phase, until, epoch))

    def promote(self, replica: Replica, epoch: int, *, force: bool = False) -> ReplicaStatus:
        call = EngineCall("promote", replica.name, replica.control_url, epoch, force=force)
        return self._made(call, lambda: self.inner.promote(replica, epoch, force=force))

    def fence(self, replica: Replica, epoch: int) -> ReplicaStatus:
        call = EngineCall("fence", replica.name, replica.control_url, epoch)
        return self._made(call, lambda: self.inner.fence(replica, epoch))

    def set_peers(self, replica: Replica, epoch: int, peers: Sequence[str]) -> dict[str, Any]:
        """Passed on as it is (not a runbook step: `failover replace` tells the replicas their peers)."""
        return self.inner.set_peers(replica, epoch, peers)

    def _made(self, call: EngineCall, send: Callable[[], ReplicaStatus]) -> ReplicaStatus:
        try:
            answer = send()
        except FailoverError as error:
            self._log(replace(call, failed=str(error)))
            raise
        self._log(call)
        return answer

    def _log(self, call: EngineCall) -> None:
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)


class AssumedEngine(EngineControl):
    """Replicas as given, changed by each call as the protocol says; see the module docstring."""

    def __init__(self, statuses: Mapping[str, ReplicaStatus]) -> None:
        self.replicas: dict[str, ReplicaStatus] = dict(statuses)
        self.peers: dict[str, tuple[str, ...]] = {}  # by replica: the list `set_peers` gave it
        self.peers_epoch: dict[str, int] = {}

    def _reach(self, replica: Replica) -> ReplicaStatus:
        found = self.replicas.get(replica.name)
        if found is None:
            raise EngineError(f"replica {replica.name} at {replica.control_url}: did not answer when planned")
        return found

    def _see_epoch(self, replica: Replica, epoch: int) -> ReplicaStatus:
        """The epoch rule, before anything else: a lower epoch is refused and changes nothing."""
        now = self._reach(replica)
        if epoch < now.epoch:
            raise StaleEpoch(f"replica {replica.name}: stale epoch {epoch}; the replica has seen epoch {now.epoch}")
        return replace(now, epoch=epoch)

    def _keep(self, status: ReplicaStatus) -> ReplicaStatus:
        self.replicas[status.replica] = status
        return status

    def status(self, replica: Replica) -> ReplicaStatus:
        return self._reach(replica)

    def set_phase(self, replica: Replica, phase: Phase, until: float | None, epoch: int) -> ReplicaStatus:
        """A standby only records the epoch (its phase is its primary's); a fenced replica refuses all but halted."""
        now = self._keep(self._see_epoch(replica, epoch))
        if now.role is Role.FENCED:
            if phase is Phase.HALTED:
                return now
            raise EngineError(f"replica {replica.name}: refused with 409 fenced")
        if now.role is Role.STANDBY:
            return now
        return self._keep(replace(now, phase=phase, phase_until=until if phase is Phase.PROTECTION else None))

    def promote(self, replica: Replica, epoch: int, *, force: bool = False) -> ReplicaStatus:
        """A promoted replica applies what it holds and starts halted; a fenced one is promoted only by force."""
        now = self._keep(self._see_epoch(replica, epoch))
        if now.role is Role.PRIMARY:
            return now
        if now.role is Role.FENCED and not force:
            raise EngineError(f"replica {replica.name}: refused with 409 fenced")
        return self._keep(replace(now, role=Role.PRIMARY, phase=Phase.HALTED, phase_until=None,
                                  applied_seq=now.last_seq))

    def fence(self, replica: Replica, epoch: int) -> ReplicaStatus:
        now = self._see_epoch(replica, epoch)
        return self._keep(replace(now, role=Role.FENCED, phase=Phase.HALTED, phase_until=None))

    def set_peers(self, replica: Replica, epoch: int, peers: Sequence[str]) -> dict[str, Any]:
        """The list kept in `peers` by replica; refused below the replica's epoch or the one that set its list (the
        epoch is checked, not recorded)."""
        now = self._reach(replica)
        floor = max(now.epoch, self.peers_epoch.get(replica.name, 0))
        if epoch < floor:
            raise StaleEpoch(f"replica {replica.name}: stale epoch {epoch}; the replica has seen epoch {floor}")
        self.peers[replica.name] = tuple(url.rstrip("/") for url in peers)
        self.peers_epoch[replica.name] = epoch
        return {"replica": replica.name, "epoch": now.epoch, "peers_epoch": epoch, "source": "control",
                "peers": list(self.peers[replica.name])}
