"""Observations → a verdict per subject (DESIGN §3), with hysteresis, quorum, flapping and observer isolation.

The evaluator is a fold: `ingest(state, observations)` and `assess(state, now)` each return a new `HealthState`,
so the daemon, the cron command (state loaded from the store) and the simulator share it. It is on the hot path of
every cycle (1,000 engines x 3 replicas x 4 vantage points is 12,000 observations), so tracks are named tuples
and each cycle touches each (subject, source) pair once.

Rules, in the order they apply to one subject:
1. A source *fails* a subject after `failure_threshold` consecutive failing observations (`down`). A provider API
   is one source and counts after one observation: the cloud's own status checks are already hysteretic.
2. A vantage point that sees most of its subjects fail at once while another source sees them fine is *isolated*:
   its votes are dropped (the fault is likely its own network, not the sites).
3. `down` needs `quorum` failing sources; it is left only when fewer than `quorum` fail and `quorum` sources have
   answered `ok` `failure_threshold` times in a row (hysteresis on the way back, too).
4. Too few fresh, non-isolated sources to reach a quorum either way is `unknown`, never `down`.
5. `flap_count` falls into `down` inside `flap_window` make the subject `flapping` until the window passes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from orchestrator.core.model import Observation, Policy, Status, Verdict

PROVIDER_PREFIX = "provider:"


class Track(NamedTuple):
    """What one source has said of one subject lately."""

    status: Status
    at: float
    failures: int  # consecutive `down` observations
    oks: int  # consecutive `ok`/`degraded` observations


class SubjectRecord(NamedTuple):
    verdict: Verdict
    since: float
    down: bool  # the raw quorum state, before flapping is applied
    downs: tuple[float, ...]  # when the subject fell into `down`, within the flap window


@dataclass(frozen=True, slots=True)
class Assessment:
    """A verdict and the evidence for it, for logs, `status` and the decision's reasons."""

    subject: str
    verdict: Verdict
    since: float
    failing: tuple[str, ...] = ()
    ok: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HealthState:
    tracks: Mapping[tuple[str, str], Track] = field(default_factory=dict)
    subjects: Mapping[str, SubjectRecord] = field(default_factory=dict)
    isolated: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Everything the evaluator needs; built from the policy and probe settings."""

    failure_threshold: int = 3
    quorum: int = 2
    flap_count: int = 3
    flap_window: float = 1800.0
    probe_stale_after: float = 3.5  # a probe track older than this has no vote
    provider_stale_after: float = 90.0
    isolation_fraction: float = 0.5
    isolation_min_subjects: int = 3

    @classmethod
    def from_policy(cls, policy: Policy, probe_interval: float, provider_interval: float = 30.0) -> HealthSettings:
        return cls(
            failure_threshold=policy.failure_threshold,
            quorum=policy.quorum,
            flap_count=policy.flap_count,
            flap_window=policy.flap_window,
            probe_stale_after=probe_interval * (policy.failure_threshold + 0.5),
            provider_stale_after=provider_interval * 3,
            isolation_fraction=policy.isolation_fraction,
        )


def ingest(state: HealthState, observations: Iterable[Observation]) -> HealthState:
    """Fold observations into the tracks; an observation not newer than a track's last one is ignored, so reading
    an overlapping window of shared observations twice counts nothing twice."""
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
    return replace(state, tracks=tracks)


def _fails(source: str, track: Track, settings: HealthSettings) -> bool:
    needed = 1 if source.startswith(PROVIDER_PREFIX) else settings.failure_threshold
    return track.failures >= needed


def _fresh(source: str, track: Track, now: float, settings: HealthSettings) -> bool:
    limit = settings.provider_stale_after if source.startswith(PROVIDER_PREFIX) else settings.probe_stale_after
    return now - track.at <= limit and track.status is not Status.UNKNOWN


def _isolated_sources(
    by_subject: Mapping[str, list[tuple[str, Track]]], now: float, settings: HealthSettings
) -> frozenset[str]:
    """Vantage points that see most subjects failing at once while another source sees those subjects fine."""
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
            if any(  # only another vantage point's probe contradicts a probe: status pages lag outages
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


def assess(
    state: HealthState, now: float, settings: HealthSettings
) -> tuple[HealthState, dict[str, Assessment]]:
    """A verdict per subject at `now`, and the state that remembers downs for flapping and hysteresis."""
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
        for source, track in pairs:
            if source in isolated or not _fresh(source, track, now, settings):
                continue
            voters += 1
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
        if len(failing) >= settings.quorum:
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
    return HealthState(state.tracks, subjects, isolated), verdicts
