"""`failover drill`: a game day on one machine, with a live view and the report a postmortem needs."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.args import number_between
from orchestrator.cli.common import console
from orchestrator.cli.status_cmd import STYLE
from orchestrator.errors import EXIT_ACTED, ConfigError

if TYPE_CHECKING:
    from rich.table import Table

    from orchestrator.drill.run import DrillResult, DrillState


def _styled(value: str) -> str:
    style = STYLE.get(value)
    return f"[{style}]{value}[/]" if style else value


def _view(state: DrillState) -> Table:
    from rich.table import Table

    table = Table(title=f"drill · {state.elapsed:5.1f}s · scenario time "
                        f"{datetime.fromtimestamp(state.scenario_time, UTC):%Y-%m-%d %H:%M} UTC",
                  title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("state")
    for site, verdict in state.sites.items():
        table.add_row(f"site {site}", _styled(verdict))
    table.add_row("engine spot", f"{_styled(state.phase)} on {state.primary or '(no primary)'}")
    table.add_row("leader", state.leader or "(none)")
    table.add_row("runbook", f"{state.incident} {state.step}".strip() or "(no incident)")
    table.add_row("orders", f"{state.acknowledged} acknowledged, {state.refused} refused")
    return table


def _summary(result: DrillResult) -> None:
    from rich.table import Table

    console.print(f"\n[bold]drill {result.scenario}[/] — incident {result.incident or '(none)'}")
    for note in result.notes:
        console.print(f"  note: {note}", markup=False)
    table = Table(show_header=True)
    table.add_column("figure")
    table.add_column("value")
    for key, value in result.figures.items():
        table.add_row(key, _fmt(value))
    console.print(table)
    for name, held in result.invariants.items():
        console.print(f"  {'[green]held[/]' if held else '[red]BROKEN[/]'}  {name}")
    console.print("wrote " + ", ".join(str(p) for p in result.files))


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return "n/a" if value is None else str(value)


def drill(
    scenario: Annotated[str, typer.Option("--scenario", help="A name in configs/scenarios/ or a path.")] = "hk-2022",
    ha: Annotated[bool, typer.Option("--ha", help="Three daemons on a three-member etcd.")] = False,
    speed: Annotated[float, typer.Option("--speed", help="Scenario seconds per drill second, 1 to 1000.")] = 60.0,
    out: Annotated[Path, typer.Option("--out", help="Where the report files go.")] = Path("."),
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Stop the drill after this many seconds.")]
    = 100.0,
    open_page: Annotated[bool, typer.Option("--open", help="Print the live status page's URL as soon as a daemon "
                                                           "serves it; the page stays live through the drill.")]
    = False,
    rejoin: Annotated[bool, typer.Option("--rejoin", help="After the failover, rejoin the old primary once its site "
                                                          "is out of quarantine, and wait for three replicas in "
                                                          "sync.")] = False,
) -> None:
    """Stand up three clouds and three replicas locally, inject a scenario's faults, and report.
    Exit 1 when an invariant fails (an acknowledged order lost, a trade in protection, two primaries, with --rejoin
    replicas not in sync at the end)."""
    from rich.live import Live

    from orchestrator.drill.run import Drill, DrillOptions, DrillState, resolve_scenario

    number_between(speed, "--speed", low=1, high=1000)
    number_between(max_seconds, "--max-seconds", low=1, high=86400)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: expected a directory for the report files, found a file")
    resolve_scenario(scenario)  # an unknown name is one line before the live view takes the terminal
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
    with Live(_view(DrillState()), console=console, refresh_per_second=4, transient=True) as live:
        runner = Drill(DrillOptions(scenario=scenario, ha=ha, speed=speed, out=out, max_seconds=max_seconds,
                                    rejoin=rejoin),
                       on_update=lambda state: live.update(_view(state)),
                       on_page=(lambda url: console.print(f"status page: {url}")) if open_page else None)
        console.print(f"drill {runner.scenario.name}: {runner.scenario.description} "
                      f"(time compressed {speed:g}x; {'HA on etcd' if ha else 'one daemon, SQLite'})")
        result = runner.run()
    _summary(result)
    if not result.ok:
        raise typer.Exit(EXIT_ACTED)


def register(app: typer.Typer) -> None:
    app.command("drill")(drill)
