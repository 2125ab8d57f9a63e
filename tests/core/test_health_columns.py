"""The columnar evaluator (core/health_columns.py) against core/health.py, cycle by cycle: the same verdicts in the
same order, the same evidence (failing and ok sources), reasons and `since`, the same records, tracks and isolated
sources, for scripted runbook situations (a lost site, a recovery, flapping, a stale source, an isolated vantage
point, unknown answers, a cloud API voting, sources joining late, overlapping and out-of-order reads) and for random
streams, fed as observation objects and as columns."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.health import HealthSettings, HealthState, assess, ingest
from orchestrator.core.health_columns import STATUSES, Column, ColumnarHealth, code_of
from orchestrator.core.model import Observation, Status, Verdict

SETTINGS = HealthSettings(failure_threshold=3, quorum=2, flap_count=3, flap_window=1800, probe_stale_after=3.5,
                          provider_stale_after=90.0)
PROBES = ("probe:gcp-hk", "probe:azure-hk", "probe:aws-hk", "probe:orchestrator")
PROVIDER = "provider:aws"
REPLICAS = tuple(f"e{n}-{cloud}" for n in range(4) for cloud in ("aws", "gcp", "azure"))
SITES = ("aws-hk", "gcp-hk", "azure-hk")
SUBJECTS = REPLICAS + SITES

Item = Observation | Column
Step = tuple[float, list[Item]]  # (now, what arrives before the cycle at now)


class Both:
    """The reference (core/health.py, pure states) and the columnar evaluator, fed the same, compared each cycle."""

    def __init__(self, health: HealthSettings = SETTINGS) -> None:
        self.settings = health
        self.state = HealthState()
        self.columns = ColumnarHealth(health)
        self.cycles = 0
        self.history: list[dict[str, Verdict]] = []

    def cycle(self, now: float, batch: Sequence[Item]) -> dict[str, Verdict]:
        flat = [o for item in batch for o in (item.observations() if isinstance(item, Column) else [item])]
        self.state = ingest(self.state, flat)
        self.state, expected = assess(self.state, now, self.settings)
        self.columns.ingest(batch)
        found = self.columns.assess(now)
        assert list(found.items()) == list(expected.items()), f"cycle {self.cycles} at {now}"
        mine = self.columns.state()
        assert mine.isolated == self.state.isolated
        assert dict(mine.subjects) == dict(self.state.subjects)
        assert list(mine.subjects) == list(self.state.subjects)
        # by repr, so that a NaN instant compares equal to itself (the NaN test below)
        assert [repr(item) for item in mine.tracks.items()] == [repr(item) for item in self.state.tracks.items()]
        assert len(mine.tracks) == len(self.state.tracks)
        assert dict(mine.assessments) == dict(self.state.assessments)
        self.cycles += 1
        verdicts = {subject: a.verdict for subject, a in found.items()}
        self.history.append(verdicts)
        return verdicts

    def run(self, steps: Iterable[Step]) -> list[dict[str, Verdict]]:
        return [self.cycle(now, batch) for now, batch in steps]


def column(now: float, source: str, statuses: dict[str, Status], subjects: tuple[str, ...] = SUBJECTS) -> Column:
    codes = np.array([code_of(statuses.get(s, Status.OK)) for s in subjects], np.int8)
    return Column(float(now), source, subjects, codes, tuple(statuses.get(s, Status.OK).value for s in subjects))


def round_of(now: float, down: dict[str, set[str]] | None = None, sources: Sequence[str] = PROBES,
             as_columns: bool = True, status: Status = Status.DOWN) -> list[Item]:
    """One probe round: every source sees every subject `ok`, except those listed in `down[source]`."""
    down = down or {}
    items: list[Item] = []
    for source in sources:
        statuses = {s: status for s in down.get(source, set())}
        made = column(now, source, statuses)
        items += [made] if as_columns else made.observations()
    return items


def quiet(start: float, rounds: int, **kwargs: object) -> list[Step]:
    return [(float(start + i), round_of(start + i, **kwargs)) for i in range(rounds)]  # type: ignore[arg-type]


# ---- scripted: the runbook's situations ---------------------------------------------------------------------


def test_a_lost_site_goes_down_then_recovers_with_the_same_verdicts_and_evidence() -> None:
    both = Both()
    lost = {source: {"aws-hk", *(r for r in REPLICAS if r.endswith("aws"))} for source in PROBES}
    history = both.run([*quiet(0, 5), *quiet(5, 6, down=lost), *quiet(11, 8)])
    assert [h["e0-aws"] for h in history[5:8]] == [Verdict.SUSPECT, Verdict.SUSPECT, Verdict.DOWN]
    assert history[-1]["e0-aws"] is Verdict.HEALTHY and history[12]["e0-aws"] is Verdict.DOWN
    assert all(h["e0-gcp"] is Verdict.HEALTHY for h in history)


def test_flapping_counts_every_fall_into_down_within_the_window() -> None:
    both = Both()
    flaps = {source: {"e1-gcp"} for source in PROBES}
    steps = quiet(0, 3)
    for round_ in range(4):
        start = 3 + round_ * 10
        steps += quiet(start, 4, down=flaps) + quiet(start + 4, 6)
    history = both.run(steps)
    assert Verdict.FLAPPING in {h["e1-gcp"] for h in history}


def test_flapping_ends_when_the_downs_leave_a_short_window() -> None:
    both = Both(HealthSettings(failure_threshold=1, quorum=2, flap_count=2, flap_window=6.0, probe_stale_after=3.5))
    flaps = {source: {"e2-azure"} for source in PROBES}
    steps = quiet(0, 2) + quiet(2, 1, down=flaps) + quiet(3, 2) + quiet(5, 1, down=flaps) + quiet(6, 12)
    history = both.run(steps)
    assert history[5]["e2-azure"] is Verdict.FLAPPING and history[-1]["e2-azure"] is Verdict.HEALTHY


def test_a_source_that_stops_reporting_goes_stale_and_too_few_fresh_ones_are_unknown() -> None:
    both = Both()
    steps = quiet(0, 4) + quiet(4, 6, sources=PROBES[:2]) + quiet(10, 6, sources=PROBES[:1]) + quiet(16, 5)
    history = both.run(steps)
    assert history[14]["e0-aws"] is Verdict.UNKNOWN and history[-1]["e0-aws"] is Verdict.HEALTHY


def test_an_isolated_vantage_point_is_ignored_while_the_others_see_the_sites_fine() -> None:
    both = Both()
    cut = {"probe:orchestrator": set(SUBJECTS)}
    history = both.run(quiet(0, 4) + quiet(4, 8, down=cut) + quiet(12, 5))
    assert both.state.isolated == frozenset()
    assert all(h["e0-aws"] is Verdict.HEALTHY for h in history[7:12])
    both.run(quiet(17, 3, down=cut))
    assert both.columns.isolated == frozenset({"probe:orchestrator"})


def test_unknown_answers_never_vote_and_reset_both_runs() -> None:
    both = Both()
    unknown = {source: {"e3-gcp", "gcp-hk"} for source in PROBES[:3]}
    history = both.run(quiet(0, 4) + quiet(4, 5, down=unknown, status=Status.UNKNOWN) + quiet(9, 2)
                       + quiet(11, 4, down={s: {"e3-gcp"} for s in PROBES}) + quiet(15, 3))
    assert history[6]["e3-gcp"] is Verdict.UNKNOWN


def test_degraded_answers_make_a_subject_suspect() -> None:
    both = Both()
    slow = {source: {"e1-aws"} for source in PROBES[:2]}
    history = both.run(quiet(0, 3) + quiet(3, 4, down=slow, status=Status.DEGRADED) + quiet(7, 2))
    assert history[4]["e1-aws"] is Verdict.SUSPECT and history[-1]["e1-aws"] is Verdict.HEALTHY


def test_a_cloud_api_votes_after_one_answer_and_goes_stale_on_its_own_clock() -> None:
    both = Both()
    steps: list[Step] = []
    for i in range(40):
        batch = round_of(i, down={PROBES[0]: {"e0-aws"}} if 10 <= i < 20 else None)
        if i % 10 == 0:
            status = Status.DOWN if 10 <= i < 20 else Status.OK
            batch += [Observation(float(i), subject, PROVIDER, status, "api") for subject in ("e0-aws", "aws-hk")]
        steps.append((float(i), batch))
    steps.append((200.0, round_of(200.0)))
    history = both.run(steps)
    assert history[12]["e0-aws"] is Verdict.DOWN


def test_sources_and_subjects_that_join_late_and_a_subject_seen_by_one_source() -> None:
    both = Both()
    few = ("e0-aws", "e0-gcp")
    steps: list[Step] = [(float(i), [column(i, PROBES[0], {}, few), column(i, PROBES[1], {}, few)]) for i in range(3)]
    steps += quiet(3, 4)
    steps += [(7.0 + i, [*round_of(7 + i), Observation(7.0 + i, "lonely", PROBES[2], Status.OK)]) for i in range(4)]
    history = both.run(steps)
    assert history[-1]["lonely"] is Verdict.UNKNOWN and list(history[-1])[:2] == list(few)


def test_columns_whose_subjects_were_first_seen_in_another_order() -> None:
    """A column's subjects numbered apart (first seen reversed, and one in between): indexed one by one, not as a
    block."""
    both = Both()
    first = [Observation(0.0, subject, PROBES[0], Status.OK) for subject in reversed(SUBJECTS)]
    first.insert(3, Observation(0.0, "in-between", PROBES[1], Status.OK))
    lost = {source: {"e1-azure", "gcp-hk"} for source in PROBES}
    history = both.run([(0.0, first), *quiet(1, 3), *quiet(4, 4, down=lost), *quiet(8, 4)])
    assert history[6]["e1-azure"] is Verdict.DOWN and next(iter(history[-1])) == SUBJECTS[-1]


def test_overlapping_reads_older_and_repeated_observations_count_once() -> None:
    both = Both()
    steps = quiet(0, 3)
    for i in range(3, 10):
        batch = round_of(i, down={s: {"e2-gcp"} for s in PROBES}, as_columns=False)
        batch += round_of(i - 1, as_columns=False)  # an older read of every source: ignored
        batch += [Observation(float(i), "e2-gcp", PROBES[0], Status.DOWN), Observation(i + 0.5, "e2-gcp", PROBES[0],
                                                                                   Status.DOWN)]
        steps.append((float(i), batch))
    history = both.run(steps + quiet(10, 5))
    assert history[5]["e2-gcp"] is Verdict.DOWN


def test_a_column_with_a_repeated_subject_is_folded_as_its_observations_are() -> None:
    both = Both()
    subjects = ("e0-aws", "e0-aws", "e0-gcp")
    codes = np.array([code_of(Status.OK), code_of(Status.DOWN), code_of(Status.OK)], np.int8)
    steps = [(float(i), [Column(float(i), s, subjects, codes, ("", "", "")) for s in PROBES]) for i in range(5)]
    both.run(steps)


def test_every_subject_plainly_healthy_keeps_the_same_assessment_objects() -> None:
    """The shortcut itself: in a quiet cycle no subject is judged again, and what comes back is last cycle's."""
    evaluator = ColumnarHealth(SETTINGS)
    for i in range(5):
        evaluator.ingest(round_of(i))
        before = evaluator.assess(i)
    evaluator.ingest(round_of(5))
    after = evaluator.assess(5)
    assert all(after[s] is before[s] for s in SUBJECTS) and set(after) == set(SUBJECTS)


