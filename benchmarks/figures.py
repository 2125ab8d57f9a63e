"""One measured figure beside its goal and its peer: the unit every benchmark reports in, printed and stored alike.

Why one shape: the issue's rule is that every figure is read beside its goal ("goal <= 0.3 s: met") and, where
another tool's figure exists in the same run, beside that. Each benchmark module keeps its own detailed `render`,
and also turns its result into a list of `Figure`s (`figures(result)`); `make bench` prints them all in one table,
stores them in bench.json and builds README's table from them, so a figure cannot say one thing on the terminal
and another in the README.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Value = float | int | bool | None

OPERATORS = ("<=", ">=", "==")


@dataclass(frozen=True)
class Figure:
    """A figure: `value` in `unit`, how it was taken (`stat`, e.g. "median of 5"), its goal and its peer.

    `goal` None: a figure printed for context (a floor, a breakdown), with no promise attached. `op` says which side
    of the goal is good. `peer` is another tool's figure for the same thing from the same run (the Route 53 preset's
    detection beside ours), `peer_name` who it is.
    """

    group: str
    name: str
    value: Value
    unit: str
    stat: str = "one run"
    goal: Value = None
    op: str = "<="
    peer: Value = None
    peer_name: str | None = None

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"figure {self.name!r}: op {self.op!r} is not one of {OPERATORS}")

    @property
    def met(self) -> bool | None:
        """True/False against the goal; None without a goal. A figure that could not be measured misses its goal."""
        if self.goal is None:
            return None
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return False
        if self.op == "==":
            return self.value == self.goal
        if self.op == "<=":
            return self.value <= self.goal
        return self.value >= self.goal

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "name": self.name, "value": self.value, "unit": self.unit, "stat": self.stat,
                "goal": self.goal, "op": self.op, "peer": self.peer, "peer_name": self.peer_name, "met": self.met}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figure:
        return cls(group=data["group"], name=data["name"], value=data["value"], unit=data["unit"],
                   stat=data.get("stat", "one run"), goal=data.get("goal"), op=data.get("op", "<="),
                   peer=data.get("peer"), peer_name=data.get("peer_name"))


def number(value: Value, unit: str = "") -> str:
    """A value as a person reads it: 3 significant figures, thousands separated, "-" for nothing measured."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        text = f"{value:,}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def goal_text(figure: Figure) -> str:
    if figure.goal is None:
        return "no goal"
    sign = {"<=": "≤", ">=": "≥", "==": "="}[figure.op]
    return f"goal {sign} {number(figure.goal, figure.unit)}"


def verdict(figure: Figure) -> str:
    return {True: "met", False: "MISSED", None: ""}[figure.met]


def peer_text(figure: Figure) -> str:
    if figure.peer_name is None:
        return ""
    return f"{figure.peer_name} {number(figure.peer, figure.unit)}"


def line(figure: Figure) -> str:
    """One figure on one line: value and how it was taken, goal and verdict, then the peer."""
    text = f"{figure.name}: {number(figure.value, figure.unit)} ({figure.stat}); {goal_text(figure)}"
    if figure.met is not None:
        text += f": {verdict(figure)}"
    if figure.peer_name is not None:
        text += f"; peer: {peer_text(figure)}"
    return text


def render(figures: list[Figure]) -> str:
    """Every figure grouped by benchmark, then how many goals were met and which were missed."""
    lines = ["== every figure beside its goal"]
    group = None
    for figure in figures:
        if figure.group != group:
            group = figure.group
            lines.append(f"-- {group}")
        lines.append(f"   {line(figure)}")
    judged = [figure for figure in figures if figure.met is not None]
    missed = [figure for figure in judged if not figure.met]
    lines.append(f"== goals: {len(judged) - len(missed)} of {len(judged)} met" +
                 (f"; missed: {'; '.join(f'{f.group}: {f.name}' for f in missed)}" if missed else ""))
    return "\n".join(lines)
