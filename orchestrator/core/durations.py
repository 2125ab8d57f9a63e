"""Durations as users write them (`500ms`, `1s`, `20m`, `1h30m`) and as we print them."""

from __future__ import annotations

import math
import re

MAX_DURATION = 10 * 365 * 86400.0
"""Ten years: longer than any window this tool reasons about, so anything longer is a typo (and would overflow
the date arithmetic that turns a duration into an end time)."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Seconds in `text`; a bare number is refused because `30` could mean seconds or minutes."""
    cleaned = text.strip().replace(" ", "")
    if len(cleaned) > 64:
        raise ValueError(f"{_clip(text)} is not a duration: too long; write e.g. 500ms, 1s, 20m, 1h")
    if not cleaned:
        raise ValueError("an empty duration; write it with a unit, e.g. 500ms, 1s, 20m, 1h")
    position, total = 0, 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(cleaned) or position == 0:
        raise ValueError(f"{text!r} is not a duration; write it with a unit, e.g. 500ms, 1s, 20m, 1h")
    if not math.isfinite(total) or total > MAX_DURATION:
        raise ValueError(f"{_clip(text)} is longer than the longest duration accepted, 3650d (ten years)")
    return total


def _clip(text: str) -> str:
    """The text quoted, shortened when it is long: an error line stays one readable line."""
    return repr(text) if len(text) <= 40 else repr(text[:20] + "..." + text[-8:])


def format_duration(seconds: float) -> str:
    """The shortest exact-enough rendering: `1h20m`, `45s`, `250ms`."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"
