"""`failover replica serve ...`: run one reference engine replica (the test partner of drills and tests)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The reference engine replica (a real HTTP service honouring the control protocol).",
                  no_args_is_help=True)


@app.command("serve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                         "help_option_names": []})
def serve(ctx: typer.Context) -> None:
    """Serve one replica: --id ID --port PORT --data DIR [--primary | --standby-of URL] [--cloud NAME]
    [--peer URL ...] [--sync | --async] [--token-file F] (see `failover replica serve --help`)."""
    from orchestrator.engine.replica.cli import main

    raise typer.Exit(main(["serve", *ctx.args]))
