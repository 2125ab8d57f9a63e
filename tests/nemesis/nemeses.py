"""The nemesis's repertoire: each fault kind injects one fault into a running `World` and returns how to undo it.

A fault names its target by role (`primary`, `standby`, `leader`, `agent`, `etcd`) or by name; the role is
resolved when the fault starts (the primary then, not the primary at the start of the run), and what was hit is
written in the note. `failover` says what the fault may do to the number of failovers: `none` (a failover would
be a false one), `may` (the primary may legitimately be judged lost), `must` (the primary is lost for good).

| kind                      | what it does                                                               |
|---------------------------|----------------------------------------------------------------------------|
| partition-replica         | every replica<->replica link of one replica dropped, both ways             |
| replication-one-way       | one standby->primary link cut one way (requests lost, or answers lost)     |
| standbys-cut-from-primary | both standbys' links to the primary dropped; orchestrator and probes fine |
| blind-orchestrator        | the orchestrator's link to one replica blackholed                          |
| blind-vantage             | one probe agent's link to one replica blackholed                           |
| client-resets             | the clients' link to the primary resets every connection                   |
| freeze-replica            | SIGSTOP, later SIGCONT                                                      |
| kill-replica              | SIGKILL, later started again on the same data directory                    |
| full-disk                 | the replica's journal can no longer grow (tmpfs full, or file-size limit)  |
| stale-standby             | a standby's data directory copied now, put back under it later             |
| freeze-leader             | the leading daemon SIGSTOPped, later SIGCONTed                              |
| kill-leader               | the leading daemon SIGKILLed, later started again                          |
| clock-skew                | one orchestrator process started again with its wall clock off by N s      |
| slow-cloud-api            | the orchestrator's link to EC2 (moto), GCP or Azure delays every chunk     |
| failing-cloud-api         | GCP or Azure answers 503/429 (the fake's own faults); EC2's link resets    |
| slow-webhook              | the orchestrator's webhook answers one byte every 0.5 s                    |
| kill-etcd-member          | SIGKILL one etcd member, later started again (HA)                          |
| freeze-etcd-member        | SIGSTOP one etcd member, later SIGCONT (HA)                                 |
| kill-check                | SIGKILL the `failover check` run in progress (cron)                        |
| lose-primary              | the primary killed and its zone and instance impaired in EC2, until the end |
| leader-dies-mid-step      | the leader SIGKILLs itself at a runbook step (failpoint), once              |
"""

from __future__ import annotations

import contextlib
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from nemesis.world import NAMES, World

Effect = Literal["none", "may", "must"]
Undo = Callable[[], str]


@dataclass(frozen=True)
class Fault:
    kind: str
    at: float  # seconds after the faults begin
    duration: float  # until undone; the final heal undoes whatever is left
    target: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        args = ", ".join([self.target] * bool(self.target) + [f"{k}={v}" for k, v in sorted(self.params.items())])
        until = f"for {self.duration:.1f}s" if self.duration > 0 else "until the end"
        return f"+{self.at:.1f}s {self.kind}({args}) {until}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at, "duration": self.duration, "target": self.target,
                "params": self.params}


@dataclass(frozen=True)
class Kind:
    name: str
    modes: frozenset[str]
    targets: tuple[str, ...]
    effect: Callable[[Fault], Effect]
    inject: Callable[[World, Fault], tuple[str, Undo]]
    params: Callable[[random.Random], dict[str, Any]] = lambda rng: {}
    option: bool = False  # applied through the world's options before it starts (not at `at`)


# ---- resolving targets -----------------------------------------------------------------------------------------


def primary_of(world: World) -> str:
    latest = [s for s in (world.monitor.latest(n) for n in NAMES) if s is not None and s.role == "primary"]
    return max(latest, key=lambda s: s.epoch).replica if latest else NAMES[0]


def resolve(world: World, fault: Fault) -> str:
    """The replica, process or member a fault's target means now (seeded choice among equals)."""
    rng = random.Random(f"{fault.kind}:{fault.at}")
    if fault.target == "primary":
        return primary_of(world)
    if fault.target == "standby":
        primary = primary_of(world)
        return rng.choice([n for n in NAMES if n != primary])
    if fault.target == "leader":
        return world.leader() or next(iter(world.specs))
    if fault.target == "agent":
        agents = sorted(n for n, spec in world.specs.items() if spec[2])
        return rng.choice(agents) if agents else (world.leader() or next(iter(world.specs)))
    return fault.target


