"""Options and output helpers shared by every command (docs/design.md §8).

Every command module imports this one, and `failover --help` imports every command module: so nothing here
imports the configuration, a driver or the store at module level. Each helper imports what it calls when it is
called (tests/cli/test_import_cost.py checks what each command loads).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from orchestrator.core.durations import parse_duration
from orchestrator.core.errors import ConfigError, FailoverError

if TYPE_CHECKING:
    from orchestrator.config import LoadedConfig
    from orchestrator.drivers.events import Notifier
    from orchestrator.store.base import StateStore

# emoji=False: names and reasons are printed as written (a reason `:warning: aws` stays text), and rich does not
# load its table of emoji codes for every line that holds a colon
console = Console(highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (default: $FAILOVER_CONFIG, then ./failover.yaml).",
        show_default=False,
    ),
]
OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table for people, json for programs.")]
EngineOption = Annotated[str | None, typer.Option("--engine", "-e", help="Engine (needed when several exist).")]


def load(config: Path | None) -> LoadedConfig:
    """The configuration; and records queued while its store was unreachable (an emergency halt's) are written to
    the store now, if it answers. A store that still does not answer is left to the command to report."""
    from orchestrator.config import load_config

    loaded = load_config(config)
    replay_spool(loaded)
    return loaded


def replay_spool(loaded: LoadedConfig) -> int:
    from orchestrator.drivers import spool

    if not spool.pending(loaded.store_url):
        return 0
    try:
        with loaded.open_store() as store:
            done = spool.replay(store, loaded.store_url, loaded.topology, time.time())
    except (FailoverError, OSError):
        return 0
    if done:
        err_console.print(f"note: {done} record(s) queued in {spool.spool_path()} while the store was unreachable "
                          "were written to it", markup=False, soft_wrap=True)
    return done


def notifier_for(loaded: LoadedConfig) -> Callable[[StateStore | None], Notifier]:
    """The configured announcement channels for a command that must announce with or without the store (`halt`):
    webhooks through the store's outbox when it answered (one bounded delivery pass), else from memory at exit."""
    from orchestrator.drivers.events import Announcer, Fanout

    webhooks = loaded.config.notifications.webhooks

    def channels(store: StateStore | None) -> Notifier:
        found: list[Notifier] = [Announcer()] if loaded.config.notifications.stdout else []
        if webhooks:
            from orchestrator.drivers.outbox import FlushingOutbox, channels_from_config, storeless

            found.append(FlushingOutbox(store, channels_from_config(webhooks)) if store is not None
                         else storeless(webhooks))
        return Fanout(*found)

    return channels


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {key: _plain(item) for key, item in asdict(value).items()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def print_json(value: Any) -> None:
    """Machine-readable output on stdout, one document."""
    sys.stdout.write(json.dumps(_plain(value), indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def duration_option(text: str, option: str) -> float:
    """A duration given on the command line; a bad one is a one-line ConfigError naming the option."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise ConfigError(f"{option}: {error}") from None
