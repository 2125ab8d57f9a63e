"""The drill's timeline: lanes of states over time (a lane per site's health, a lane per engine's phase), a Gantt
row per runbook step, and the halt and protection windows shaded across every lane, drawn with matplotlib. The data
behind the picture is kept and tested, not only pixels (`layout` is what the drawing is made of).

Why a row per step: steps finish within the same second (the fence and the traffic switch, the announcement and
the catch-up wait), and labels stacked on one line print over each other. Why two legends: a site's health and an
engine's phase are different questions, and one shared palette made `down` and `halted` the same red. The same
`render` writes the PNG of the drill's report and the SVG a web page embeds, so both always show one drawing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

# a site's verdict, and an engine's trading phase: separate palettes, so no colour means two things
SITE_COLOURS = {"healthy": "#2e7d32", "suspect": "#f9a825", "degraded": "#ef6c00", "down": "#c62828",
                "flapping": "#6a1b9a", "unknown": "#9e9e9e"}
PHASE_COLOURS = {"open": "#1565c0", "protection": "#00897b", "halted": "#4e342e", "unreachable": "#bdbdbd"}
STEP_COLOUR = "#546e7a"
FAULT_COLOUR = "#b71c1c"
SIGNAL_COLOUR = "#8e24aa"
# what the windows shaded across all lanes are made of: the engine lane's spans in these phases
WINDOWS = {"halted": ("halt", "#4e342e", 0.10), "protection": ("protection", "#00897b", 0.12)}
FAULT_PREFIX = "fault:"
SIGNAL_PREFIX = "signal:"


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

    @property
    def kind(self) -> str:
        """`site` or `engine`: which palette and legend the lane's states belong to."""
        return "engine" if self.name.startswith("engine") else "site"


@dataclass
class TimelineData:
    origin: float  # wall clock of t = 0
    lanes: dict[str, Lane] = field(default_factory=dict)
    markers: list[tuple[float, str]] = field(default_factory=list)  # (s, label): runbook steps, faults, signals

    def lane(self, name: str) -> Lane:
        return self.lanes.setdefault(name, Lane(name))

    def sample(self, at: float, lane: str, state: str) -> None:
        self.lane(lane).record(at - self.origin, state)

    def mark(self, at: float, label: str) -> None:
        self.markers.append((at - self.origin, label))


@dataclass(frozen=True, slots=True)
class StepBar:
    """One runbook step's row: from the end of the step before it (or the incident's first step) to its own end."""

    label: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Window:
    """A halt or a protection window, shaded across every lane, with its wall-clock times for the caption."""

    kind: str  # "halt", "protection"
    start: float
    end: float
    caption: str


@dataclass(frozen=True, slots=True)
class Layout:
    """What the drawing is made of, computed without matplotlib (tested; the renderer only draws it)."""

    lanes: list[Lane]
    steps: list[StepBar]
    events: list[tuple[float, str]]  # faults and provider signals, on the lanes' own axis
    windows: list[Window]
    end: float


def _clock(origin: float, at: float, display: tzinfo | None) -> str:
    moment = datetime.fromtimestamp(origin + at, UTC)
    text = moment.strftime("%H:%M:%S UTC")
    if display is not None and moment.astimezone(display).utcoffset() != moment.utcoffset():
        local = moment.astimezone(display)
        text += f" ({local.strftime('%H:%M:%S')} {_zone_name(local)})"
    return text


