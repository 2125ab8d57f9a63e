"""Options and output helpers shared by every command (DESIGN §8)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, is_dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from orchestrator.config import LoadedConfig, load_config
from orchestrator.core.durations import parse_duration
from orchestrator.core.errors import ConfigError

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
    return load_config(config)


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