def test_a_status_that_is_not_a_member_of_the_enum_is_refused() -> None:
    with pytest.raises(TypeError, match="expected a member of Status"):
        ColumnarHealth(SETTINGS).ingest([Observation(1.0, "x", PROBES[0], "down")])  # type: ignore[arg-type]


def test_a_column_that_does_not_add_up_is_refused() -> None:
    evaluator = ColumnarHealth(SETTINGS)
    with pytest.raises(ValueError, match="2 codes for 3 subjects"):
        evaluator.ingest([Column(1.0, PROBES[0], ("a", "b", "c"), np.zeros(2, np.int8), ("", "", ""))])
    with pytest.raises(ValueError, match=r"status code outside 0\.\.3"):
        evaluator.ingest([Column(1.0, PROBES[0], ("a", "b"), np.array([0, 7], np.int8), ("", ""))])


def test_a_gray_objective_is_refused() -> None:
    from orchestrator.core.gray import GrayObjective

    with pytest.raises(ValueError, match="gray"):
        ColumnarHealth(HealthSettings(gray=GrayObjective()))


def test_many_sources_beyond_the_bit_masks() -> None:
    many = tuple(f"probe:v{n:02d}" for n in range(70))
    both = Both(HealthSettings(failure_threshold=1, quorum=30, isolation_min_subjects=100))
    steps = [(float(i), [column(i, s, {"e0-aws": Status.DOWN} if (n + i) % 3 == 0 else {}) for n, s in
                         enumerate(many)]) for i in range(4)]
    both.run(steps)


