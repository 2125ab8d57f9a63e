"""`failover replica serve ...`: run one reference engine replica (the test partner of drills and tests).

The replica's own parser reads the arguments; every reason not to start (a usage error, no token, a corrupt
`control.json` or journal, a port in use) is a FailoverError that `failover`'s one handler prints as one line with
its exit code (2 bad input, 4 the address cannot be listened on).
"""

from __future__ import annotations

import typer

app = typer.Typer(help="The reference engine replica (a real HTTP service honouring the control protocol).",
                  no_args_is_help=True)


@app.command("serve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                         "help_option_names": []})
def serve(ctx: typer.Context) -> None:
    """Serve one replica: --id ID --port PORT --data DIR [--primary | --standby-of URL] [--cloud NAME]
    [--peer URL ...] [--sync | --async] [--token-file F] [--public-read] (see `failover replica serve --help`)."""
    from orchestrator.engine.replica.cli import run

    run(["serve", *ctx.args], prog="failover replica")


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="replica")
