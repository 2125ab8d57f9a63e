"""The `failover` entry point: one place where our errors become one line on stderr and an exit code."""

from __future__ import annotations

import os
import sys
import traceback
from typing import NoReturn

import typer

from orchestrator.cli.commands import LazyCommands
from orchestrator.cli.common import err_console
from orchestrator.cli.usage import is_help_request, usage_line
from orchestrator.errors import EXIT_ACTED, EXIT_BAD_INPUT, EXIT_CALL_FAILED, EXIT_OK, FailoverError

app = typer.Typer(
    name="failover",
    help="Multi-cloud failover orchestrator for exchange matching engines.",
    cls=LazyCommands,  # the commands of orchestrator/cli/commands.py, each built when asked for
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """Watch engine replicas on several clouds, and fail over safely when a data centre is lost."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit codes follow docs/design.md §8 (0 ok, 1 acted/degraded, 2 bad input, 3 unsafe, 4 call failed).

    Whatever goes wrong, the user sees one line per problem on stderr, never a traceback (`--debug` adds it)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="failover", standalone_mode=False)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail(debug, ["aborted"], 130)
    except FailoverError as error:
        _fail(debug, str(error).splitlines() or [type(error).__name__], error.exit_code)
    except typer.TyperException as error:  # the parser's (typer's bundled click): bad usage
        if is_help_request(error):
            sys.exit(EXIT_OK)
        _fail(debug, [usage_line(error)], EXIT_BAD_INPUT)
    except BrokenPipeError:  # `failover history | head -1`: the reader left; nothing to say to anyone
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the interpreter flushes it at exit
        sys.exit(EXIT_ACTED)
    except OSError as error:  # a file or socket outside us: the call failed, not the input
        _fail(debug, [_os_error(error)], EXIT_CALL_FAILED)
    except Exception as error:  # a bug: still one line, and --debug shows where
        _fail(debug, [f"unexpected {type(error).__name__}: {_one_line(str(error))} (a bug in failover; "
                      "run again with --debug for the traceback)"], EXIT_CALL_FAILED)
    sys.exit(result if isinstance(result, int) else EXIT_OK)


def _fail(debug: bool, lines: list[str], code: int) -> NoReturn:
    if debug:
        traceback.print_exc()
    for line in lines:
        err_console.print(f"error: {line}", markup=False, emoji=False, soft_wrap=True)
    sys.exit(code)


def _os_error(error: OSError) -> str:
    what = error.strerror or type(error).__name__
    return f"{error.filename}: {what}" if error.filename else _one_line(str(error) or what)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
