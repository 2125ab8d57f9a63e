"""`failover replace REPLICA --site S`: a lost replica rebuilt for good on a new machine, on another site or cloud.

The runbook an SRE would follow by hand, as one resumable command: start a machine on S from the site's launch
template or image (providers/launch.py), wait until the engine on it answers the control protocol, rejoin it to the
current primary (`drivers.rejoin`: an empty standby copies the journal, checked by hash chain, and acknowledges
once caught up), then record in the store where the replica runs now. The configuration file stays the operator's:
`failover status` lists where the store's topology and the file differ.

`plan` refuses before anything is made (nothing changes, one line):
- bad input (`ConfigError`, exit 2): an unknown engine, replica or site, a site whose cloud cannot launch or that has
  no `launch` options;
- unsafe (`UnsafeError`, exit 3): the replica is the current primary; S is quarantined (`core.quarantine.may_host`
  on the store's book); an incident of the engine is open, proposed or running; the replica still answers as a
  standby replicating without error (not lost: `--force` to replace it anyway); a replacement onto another site is
  already under way.

Resumable: the idempotency key (engine, replica, site, and how many times the replica was replaced before) is stored
as the replacement's progress before the create call and written on the machine itself (a tag or label). A command
killed anywhere between "instance created" and "rejoined" is resumed by running it again with the same arguments:
the same key finds the same machine, and the rejoin, which runs on the replica, is followed where it is.
Everything is audited: `replace.start`, `replace.created` (made or found), `replace.answering`, `replace.done`, or
`replace.failed` / `replace.unfinished`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.core.errors import ConfigError, FailoverError, UnsafeError
from orchestrator.core.model import Engine, Replica, ReplicaStatus, Role, Site, Topology
from orchestrator.core.quarantine import DEFAULT_QUARANTINE, may_host
from orchestrator.drivers.rejoin import Rejoin, RejoinOutcome, pick_engine
from orchestrator.drivers.state import load_engine
from orchestrator.engine.base import EngineControl
from orchestrator.store.base import StateStore
from orchestrator.store.records import IncidentStatus
from orchestrator.store.topology_record import RecordedReplica, topology_book, with_recorded
from providers.base import CloudProvider
from providers.launch import LaunchedInstance, Launcher, launcher_for


@dataclass(frozen=True)
class ReplacePlan:
    engine: str
    replica: str
    site: str
    key: str
    generation: int
    previous: Replica  # where it ran until now (the store's record, else the configuration)
    resumed: bool = False  # a replacement with this key was already under way
    control_url: str | None = None  # the one an earlier run of it used (given with --control-url, or derived)


@dataclass
class ReplaceOutcome:
    plan: ReplacePlan
    state: str  # done | rejoining (still going when the time ran out) | waiting (not answering yet) | failed
    seconds: float = 0.0
    instance: str | None = None
    control_url: str | None = None
    created: bool = False  # made by this run (False: found by its key)
    rejoin: RejoinOutcome | None = None
    error: str | None = None


def idempotency_key(engine: str, replica: str, site: str, generation: int) -> str:
    """32 hex digits: a GCP label value, an EC2 ClientToken and an Azure tag all accept it."""
    return hashlib.sha256(f"{engine}/{replica}/{site}/{generation}".encode()).hexdigest()[:32]


def _pick(topology: Topology, engine_name: str | None, replica: str, site: str) -> Engine:
    engine = pick_engine(topology, engine_name, replica)
    if site not in topology.sites:
        raise ConfigError(f"--site {site}: no such site (configured: {', '.join(topology.sites)})")
    return engine


class Replace:
    def __init__(self, topology: Topology, store: StateStore, engines: EngineControl,
                 provider_for: Callable[[Site], CloudProvider], *, actor: str,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.configured, self.store, self.engines = topology, store, engines
        self.book = topology_book(store)
        self.topology = with_recorded(topology, self.book.recorded_replicas())
        self.provider_for, self.actor, self.clock, self.sleep = provider_for, actor, clock, sleep

    # --- the checks ---------------------------------------------------------------------------------------

    def plan(self, engine_name: str | None, replica: str, site: str, *, force: bool = False) -> ReplacePlan:
        """Whether `replica` may be replaced on `site` now, and under which key (see the module's docstring)."""
        engine = _pick(self.topology, engine_name, replica, site)
        self.launcher(site)  # bad launch settings are bad input, found before anything is made
        if replica == load_engine(self.store, self.topology, engine.name).primary:
            raise UnsafeError(f"refused: {replica} is the primary of {engine.name}; fail over first, then replace it")
        self._check_quarantine(site)
        incident = self.store.open_incident(engine.name)
        if incident is not None and incident.status is not IncidentStatus.NEEDS_HUMAN:
            raise UnsafeError(f"refused: incident {incident.id} of {engine.name} is {incident.status.value}; "
                              "replace once it is closed or handed to a human")
        progress = self.book.replace_progress(engine.name, replica)
        if progress is not None and progress.get("site") != site:
            raise UnsafeError(f"refused: a replacement of {replica} onto {progress.get('site')} is under way (key "
                              f"{progress.get('key')}); finish it with: failover replace {replica} --site "
                              f"{progress.get('site')}")
        previous = engine.replica(replica)
        if progress is None and not force:
            self._check_lost(previous)
        if progress is not None:
            return ReplacePlan(engine.name, replica, site, str(progress["key"]), int(progress["generation"]),
                               previous, resumed=True, control_url=progress.get("control_url"))
        recorded = self.book.recorded_replicas().get((engine.name, replica))
        generation = (recorded.generation if recorded is not None else 0) + 1
        return ReplacePlan(engine.name, replica, site, idempotency_key(engine.name, replica, site, generation),
                           generation, previous)

    def _check_quarantine(self, site: str) -> None:
        book = self.store.quarantines()
        duration = getattr(self.topology.policy, "quarantine", None) or DEFAULT_QUARANTINE
        now = self.clock()
        if not may_host(site, book, now, duration):
            ends = book[site].ends_at(duration)
            until = "until it has been healthy for its whole quarantine" if ends is None else \
                f"until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(ends))}"
            raise UnsafeError(f"refused: site {site} is quarantined {until} (failover release {site} ends it)")

    def _check_lost(self, replica: Replica) -> None:
        """A replica that still answers as a standby replicating without error is not lost."""
        try:
            status = self.engines.status(replica)
        except FailoverError:
            return
        if status.role is Role.STANDBY and status.error is None:
            raise UnsafeError(f"refused: {replica.name} answers at {replica.control_url} as a standby replicating "
                              "without error; replace only a lost replica (--force to replace it anyway)")

    def launcher(self, site: str) -> Launcher:
        return launcher_for(self.provider_for(self.topology.sites[site]))

    # --- the replacement ----------------------------------------------------------------------------------

    def run(self, plan: ReplacePlan, *, timeout: float, control_url: str | None = None, poll: float = 0.5,
            on_progress: Callable[[str], None] | None = None) -> ReplaceOutcome:
        """Launch (or find) the machine, wait for its engine, rejoin it, record it; within `timeout` seconds."""
        began = self.clock()
        deadline = began + timeout
        say = on_progress or (lambda line: None)
        outcome = ReplaceOutcome(plan, "failed")
        self._audit("replace.start", {**self._ids(plan), "generation": plan.generation, "resumed": plan.resumed,
                                      "previous": {"site": plan.previous.site, "instance": plan.previous.instance}})
        self._progress(plan, "launching")
        launcher = self.launcher(plan.site)
        say(f"launching on {plan.site} (key {plan.key})")
        try:
            launched = launcher.launch(plan.replica, plan.key, deadline=max(1.0, deadline - self.clock()))
        except FailoverError as error:
            self._audit("replace.failed", {**self._ids(plan), "stage": "launch", "error": str(error)})
            raise
        url = control_url or plan.control_url or launched.control_url(launcher.control_url_template)
        outcome.instance, outcome.control_url, outcome.created = launched.instance, url, launched.created
        self._progress(plan, "created", launched, url)
        self._audit("replace.created", {**self._ids(plan), "instance": launched.instance, "made": launched.created,
                                        "control_url": url})
        target = replace(plan.previous, site=plan.site, instance=launched.instance, control_url=url)
        say(f"{'made' if launched.created else 'found'} {launched.instance}; waiting for its engine at {url}")
        status = self._wait_answering(target, deadline, poll)
        if status is None:
            return self._finish(outcome, "waiting", began, f"{url} did not answer the control protocol in time")
        self._audit("replace.answering", {**self._ids(plan), "role": status.role.value, "epoch": status.epoch,
                                          "last_seq": status.last_seq})
        say(f"{plan.replica} answers as {status.role.value} at seq {status.last_seq}; rejoining it")
        try:
            outcome.rejoin = self._rejoin(plan, target, max(1.0, deadline - self.clock()), poll)
        except FailoverError as error:  # refused (no current primary, epoch unknown) or unreachable: run again
            self._audit("replace.failed", {**self._ids(plan), "stage": "rejoin", "error": str(error)})
            raise
        if outcome.rejoin.state != "done" or not outcome.rejoin.acknowledging:
            state = "failed" if outcome.rejoin.state == "failed" else "rejoining"
            return self._finish(outcome, state, began, outcome.rejoin.error)
        self.book.record_replacement(RecordedReplica(
            plan.engine, plan.replica, plan.site, launched.instance, url, self.clock(), plan.generation,
            {"site": plan.previous.site, "instance": plan.previous.instance,
             "control_url": plan.previous.control_url}))
        return self._finish(outcome, "done", began, None)

    def _wait_answering(self, target: Replica, deadline: float, poll: float) -> ReplicaStatus | None:
        while True:
            try:
                return self.engines.status(target)
            except FailoverError:
                pass
            if self.clock() >= deadline:
                return None
            self.sleep(poll)

    def _rejoin(self, plan: ReplacePlan, target: Replica, timeout: float, poll: float) -> RejoinOutcome:
        """The rejoin driver on the topology with the replica at its new place; a new replica is an empty standby
        (or one a killed run left part-copied), so it is rebuilt even though it replicates without error."""
        engine = self.topology.engines[plan.engine]
        moved = replace(engine, replicas=tuple(target if r.name == plan.replica else r for r in engine.replicas))
        topology = replace(self.topology, engines={**self.topology.engines, plan.engine: moved})
        rejoin = Rejoin(topology, self.store, self.engines, actor=self.actor, clock=self.clock, sleep=self.sleep)
        return rejoin.run(rejoin.plan(plan.engine, plan.replica, force=True), timeout=timeout, poll=poll)

    def _finish(self, outcome: ReplaceOutcome, state: str, began: float, error: str | None) -> ReplaceOutcome:
        plan = outcome.plan
        outcome.state, outcome.error, outcome.seconds = state, error, self.clock() - began
        action = {"done": "replace.done", "failed": "replace.failed"}.get(state, "replace.unfinished")
        self._audit(action, {**self._ids(plan), "state": state, "instance": outcome.instance,
                             "control_url": outcome.control_url, "seconds": round(outcome.seconds, 3),
                             "error": error})
        return outcome

    def _progress(self, plan: ReplacePlan, state: str, launched: LaunchedInstance | None = None,
                  url: str | None = None) -> None:
        progress: dict[str, Any] = {"site": plan.site, "key": plan.key, "generation": plan.generation,
                                    "state": state, "at": self.clock(), "actor": self.actor}
        if launched is not None:
            progress.update(instance=launched.instance, control_url=url)
        self.book.put_replace_progress(plan.engine, plan.replica, progress)

    @staticmethod
    def _ids(plan: ReplacePlan) -> Mapping[str, Any]:
        return {"engine": plan.engine, "replica": plan.replica, "site": plan.site, "key": plan.key}

    def _audit(self, action: str, detail: Mapping[str, Any]) -> None:
        self.store.audit(self.actor, action, dict(detail), self.clock())
