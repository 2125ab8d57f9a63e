"""Run a scenario: the production controller and runbook against the simulated world, on a virtual clock.

Why this is the whole of the glue: the point of the simulator is that nothing of the orchestrator is simulated.
`Controller`, `RunbookDriver`, the health evaluator, `decide` and the runbook step machine run unchanged; only the
edges are swapped — `SimEngineControl` for the HTTP client, `SimProber` for the HTTP prober, `SimProvider` /
`SimRouter` (the in-memory cloud adapters) for the cloud SDKs, a `MemoryStore` for SQLite and the `VirtualClock`
for `time.time`/`time.sleep`. Each engine and cloud call the runbook makes takes the time the scenario's latency
table draws for it (`latency.py`): the runbook waits for it as it would in production, so the halt and the time to
a new primary are what production would see.

The loop ticks once per probe interval: the world lives up to the tick (faults, replication, orders), then one
controller cycle runs at that instant. A cycle that sleeps (a provider retrying, a runbook step waiting for an
instance to stop) moves the clock and the world with it, and the next tick comes no earlier than its end, as in
the daemon. By default (`stepping="event"`) a tick in which the cycle provably could not come out differently from
the last one is accounted for without running it (`stepping.py`: most of a day, which is what makes ten engines'
day cost seconds); `stepping="tick"` runs every cycle, and the tests check that both give the same report.

`simulate(path, seed, policy)` is what `failover simulate` calls: the figures as a JSON-ready dict (the CLI exits
1 when one of its `expectations` is false, 2 on a ConfigError). `render_timeline` formats that dict for people.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from orchestrator.core.decide import ActionKind, Rule
from orchestrator.core.model import Phase
from orchestrator.core.phases import format_instant, parse_timezone
from orchestrator.drivers.controller import LEASE_SAFETY, Controller, CycleResult
from orchestrator.drivers.events import Event, EventKind, EventLog, Notifier
from orchestrator.drivers.gc_tuning import tune_gc
from orchestrator.drivers.modes import ControllerSettings, Mode
from orchestrator.sim.clock import VirtualClock
from orchestrator.sim.clouds import SimProvider, SimRouter
from orchestrator.sim.engine import SimEngineControl
from orchestrator.sim.latency import Latencies, LatencyTable
from orchestrator.sim.metrics import SimResult, measure
from orchestrator.sim.policies import apply_policy
from orchestrator.sim.probes import SimProber
from orchestrator.sim.rejoiner import Rejoiner
from orchestrator.sim.scenario import Scenario, load_scenario
from orchestrator.sim.stepping import Stepper
from orchestrator.sim.store import SimStore
from orchestrator.sim.world import World
from providers.base import CloudProvider
from providers.traffic import TrafficRouter

POLL_INTERVAL = 2.0  # how often a provider re-reads an instance while waiting for it to stop or start

Stepping = Literal["event", "tick"]
STEPPINGS: tuple[Stepping, ...] = ("event", "tick")


class SimEventLog(EventLog):
    """Keeps every event, and tells the world at once when the orchestrator announces a phase: the world counts
    trades against the phase the exchange has announced, not the phase the runner last looked at."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world

    def publish(self, event: Event) -> None:
        super().publish(event)
        if event.kind is EventKind.PHASE and event.engine is not None and "phase" in event.detail:
            until = event.detail.get("until")
            self.world.note_phase(event.engine, Phase(event.detail["phase"]), event.at,
                                  None if until is None else float(until))


