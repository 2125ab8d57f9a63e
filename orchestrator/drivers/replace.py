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
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.core.errors import ConfigError, FailoverError, UnsafeError
from orchestrator.core.model import Engine, Replica, ReplicaStatus, Role, Site, Topology
from orchestrator.core.quarantine import DEFAULT_QUARANTINE, may_host
from orchestrator.drivers.rejoin import Rejoin, RejoinOutcome, pick_engine
from orchestrator.drivers.state import load_engine
from orchestrator.engine.base import EngineControl
from orchestrator.store.base import StateStore
from orchestrator.store.records import IncidentStatus
from orchestrator.store.topology_record import TOPOLOGY, RecordedReplica, topology_book, with_recorded
from providers.base import CloudProvider
from providers.launch import Launcher, launcher_for

PEERS_STAGE = "peers"  # the progress state from which a rerun only tells the replicas their peers


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
    stage: str | None = None  # the progress state it resumes from (`PEERS_STAGE`: rejoined, peers still to tell)
    instance: str | None = None  # the machine an earlier run made or found (known once it was created)
    pending: Mapping[str, str] = field(default_factory=dict)  # replicas an earlier run could not tell, and why


@dataclass
class PeersOutcome:
    """Which replicas of the engine took the new peer list (`POST /v1/peers`) and which did not, and why: one that
    did not still polls the replaced replica's old address, so it would not follow it once it is promoted."""

    epoch: int
    urls: dict[str, str]  # every replica of the engine -> its control URL now (what each was told, minus its own)
    told: list[str] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # replica -> the error


