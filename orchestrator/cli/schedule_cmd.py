"""Planned switchovers: `failover execute --target R --at TIME` schedules one, `failover cancel [ID]` cancels it.

Why a module of its own: `execute` (operate_cmd) hands `--at` over to `schedule` here, which checks the target now
(quarantine, health, lag: `drivers.scheduled.start_blockers`, the same checks the leader repeats at the time),
stores the entry and announces it; the daemon that leads at that time runs it (docs/scheduled-failback.md).
"""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.common import ConfigOption, EngineOption, console
from orchestrator.errors import ConfigError, UnsafeError

if TYPE_CHECKING:
    from orchestrator.drivers.operator import Operator


def schedule(config: Path | None, engine: str | None, target: str, when: str, protect: str | None, *,
             yes: bool = False, dry_run: bool = False, timeout: str | None = None, reason: str = "") -> None:
    """Check and store a switchover of ENGINE to TARGET at WHEN; exit 2 on a bad time, 3 when refused."""
    from orchestrator.cli.args import MAX_WINDOW, duration_between, free_text
    from orchestrator.cli.operate_cmd import actor, load_for
    from orchestrator.core import schedule as sch
    from orchestrator.core.phases import format_instant, parse_timezone
    from orchestrator.drivers.events import Event, EventKind
    from orchestrator.drivers.operator import Operator
    from orchestrator.drivers.state import load_engine
    from orchestrator.drivers.wiring import build_edges

    if timeout is not None:
        raise ConfigError("--timeout: not with --at (there is nothing to watch until then: failover status)")
    now = time.time()
    at = sch.parse_when(when, now)
    window = None if protect is None else duration_between(protect, "--protect", low=0, high=MAX_WINDOW)
    if reason:
        free_text(reason, "--reason")
    loaded = load_for(config, engine, target)
    display = parse_timezone(loaded.topology.display_timezone)
    with build_edges(loaded, dry_run=dry_run) as edges:
        operator = Operator(loaded, edges, actor=actor())
        chosen = operator.engine(engine)
        _check(operator, chosen.name, target, now)
        source = load_engine(edges.store, loaded.topology, chosen.name).primary
        entry = sch.new_entry(sch.schedule_id(chosen.name, at, secrets.token_hex(2)), chosen.name, target, at, now,
                              operator.actor, source=source, protection=window, reason=reason)
        if dry_run:
            console.print(f"would schedule: {sch.scheduled_message(entry, display)}", markup=False)
            return
        if not yes:
            if not sys.stdin.isatty():
                raise UnsafeError("refused: not a terminal; pass --yes to confirm the planned switchover")
            typer.confirm(f"Schedule a switchover of {chosen.name} to {target} at "
                          f"{format_instant(at, display)}?", abort=True)
        edges.store.add_schedule(entry)
        edges.notifier.publish(Event(now, EventKind.INCIDENT, chosen.name, sch.scheduled_message(entry, display),
                                     {"schedule": entry.id, "at": entry.at}))
    console.print(f"scheduled {entry.id}: {chosen.name} to {target} at {format_instant(at, display)}; "
                  f"run by the leading daemon; cancel with `failover cancel {entry.id}`", markup=False)


LOOKS = 3  # a standby read a moment after its primary trails it by the writes in flight: look again before refusing


def _check(operator: Operator, engine_name: str, target: str, now: float) -> None:
    """The target as it is now: refused (exit 3) while quarantined, unhealthy or lagging, or already primary. An
    incident in flight now does not refuse a switchover planned for later (the leader checks again then). A lag
    alone is looked at again, LOOKS times in all, 0.3 s apart: under a live order stream one look can catch a
    synchronous standby a few writes behind."""
    from orchestrator.core.decide import Rule
    from orchestrator.drivers.scheduled import start_blockers
    from orchestrator.drivers.state import HEALTH_KEY

    engine = operator.engine(engine_name)
    found = operator.store.get_state(HEALTH_KEY)
    floors = found[0].get("seq_floor", {}) if found else {}
    floor = int(floors.get(engine_name, 0)) if isinstance(floors, dict) else 0
    blocked: list[str] = []
    for look in range(LOOKS):
        if look:
            time.sleep(0.3)
        statuses = operator.statuses(engine)
        verdicts = operator.live_verdicts(engine, statuses)
        blocked = [why for why in start_blockers(operator.store, operator.topology, statuses, verdicts, engine_name,
                                                 target, now, floor) if why != Rule.ONE_IN_FLIGHT.value]
        if blocked != [Rule.TARGET_CAUGHT_UP.value]:
            break
    if blocked:
        raise UnsafeError(f"refused: planned switchover of {engine_name} to {target}: {'; '.join(blocked)}")


def cancel(
    schedule_id: Annotated[str | None, typer.Argument(
        help="The planned switchover's id (SCH-...); default: the only one pending.")] = None,
    config: ConfigOption = None,
    engine: EngineOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why; goes into the announcement and the audit log.")]
    = "",
) -> None:
    """Cancel a planned switchover before it starts; audited and announced. Exit 2 when there is none (or several
    and no id), 3 when it is already starting."""
    from orchestrator.cli.args import free_text
    from orchestrator.cli.common import load
    from orchestrator.cli.operate_cmd import actor
    from orchestrator.core import schedule as sch
    from orchestrator.core.phases import parse_timezone
    from orchestrator.drivers.events import Event, EventKind
    from orchestrator.drivers.operator import pick_engine
    from orchestrator.drivers.wiring import build_edges

    if schedule_id is not None and not schedule_id.startswith("SCH-"):
        raise ConfigError(f"schedule {schedule_id[:40]}: not a planned switchover's id (SCH-...)")
    if reason:
        free_text(reason, "--reason")
    loaded = load(config)
    if engine is not None:
        pick_engine(loaded.topology, engine)
    who, now = actor(), time.time()
    with build_edges(loaded) as edges:
        done = edges.store.cancel_schedule(schedule_id, who, now, reason, engine)
        message = sch.cancelled_message(done, who, parse_timezone(loaded.topology.display_timezone))
        edges.notifier.publish(Event(now, EventKind.INCIDENT, done.engine, message, {"schedule": done.id}))
    console.print(f"cancelled {done.id} ({done.engine} to {done.target}); audited", markup=False)


def register(app: typer.Typer) -> None:
    app.command("cancel")(cancel)