class Simulation:
    """One run: build once, then `run_until` any number of times (stateful tests inject faults in between)."""

    def __init__(self, scenario: Scenario, seed: int = 0, policy: str = "default", *,
                 stepping: Stepping = "event", columnar: bool | None = None) -> None:
        if stepping not in STEPPINGS:
            raise ValueError(f"stepping {stepping!r}: expected one of {', '.join(STEPPINGS)}")
        self.scenario, self.seed, self.policy = scenario, seed, policy
        self.topology = apply_policy(scenario.topology, policy)
        self.clock = VirtualClock(scenario.start)
        self.world = World(scenario, self.topology, seed, self.clock)
        self.store = SimStore(f"memory://{scenario.name}", clock=self.clock)
        self.events = SimEventLog(self.world)
        self.latency = Latencies(scenario.latencies, self.clock, seed)
        settings = scenario.world
        timing: dict[str, Any] = {"timer": self.clock, "sleep": self.latency.sleep,
                                  "call_deadline": settings.provider_call_deadline,
                                  "request_timeout": settings.provider_request_timeout}
        self.providers: dict[str, CloudProvider] = {
            name: SimProvider(site, cloud=self.world.clouds[site.provider], clock=self.clock,
                              poll_interval=POLL_INTERVAL, latency=self.latency, **timing)
            for name, site in self.topology.sites.items()
        }
        self.routers: dict[str, TrafficRouter] = {
            name: SimRouter(cloud=self.world.clouds[engine.dns.provider], latency=self.latency, **timing)
            for name, engine in self.topology.engines.items() if engine.dns is not None
        }
        self.engines = SimEngineControl(self.world, self.latency)
        self.prober = SimProber(self.world)
        self.controller = Controller(
            self.topology, self, Mode.SIMULATION, ControllerSettings(provider_interval=settings.provider_interval),
            monotonic=self.clock,  # the lease's safety margin runs on the virtual clock too: deterministic
            columnar=columnar,  # health over arrays (core/health_columns.py; None: by size); the same verdicts
        )
        self.stepper = Stepper(self.world, self.controller, self.prober, self.store, self.engines, self.events,
                               self.latency) if stepping == "event" else None
        self.latency.on_wait = self._keep_lease
        self._renewed = -math.inf
        self.rejoiner = Rejoiner(scenario.rejoin, self.topology, self.world, self.store, self.engines, self.latency,
                                 scenario.start) if scenario.rejoin.active else None
        self.refusals: list[tuple[float, str, str]] = []  # (when, engine, replica): failovers refused by quarantine
        self._refusing: set[str] = set()
        self.next_tick = scenario.start
        self.cycles = 0  # ticks lived through, whether their cycle ran or was accounted for
        self.skipped = 0  # ticks whose cycle was accounted for without running it

    def _keep_lease(self) -> None:
        """A daemon renews its lease on a thread of its own, every third of its safety margin, so a runbook that
        waits on slow calls stays certain of its leadership (drivers/controller.py, `_start_keeper`). A simulation
        has no threads: while a cycle waits on calls, the lease is renewed between waits, as often as that thread
        would renew it. (Without it, four engines' runbooks re-reading a lost replica's status one after the other
        outlasted the margin, and the last engine's failover waited for "leadership not certain" to clear.)"""
        controller = self.controller
        now = self.clock()
        if controller.lease is not None and now - self._renewed >= controller.options.lease_ttl * LEASE_SAFETY / 3:
            self._renewed = now
            controller._lead()  # what the keeper thread calls

    def _note_refusals(self, result: CycleResult) -> None:
        """A failover the controller wanted but could not make only because the one candidate that was otherwise
        eligible sits on a quarantined site: counted once per spell (a cycle that only holds is skipped by the
        stepper, and a refused failover is a `halt` action, which always runs: both steppings count the same)."""
        refusing = set()
        for action in result.actions:
            if action.kind is not ActionKind.HALT:  # "halt: no replica is safe to promote"
                continue
            held = [c.replica for c in action.candidates if c.blocked_by == (Rule.TARGET_NOT_QUARANTINED,)]
            if held:
                refusing.add(action.engine)
                if action.engine not in self._refusing:
                    self.refusals.append((result.at, action.engine, held[0]))
        self._refusing = refusing

    @property
    def notifier(self) -> Notifier:
        """The controller's notifier: the simulation's event log (its timeline)."""
        return self.events

    def run_until(self, at: float) -> None:
        """Tick until `at` (epoch seconds): the world lives to each tick, then one controller cycle runs (unless the
        stepper shows that it would change nothing). The last tick before `at` always runs its cycle, and the next
        call starts afresh: a caller may change the world in between (inject a fault that starts at `at`), and
        the tick before a change must run, as the tick before a fault edge does (stepping.py)."""
        interval, stepper = self.topology.probes.interval, self.stepper
        if stepper is not None:
            stepper.reset()
        rejoiner = self.rejoiner
        while self.next_tick <= at:
            self.world.advance_to(self.next_tick)
            self.cycles += 1
            if rejoiner is not None and rejoiner.step(self.next_tick) and stepper is not None:
                stepper.reset()  # a tick with a rejoin attempt runs its cycle (stepping.py)
            if stepper is not None and self.next_tick + interval <= at and stepper.may_skip(self.next_tick, interval):
                self.skipped += 1
                stepper.replay()  # the waits the skipped cycle would have spent (a protection window's statuses)
            elif stepper is not None:
                before = stepper.mark()
                result = self.controller.run_cycle()
                stepper.settle(before, result)
                self._note_refusals(result)
            else:
                self._note_refusals(self.controller.run_cycle())
            self.next_tick = max(self.next_tick + interval, self.clock())
        self.world.advance_to(at)

    def run(self) -> SimResult:
        tune_gc()  # as the daemon does, so a simulated cycle costs what a real one would
        self.run_until(self.scenario.end)
        return self.result()

    def result(self) -> SimResult:
        return measure(self.scenario, self.topology, self.world, self.events.events, self.store, seed=self.seed,
                       policy=self.policy, cycles=self.cycles,
                       attempts=self.rejoiner.attempts if self.rejoiner is not None else (),
                       refusals=self.refusals)


