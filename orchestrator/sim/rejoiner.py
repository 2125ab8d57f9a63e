"""When a simulation rejoins a replica: the scenario's `rejoin:` policy, acting through the real `failover rejoin`.

Why the production driver: the point of a simulated rejoin is to see what the real checks allow and refuse over a
day of faults — an open incident, no current primary, a replica on a quarantined site (`drivers/rejoin.py`, `plan`).
So an attempt is `Rejoin.plan` (refused: nothing changed, the reason is counted) then `Rejoin.run` with no time to
wait: it audits, fences a replica still claiming primary, and asks it to rejoin (`SimEngineControl.rejoin`). The
copy then happens in the world (`World._rejoin_progress`), which makes the replica a standby once it has caught up;
the command's own follow-up loop (it polls until done) has no place in a simulation that must keep running cycles.

The policy (scenario `rejoin:`): with `auto`, a replica that needs rebuilding — fenced, deposed but still claiming
primary, or a standby whose journal is no prefix of the primary's (diverged) — is tried once it has needed it for
`after`, then every `retry` while refused; each `schedule` entry is tried once, at its time, whatever the replica's
state (the driver refuses a healthy standby). Attempts happen at a tick, before its controller cycle, in both
steppings; the stepper is told to run that tick's cycle (stepping.py).

Which replica needs a rebuild, and when it is due, are the daemon's own rules (`drivers.auto_rejoin.need_of` and
`track`, `policy.auto_rejoin`), with one difference on purpose: the daemon holds a due attempt back while the
replica's site is quarantined, its engine has an open incident or there is no current primary (`choose`), where the
simulation makes the attempt and lets `Rejoin.plan` refuse it, so that its report counts what the real checks
refuse, by kind, over a day of faults. (The gates are the same checks; a daemon retries the moment they clear, the
simulation at its next `retry`.) The simulation also reads divergence from the journals themselves, where the daemon
reads it from the replica's status (`error`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace

from orchestrator.core.errors import FailoverError
from orchestrator.core.model import Role, Topology
from orchestrator.core.quarantine import may_host
from orchestrator.drivers.auto_rejoin import AutoRejoin, Need, need_of, track
from orchestrator.drivers.rejoin import Rejoin
from orchestrator.drivers.state import load_engine
from orchestrator.sim.engine import SimEngineControl
from orchestrator.sim.latency import Latencies
from orchestrator.sim.replica import holds
from orchestrator.sim.scenario import RejoinPolicy
from orchestrator.sim.store import SimStore
from orchestrator.sim.world import World
from orchestrator.store.auto_rejoin import Pending

ACTOR = "simulation:rejoin-policy"


@dataclass(frozen=True, slots=True)
class Attempt:
    at: float
    engine: str
    replica: str
    outcome: str  # started | refused
    reason: str  # the refusal's kind (quarantine, incident, no_primary, unreachable, other), or ""
    message: str
    quarantined: bool  # the replica's site was in quarantine when the rejoin started (never expected)


def refusal_kind(message: str) -> str:
    """The kind of a refusal, from the driver's one line (docs/rejoin.md lists them)."""
    for needle, kind in (("in quarantine", "quarantine"), ("incident", "incident"), ("no current primary",
                         "no_primary"), ("does not answer", "unreachable"), ("unreachable", "unreachable"),
                         ("epoch unknown", "epoch_unknown"), ("replicating without error", "healthy_standby")):
        if needle in message:
            return kind
    return "other"


class Rejoiner:
    def __init__(self, policy: RejoinPolicy, topology: Topology, world: World, store: SimStore,
                 engines: SimEngineControl, latency: Latencies, start: float) -> None:
        self.policy, self.topology, self.world, self.store = policy, topology, world, store
        self.driver = Rejoin(topology, store, engines, actor=ACTOR, clock=world.clock, sleep=latency.sleep)
        self.schedule = [(start + at, replica) for at, replica in policy.schedule]
        # the daemon's policy, with every due attempt made (no limit: the driver's refusals are what is counted)
        self.auto = AutoRejoin(policy.auto, policy.after, policy.retry, max_concurrent=len(world.replicas))
        self.book: dict[str, Pending] = {}  # replica -> since when it needs a rebuild, when its next attempt is due
        self.attempts: list[Attempt] = []
        self.seen = -1  # the world's version at the last look
        self.due = math.inf

    def step(self, now: float) -> bool:
        """Look at the world if it changed or an attempt is due; make the attempts due. True if any was made."""
        if self.world.version == self.seen and now < self.due:
            return False
        tried = False
        if self.policy.auto:
            self.book = track(self.book, self._needing(), now, self.auto)
            for name, entry in sorted(self.book.items()):
                if entry.due <= now:
                    tried = True
                    if self._attempt(now, name):
                        del self.book[name]
                    else:
                        self.book[name] = replace(entry, due=now + self.policy.retry, attempts=entry.attempts + 1)
        while self.schedule and self.schedule[0][0] <= now:
            _, name = self.schedule.pop(0)
            self._attempt(now, name)
            tried = True
        self.seen = self.world.version
        self.due = min([*(entry.due for entry in self.book.values()), *(at for at, _ in self.schedule[:1])],
                       default=math.inf)
        return tried

    def _needing(self) -> dict[str, tuple[str, Need | None]]:
        """Each replica's need of a rebuild now (`need_of`), by the world's own state: what its status says, and
        whether its journal is a prefix of the primary's. A replica rejoining needs no attempt meanwhile."""
        found: dict[str, tuple[str, Need | None]] = {}
        for name in self.topology.engines:
            primary = load_engine(self.store, self.topology, name).primary
            current = self.world.replicas[primary]
            for replica in self.world.engines[name].replicas:
                if replica.rejoin is not None and replica.rejoin.state in ("started", "copying"):
                    found[replica.name] = (name, None)
                    continue
                diverged = replica.role is Role.STANDBY and current.role is Role.PRIMARY and not holds(replica, current)
                found[replica.name] = (name, need_of(replica.name, replica.status(), primary, diverged=diverged))
        return found

    def _attempt(self, now: float, name: str) -> bool:
        replica = self.world.replicas[name]
        try:
            plan = self.driver.plan(replica.engine, name)
        except FailoverError as error:
            message = str(error).splitlines()[0]
            self.attempts.append(Attempt(now, replica.engine, name, "refused", refusal_kind(message), message, False))
            return False
        quarantined = not may_host(replica.site, self.store.quarantines(), self.world.clock(),
                                   self.topology.policy.quarantine)
        try:
            outcome = self.driver.run(plan, timeout=0.0)
        except FailoverError as error:
            message = str(error).splitlines()[0]
            self.attempts.append(Attempt(now, replica.engine, name, "refused", refusal_kind(message), message, False))
            return False
        self.attempts.append(Attempt(now, replica.engine, name, "started", "",
                                     f"rejoining {name} to {plan.primary} at epoch {plan.epoch} ({outcome.state})",
                                     quarantined))
        return True

    def refused(self) -> dict[str, int]:
        return dict(sorted(Counter(a.reason for a in self.attempts if a.outcome == "refused").items()))
