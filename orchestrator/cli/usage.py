"""The command-line parser's complaints, as one line each: what is wrong, and what was expected.

The locked typer parses with its own bundled copy of click (`typer._click`), whose exceptions are not the standalone
`click`'s; both derive from `typer.TyperException`, which is the one public name this module relies on. Everything
else is read off the exception's attributes (`ctx`, `param`, `possibilities`) so that a typer upgrade degrades the
wording, never the one-line promise.
"""

from __future__ import annotations

from typing import Any

PROGRAM = "failover"


def usage_line(error: Exception) -> str:
    """`failover status: no such option: --bogus (did you mean --output?)` — never more than one line."""
    ctx = getattr(error, "ctx", None)
    where = str(getattr(ctx, "command_path", "") or PROGRAM)
    return f"{where}: {_clip(_message(error))} ({_clip(_expected(error, ctx, where))})"


def is_help_request(error: Exception) -> bool:
    """A group called with nothing after it: typer has already printed its help on stdout."""
    return type(error).__name__ == "NoArgsIsHelpError"


def _message(error: Exception) -> str:
    param = getattr(error, "param", None)
    format_message = getattr(error, "format_message", None)
    if param is not None and not hasattr(error, "param_type"):  # a bad value (not a missing one): name it once
        raw = str(getattr(error, "message", error)).replace("Value error, ", "")
        text = f"{_name(param)}: {raw[:1].lower()}{raw[1:]}"
    else:
        text = str(format_message() if callable(format_message) else error)
    text = text.replace("Value error, ", "").replace("' / '", "' or '").strip().rstrip(".")
    text = " ".join(text.split())  # a message never spans lines
    if getattr(error, "possibilities", None):  # NoSuchOption: its suggestion goes in the parentheses instead
        text = text.split(" (Possible options:")[0]
    return text[:1].lower() + text[1:] if text else type(error).__name__


def _clip(text: str, limit: int = 300) -> str:
    """A pasted megabyte stays a readable line."""
    return text if len(text) <= limit else text[: limit - 20] + " ... " + text[-15:]


def _name(param: Any) -> str:
    """`--output` for an option (its first long spelling), `INCIDENT` for an argument."""
    opts = [str(opt) for opt in getattr(param, "opts", ())]
    if getattr(param, "param_type_name", "") == "argument":
        return (opts[0] if opts else str(getattr(param, "name", "argument"))).upper()
    return next((opt for opt in opts if opt.startswith("--")), opts[0] if opts else "a parameter")


def _expected(error: Exception, ctx: Any, where: str) -> str:
    possibilities = getattr(error, "possibilities", None)
    if possibilities:
        return "did you mean " + " or ".join(sorted(possibilities)) + "?"
    param = getattr(error, "param", None)
    help_text = " ".join(str(getattr(param, "help", "") or "").split())
    if help_text:
        return f"expected: {help_text[:1].lower()}{help_text[1:].rstrip('.')}"
    commands = [] if hasattr(error, "option_name") else _commands(ctx)  # a bad option: the command's --help
    if commands:
        return "commands: " + ", ".join(commands)
    return f"see {where} --help"


def _commands(ctx: Any) -> list[str]:
    """The visible subcommands of the group the error happened in (empty for a plain command)."""
    command = getattr(ctx, "command", None)
    if command is None or not hasattr(command, "list_commands"):
        return []
    names = []
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is not None and not getattr(sub, "hidden", False):
            names.append(name)
    return names