def _failover_clock(data: Mapping[str, Any]) -> list[str]:
    """The failover's own clock: each moment after the detection, and each runbook step's duration."""
    after = data.get("after_detection") or {}
    steps = data.get("step_durations_s") or {}
    lines = []
    if any(after.get(name) is not None for name in MOMENTS):
        lines += ["", "after detection (s):"]
        lines += [f"  {name:<28}{'-' if after.get(name) is None else f'{after[name]:.1f}'}" for name in MOMENTS]
    if steps:
        lines += ["", "runbook steps, longest started -> done (s):"]
        lines += [f"  {step:<28}{seconds:.2f}" for step, seconds in steps.items()]
    return lines


@contextmanager
def quiet_adapters() -> Iterator[None]:
    """The provider adapters log every failed API call, as they should in production; in a simulation of an
    API outage that is thousands of lines on stderr, and the timeline already says it."""
    loggers = [logging.getLogger(name) for name in ("providers", "orchestrator.drivers")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def run_scenario(path_or_scenario: str | Path | Scenario, seed: int = 0, policy: str = "default", *,
                 stepping: Stepping = "event") -> SimResult:
    """Load (if given a path), run to the end, and measure. ConfigError for a bad file or an unknown policy.
    `stepping="tick"` runs every controller cycle (the reference the event-driven default is tested against)."""
    scenario = path_or_scenario if isinstance(path_or_scenario, Scenario) else load_scenario(path_or_scenario)
    with quiet_adapters():
        return Simulation(scenario, seed, policy, stepping=stepping).run()


def simulate(path: str | Path, seed: int = 0, policy: str = "default", *,
             stepping: Stepping = "event", instant: bool = False) -> dict[str, Any]:
    """The figures of one run as plain JSON data (docs/design.md §9 names), for `failover simulate`. `instant`:
    every engine and cloud call answers at once (docs/simulated-latency.md), the simulator before call latencies."""
    scenario = load_scenario(path)
    if instant:
        scenario = replace(scenario, latencies=LatencyTable(instant=True))
    return run_scenario(scenario, seed, policy, stepping=stepping).to_json()


FIGURES = ("detection_s", "time_to_halted_s", "time_to_new_primary_s", "time_to_traffic_switched_s", "halt_s",
           "protection_s", "failovers", "false_failovers", "orders_acknowledged", "orders_lost",
           "trades_during_protection", "trades_while_halted", "max_primaries", "degraded_redundancy_s",
           "failovers_refused_quarantine", "rejoins")
MOMENTS = ("halted", "new_primary", "traffic_switched")  # `after_detection`'s keys, in the runbook's order


def render_timeline(result: SimResult | Mapping[str, Any]) -> str:
    """The timeline, the figures and the expectations as text, times in UTC and in the display time zone."""
    data = result.to_json() if isinstance(result, SimResult) else result
    display = parse_timezone(str(data.get("display_timezone", "UTC")))
    start = datetime.fromisoformat(str(data["start"])).timestamp()
    lines = [f"scenario {data['scenario']} · seed {data['seed']} · policy {data['policy']}", ""]
    for item in data["timeline"]:
        offset = float(item["at"])
        sign, whole = ("-" if offset < 0 else "+"), int(abs(offset))
        stamp = f"{sign}{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
        lines.append(f"{stamp:>10}  {format_instant(start + offset, display)}  {item['event']:<10} "
                     f"{item.get('message', '')}")
    lines += ["", "figures:"]
    for name in FIGURES:
        value = data.get(name)
        shown = "-" if value is None else (f"{value:.1f}" if isinstance(value, float) else str(value))
        lines.append(f"  {name:<27} {shown}")
    lines += _failover_clock(data)
    if data.get("expectations"):
        lines += ["", "expectations:"]
        expect = data.get("expect", {})
        for name, passed in data["expectations"].items():
            lines.append(f"  {'ok  ' if passed else 'FAIL'} {name} = {expect.get(name)}")
    return "\n".join(lines)

