"""The drill's chart, readable: steps that finish in the same second never print over each other, each kind of lane
has its own legend with no colour meaning two things, and the halt and protection windows are shaded with their UTC
and display-zone times. The PNG and the page's SVG are one drawing."""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path

from orchestrator.drill.chart import PHASE_COLOURS, SITE_COLOURS, TimelineData, _draw, layout, render, render_svg

ORIGIN = 1_670_036_400.0  # 2022-12-03 03:00:00 UTC, 11:00 in Hong Kong
HONG_KONG = timezone(timedelta(hours=8))
SAME_SECOND = ["halt", "announce", "wait_caught_up", "fence_old_primary", "promote", "switch_traffic"]


def a_drill() -> TimelineData:
    data = TimelineData(origin=ORIGIN)
    for at, aws, phase in [(0, "healthy", "open"), (5, "down", "open"), (6, "down", "halted"),
                           (7, "down", "protection"), (27, "down", "open"), (30, "down", "open")]:
        data.sample(ORIGIN + at, "site aws-hk", aws)
        data.sample(ORIGIN + at, "site gcp-hk", "healthy")
        data.sample(ORIGIN + at, "engine spot", phase)
    data.mark(ORIGIN + 4.2, "fault: aws-hk dark")
    data.mark(ORIGIN + 9.0, "signal: aws health event")
    for offset, step in enumerate(SAME_SECOND):
        data.mark(ORIGIN + 6.1 + offset * 0.05, step)
    data.mark(ORIGIN + 7.0, "open_protection")
    data.mark(ORIGIN + 27.0, "reopen")
    return data


def test_every_step_has_its_own_row_and_bar() -> None:
    shape = layout(a_drill())
    assert [step.label for step in shape.steps] == [*SAME_SECOND, "open_protection", "reopen"]
    assert all(later.start == earlier.end for earlier, later in zip(shape.steps, shape.steps[1:], strict=False))
    assert [label for _, label in shape.events] == ["fault: aws-hk dark", "signal: aws health event"]


def test_labels_that_finish_in_the_same_second_never_overlap() -> None:
    figure = _draw(layout(a_drill()), "drill")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    boxes = [label.get_window_extent(renderer) for label in figure.axes[0].get_yticklabels()]
    assert len(boxes) == 4 + len(SAME_SECOND) + 2  # 3 lanes, the events row, 8 steps
    for index, box in enumerate(boxes):
        for other in boxes[index + 1:]:
            assert not box.overlaps(other), "two row labels print over each other"


def test_no_colour_means_two_things_and_each_lane_kind_has_its_legend() -> None:
    assert not set(SITE_COLOURS.values()) & set(PHASE_COLOURS.values())
    figure = _draw(layout(a_drill()), "drill")
    titles = [child.get_title().get_text() for child in figure.axes[0].get_children()
              if type(child).__name__ == "Legend"]
    assert sorted(titles) == ["marks", "site health", "trading phase"]


def test_halt_and_protection_windows_carry_utc_and_display_zone_times() -> None:
    windows = layout(a_drill(), HONG_KONG).windows
    assert [(w.kind, w.start, w.end) for w in windows] == [("halt", 6, 7), ("protection", 7, 27)]
    assert windows[1].caption == "protection 03:00:07 UTC (11:00:07 UTC+8) → 03:00:27 UTC (11:00:27 UTC+8)"
    assert layout(a_drill()).windows[0].caption == "halt 03:00:06 UTC → 03:00:07 UTC"


def test_the_png_and_the_svg_are_the_same_drawing(tmp_path: Path) -> None:
    png = render(a_drill(), tmp_path / "t.png", "drill", HONG_KONG).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    svg = render_svg(a_drill(), "drill", HONG_KONG)
    assert svg.startswith("<svg") and 'href="http' not in svg  # nothing fetched from elsewhere
    for text in ["step fence_old_primary", "step switch_traffic", "11:00:07 UTC+8", "site health"]:
        assert text in svg
