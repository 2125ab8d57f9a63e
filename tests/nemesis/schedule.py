"""Schedules of faults, random from a seed, and the run of one schedule against a `World` (Jepsen's generator and
nemesis). The same seed always gives the same schedule, so a violation is replayed by one command:

    .venv/bin/python tests/nemesis/soak.py --seed 1234 --replay
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nemesis.checker import Expect, Verdict, check
from nemesis.nemeses import DAEMONS, KINDS, Fault, Undo, expected_failovers
from nemesis.world import Lab, Mode, World, WorldOptions

REPLAY = ".venv/bin/python tests/nemesis/soak.py --seed {seed} --replay"
LEAD_IN = 2.0  # seconds of trading before the first fault
HOLD = 2.0  # seconds after the last fault ends before everything is healed
LOST_FOR = 120.0  # at most this long, a primary lost "until the end" stays lost while nothing is done about it


@dataclass(frozen=True)
class Schedule:
    seed: int
    mode: Mode
    faults: tuple[Fault, ...]

    def describe(self) -> str:
        return f"seed {self.seed}, {self.mode} mode: " + "; ".join(f.describe() for f in self.faults)

    def replay(self) -> str:
        return REPLAY.format(seed=self.seed)

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "mode": self.mode, "faults": [f.to_json() for f in self.faults]}


def generate(seed: int) -> Schedule:
    """Two to four faults of distinct kinds the mode offers, at random times in the first 8 s, lasting 2-7 s; sometimes
    the primary lost for good, and then sometimes the leader dying in the middle of the failover."""
    rng = random.Random(seed)
    mode: Mode = rng.choices(("daemon", "ha", "cron"), weights=(5, 3, 2))[0]
    usable = sorted((k for k in KINDS.values() if mode in k.modes and not k.option and k.name != "lose-primary"),
                    key=lambda k: k.name)
    faults = []
    for kind in rng.sample(usable, rng.randint(2, 4)):
        target = rng.choice(kind.targets)
        if kind.name == "clock-skew" and mode != "ha":
            target = "agent"  # the one daemon that may lead refusing to lead would be a fault of the setup
        faults.append(Fault(kind.name, round(rng.uniform(0, 8), 1), round(rng.uniform(2, 7), 1), target,
                            kind.params(rng)))
    if rng.random() < 0.4:
        faults.append(Fault("lose-primary", round(rng.uniform(0.5, 8), 1), 0.0, "primary"))
        if mode in DAEMONS and rng.random() < 0.5:
            kind = KINDS["leader-dies-mid-step"]
            faults.append(Fault(kind.name, 0.0, 0.0, "leader", kind.params(rng)))
    return Schedule(seed, mode, tuple(sorted(faults, key=lambda f: (f.at, f.kind))))


@dataclass
class RunResult:
    schedule: Schedule
    verdict: Verdict
    expect: Expect
    notes: list[tuple[float, str]] = field(default_factory=list)
    seconds: float = 0.0
    failovers: int = 0
    history: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.error

    def report(self) -> str:
        lines = [f"{'held' if self.ok else 'VIOLATION'}: {self.schedule.describe()}"]
        lines += [f"  {at:6.1f}s  {note}" for at, note in self.notes]
        if self.error:
            lines.append(f"  ERROR {self.error}")
        lines.append(self.verdict.text() if not self.verdict.ok else f"  {self.verdict.text()}")
        if not self.ok:
            lines.append(f"  replay: {self.schedule.replay()}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {**self.schedule.to_json(), "seconds": round(self.seconds, 1), "failovers": self.failovers,
                "expected_failovers": list(self.expect.failovers), "notes": [[round(a, 1), n] for a, n in self.notes],
                "invariants_checked": list(self.verdict.checked), "error": self.error,
                "violations": [{"invariant": v.invariant, "message": v.message} for v in self.verdict.violations],
                "history": self.history, "replay": self.schedule.replay()}


def options_for(schedule: Schedule) -> WorldOptions:
    options = WorldOptions(mode=schedule.mode, seed=schedule.seed)
    if any(f.kind == "full-disk" for f in schedule.faults):
        options.small_disk = ("spot-aws", "spot-gcp", "spot-azure")  # a tmpfs under each, where mounting works
    for fault in schedule.faults:
        if fault.kind == "leader-dies-mid-step":
            once = f"/tmp/nemesis-failpoint-{schedule.seed}-{time.monotonic_ns()}"
            env = {"FAILOVER_FAILPOINT": f"{fault.params['step']}:before", "FAILOVER_FAILPOINT_ONCE": once}
            names = ("daemon",) if schedule.mode == "daemon" else ("d-aws", "d-gcp", "d-azure")
            options.env.update({name: dict(env) for name in names})
    return options


def run(lab: Lab, schedule: Schedule, *, settle: float = 60.0, say: Callable[[str], None] = print) -> RunResult:
    """Start a world, play the schedule, heal, settle, read everything and check it."""
    began = time.monotonic()
    world = lab.world(options_for(schedule), tag=f"s{schedule.seed}")
    notes: list[tuple[float, str]] = []

    def note(text: str) -> None:
        notes.append((time.monotonic() - began, text))
        say(f"  {notes[-1][0]:6.1f}s  {text}")

    result = RunResult(schedule, Verdict((), (), None), Expect(expected_failovers(list(schedule.faults))))
    try:
        world.start()
        note(f"started: {schedule.mode} mode, leader {world.leader() or '(cron)'}")
        _play(world, schedule, note)
        observed = world.observe(settle)
        expect = Expect(expected_failovers(list(schedule.faults)), announcer_clock_trusted=not world.skewed)
        result = RunResult(schedule, check(observed, expect), expect, notes,
                           failovers=sum(1 for i in observed.incidents if i.kind == "failover"),
                           history=world.history.summary())
    except Exception as error:  # a harness failure is reported with the seed, never swallowed
        result.error = f"{type(error).__name__}: {error}"[:2000]
        result.notes = notes
    finally:
        with contextlib.suppress(Exception):
            world.close()
    result.seconds = time.monotonic() - began
    return result


def _play(world: World, schedule: Schedule, note: Callable[[str], None]) -> None:
    _wait(world, LEAD_IN, note)
    events: list[tuple[float, int, int]] = []  # (when, 0 inject / 1 undo, index of the fault)
    for index, fault in enumerate(schedule.faults):
        if KINDS[fault.kind].option:
            continue
        events.append((fault.at, 0, index))
        if fault.duration > 0:
            events.append((fault.at + fault.duration, 1, index))
    events.sort()
    undos: dict[int, Undo] = {}
    start = time.monotonic()
    for at, undoing, index in events:
        fault = schedule.faults[index]
        _wait(world, at - (time.monotonic() - start), note)
        try:
            if undoing:
                if index in undos:
                    note(f"undo {fault.kind}: {undos.pop(index)()}")
            else:
                text, undo = KINDS[fault.kind].inject(world, fault)
                undos[index] = undo
                note(f"{fault.kind}: {text}")
        except Exception as error:  # a fault that cannot be applied now (its target is gone) is noted, not fatal
            note(f"{fault.kind}: not applied: {type(error).__name__}: {error}")
    _wait(world, HOLD, note)
    if any(KINDS[schedule.faults[i].kind].effect(schedule.faults[i]) == "must" for i in undos):
        _wait_for_failover(world, note)  # a data centre lost "until the end" stays dark until it was acted on
    for index, undo in list(undos.items()):
        with contextlib.suppress(Exception):
            note(f"heal {schedule.faults[index].kind}: {undo()}")
    world.heal()
    note("healed everything")


def _wait_for_failover(world: World, note: Callable[[str], None], timeout: float = LOST_FOR) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        incidents = world.incidents()
        if incidents and (incidents[-1].status == "needs_human" or any(
                step == "promote" and state == "done" for step, state, _ in incidents[-1].steps)):
            note(f"the lost primary was acted on: {incidents[-1].id} {incidents[-1].status}")
            return
        _wait(world, 0.3, note)
    note(f"nothing was done about the lost primary in {timeout:g}s")


def _wait(world: World, seconds: float, note: Callable[[str], None]) -> None:
    """Sleep, starting again any orchestrator process that died on its own meanwhile."""
    deadline = time.monotonic() + max(0.0, seconds)
    while True:
        for name in world.supervise():
            note(f"{name} had died on its own: started again")
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.2, left))
