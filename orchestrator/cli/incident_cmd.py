"""`failover history` and `failover report INCIDENT`: what the store remembers of past incidents.

They read the store only, so they import the configuration, the store and the report builder when they run, and
nothing that probes, acts or simulates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.args import incident_id, int_between
from orchestrator.cli.common import ConfigOption, EngineOption, Output, OutputOption, console, load, print_json
from orchestrator.errors import ConfigError, FailoverError


def history(
    config: ConfigOption = None,
    engine: EngineOption = None,
    limit: Annotated[int, typer.Option("--limit", help="How many incidents, 1 to 10000.")] = 20,
    output: OutputOption = Output.TABLE,
) -> None:
    """Incidents, newest first."""
    from rich.table import Table

    from orchestrator.core.phases import format_instant, parse_timezone

    int_between(limit, "--limit", low=1, high=10_000)
    loaded = load(config)
    if engine is not None:
        from orchestrator.drivers.operator import pick_engine  # the operator's rule, and its wording

        pick_engine(loaded.topology, engine)
    with loaded.open_store() as store:
        incidents = store.incidents(engine=engine, limit=limit)
    if output is Output.JSON:
        print_json(incidents)
        return
    display = parse_timezone(loaded.topology.display_timezone)
    table = Table()
    for column in ("incident", "engine", "kind", "status", "opened", "from -> to", "reason"):
        table.add_column(column)
    for i in incidents:
        table.add_row(i.id, i.engine, i.kind, i.status.value, format_instant(i.opened_at, display),
                      f"{i.source} -> {i.target}", i.reason)
    console.print(table)


def report(
    incident: Annotated[str, typer.Argument(help="Incident id.")],
    config: ConfigOption = None,
    format_: Annotated[str, typer.Option("--format", help="md, json, or csv (the impact rows).")] = "md",
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
) -> None:
    """The incident's timeline, halt and protection windows (UTC and display time), orders refused by reason, and
    the impact per account (refused in each window, not executed in a diverged tail) for compensation."""
    from orchestrator.core.phases import parse_timezone
    from orchestrator.drivers.report import build_report, render_csv, render_markdown

    if format_ not in ("md", "json", "csv"):
        raise ConfigError(f"--format {format_}: expected md or json (or csv, the impact rows)")
    incident_id(incident)
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        raise ConfigError(f"--out {out}: expected a file in an existing directory")
    loaded = load(config)
    display = parse_timezone(loaded.topology.display_timezone)
    with loaded.open_store() as store:
        built = build_report(store, incident, display)
    if format_ == "json":
        text = json.dumps(built.to_json(), indent=2) + "\n"
    else:
        text = render_csv(built) if format_ == "csv" else render_markdown(built)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as error:
        raise FailoverError(f"--out {out}: cannot write: {error.strerror}") from None


def register(app: typer.Typer) -> None:
    app.command("history")(history)
    app.command("report")(report)