@dataclass
class ReplaceOutcome:
    plan: ReplacePlan
    state: str  # done | rejoining (still going when the time ran out) | waiting (not answering yet) | failed
    seconds: float = 0.0
    instance: str | None = None
    control_url: str | None = None
    created: bool = False  # made by this run (False: found by its key)
    rejoin: RejoinOutcome | None = None
    peers: PeersOutcome | None = None
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
        progress = self.book.replace_progress(engine.name, replica)
        telling = progress is not None and progress.get("state") == PEERS_STAGE and progress.get("site") == site
        if not telling:  # the machine is made and rejoined: only the replicas' peer lists are left to set
            self.launcher(site)  # bad launch settings are bad input, found before anything is made
            if replica == load_engine(self.store, self.topology, engine.name).primary:
                raise UnsafeError(f"refused: {replica} is the primary of {engine.name}; fail over first, then "
                                  "replace it")
            self._check_quarantine(site)
        incident = self.store.open_incident(engine.name)
        if incident is not None and incident.status is not IncidentStatus.NEEDS_HUMAN:
            raise UnsafeError(f"refused: incident {incident.id} of {engine.name} is {incident.status.value}; "
                              "replace once it is closed or handed to a human")
        if progress is not None and progress.get("site") != site:
            raise UnsafeError(f"refused: a replacement of {replica} onto {progress.get('site')} is under way (key "
                              f"{progress.get('key')}); finish it with: failover replace {replica} --site "
                              f"{progress.get('site')}")
        previous = self._previous(engine, replica, progress)
        if progress is None and not force:
            self._check_lost(previous)
        if progress is not None:
            return ReplacePlan(engine.name, replica, site, str(progress["key"]), int(progress["generation"]),
                               previous, resumed=True, control_url=progress.get("control_url"),
                               stage=str(progress.get("state")), instance=progress.get("instance"),
                               pending=dict(progress.get("pending") or {}))
        recorded = self.book.recorded_replicas().get((engine.name, replica))
        generation = (recorded.generation if recorded is not None else 0) + 1
        return ReplacePlan(engine.name, replica, site, idempotency_key(engine.name, replica, site, generation),
                           generation, previous)

    def _previous(self, engine: Engine, replica: str, progress: Mapping[str, Any] | None) -> Replica:
        """Where the replica ran before this replacement: the configuration's (or an earlier replacement's) place;
        once this replacement is recorded (its peers still to tell), the place the record says it replaced."""
        now = engine.replica(replica)
        recorded = self.book.recorded_replicas().get((engine.name, replica))
        if progress is None or recorded is None or recorded.instance != progress.get("instance") or \
                not recorded.previous.get("site"):
            return now
        return replace(now, site=recorded.previous["site"], instance=recorded.previous.get("instance", ""),
                       control_url=recorded.previous.get("control_url", ""))

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
                                      "stage": plan.stage,
                                      "previous": {"site": plan.previous.site, "instance": plan.previous.instance}})
        if plan.stage == PEERS_STAGE and plan.instance is not None and plan.control_url is not None:
            return self._resume_telling(plan, outcome, began, say)
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
        self._progress(plan, "created", launched.instance, url)
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
        epoch = outcome.rejoin.plan.epoch
        self._progress(plan, PEERS_STAGE, launched.instance, url, pending=dict.fromkeys(
            (r.name for r in self._moved(plan.engine, target).replicas), "not told yet"))
        outcome.peers = self._tell_peers(plan, target, epoch, say)
        self._record(plan, launched.instance, url, outcome.peers)
        return self._finish(outcome, "done", began, None)

    # --- the peers -----------------------------------------------------------------------------------------

    def _resume_telling(self, plan: ReplacePlan, outcome: ReplaceOutcome, began: float,
                        say: Callable[[str], None]) -> ReplaceOutcome:
        """A run that rejoined the machine but was killed before every replica took the new peer list (or that
        left some out because they did not answer): tell them all again at the primary's epoch now, record."""
        assert plan.instance is not None and plan.control_url is not None
        outcome.instance, outcome.control_url = plan.instance, plan.control_url
        target = replace(plan.previous, site=plan.site, instance=plan.instance, control_url=plan.control_url)
        left = ", ".join(sorted(plan.pending)) or "every replica"
        say(f"{plan.replica} runs as {plan.instance} at {plan.control_url}; telling the peers its new place "
            f"(left to tell: {left})")
        outcome.peers = self._tell_peers(plan, target, self._epoch_now(plan.engine), say)
        self._record(plan, plan.instance, plan.control_url, outcome.peers)
        return self._finish(outcome, "done", began, None)

    def _moved(self, engine_name: str, target: Replica) -> Engine:
        """The engine with the replaced replica at its new place."""
        engine = self.topology.engines[engine_name]
        return replace(engine, replicas=tuple(target if r.name == target.name else r for r in engine.replicas))

    def _epoch_now(self, engine_name: str) -> int:
        """The epoch a peer list is sent at: the primary's as it answers now, else the store's record of it. Never
        a new one: the list is checked against it, not stamped (a stale one is refused and listed)."""
        record = load_engine(self.store, self.topology, engine_name)
        engine = self.topology.engines[engine_name]
        try:
            return max(record.epoch, self.engines.status(engine.replica(record.primary)).epoch)
        except FailoverError:
            return record.epoch

    def _tell_peers(self, plan: ReplacePlan, target: Replica, epoch: int,
                    say: Callable[[str], None]) -> PeersOutcome:
        """Every replica of the engine, the new machine included (its image names no peer), is told the others'
        control URLs where they run now (`POST /v1/peers`). One that does not answer or refuses is listed: it still
        polls the old address, and once the new machine is promoted it would not follow it."""
        engine = self._moved(plan.engine, target)
        told = PeersOutcome(epoch, {r.name: r.control_url for r in engine.replicas})
        for replica in engine.replicas:
            others = [url for name, url in told.urls.items() if name != replica.name]
            try:
                self.engines.set_peers(replica, epoch, others)
            except FailoverError as error:
                told.pending[replica.name] = str(error)
                continue
            told.told.append(replica.name)
        if told.pending:
            say(f"told {', '.join(told.told) or 'no replica'} the new peer list; not told: "
                + "; ".join(f"{name} ({error})" for name, error in told.pending.items()))
        else:
            say(f"told {', '.join(told.told)} the new peer list at epoch {epoch}")
        self._audit("replace.peers", {**self._ids(plan), "epoch": epoch, "peers": told.urls, "told": told.told,
                                      "pending": told.pending})
        return told

    def _record(self, plan: ReplacePlan, instance: str, url: str, peers: PeersOutcome) -> None:
        """The replica's new place, recorded; with replicas left to tell, its progress is kept at the peers stage
        in the same write (a rerun of the same command tells them), else dropped with it."""
        recorded = RecordedReplica(
            plan.engine, plan.replica, plan.site, instance, url, self.clock(), plan.generation,
            {"site": plan.previous.site, "instance": plan.previous.instance,
             "control_url": plan.previous.control_url})
        if not peers.pending:
            self.book.record_replacement(recorded)
            return
        slot = f"{plan.engine}/{plan.replica}"
        progress = self._progress_body(plan, PEERS_STAGE, instance, url, peers.pending)

        def change(document: dict[str, Any]) -> dict[str, Any]:
            replicas = {**(document.get("replicas") or {}), slot: recorded.to_json()}
            replacing = {**(document.get("replacing") or {}), slot: progress}
            return {**document, "replicas": replicas, "replacing": replacing}
        TOPOLOGY.change(self.book, change)

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
        moved = self._moved(plan.engine, target)
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

    def _progress(self, plan: ReplacePlan, state: str, instance: str | None = None, url: str | None = None,
                  pending: Mapping[str, str] | None = None) -> None:
        self.book.put_replace_progress(plan.engine, plan.replica,
                                       self._progress_body(plan, state, instance, url, pending))

    def _progress_body(self, plan: ReplacePlan, state: str, instance: str | None, url: str | None,
                       pending: Mapping[str, str] | None) -> dict[str, Any]:
        progress: dict[str, Any] = {"site": plan.site, "key": plan.key, "generation": plan.generation,
                                    "state": state, "at": self.clock(), "actor": self.actor}
        if instance is not None:
            progress.update(instance=instance, control_url=url)
        if pending is not None:
            progress["pending"] = dict(pending)
        return progress

    @staticmethod
    def _ids(plan: ReplacePlan) -> Mapping[str, Any]:
        return {"engine": plan.engine, "replica": plan.replica, "site": plan.site, "key": plan.key}

    def _audit(self, action: str, detail: Mapping[str, Any]) -> None:
        self.store.audit(self.actor, action, dict(detail), self.clock())