def _zone_name(moment: datetime) -> str:
    offset = moment.utcoffset()
    hours = int(offset.total_seconds() // 3600) if offset is not None else 0
    minutes = int(abs(offset.total_seconds()) % 3600 // 60) if offset is not None else 0
    return f"UTC{hours:+d}" + (f":{minutes:02d}" if minutes else "")


def layout(data: TimelineData, display: tzinfo | None = None) -> Layout:
    """The rows and windows of the chart: a step row per distinct step label in the order first finished, each
    bar starting where the previous finished step ended; faults and signals as events; windows from the engine
    lanes' `halted` and `protection` spans."""
    lanes = list(data.lanes.values())
    markers = sorted(data.markers)
    steps: list[StepBar] = []
    events: list[tuple[float, str]] = []
    previous: float | None = None
    for at, label in markers:
        if label.startswith((FAULT_PREFIX, SIGNAL_PREFIX)):
            events.append((at, label))
            continue
        steps.append(StepBar(label, at if previous is None else previous, at))
        previous = at
    end = max([s[1] for lane in lanes for s in lane.spans] + [at for at, _ in markers] + [1.0])
    windows: list[Window] = []
    for lane in lanes:
        if lane.kind != "engine":
            continue
        for start, stop, state in lane.spans:
            if state in WINDOWS:
                kind = WINDOWS[state][0]
                caption = f"{kind} {_clock(data.origin, start, display)} → {_clock(data.origin, stop, display)}"
                windows.append(Window(kind, start, stop, caption))
    return Layout(lanes, steps, events, windows, end)


def render(data: TimelineData, path: Path, title: str, display: tzinfo | None = None) -> Path:
    """Draw the timeline to `path`, PNG or SVG by its suffix."""
    figure = _draw(layout(data, display), title)
    try:
        figure.savefig(path, dpi=110, format=path.suffix.lstrip(".") or "png")
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)
    return path


def render_png(data: TimelineData, path: Path, title: str, display: tzinfo | None = None) -> Path:
    return render(data, path, title, display)


def render_svg(data: TimelineData, title: str, display: tzinfo | None = None) -> str:
    """The same drawing as inline SVG text, for a page (no file, no external reference)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: searchable, readable by a screen reader
        figure = _draw(layout(data, display), title)
        try:
            figure.savefig(buffer, format="svg", metadata={"Date": None})
        finally:
            import matplotlib.pyplot as plt

            plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _draw(shape: Layout, title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(shape.lanes) + len(shape.steps) + (1 if shape.events else 0)
    figure, axis = plt.subplots(figsize=(12, 1.6 + 0.42 * rows + 0.2 * len(shape.windows)))
    labels: list[str] = []
    row = rows - 1
    minimum = shape.end / 400
    for lane in shape.lanes:
        palette = PHASE_COLOURS if lane.kind == "engine" else SITE_COLOURS
        for start, stop, state in lane.spans:
            axis.broken_barh([(start, max(stop - start, minimum))], (row - 0.35, 0.7),
                             facecolors=palette.get(state, "#607d8b"))
        labels.append(lane.name)
        row -= 1
    if shape.events:
        for at, label in shape.events:
            colour = SIGNAL_COLOUR if label.startswith(SIGNAL_PREFIX) else FAULT_COLOUR
            axis.plot([at], [row], marker="v" if colour == FAULT_COLOUR else "D", color=colour, markersize=6)
        labels.append("faults / signals")
        row -= 1
    for step in shape.steps:
        axis.broken_barh([(step.start, max(step.end - step.start, minimum))], (row - 0.3, 0.6),
                         facecolors=STEP_COLOUR)
        axis.annotate(f"{step.end:.1f}s", (step.end, row), fontsize=7, xytext=(4, -3), textcoords="offset points")
        labels.append(f"step {step.label}")
        row -= 1
    for window in shape.windows:
        _, colour, alpha = next(v for v in WINDOWS.values() if v[0] == window.kind)
        axis.axvspan(window.start, window.end, color=colour, alpha=alpha, linewidth=0)
    axis.set_yticks(range(rows - 1, -1, -1), labels, fontsize=8)
    axis.set_xlim(0, shape.end * 1.08)
    axis.set_ylim(-0.7, rows - 0.3)
    axis.set_xlabel("seconds since the drill started" + "".join(f"\n{w.caption}" for w in shape.windows),
                    fontsize=8)
    axis.set_title(title, fontsize=10)
    _legends(axis, shape)
    figure.tight_layout()
    return figure


def _legends(axis: Any, shape: Layout) -> None:
    """One legend per kind of lane, listing only the states that occur, and one for the shaded windows."""
    from matplotlib.legend import Legend
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    def place(handles: list[Any], title: str, top: float) -> None:
        axis.add_artist(Legend(axis, handles, [h.get_label() for h in handles], title=title, fontsize=7,
                               title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, top)))

    placed = 1.0
    groups = [("site health", SITE_COLOURS, "site"), ("trading phase", PHASE_COLOURS, "engine")]
    for name, palette, kind in groups:
        used = [s for s in palette if any(s in lane.states() for lane in shape.lanes if lane.kind == kind)]
        if not used:
            continue
        place([Patch(color=palette[s], label=s) for s in used], name, placed)
        placed -= 0.1 + 0.07 * len(used)
    extra: list[Any] = [Patch(color=colour, alpha=alpha * 3, label=f"{kind} window")
                        for kind, colour, alpha in WINDOWS.values() if any(w.kind == kind for w in shape.windows)]
    if any(label.startswith(FAULT_PREFIX) for _, label in shape.events):
        extra.append(Line2D([], [], color=FAULT_COLOUR, marker="v", linestyle="", label="fault injected"))
    if any(label.startswith(SIGNAL_PREFIX) for _, label in shape.events):
        extra.append(Line2D([], [], color=SIGNAL_COLOUR, marker="D", linestyle="", label="provider signal"))
    if extra:
        place(extra, "marks", placed)