# ---- links -----------------------------------------------------------------------------------------------------


def _links(world: World, pairs: list[tuple[str, str]], action: Callable[[Any], None]) -> Undo:
    links = [world.cluster.link(source, target) for source, target in pairs]
    for link in links:
        action(link)

    def undo() -> str:
        for link in links:
            link.heal()
        return f"{len(links)} links healed"

    return undo


def partition_replica(world: World, fault: Fault) -> tuple[str, Undo]:
    name = resolve(world, fault)
    pairs = [(a, b) for a in NAMES for b in NAMES if a != b and name in (a, b)]
    return f"{name} cut from the other replicas, both ways", _links(world, pairs, lambda link: link.drop())


def replication_one_way(world: World, fault: Fault) -> tuple[str, Undo]:
    primary = primary_of(world)
    standby = resolve(world, Fault(fault.kind, fault.at, fault.duration, "standby"))
    flow = fault.params.get("flow", "up")
    return (f"{standby}->{primary} cut one way ({'requests' if flow == 'up' else 'answers'} lost)",
            _links(world, [(standby, primary)], lambda link: link.cut(flow)))


def standbys_cut_from_primary(world: World, fault: Fault) -> tuple[str, Undo]:
    primary = primary_of(world)
    pairs = [(n, primary) for n in NAMES if n != primary]
    return f"both standbys cut from {primary}", _links(world, pairs, lambda link: link.drop())


def blind_orchestrator(world: World, fault: Fault) -> tuple[str, Undo]:
    name = resolve(world, fault)
    return f"orchestrator cannot reach {name}", _links(world, [("orch", name)], lambda link: link.blackhole())


def blind_vantage(world: World, fault: Fault) -> tuple[str, Undo]:
    name = resolve(world, fault)
    vantage = fault.params.get("vantage", "gcp-hk")
    return (f"vantage {vantage} cannot reach {name}",
            _links(world, [(f"vp:{vantage}", name)], lambda link: link.blackhole()))


def client_resets(world: World, fault: Fault) -> tuple[str, Undo]:
    name = resolve(world, fault)
    return f"clients' connections to {name} reset", _links(world, [("client", name)], lambda link: link.reset())


# ---- replica processes and disks -------------------------------------------------------------------------------


def freeze_replica(world: World, fault: Fault) -> tuple[str, Undo]:
    name = resolve(world, fault)
    world.cluster.pause(name)

    def undo() -> str:
        world.cluster.resume(name)
        return f"{name} thawed"

    return f"{name} frozen (SIGSTOP)", undo


def kill_replica(world: World, fault: Fault) -> tuple[str, Undo]:
    name = resolve(world, fault)
    world.cluster.kill(name)

    def undo() -> str:
        world.cluster.start(name)
        return f"{name} started again"

    return f"{name} killed (SIGKILL)", undo


def full_disk(world: World, fault: Fault) -> tuple[str, Undo]:
    name = resolve(world, fault)
    how = world.cluster.fill_disk(name)

    def undo() -> str:
        world.cluster.free_disk(name)
        if not world.cluster.running(name):
            world.cluster.start(name)
            return f"{name}'s disk freed, started again"
        return f"{name}'s disk freed"

    return f"{name}'s disk full ({how})", undo


def stale_standby(world: World, fault: Fault) -> tuple[str, Undo]:
    name = resolve(world, fault)
    world.cluster.snapshot(name)

    def undo() -> str:
        if not world.cluster.restore(name):  # it became the primary meanwhile: a stale primary is another fault
            return f"{name} is the primary now: not restored"
        return f"{name} restored from its copy of {fault.duration:.1f}s ago"

    return f"copy of {name}'s data directory taken", undo


# ---- orchestrator processes -------------------------------------------------------------------------------------