# ---- random streams -----------------------------------------------------------------------------------------


def random_stream(seed: int, cycles: int, health: HealthSettings) -> list[Step]:
    """Markov chains per (subject, source), sticky enough for long quiet spells (the shortcut) and outages, with a
    source that drops out for a while, one that goes isolated, a cloud API, reads as columns or objects, gaps."""
    rng = random.Random(seed)
    subjects = SUBJECTS[: rng.randint(3, len(SUBJECTS))]
    sources = list(PROBES[: rng.randint(2, len(PROBES))])
    state = {(s, v): Status.OK for s in subjects for v in sources}
    now, steps = 0.0, []
    absent: dict[str, float] = {}
    isolated_until = -1.0
    for _ in range(cycles):
        now += rng.choice([1.0, 1.0, 1.0, 1.0, 0.5, 2.0, 5.0])
        if rng.random() < 0.02:
            isolated_until = now + rng.randint(3, 10)
        if rng.random() < 0.03:
            absent[rng.choice(sources)] = now + rng.randint(2, 8)
        if rng.random() < 0.05:  # a correlated outage of one subject from every source
            victim = rng.choice(subjects)
            fall = rng.choice([Status.DOWN, Status.DOWN, Status.DEGRADED, Status.UNKNOWN])
            for v in sources:
                state[(victim, v)] = fall
        for key, status in state.items():
            if rng.random() < (0.02 if status is Status.OK else 0.25):
                state[key] = Status.OK if status is not Status.OK else rng.choice(STATUSES)
        batch: list[Item] = []
        for v in sources:
            if absent.get(v, -1.0) >= now:
                continue
            seen = {s: (Status.DOWN if v == sources[0] and isolated_until >= now else state[(s, v)]) for s in subjects}
            made = column(now, v, seen, subjects)
            batch += [made] if rng.random() < 0.7 else made.observations()
        if rng.random() < 0.1:
            batch += [Observation(now - rng.choice([0.0, 0.5, 3.0]), rng.choice(subjects), PROVIDER,
                                  rng.choice(STATUSES))]
        rng.shuffle(batch) if rng.random() < 0.1 else None
        steps.append((now, batch))
    return steps


