"""Trading phases (docs/design.md §5): every transition and admission cell of the tables, and the reopen rule."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.errors import IllegalTransition
from orchestrator.core.model import Phase
from orchestrator.core.phases import (
    ADMISSION,
    MATCHING,
    TRANSITIONS,
    PhaseChange,
    PhaseEvent,
    PhaseState,
    RequestKind,
    admit,
    announce,
    classify,
    mirror,
    parse_timezone,
    transition,
)

T0 = 1_671_332_400.0  # 2022-12-18 03:00:00 UTC = 11:00 in Hong Kong
LATER = T0 + 1200


def state(phase: Phase) -> PhaseState:
    return PhaseState(phase, T0 - 60, T0 + 600 if phase is Phase.PROTECTION else None)


EXPECTED_TRANSITIONS = {
    (Phase.OPEN, PhaseEvent.HALT): Phase.HALTED,
    (Phase.OPEN, PhaseEvent.PROTECT): Phase.PROTECTION,
    (Phase.HALTED, PhaseEvent.HALT): Phase.HALTED,
    (Phase.HALTED, PhaseEvent.PROTECT): Phase.PROTECTION,
    (Phase.HALTED, PhaseEvent.FORCE_OPEN): Phase.OPEN,
    (Phase.PROTECTION, PhaseEvent.HALT): Phase.HALTED,
    (Phase.PROTECTION, PhaseEvent.EXTEND): Phase.PROTECTION,
    (Phase.PROTECTION, PhaseEvent.REOPEN): Phase.OPEN,
    (Phase.PROTECTION, PhaseEvent.FORCE_OPEN): Phase.OPEN,
}


def test_table_is_exactly_the_documented_one() -> None:
    table = {(phase, event): target for phase, row in TRANSITIONS.items() for event, target in row.items()}
    assert table == EXPECTED_TRANSITIONS


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("event", list(PhaseEvent))
def test_every_transition_cell(phase: Phase, event: PhaseEvent) -> None:
    before = state(phase)
    now = LATER if event is PhaseEvent.REOPEN else T0
    until = now + 1200 if event in (PhaseEvent.PROTECT, PhaseEvent.EXTEND) else None
    expected = EXPECTED_TRANSITIONS.get((phase, event))
    if expected is None:
        with pytest.raises(IllegalTransition):
            transition(before, event, now, until)
        assert before == state(phase)  # immutable: nothing changed
        return
    after = transition(before, event, now, until)
    assert after.phase is expected
    if expected is Phase.PROTECTION:
        assert after.until == until
    else:
        assert after.until is None


def test_reopen_refused_before_the_window_ends_and_allowed_after() -> None:
    protected = PhaseState(Phase.PROTECTION, T0, T0 + 1200)
    with pytest.raises(IllegalTransition, match="1199s left"):
        transition(protected, PhaseEvent.REOPEN, T0 + 1)
    assert transition(protected, PhaseEvent.REOPEN, T0 + 1200).phase is Phase.OPEN
    assert transition(protected, PhaseEvent.FORCE_OPEN, T0 + 1).phase is Phase.OPEN


def test_protection_needs_an_end_in_the_future() -> None:
    with pytest.raises(IllegalTransition):
        transition(PhaseState(Phase.HALTED, T0), PhaseEvent.PROTECT, T0, None)
    with pytest.raises(IllegalTransition):
        transition(PhaseState(Phase.HALTED, T0), PhaseEvent.PROTECT, T0, T0 - 1)


def test_extension_keeps_the_window_start() -> None:
    protected = PhaseState(Phase.PROTECTION, T0, T0 + 1200)
    extended = transition(protected, PhaseEvent.EXTEND, T0 + 1200, T0 + 2400)
    assert (extended.since, extended.until) == (T0, T0 + 2400)


EXPECTED_ADMISSION = {
    Phase.OPEN: {kind: None for kind in RequestKind},
    Phase.PROTECTION: {
        RequestKind.LIMIT: "protection: post_only required",
        RequestKind.POST_ONLY: None,
        RequestKind.MARKET: "protection: market orders refused",
        RequestKind.IOC: "protection: ioc orders refused",
        RequestKind.FOK: "protection: fok orders refused",
        RequestKind.CANCEL: None,
        RequestKind.ADD_MARGIN: None,
    },
    Phase.HALTED: {kind: "halted" for kind in RequestKind},
}


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("kind", list(RequestKind))
def test_every_admission_cell(phase: Phase, kind: RequestKind) -> None:
    assert admit(phase, kind) == EXPECTED_ADMISSION[phase][kind]


def test_matching_only_when_open() -> None:
    assert MATCHING == {Phase.OPEN: True, Phase.PROTECTION: False, Phase.HALTED: False}
    assert set(ADMISSION) == set(Phase)


def test_configured_allow_list_can_only_narrow_protection() -> None:
    narrowed = admit(Phase.PROTECTION, RequestKind.ADD_MARGIN, ("cancel", "post_only"))
    assert narrowed == "protection: add_margin not allowed"
    assert admit(Phase.PROTECTION, RequestKind.MARKET, ("cancel", "post_only", "market")) is not None


@pytest.mark.parametrize(
    ("order_type", "tif", "post_only", "kind"),
    [
        ("market", "gtc", False, RequestKind.MARKET),
        ("market", "ioc", True, RequestKind.MARKET),
        ("limit", "ioc", False, RequestKind.IOC),
        ("limit", "fok", True, RequestKind.FOK),
        ("limit", "gtc", True, RequestKind.POST_ONLY),
        ("limit", "gtc", False, RequestKind.LIMIT),
    ],
)
def test_classify(order_type: str, tif: str, post_only: bool, kind: RequestKind) -> None:
    assert classify(order_type, tif, post_only) is kind


OPERATOR_EVENTS = st.lists(
    st.tuples(st.sampled_from([e for e in PhaseEvent if e is not PhaseEvent.FORCE_OPEN]), st.integers(0, 3000)),
    max_size=30,
)


@settings(deadline=None)  # hypothesis' 200 ms per example is a wall-clock bound a busy machine breaks
@given(OPERATOR_EVENTS)
def test_halted_never_reaches_open_without_protection_unless_forced(events: list[tuple[PhaseEvent, int]]) -> None:
    current = PhaseState(Phase.HALTED, T0)
    now = T0
    passed_protection = False
    for event, step in events:
        now += step
        until = now + 1200
        try:
            after = transition(current, event, now, until)
        except IllegalTransition:
            continue
        if after.phase is Phase.OPEN:
            assert current.phase is Phase.PROTECTION and passed_protection
            assert current.until is not None and now >= current.until  # never before the window ends
        if after.phase is Phase.PROTECTION:
            passed_protection = True
        if after.phase is Phase.HALTED:
            passed_protection = False
        current = after


def test_announcement_in_utc_and_display_time() -> None:
    halted = PhaseState(Phase.HALTED, T0)
    protected = transition(halted, PhaseEvent.PROTECT, T0 + 100, T0 + 1300)
    text = announce(PhaseChange("spot", halted, protected, PhaseEvent.PROTECT, T0 + 100), parse_timezone("+08:00"))
    assert "PROTECTION from 2022-12-18 03:01:40 UTC (11:01:40 UTC+08:00)" in text
    assert "until 2022-12-18 03:21:40 UTC (11:21:40 UTC+08:00)" in text
    assert "post-only" in text


def test_announcement_shows_the_local_date_when_it_differs() -> None:
    late = 1_671_375_600.0  # 2022-12-18 15:00 UTC = 2022-12-18 23:00 HKT; +2h crosses midnight locally
    change = PhaseChange("spot", PhaseState(Phase.OPEN), PhaseState(Phase.HALTED, late + 7200), PhaseEvent.HALT,
                         late + 7200)
    assert "17:00:00 UTC (2022-12-19 01:00:00 UTC+08:00)" in announce(change, parse_timezone("Asia/Hong_Kong"))


@pytest.mark.parametrize(("name", "hours"), [("+08:00", 8), ("UTC+8", 8), ("-05:30", -5.5), ("UTC", 0)])
def test_fixed_offsets(name: str, hours: float) -> None:
    assert parse_timezone(name).utcoffset(None) == timedelta(hours=hours)


def test_bad_timezone_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_timezone("Mars/Olympus_Mons")
    with pytest.raises(ValueError):
        parse_timezone("+25:00")
    assert parse_timezone("Asia/Hong_Kong") != UTC


def test_the_record_mirrors_what_the_engine_did_even_where_an_operator_would_be_refused() -> None:
    """`mirror` follows a change a step confirmed on the engine: a window already over when it is recorded, and
    a switchover without a window reopening from halted, both land in the record (`transition` refuses both)."""
    halted = PhaseState(Phase.HALTED, 100.0)
    late = mirror(halted, PhaseEvent.PROTECT, 110.0, 105.0)
    assert late == PhaseState(Phase.PROTECTION, 110.0, 105.0)
    assert mirror(late, PhaseEvent.REOPEN, 111.0) == PhaseState(Phase.OPEN, 111.0)
    assert mirror(halted, PhaseEvent.REOPEN, 120.0) == PhaseState(Phase.OPEN, 120.0)
    assert mirror(halted, PhaseEvent.HALT, 130.0) is halted  # no change, no new `since`
    extended = mirror(PhaseState(Phase.PROTECTION, 50.0, 60.0), PhaseEvent.EXTEND, 59.0, 90.0)
    assert extended == PhaseState(Phase.PROTECTION, 50.0, 90.0)  # the window is one window, extended
    with pytest.raises(IllegalTransition):
        transition(halted, PhaseEvent.REOPEN, 120.0)
