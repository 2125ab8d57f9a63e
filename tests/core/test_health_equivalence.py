"""The fast health evaluator against a copy of the straightforward one it replaced: same verdicts, evidence,
reasons, `since`, isolated sources, tracks and records, over random observation sequences; and states stay pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.health import (
    PROVIDER_PREFIX,
    Assessment,
    HealthSettings,
    HealthState,
    SubjectRecord,
    Track,
    assess,
    ingest,
)
from orchestrator.core.model import Observation, Status, Verdict

# ---- the reference: the evaluator as it was before the index, the single pass and the reuse of results ----------


@dataclass(frozen=True)
class RefState:
    tracks: dict[tuple[str, str], Track] = field(default_factory=dict)
    subjects: dict[str, SubjectRecord] = field(default_factory=dict)
    isolated: frozenset[str] = frozenset()


def ref_ingest(state: RefState, observations: Iterable[Observation]) -> RefState:
    tracks = dict(state.tracks)
    for obs in observations:
        key = (obs.subject, obs.source)
        old = tracks.get(key)
        if old is not None and obs.at <= old.at:
            continue
        if obs.status is Status.DOWN:
            tracks[key] = Track(obs.status, obs.at, (old.failures if old else 0) + 1, 0)
        elif obs.status is Status.UNKNOWN:
            tracks[key] = Track(obs.status, obs.at, 0, 0)
        else:
            tracks[key] = Track(obs.status, obs.at, 0, (old.oks if old else 0) + 1)
    return RefState(tracks, state.subjects, state.isolated)


def _fails(source: str, track: Track, settings: HealthSettings) -> bool:
    needed = 1 if source.startswith(PROVIDER_PREFIX) else settings.failure_threshold
    return track.failures >= needed


def _fresh(source: str, track: Track, now: float, settings: HealthSettings) -> bool:
    limit = settings.provider_stale_after if source.startswith(PROVIDER_PREFIX) else settings.probe_stale_after
    return now - track.at <= limit and track.status is not Status.UNKNOWN


def _isolated_sources(
    by_subject: Mapping[str, list[tuple[str, Track]]], now: float, settings: HealthSettings
) -> frozenset[str]:
    seen: dict[str, int] = defaultdict(int)
    failing: dict[str, list[str]] = defaultdict(list)
    for subject, pairs in by_subject.items():
        for source, track in pairs:
            if source.startswith(PROVIDER_PREFIX) or not _fresh(source, track, now, settings):
                continue
            seen[source] += 1
            if track.failures > 0:
                failing[source].append(subject)
    isolated = set()
    for source, subjects in failing.items():
        total = seen[source]
        if total < settings.isolation_min_subjects or len(subjects) <= total * settings.isolation_fraction:
            continue
        contradicted = sum(
            1
            for subject in subjects
            if any(
                other != source
                and not other.startswith(PROVIDER_PREFIX)
                and track.failures == 0
                and _fresh(other, track, now, settings)
                for other, track in by_subject[subject]
            )
        )
        if contradicted > len(subjects) / 2:
            isolated.add(source)
    return frozenset(isolated)


def ref_assess(state: RefState, now: float, settings: HealthSettings) -> tuple[RefState, dict[str, Assessment]]:
    by_subject: dict[str, list[tuple[str, Track]]] = defaultdict(list)
    for (subject, source), track in state.tracks.items():
        by_subject[subject].append((source, track))
    isolated = _isolated_sources(by_subject, now, settings)
    subjects = dict(state.subjects)
    verdicts: dict[str, Assessment] = {}
    horizon = now - settings.flap_window
    for subject, pairs in by_subject.items():
        failing: list[str] = []
        ok: list[str] = []
        voters = recovered = wavering = 0
        answering = False  # rule 3's veto: a probe that reported within the last interval reached it
        for source, track in pairs:
            if source in isolated or not _fresh(source, track, now, settings):
                continue
            voters += 1
            if not source.startswith(PROVIDER_PREFIX) and now - track.at < settings.probe_interval:
                answering = answering or track.failures == 0
            if _fails(source, track, settings):
                failing.append(source)
            elif track.failures == 0:
                ok.append(source)
                wavering += track.status is Status.DEGRADED
                if track.oks >= settings.failure_threshold or source.startswith(PROVIDER_PREFIX):
                    recovered += 1
            else:
                wavering += 1
        old = subjects.get(subject)
        was_down = old.down if old else False
        if len(failing) >= settings.quorum and (
                was_down or not answering or any(s.startswith(PROVIDER_PREFIX) for s in failing)):
            down = True
        elif was_down:
            down = recovered < settings.quorum
        else:
            down = False
        downs = tuple(t for t in (old.downs if old else ()) if t > horizon)
        if down and not was_down:
            downs += (now,)
        if len(downs) >= settings.flap_count:
            verdict, reason = Verdict.FLAPPING, f"{len(downs)} downs within the flap window"
        elif down:
            verdict, reason = Verdict.DOWN, f"failing from {', '.join(sorted(failing)) or 'too few sources to recover'}"
        elif voters < settings.quorum:
            verdict, reason = Verdict.UNKNOWN, f"{voters} fresh source(s), quorum is {settings.quorum}"
        elif failing or wavering:
            verdict, reason = Verdict.SUSPECT, "some sources report failures or degradation"
        else:
            verdict, reason = Verdict.HEALTHY, ""
        since = old.since if old and old.verdict is verdict else now
        subjects[subject] = SubjectRecord(verdict, since, down, downs)
        verdicts[subject] = Assessment(subject, verdict, since, tuple(sorted(failing)), tuple(sorted(ok)), reason)
    return RefState(state.tracks, subjects, isolated), verdicts


# ---- random histories ---------------------------------------------------------------------------------------------

SUBJECTS = ("aws-hk", "gcp-hk", "engine-1-aws", "engine-1-gcp", "engine-2-aws")
SOURCES = ("probe:gcp-hk", "probe:aws-hk", "probe:orchestrator", "provider:aws", "provider:gcp")
STATUSES = tuple(Status)

health_settings = st.builds(
    HealthSettings,
    failure_threshold=st.integers(1, 3),
    quorum=st.integers(1, 3),
    flap_count=st.integers(1, 3),
    flap_window=st.sampled_from([3.0, 10.0, 30.0, 1800.0]),
    probe_stale_after=st.sampled_from([1.0, 2.5, 3.5]),
    provider_stale_after=st.sampled_from([2.0, 10.0, 90.0]),
    isolation_fraction=st.sampled_from([0.3, 0.5, 0.7]),
    isolation_min_subjects=st.integers(1, 4),
)

# (subject, source, status, how long before `now` it was observed): stale, repeated and out-of-order ones included
scattered = st.lists(
    st.tuples(st.sampled_from(SUBJECTS), st.sampled_from(SOURCES), st.sampled_from(STATUSES),
              st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0, 20.0, -1.0])),
    max_size=12,
)
# a probe round: every chosen source sees every subject, mostly with one status per source (an isolated observer)
rounds = st.tuples(
    st.lists(st.sampled_from(SOURCES), min_size=1, max_size=len(SOURCES), unique=True),
    st.dictionaries(st.sampled_from(SOURCES), st.sampled_from(STATUSES)),
    st.dictionaries(st.tuples(st.sampled_from(SUBJECTS), st.sampled_from(SOURCES)), st.sampled_from(STATUSES)),
)
steps = st.lists(
    st.tuples(st.one_of(scattered, rounds), st.sampled_from([0.0, 0.5, 1.0, 1.0, 1.0, 2.0, 5.0, 40.0]), st.booleans(),
              st.integers(0, 9)),
    min_size=1,
    max_size=40,
)


def observations(step: Any, now: float) -> list[Observation]:
    if isinstance(step, list):
        return [Observation(now - ago, subject, source, status) for subject, source, status, ago in step]
    sources, per_source, exceptions = step
    return [
        Observation(now, subject, source, exceptions.get((subject, source), per_source.get(source, Status.OK)))
        for source in sources
        for subject in SUBJECTS
    ]


def snapshot(state: HealthState) -> tuple[object, ...]:
    return dict(state.tracks), list(state.tracks), dict(state.subjects), list(state.subjects), state.isolated


@settings(max_examples=400, deadline=None)
@given(health_settings, steps)
def test_same_results_as_the_reference(config: HealthSettings, history: list[Any]) -> None:
    ref, new, now = RefState(), HealthState(), 1000.0
    kept: list[tuple[HealthState, tuple[object, ...]]] = []
    for step, gap, assess_now, reload in history:
        now += gap
        batch = observations(step, now)
        ref, new = ref_ingest(ref, batch), ingest(new, batch)
        assert dict(new.tracks) == ref.tracks
        if not assess_now:
            continue
        ref, expected = ref_assess(ref, now, config)
        new, verdicts = assess(new, now, config)
        assert list(verdicts.items()) == list(expected.items())  # order, verdict, since, failing, ok, reason
        assert [type(a.since) for a in verdicts.values()] == [type(a.since) for a in expected.values()]
        assert new.isolated == ref.isolated
        assert list(new.subjects.items()) == list(ref.subjects.items())
        assert dict(new.tracks) == ref.tracks  # grouped by subject now, so only the subjects' order is the same
        assert list(dict.fromkeys(s for s, _ in new.tracks)) == list(dict.fromkeys(s for s, _ in ref.tracks))
        kept.append((new, snapshot(new)))
        verdicts.clear()  # a caller may do what it likes with its answer
        if reload == 0:  # the cron path: a state rebuilt from plain dicts (from the store), without isolated or cache
            new = HealthState(dict(new.tracks), dict(new.subjects))
            ref = RefState(dict(ref.tracks), dict(ref.subjects))
        elif reload == 1:  # records dropped by hand: the cached assessments must not bring back an old `since`
            new = replace(new, subjects={})
            ref = RefState(ref.tracks, {}, ref.isolated)
    for state, before in kept:  # no later call changed an earlier state
        assert snapshot(state) == before


def test_a_round_trip_through_plain_dicts_keeps_the_verdict_order() -> None:
    batch = [Observation(1.0, subject, source, Status.OK) for source in SOURCES for subject in reversed(SUBJECTS)]
    state, verdicts = assess(ingest(HealthState(), batch), 1.0, HealthSettings())
    assert list(verdicts) == list(reversed(SUBJECTS))
    again, same = assess(HealthState(dict(state.tracks), dict(state.subjects)), 1.0, HealthSettings())
    assert list(same.items()) == list(verdicts.items())
    assert state == again  # the cache of assessments is not part of the value


def test_tracks_read_like_a_dict() -> None:
    state = ingest(HealthState(), [Observation(2.0, "x", "probe:b", Status.DOWN),
                                   Observation(1.0, "x", "probe:a", Status.OK),
                                   Observation(3.0, "y", "probe:a", Status.DEGRADED)])
    tracks = state.tracks
    assert len(tracks) == 3
    assert tracks[("x", "probe:b")] == Track(Status.DOWN, 2.0, 1, 0)
    not_a_pair: Any = "x"
    assert ("y", "probe:a") in tracks and ("y", "probe:b") not in tracks and not_a_pair not in tracks
    assert tracks.get(("z", "probe:a")) is None
    assert tracks == {("x", "probe:a"): Track(Status.OK, 1.0, 0, 1), ("x", "probe:b"): Track(Status.DOWN, 2.0, 1, 0),
                      ("y", "probe:a"): Track(Status.DEGRADED, 3.0, 0, 1)}
    assert list(tracks.items()) == [(key, tracks[key]) for key in tracks]
    assert dict(tracks.items()) == dict(tracks)
