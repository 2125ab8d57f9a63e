"""Options and output helpers shared by every command (DESIGN §8)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, is_dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from orchestrator.config import LoadedConfig, load_config
from orchestrator.core.durations import parse_duration
from orchestrator.core.errors import ConfigError, FailoverError
from orchestrator.drivers import spool
from orchestrator.drivers.events import Announcer, Fanout, Notifier
from orchestrator.store import open_store

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


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


def load(config: Path | None) -> LoadedConfig:
    """The configuration; and records queued while its store was unreachable (an emergency halt's) are written to
    the store now, if it answers. A store that still does not answer is left to the command to report."""
    loaded = load_config(config)
    replay_spool(loaded)
    return loaded


def replay_spool(loaded: LoadedConfig) -> int:
    if not spool.pending(loaded.store_url):
        return 0
    try:
        with open_store(loaded.store_url) as store:
            done = spool.replay(store, loaded.store_url, loaded.topology, time.time())
    except (FailoverError, OSError):
        return 0
    if done:
        err_console.print(f"note: {done} record(s) queued in {spool.spool_path()} while the store was unreachable "
                          "were written to it", markup=False, soft_wrap=True)
    return done


def notifier_for(loaded: LoadedConfig) -> Notifier:
    """The configured announcement channels, for a command that must announce without the store (`halt`)."""
    channels: list[Notifier] = [Announcer()] if loaded.config.notifications.stdout else []
    if loaded.config.notifications.webhooks:
        from orchestrator.drivers.webhooks import WebhookNotifier

        channels.append(WebhookNotifier(loaded.config.notifications.webhooks))
    return Fanout(*channels)


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
