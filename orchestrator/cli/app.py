"""The `failover` entry point: one place where our errors become one line on stderr and an exit code."""

from __future__ import annotations

import sys
import traceback

import click
import typer

from orchestrator.cli import config_cmd
from orchestrator.cli.common import err_console
from orchestrator.errors import EXIT_BAD_INPUT, FailoverError

app = typer.Typer(
    name="failover",
    help="Multi-cloud failover orchestrator for exchange matching engines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(config_cmd.app, name="config")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """Watch engine replicas on several clouds, and fail over safely when a data centre is lost."""


def _register() -> None:
    """Commands live in their own modules; importing them here keeps `failover --help` complete."""
    from orchestrator.cli import audit_cmd, cycle_cmd, drill_cmd, operate_cmd, replica_cmd, simulate_cmd, status_cmd

    drill_cmd.register(app)
    simulate_cmd.register(app)
    status_cmd.register(app)
    cycle_cmd.register(app)
    operate_cmd.register(app)
    app.add_typer(audit_cmd.app, name="audit")
    app.add_typer(replica_cmd.app, name="replica")


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit codes follow DESIGN §8 (0 ok, 1 acted/degraded, 2 bad input, 3 unsafe, 4 call failed)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="failover", standalone_mode=False)
    except FailoverError as error:
        if debug:
            traceback.print_exc()
        for line in str(error).splitlines() or [type(error).__name__]:
            err_console.print(f"error: {line}", markup=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except click.exceptions.UsageError as error:
        error.show()
        sys.exit(EXIT_BAD_INPUT)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.exceptions.Exit as error:
        sys.exit(error.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(result if isinstance(result, int) else 0)
