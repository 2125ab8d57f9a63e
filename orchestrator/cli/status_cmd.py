"""`failover status`: engines, replicas, phase, open incident and last verdicts, as a table or JSON."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

import typer

from orchestrator.cli.common import ConfigOption, Output, OutputOption, console, load, print_json
from orchestrator.errors import EXIT_OK, EXIT_UNSAFE

if TYPE_CHECKING:
    from orchestrator.config import LoadedConfig
    from orchestrator.drivers.status import StatusReport

STYLE = {"healthy": "green", "suspect": "yellow", "down": "red", "flapping": "magenta", "unknown": "dim",
         "open": "green", "protection": "yellow", "halted": "red"}


def _styled(value: str) -> str:
    style = STYLE.get(value)
    return f"[{style}]{value}[/]" if style else value


def exit_code(report: StatusReport) -> int:
    """3 while an incident waits for a human (a failed step, or a proposal to approve), else 0: a pager can poll
    `failover status` and alert on 3 alone, as it does for `failover check`."""
    from orchestrator.store.records import IncidentStatus

    waiting_for_a_human = {IncidentStatus.NEEDS_HUMAN.value, IncidentStatus.PROPOSED.value}
    waiting = any(e.incident is not None and e.incident["status"] in waiting_for_a_human for e in report.engines)
    return EXIT_UNSAFE if waiting else EXIT_OK


def status(config: ConfigOption = None, output: OutputOption = Output.TABLE) -> None:
    """Show each engine's replicas, trading phase, open incident and the last verdicts (reads the store only).
    Exit 3 while an incident needs a human."""
    from orchestrator.drivers.status import gather_status

    loaded = load(config)
    report = gather_status(loaded)
    if output is Output.JSON:
        print_json(report)
    else:
        _print(loaded, report)
    raise typer.Exit(exit_code(report))


def _print(loaded: LoadedConfig, report: StatusReport) -> None:
    from rich.table import Table

    from orchestrator.core.phases import format_instant, parse_timezone

    display = parse_timezone(loaded.topology.display_timezone)
    when = format_instant(report.verdicts_at, display) if report.verdicts_at else "never (no cycle has run yet)"
    console.print(f"config {report.config} · store {report.store} · last cycle {when}")
    for engine in report.engines:
        since = datetime.fromtimestamp(engine.phase_since, UTC) if engine.phase_since else None
        phase = _styled(engine.phase)
        if engine.phase_until:
            phase += f" until {format_instant(engine.phase_until, display)}"
        elif since:
            phase += f" since {format_instant(engine.phase_since, display)}"
        table = Table(title=f"engine {engine.name} — phase {phase} — epoch {engine.epoch}", title_justify="left")
        for column in ("replica", "role", "site", "provider", "region", "instance", "replica verdict",
                       "site verdict"):
            table.add_column(column)
        for r in engine.replicas:
            role = f"[bold]{r.role}[/]" if r.role == "primary" else r.role
            table.add_row(r.name, role, r.site, r.provider, r.region, r.instance, _styled(r.verdict),
                          _styled(r.site_verdict))
        console.print(table)
        if engine.incident:
            i = engine.incident
            console.print(f"  open incident {i['id']} ({i['kind']}, {i['status']}): {i['reason']}")
        else:
            console.print("  no open incident")
    _print_quarantines(report, display)
    _print_notifications(report, display)
    for daemon in report.daemons:
        role = "leader" if daemon.leader else "follower"
        clock = "clock not yet compared" if daemon.clock_offset is None else f"clock {daemon.clock_offset:+.1f}s"
        refusing = f" — NOT LEADING: {daemon.reason}" if not daemon.may_lead else ""
        console.print(f"daemon {daemon.identity}: {role}, {clock} (last beat {format_instant(daemon.wall, display)})"
                      f"{refusing}", markup=False)


def _print_quarantines(report: StatusReport, display: tzinfo) -> None:
    """Each site that is neither a failover target nor a rejoin host, and when it may be again."""
    from orchestrator.core.durations import format_duration
    from orchestrator.core.phases import format_instant

    hold = format_duration(report.quarantine_s)
    for q in report.quarantines:
        relapses = f", {q.relapses} relapse{'s' if q.relapses != 1 else ''}" if q.relapses else ""
        if q.ends_at is None:
            ends = f"not healthy now: ends {hold} after it is healthy again"
        else:
            healthy = format_instant(q.healthy_since or 0.0, display)
            ends = f"healthy since {healthy}: ends {format_instant(q.ends_at, display)}"
        console.print(f"quarantine {q.site}: down since {format_instant(q.down_at, display)}{relapses}; {ends} "
                      f"(`failover release {q.site}` ends it now)", markup=False)


def _print_notifications(report: StatusReport, display: tzinfo) -> None:
    """Notifications not delivered yet: a webhook that is down or slow must be seen, not silently swallowed."""
    from orchestrator.core.phases import format_instant

    pending, abandoned = report.notifications.get("pending", 0), report.notifications.get("abandoned", 0)
    if not pending and not abandoned:
        return
    oldest = report.notifications.get("oldest_pending_at")
    since = f", oldest from {format_instant(oldest, display)}" if oldest else ""
    console.print(f"notifications: {pending} not yet delivered{since}; {abandoned} abandoned after every attempt",
                  markup=False)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
