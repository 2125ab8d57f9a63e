"""`failover audit verify`: prove the audit log has not been edited, reordered or cut short."""

from __future__ import annotations

import typer

from orchestrator.cli.common import ConfigOption, Output, OutputOption, console, load, print_json
from orchestrator.errors import EXIT_UNSAFE
from orchestrator.store import open_store

app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)


@app.command("verify")
def verify(config: ConfigOption = None, output: OutputOption = Output.TABLE) -> None:
    """Check every link of the audit chain; exit 3 if an entry was edited, deleted or reordered."""
    loaded = load(config)
    with open_store(loaded.store_url) as store:
        report = store.verify_audit()
    if output is Output.JSON:
        print_json(report)
    elif report.ok:
        console.print(f"audit log intact: {report.entries} entries verified")
    else:
        console.print(f"[red]audit log TAMPERED[/] at entry {report.first_bad_seq}: {report.problem}")
    if not report.ok:
        raise typer.Exit(EXIT_UNSAFE)
