"""Clock offsets from heartbeats: the odd clock out refuses to lead; with two daemons nobody can tell."""

from __future__ import annotations

import pytest

from orchestrator.core.clocks import Beat, ClockState, hear, judge, offsets

T = 1_700_000_000.0


def beats_from(skews: dict[str, float], at: float, marker: int, delay: float = 0.2) -> list[Beat]:
    """What each daemon wrote `delay` seconds before we read it, on its own (skewed) clock."""
    return [Beat(name, at - delay + skew, marker) for name, skew in skews.items()]


def heard(skews: dict[str, float], me: str, at: float = T) -> ClockState:
    """A first look (beats already there: no sample), then each daemon's next beat arriving."""
    state = hear(ClockState(), beats_from(skews, at - 1, 1), me, at - 1)
    return hear(state, beats_from(skews, at, 2), me, at)


def test_offset_is_the_smallest_sample_and_a_beat_counts_once() -> None:
    state = ClockState()
    state = hear(state, [Beat("b", T - 600, 1)], "a", T)  # there before we looked: maybe long dead, no sample
    assert offsets(state) == {}
    state = hear(state, [Beat("b", T + 0.1, 2)], "a", T + 1)
    state = hear(state, [Beat("b", T + 0.1, 2)], "a", T + 1.5)  # the same beat read again: no new sample
    state = hear(state, [Beat("b", T + 1.8, 3)], "a", T + 2)
    assert state.peers["b"].samples == pytest.approx((0.9, 0.2))  # 0.9 s, then 0.2 s of delay
    assert offsets(state) == {"b": pytest.approx(0.2)}


def test_a_fast_leader_against_two_good_clocks_refuses_to_lead() -> None:
    fast = heard({"b": -30.0, "c": -30.0}, "a")  # we run 30 s ahead of both
    verdict = judge(fast, bound=5.0)
    assert not verdict.may_lead
    assert verdict.offset is not None and 29 < verdict.offset < 31
    assert "+30" in verdict.reason and "2 of 3" in verdict.reason
    good = heard({"a": 30.0, "c": 0.0}, "b")  # one peer is 30 s ahead of us
    assert judge(good, bound=5.0).may_lead


def test_two_daemons_that_disagree_both_keep_going_and_report() -> None:
    state = heard({"b": -30.0}, "a")
    verdict = judge(state, bound=5.0)
    assert verdict.may_lead and verdict.offset is None
    assert 29 < offsets(state)["b"] < 31


def test_a_peer_not_heard_for_two_minutes_is_forgotten() -> None:
    state = heard({"b": -30.0, "c": -30.0}, "a")
    later = hear(state, [], "a", T + 121)
    assert offsets(later) == {} and judge(later, 5.0).may_lead