def _signal_process(world: World, name: str, signum: int) -> bool:
    process = world.process(name)
    if process is None or not process.alive:
        return False
    with contextlib.suppress(OSError):
        process.process.send_signal(signum)
    return True


def freeze_leader(world: World, fault: Fault) -> tuple[str, Undo]:
    name = resolve(world, fault)
    _signal_process(world, name, signal.SIGSTOP)

    def undo() -> str:
        _signal_process(world, name, signal.SIGCONT)
        return f"{name} thawed"

    return f"{name} frozen (SIGSTOP)", undo


def kill_leader(world: World, fault: Fault) -> tuple[str, Undo]:
    name = resolve(world, fault)
    world.held_down.add(name)
    _signal_process(world, name, signal.SIGKILL)

    def undo() -> str:
        world.held_down.discard(name)
        world.start_process(name)
        return f"{name} started again"

    return f"{name} killed (SIGKILL)", undo


def clock_skew(world: World, fault: Fault) -> tuple[str, Undo]:
    name = resolve(world, fault)
    seconds = float(fault.params.get("seconds", 30))
    world.options.skew[name] = seconds
    world.skewed.add(name)
    _signal_process(world, name, signal.SIGTERM)
    process = world.process(name)
    if process is not None:
        with contextlib.suppress(Exception):
            process.process.wait(timeout=15)
    world.start_process(name)
    return f"{name} started again with its wall clock {seconds:+g}s off", lambda: f"{name} stays skewed"


def kill_check(world: World, fault: Fault) -> tuple[str, Undo]:
    cron = world.cron
    running = cron.current if cron is not None else None
    if running is None or running.poll() is not None:
        return "no check run in progress", lambda: ""
    running.kill()
    return f"check run pid {running.pid} killed (SIGKILL)", lambda: ""


def etcd_member(world: World, fault: Fault, freeze: bool) -> tuple[str, Undo]:
    etcd = world.lab.etcd
    index = int(fault.params.get("member", 0))
    if etcd is None:
        return "no etcd in this run", lambda: ""
    if freeze:
        etcd.pause_member(index)

        def thaw() -> str:
            etcd.resume_member(index)
            return f"etcd member {index} thawed"

        return f"etcd member {index} frozen (SIGSTOP)", thaw
    etcd.stop_member(index)

    def restart() -> str:
        etcd.restart_member(index)
        return f"etcd member {index} started again"

    return f"etcd member {index} killed (SIGKILL)", restart


# ---- clouds and webhooks ---------------------------------------------------------------------------------------


def slow_cloud_api(world: World, fault: Fault) -> tuple[str, Undo]:
    cloud = fault.params.get("cloud", "moto")
    seconds = float(fault.params.get("seconds", 2.0))
    link = world.bed.cloud_link("orch", cloud)
    link.delay(seconds)

    def undo() -> str:
        link.heal()
        return f"{cloud} API fast again"

    return f"{cloud} API delayed {seconds:g}s per chunk for the orchestrator", undo


def failing_cloud_api(world: World, fault: Fault) -> tuple[str, Undo]:
    cloud = fault.params.get("cloud", "gcp")
    status = int(fault.params.get("status", 503))
    if cloud == "moto":
        link = world.bed.cloud_link("orch", "moto")
        link.reset()

        def heal_link() -> str:
            link.heal()
            return "EC2 answers again"

        return "EC2's connections reset for the orchestrator", heal_link
    fake = world.bed.gcp if cloud == "gcp" else world.bed.azure
    assert fake is not None
    fake.fail_next(status, count=1_000_000, retry_after=1 if status == 429 else None)

    def clear() -> str:
        fake.clear_faults()
        return f"{cloud} API recovered"

    return f"{cloud} API answers {status}", clear


def slow_webhook(world: World, fault: Fault) -> tuple[str, Undo]:
    link = world.bed.cloud_link("orch", "webhook")
    link.drip(1, float(fault.params.get("every", 0.5)))

    def undo() -> str:
        link.heal()
        return "webhook fast again"

    return "webhook answers one byte every 0.5s", undo


