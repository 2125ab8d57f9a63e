"""A problem found in a configuration file, and how it is shown: `FILE:LINE: field.path: what was expected`.

Every reader of the file (the YAML screen, the secret search, pydantic, the cross-field checks) reports through
this one shape, so that an SRE sees every problem at once, each at its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    path: tuple[str | int, ...]
    message: str


def is_named_map(path: tuple[str | int, ...]) -> bool:
    """Maps whose keys are names the user chose (sites, engines, replicas), not settings."""
    return path in (("sites",), ("engines",)) or (len(path) == 3 and path[0] == "engines" and path[2] == "replicas")



def locate(file: Path, lines: Mapping[tuple[str | int, ...], int], path: tuple[str | int, ...], message: str) -> str:
    """`FILE:LINE: field.path: message`, the line of the deepest part of `path` the YAML marks know."""
    line = None
    for cut in range(len(path), -1, -1):
        line = lines.get(path[:cut])
        if line is not None:
            break
    where = f"{file}:{line}" if line is not None else str(file)
    dotted = ".".join(map(str, path)) or "(top level)"
    return f"{where}: {dotted}: {message}"