health_settings = st.builds(
    HealthSettings,
    failure_threshold=st.integers(1, 3),
    quorum=st.integers(0, 3),
    flap_count=st.integers(0, 3),
    flap_window=st.sampled_from([3.0, 10.0, 30.0, 1800.0]),
    probe_stale_after=st.sampled_from([1.0, 2.5, 3.5]),
    provider_stale_after=st.sampled_from([2.0, 10.0, 90.0]),
    isolation_fraction=st.sampled_from([0.3, 0.5, 0.7]),
    isolation_min_subjects=st.integers(1, 4),
)


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), health=health_settings)
def test_random_streams_give_the_same_verdicts_evidence_and_state_every_cycle(seed: int,
                                                                              health: HealthSettings) -> None:
    both = Both(health)
    both.run(random_stream(seed, 60, health))
    assert both.cycles == 60


@pytest.mark.parametrize("seed", range(6))
def test_long_random_streams_with_the_default_policy(seed: int) -> None:
    both = Both()
    history = both.run(random_stream(seed, 400, SETTINGS))
    seen = {verdict for cycle in history for verdict in cycle.values()}
    assert {Verdict.HEALTHY, Verdict.SUSPECT}.issubset(seen)


def test_the_random_streams_reach_every_verdict() -> None:
    """The streams above must be able to fail: over a few seeds they reach down, flapping and unknown too."""
    seen: set[Verdict] = set()
    for seed in range(6):
        both = Both()
        for cycle in both.run(random_stream(seed, 400, SETTINGS)):
            seen |= set(cycle.values())
    assert {Verdict.HEALTHY, Verdict.SUSPECT, Verdict.DOWN, Verdict.FLAPPING, Verdict.UNKNOWN} <= seen


def test_a_nan_instant_is_read_as_core_health_reads_it() -> None:
    both = Both()
    both.run(quiet(0, 3))
    both.cycle(3.0, [*round_of(3), Observation(math.nan, "e0-aws", PROBES[0], Status.DOWN)])
    both.run(quiet(4, 3))
    nan_round = [column(math.nan, source, {"e1-gcp": Status.DOWN}) for source in PROBES]
    both.cycle(7.0, nan_round)
    both.cycle(8.0, nan_round)  # an instant that is not a number is newer than every other, NaN included
    both.run(quiet(9, 3))
