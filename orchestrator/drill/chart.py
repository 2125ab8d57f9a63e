"""The drill's timeline: lanes of states over time (a lane per site's health, a lane per engine's phase) and
markers for runbook steps, drawn with matplotlib. The data behind the picture is kept and tested, not only pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

COLOURS = {
    "healthy": "#2e7d32", "suspect": "#f9a825", "down": "#c62828", "flapping": "#6a1b9a", "unknown": "#9e9e9e",
    "open": "#2e7d32", "protection": "#f9a825", "halted": "#c62828", "unreachable": "#9e9e9e",
}


@dataclass
class Lane:
    name: str  # "site aws-hk", "engine spot"
    spans: list[tuple[float, float, str]] = field(default_factory=list)  # (start s, end s, state)

    def record(self, at: float, state: str) -> None:
        """Extend the current span, or open a new one when the state changes."""
        if self.spans and self.spans[-1][2] == state:
            start, _, _ = self.spans[-1]
            self.spans[-1] = (start, at, state)
        else:
            if self.spans:
                start, _, previous = self.spans[-1]
                self.spans[-1] = (start, at, previous)
            self.spans.append((at, at, state))

    def states(self) -> list[str]:
        return [state for _, _, state in self.spans]


@dataclass
class TimelineData:
    origin: float  # wall clock of t = 0
    lanes: dict[str, Lane] = field(default_factory=dict)
    markers: list[tuple[float, str]] = field(default_factory=list)  # (s, label): runbook steps, faults

    def lane(self, name: str) -> Lane:
        return self.lanes.setdefault(name, Lane(name))

    def sample(self, at: float, lane: str, state: str) -> None:
        self.lane(lane).record(at - self.origin, state)

    def mark(self, at: float, label: str) -> None:
        self.markers.append((at - self.origin, label))


def render_png(data: TimelineData, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lanes = list(data.lanes.values())
    end = max([s[1] for lane in lanes for s in lane.spans] + [m[0] for m in data.markers] + [1.0])
    figure, axis = plt.subplots(figsize=(12, 1.2 + 0.6 * len(lanes) + 0.25 * len(data.markers)))
    for row, lane in enumerate(reversed(lanes)):
        for start, stop, state in lane.spans:
            axis.broken_barh([(start, max(stop - start, end / 400))], (row - 0.35, 0.7),
                             facecolors=COLOURS.get(state, "#607d8b"))
    axis.set_yticks(range(len(lanes)), [lane.name for lane in reversed(lanes)])
    for position, (at, label) in enumerate(sorted(data.markers)):
        axis.axvline(at, color="#37474f", linewidth=0.6, linestyle=":")
        axis.annotate(label, (at, len(lanes) - 0.4 + 0.28 * (position % 4)), fontsize=7, rotation=0,
                      xytext=(2, 0), textcoords="offset points")
    axis.set_xlim(0, end * 1.02)
    axis.set_ylim(-0.6, len(lanes) + 0.8)
    axis.set_xlabel("seconds since the drill started")
    axis.set_title(title, fontsize=10)
    used = sorted({state for lane in lanes for state in lane.states()})
    axis.legend(handles=[Patch(color=COLOURS.get(s, "#607d8b"), label=s) for s in used], loc="upper left",
                bbox_to_anchor=(1.0, 1.0), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
