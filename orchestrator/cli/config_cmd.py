"""`failover config validate|schema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import Output, OutputOption, console, print_json

app = typer.Typer(help="Check a configuration file or print its JSON Schema.", no_args_is_help=True)


@app.command("validate")
def validate(
    path: Annotated[
        Path | None, typer.Argument(help="File to check (default: --config, $FAILOVER_CONFIG, ./failover.yaml).")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Same as PATH.")] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Report every problem in a configuration at once, each with file, line and field; exit 2 if any."""
    from orchestrator.config import load_config

    loaded = load_config(path or config)
    topology = loaded.topology
    providers = sorted({site.provider for site in topology.sites.values()})
    engines = {name: len(engine.replicas) for name, engine in topology.engines.items()}
    if output is Output.JSON:
        print_json(
            {"file": str(loaded.path), "valid": True, "sites": len(topology.sites), "providers": providers,
             "engines": engines}
        )
        return
    listed = ", ".join(f"{name} ({count} replicas)" for name, count in engines.items())
    console.print(f"{loaded.path}: valid — {len(topology.sites)} sites on {', '.join(providers)}; engines: {listed}")


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the configuration file, for editors."""
    from orchestrator.config import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="config")
