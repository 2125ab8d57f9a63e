"""Which module holds each `failover` command, and the root group that builds a command when it is asked for.

Why: typer turns every registered function into a click command (its signature read, its annotations evaluated)
each time the program runs, about 8 ms for all of them on a quiet machine, where `failover status` needs one.
`COMMANDS` is the one list of commands and their order: `failover --help` asks for every one (so lists them all),
a command that runs builds its own module's commands only, and an unknown name builds them all so that typer can
suggest the closest.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

# command -> its module under orchestrator.cli; each module's register(app) adds its commands (or its group) to app
COMMANDS: dict[str, str] = {
    "drill": "drill_cmd",
    "simulate": "simulate_cmd",
    "status": "status_cmd",
    "check": "cycle_cmd",
    "daemon": "cycle_cmd",
    "plan": "operate_cmd",
    "execute": "operate_cmd",
    "halt": "operate_cmd",
    "protect": "operate_cmd",
    "reopen": "operate_cmd",
    "approve": "operate_cmd",
    "cancel": "schedule_cmd",
    "history": "incident_cmd",
    "report": "incident_cmd",
    "config": "config_cmd",
    "audit": "audit_cmd",
    "replica": "replica_cmd",
    "replace": "replace_cmd",
    "rejoin": "rejoin_cmd",
    "release": "quarantine_cmd",
}


class LazyCommands(TyperGroup):
    """The root group (`typer.Typer(cls=LazyCommands)`): its commands come from `COMMANDS`, each module's built the
    first time one of its commands is asked for. (The parameters are typed `Any`: the locked typer's click is a
    private copy, `typer._click`.)"""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        module = COMMANDS.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            self.commands.update(_built(module))
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in COMMANDS:  # a typo: typer suggests from the commands built so far
            for module in dict.fromkeys(COMMANDS.values()):
                self.commands.update(_built(module))
        return super().resolve_command(ctx, args)


def _built(module_name: str) -> dict[str, Any]:
    """The click commands of one module: its `register` run on a Typer of its own, which typer then builds."""
    module = importlib.import_module(f"orchestrator.cli.{module_name}")
    holder = typer.Typer()
    module.register(holder)
    return dict(typer.main.get_group(holder).commands)
