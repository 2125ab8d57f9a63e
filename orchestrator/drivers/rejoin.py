"""`failover rejoin REPLICA`: rebuild a fenced or diverged replica as a standby of the current primary.

Why the orchestrator decides and the replica does the work: only the orchestrator knows which replica is the current
primary and at which epoch (its engine record in the store, checked against what the replicas say now); only the
replica can archive its own diverged tail and rebuild its journal without shipping it anywhere (`POST /v1/rejoin`,
`orchestrator.engine.replica.rejoin`). So `plan` checks, from one look at every replica, that rejoining is safe,
and refuses (`UnsafeError`, exit 3, nothing changed) when it is not:

- an incident of the engine is open, proposed or running: a runbook may be moving the primary right now (one that
  needs a human does not block: the human deciding is the one who rejoins, and the checks below still hold);
- no current primary: the recorded primary does not answer, does not answer as primary, or another replica claims
  primary at an epoch as high as its own;
- the target is the primary (or a healthy standby, unless forced: rebuilding it takes a copy away until it is back);
- the epoch is unknown: the store records an epoch above the primary's, or a replica carries one above it (a
  control call half done, a halt in flight): rejoining then could follow a primary that is being deposed.

`run` fences the target first when it still claims primary at an older epoch (a deposed primary is fenced, never
stamped), asks it to rejoin at the primary's epoch (a standby never follows a primary below its own epoch, so the
epoch sent is the primary's, never a new one), and follows the rejoin until it is done and the primary counts the
replica among its acknowledging standbys. Everything is audited; the tail the replica archived is recorded in the
incident that deposed it (as `diverged`, for the report, when that incident had not compared it yet) and listed.
A second run while the first is still going (or after it was killed) finds the same rejoin and follows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.core.errors import ConfigError, EngineError, FailoverError, UnsafeError
from orchestrator.core.model import Engine, ReplicaStatus, Role, Topology
from orchestrator.core.quarantine import may_host
from orchestrator.drivers.reconcile import from_rejoin
from orchestrator.drivers.state import load_engine
from orchestrator.engine.base import EngineControl, answering
from orchestrator.store.base import StateStore
from orchestrator.store.records import IncidentStatus

AUDIT_LISTED = 50  # orders of an archived tail named in the audit entry (all are in the incident and on disk)


@dataclass(frozen=True, slots=True)
class RejoinPlan:
    engine: str
    replica: str
    primary: str
    primary_url: str
    epoch: int
    fence_first: bool = False  # the target still claims primary at an older epoch


@dataclass
class RejoinOutcome:
    plan: RejoinPlan
    state: str  # done | failed | started | copying (still running when the time ran out)
    seconds: float
    last_seq: int = 0
    target_seq: int | None = None
    acknowledging: bool = False  # the primary counts the replica among its standbys
    tails: list[dict[str, Any]] = field(default_factory=list)  # archived by this rejoin
    incident: str | None = None  # where the tail was recorded
    error: str | None = None


def pick_engine(topology: Topology, engine_name: str | None, replica: str) -> Engine:
    """The engine `--engine` names (or the only one), which must have `replica`; ConfigError (exit 2) otherwise."""
    if engine_name is None:
        if len(topology.engines) != 1:
            raise ConfigError(f"several engines are configured ({', '.join(topology.engines)}); name one with --engine")
        engine = next(iter(topology.engines.values()))
    elif engine_name not in topology.engines:
        raise ConfigError(f"--engine {engine_name}: no such engine (configured: {', '.join(topology.engines)})")
    else:
        engine = topology.engines[engine_name]
    if replica not in {r.name for r in engine.replicas}:
        raise ConfigError(f"REPLICA {replica}: engine {engine.name} has no such replica "
                          f"(replicas: {', '.join(r.name for r in engine.replicas)})")
    return engine


class Rejoin:
    def __init__(self, topology: Topology, store: StateStore, engines: EngineControl, *, actor: str,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.topology, self.store, self.engines = topology, store, engines
        self.actor, self.clock, self.sleep = actor, clock, sleep

    def _statuses(self, engine: Engine) -> dict[str, ReplicaStatus]:
        return answering(self.engines, engine.replicas)

    # --- the checks ---------------------------------------------------------------------------------------

    def plan(self, engine_name: str | None, replica: str, *, force: bool = False) -> RejoinPlan:
        """Whether `replica` may be rejoined now, and to whom at which epoch (see the module's docstring)."""
        engine = pick_engine(self.topology, engine_name, replica)
        incident = self.store.open_incident(engine.name)
        if incident is not None and incident.status is not IncidentStatus.NEEDS_HUMAN:
            raise UnsafeError(f"refused: incident {incident.id} of {engine.name} is {incident.status.value}; "
                              "rejoin once it is closed or handed to a human")
        record = load_engine(self.store, self.topology, engine.name)
        primary = record.primary
        if replica == primary:
            raise UnsafeError(f"refused: {replica} is the primary of {engine.name}; only another replica rejoins it")
        site = engine.replica(replica).site
        if not may_host(site, self.store.quarantines(), self.clock(), self.topology.policy.quarantine):
            raise UnsafeError(f"refused: {site}, where {replica} runs, is in quarantine (a site that went down hosts "
                              "nothing until healthy for policy.quarantine); `failover release` ends it by hand")
        statuses = self._statuses(engine)
        current = statuses.get(primary)
        if current is None or current.role is not Role.PRIMARY:
            said = "does not answer" if current is None else f"answers as {current.role.value}"
            raise UnsafeError(f"refused: no current primary: {primary} (the recorded primary of {engine.name}) {said}")
        epoch = current.epoch
        self._check_epochs(engine, primary, epoch, record.epoch, statuses)
        target = statuses.get(replica)
        if target is None:
            raise EngineError(f"replica {replica} at {engine.replica(replica).control_url} does not answer")
        if target.role is Role.STANDBY and target.error is None and not force and not self._rejoining(engine, replica):
            raise UnsafeError(f"refused: {replica} is a standby replicating without error; rebuilding it takes a copy "
                              "away until it catches up (--force to rebuild it anyway)")
        return RejoinPlan(engine.name, replica, primary, engine.replica(primary).control_url, epoch,
                          fence_first=target.role is Role.PRIMARY)

    @staticmethod
    def _check_epochs(engine: Engine, primary: str, epoch: int, recorded: int,
                      statuses: Mapping[str, ReplicaStatus]) -> None:
        if recorded > epoch:
            raise UnsafeError(f"refused: epoch unknown: the store records epoch {recorded} for {engine.name}, its "
                              f"primary {primary} carries {epoch}")
        for name, status in sorted(statuses.items()):
            if name == primary:
                continue
            if status.epoch > epoch:
                raise UnsafeError(f"refused: epoch unknown: {name} carries epoch {status.epoch}, above primary "
                                  f"{primary}'s {epoch} (a halt or failover half done?)")
            if status.role is Role.PRIMARY and status.epoch >= epoch:
                raise UnsafeError(f"refused: no current primary: {name} and {primary} both claim primary at epoch "
                                  f"{epoch}")

    def _rejoining(self, engine: Engine, replica: str) -> bool:
        """A rejoin already under way (or just finished): following it again is harmless."""
        try:
            return self.engines.rejoin_status(engine.replica(replica)).get("state") in ("started", "copying")
        except FailoverError:
            return False

    # --- the rejoin ---------------------------------------------------------------------------------------

    def run(self, plan: RejoinPlan, *, timeout: float, poll: float = 0.2,
            on_progress: Callable[[Mapping[str, Any]], None] | None = None) -> RejoinOutcome:
        """Fence if needed, start (or find) the rejoin, follow it until done, failed or `timeout` seconds."""
        engine = self.topology.engines[plan.engine]
        target = engine.replica(plan.replica)
        began = self.clock()
        self._audit("rejoin.start", {"engine": plan.engine, "replica": plan.replica, "primary": plan.primary,
                                     "epoch": plan.epoch, "fence_first": plan.fence_first})
        if plan.fence_first:
            self.engines.fence(target, plan.epoch)
            self._audit("rejoin.fenced", {"engine": plan.engine, "replica": plan.replica, "epoch": plan.epoch})
        record: Mapping[str, Any] = self.engines.rejoin(target, plan.epoch, plan.primary_url)
        while record.get("state") in ("started", "copying") and self.clock() - began < timeout:
            if on_progress is not None:
                on_progress(record)
            self.sleep(poll)
            record = self.engines.rejoin_status(target)
        outcome = RejoinOutcome(plan, str(record.get("state")), 0.0, int(record.get("last_seq") or 0),
                                record.get("target_seq"), error=record.get("error"))
        if outcome.state == "done":
            outcome.acknowledging = self._acknowledging(engine, plan, began + timeout, poll)
            self._record_tails(plan, record, outcome)
        outcome.seconds = self.clock() - began
        self._audit(f"rejoin.{outcome.state if outcome.state in ('done', 'failed') else 'unfinished'}",
                    {"engine": plan.engine, "replica": plan.replica, "primary": plan.primary, "epoch": plan.epoch,
                     "seconds": round(outcome.seconds, 3), "last_seq": outcome.last_seq, "error": outcome.error,
                     "acknowledging": outcome.acknowledging})
        return outcome

    def _acknowledging(self, engine: Engine, plan: RejoinPlan, deadline: float, poll: float) -> bool:
        """Whether the rejoined replica fetches from the primary as a standby: it follows the primary's URL and
        has had a fetch from it answered (a standby's fetch from a primary it follows is its acknowledgement)."""
        target = engine.replica(plan.replica)
        while True:
            try:
                status = self.engines.status(target)
                if status.role is Role.STANDBY and (status.following or "").rstrip("/") == \
                        plan.primary_url.rstrip("/") and status.primary_contact_age is not None:
                    return True
            except FailoverError:
                pass
            if self.clock() >= deadline:
                return False
            self.sleep(poll)

    def _record_tails(self, plan: RejoinPlan, record: Mapping[str, Any], outcome: RejoinOutcome) -> None:
        """The tails this rejoin archived: audited, and kept in the incident that deposed the replica."""
        started = str(record.get("started_at") or "")
        outcome.tails = [dict(tail) for tail in record.get("tails") or []
                         if str(tail.get("archived_at") or "") >= started]
        if not outcome.tails:
            return
        incident = next((found for found in self.store.incidents(plan.engine, limit=20)
                         if found.source == plan.replica), None)
        now = self.clock()
        for tail in outcome.tails:
            listed = [{key: entry.get(key) for key in ("seq", "kind", "client_order_id", "account")}
                      for entry in (tail.get("entries") or [])[:AUDIT_LISTED]]
            self._audit("rejoin.archived", {"engine": plan.engine, "replica": plan.replica, "file": tail.get("file"),
                                            "common_seq": tail.get("common_seq"), "entries": tail.get("count"),
                                            "orders": listed, "incident": incident.id if incident else None})
        if incident is None:
            return
        outcome.incident = incident.id
        detail: dict[str, Any] = {"rejoin": {"replica": plan.replica, "primary": plan.primary, "epoch": plan.epoch,
                                             "at": now, "tails": outcome.tails}}
        diverged = incident.detail.get("diverged")
        archived = sum(int(tail.get("count") or 0) for tail in outcome.tails)
        # the replica's own comparison, made against the primary before it cut anything, wins over one the
        # controller may have made while the journal was being rebuilt (which would find less, or nothing)
        if not (isinstance(diverged, Mapping) and diverged.get("checked")
                and int(diverged.get("count") or 0) >= archived):
            detail["diverged"] = from_rejoin(plan.replica, outcome.tails[-1])
        self.store.update_incident(incident.id, detail=detail, at=now)

    def _audit(self, action: str, detail: dict[str, Any]) -> None:
        self.store.audit(self.actor, action, detail, self.clock())