def lose_primary(world: World, fault: Fault) -> tuple[str, Undo]:
    name = resolve(world, fault)
    world.cluster.kill(name)
    if name == NAMES[0]:
        world.bed.impair_aws(True)

    def undo() -> str:
        world.bed.impair_aws(False)
        world.cluster.start(name)
        return f"{name} back (started again)"

    return f"{name} lost: killed, and EC2 reports it impaired" if name == NAMES[0] else f"{name} lost", undo


def leader_dies_mid_step(world: World, fault: Fault) -> tuple[str, Undo]:
    return f"the leader dies at {fault.params.get('step')}:before, once", lambda: ""


# ---- the table ---------------------------------------------------------------------------------------------------

ALL = frozenset({"daemon", "ha", "cron"})
DAEMONS = frozenset({"daemon", "ha"})


def _on_primary(fault: Fault) -> Effect:
    return "may" if fault.target == "primary" else "none"


def _never(fault: Fault) -> Effect:
    return "none"


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("partition-replica", ALL, ("standby", "primary"), _on_primary, partition_replica),
    Kind("replication-one-way", ALL, ("standby",), lambda f: "may", replication_one_way,
         lambda rng: {"flow": rng.choice(("up", "down"))}),
    Kind("standbys-cut-from-primary", ALL, ("primary",), lambda f: "may", standbys_cut_from_primary),
    Kind("blind-orchestrator", ALL, ("primary", "standby"), _never, blind_orchestrator),
    Kind("blind-vantage", frozenset({"daemon", "cron"}), ("primary", "standby"), _never, blind_vantage,
         lambda rng: {"vantage": rng.choice(("gcp-hk", "azure-hk"))}),
    Kind("client-resets", ALL, ("primary",), _never, client_resets),
    Kind("freeze-replica", ALL, ("standby", "primary"), _on_primary, freeze_replica),
    Kind("kill-replica", ALL, ("standby", "primary"), _on_primary, kill_replica),
    Kind("full-disk", ALL, ("standby", "primary"), _on_primary, full_disk),
    Kind("stale-standby", ALL, ("standby",), _never, stale_standby),
    Kind("freeze-leader", DAEMONS, ("leader",), _never, freeze_leader),
    Kind("kill-leader", DAEMONS, ("leader",), _never, kill_leader),
    Kind("clock-skew", DAEMONS, ("leader", "agent"), _never, clock_skew,
         lambda rng: {"seconds": rng.choice((-30, -8, 8, 30))}),
    Kind("slow-cloud-api", ALL, ("",), _never, slow_cloud_api,
         lambda rng: {"cloud": rng.choice(("moto", "gcp", "azure")), "seconds": rng.choice((1.0, 3.0))}),
    Kind("failing-cloud-api", ALL, ("",), _never, failing_cloud_api,
         lambda rng: {"cloud": rng.choice(("moto", "gcp", "azure")), "status": rng.choice((503, 429, 500))}),
    Kind("slow-webhook", ALL, ("",), _never, slow_webhook),
    Kind("kill-etcd-member", frozenset({"ha"}), ("etcd",), _never, lambda w, f: etcd_member(w, f, False),
         lambda rng: {"member": rng.randrange(3)}),
    Kind("freeze-etcd-member", frozenset({"ha"}), ("etcd",), _never, lambda w, f: etcd_member(w, f, True),
         lambda rng: {"member": rng.randrange(3)}),
    Kind("kill-check", frozenset({"cron"}), ("",), _never, kill_check),
    Kind("lose-primary", ALL, ("primary",), lambda f: "must", lose_primary),
    Kind("leader-dies-mid-step", DAEMONS, ("leader",), _never, leader_dies_mid_step,
         lambda rng: {"step": rng.choice(("halt", "fence_old_primary", "wait_caught_up", "promote",
                                          "open_protection", "reopen"))}, option=True),
)}


def expected_failovers(faults: list[Fault]) -> tuple[int, int]:
    effects = {KINDS[f.kind].effect(f) for f in faults}
    blinding = [f for f in faults if f.kind in ("blind-orchestrator", "blind-vantage") and f.target == "primary"]
    if len(blinding) >= 2:  # two vantage points that cannot see the primary are a quorum: a failover is fair
        effects.add("may")
    return (1 if "must" in effects else 0), (0 if effects <= {"none"} else 1)
