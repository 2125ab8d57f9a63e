"""Observations → a verdict per subject (docs/design.md §3), with hysteresis, quorum, flapping and observer isolation.

The evaluator is a fold: `ingest(state, observations)` and `assess(state, now)` each return a new `HealthState`,
so the daemon, the cron command (state loaded from the store) and the simulator share it. It is on the hot path of
every cycle (1,000 engines x 3 replicas x 4 vantage points is 12,000 observations; the simulator runs 86,400 small
cycles for a day), so:
- tracks are kept per subject (`state.tracks` is still a mapping keyed by `(subject, source)`), so `assess` need not
  regroup them, and `ingest` copies only the subjects it touches (copy-on-write: a state never changes once returned);
- `assess` reads every track once: the votes and the counts that observer isolation needs come from the same pass,
  guessing that the isolated sources are the last cycle's and counting again only when that guess was wrong;
- a subject whose verdict and evidence did not change keeps its `SubjectRecord` and `Assessment` objects.

Rules, in the order they apply to one subject:
1. A source *fails* a subject after `failure_threshold` consecutive failing observations (`down`). A provider API
   is one source and counts after one observation: the cloud's own status checks are already hysteretic.
2. A vantage point that sees most of its subjects fail at once while another source sees them fine is *isolated*:
   its votes are dropped (the fault is likely its own network, not the sites).
3. `down` needs `quorum` failing sources; when they are all probes, also no probe source that reported within the
   last probe interval seeing the subject answer (a dark subject answers nobody: two lossy paths are not an outage,
   docs/false-failovers.md; a cloud API's vote is about the machine, not a path, and is not vetoed). It is left
   only when fewer than `quorum` fail and `quorum` sources have answered `ok` `failure_threshold` times in a row
   (hysteresis on the way back, too).
4. Too few fresh, non-isolated sources to reach a quorum either way is `unknown`, never `down`.
5. `flap_count` falls into `down` inside `flap_window` make the subject `flapping` until the window passes.
6. With a gray objective (`policy.gray`, core/gray.py), a subject that is none of the above but misses its
   availability or latency objective over the sliding window is `degraded`, ahead of `suspect` (the blackouts that
   make it degraded make it suspect for a second or two each time; it stays degraded throughout).
"""

from __future__ import annotations

from collections.abc import Collection, ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from orchestrator.core import gray as gr
from orchestrator.core.model import Engine, Observation, Policy, Status, Verdict

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
    # The last `assess`'s answers, reused for a subject whose verdict and evidence are unchanged (a frozen dataclass
    # costs a microsecond to build, 3,000 of them a tenth of a big cycle). A cache, checked field by field before
    # use, so it is not part of the state's value: a state loaded from the store simply starts without it.
    assessments: Mapping[str, Assessment] = field(default_factory=dict, compare=False, repr=False)
    # With a gray objective: each subject's sliding window (core/gray.py), and the latencies measured in the last
    # ingested batch, by subject (consumed by the next `assess`).
    gray: gr.GrayState = field(default_factory=dict)
    latencies: Mapping[str, list[float]] = field(default_factory=dict, compare=False, repr=False)


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
    gray: gr.GrayObjective | None = None  # None: no gray tracking
    probe_interval: float = 1.0  # a probe source that reported within this long speaks for this cycle (rule 6)

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
            gray=getattr(policy, "gray", None),  # Policy.gray (core/model.py): docs/gray-failures.md
            probe_interval=probe_interval,
        )


# ---- tracks, stored per subject ----------------------------------------------------------------------------------

_BySubject = Mapping[str, Mapping[str, Track]]  # subject → source → track, sources in sorted order


class _Tracks(Mapping[tuple[str, str], Track]):
    """`state.tracks` as `ingest` leaves it: a read-only `(subject, source) → Track` mapping over the per-subject
    index. The index's dicts are never changed once a state holds them. Sources are kept sorted within a subject so
    the failing/ok evidence comes out sorted without sorting it every cycle."""

    __slots__ = ("by_subject",)

    def __init__(self, by_subject: _BySubject) -> None:
        self.by_subject = by_subject

    def __getitem__(self, key: tuple[str, str]) -> Track:
        try:
            subject, source = key
            return self.by_subject[subject][source]
        except (KeyError, TypeError, ValueError):
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for subject, tracks in self.by_subject.items():
            for source in tracks:
                yield subject, source

    def __len__(self) -> int:
        return sum(map(len, self.by_subject.values()))

    def items(self) -> ItemsView[tuple[str, str], Track]:
        return _TrackItems(self)  # the store saves the tracks every cron run: no lookup per item

    def __repr__(self) -> str:
        return repr(dict(self.items()))


class _TrackItems(ItemsView[tuple[str, str], Track]):
    def __init__(self, tracks: _Tracks) -> None:
        super().__init__(tracks)
        self._by_subject = tracks.by_subject

    def __iter__(self) -> Iterator[tuple[tuple[str, str], Track]]:
        for subject, tracks in self._by_subject.items():
            for source, track in tracks.items():
                yield (subject, source), track


def _sorted(tracks: Mapping[str, Track]) -> dict[str, Track]:
    return dict(sorted(tracks.items()))


def _by_subject(tracks: Mapping[tuple[str, str], Track]) -> _BySubject:
    """The per-subject index: free for tracks from `ingest`, built once for tracks made elsewhere (from the store).
    Subjects keep the order in which they were first seen, as in a flat dict."""
    if isinstance(tracks, _Tracks):
        return tracks.by_subject
    grouped: dict[str, dict[str, Track]] = {}
    for (subject, source), track in tracks.items():
        grouped.setdefault(subject, {})[source] = track
    return {subject: _sorted(sources) for subject, sources in grouped.items()}


def ingest(state: HealthState, observations: Iterable[Observation]) -> HealthState:
    """Fold observations into the tracks; an observation not newer than a track's last one is ignored, so reading
    an overlapping window of shared observations twice counts nothing twice."""
    before = _by_subject(state.tracks)
    touched: dict[str, dict[str, Track]] = {}  # copies of the subjects this batch changes
    grown: set[str] = set()  # subjects with a new source, to re-sort
    down, unknown = Status.DOWN, Status.UNKNOWN  # as locals: an enum member costs ~50 ns to look up, a tenth of a fold
    measured, latencies = gr.Measured, dict[str, list[float]]()
    for obs in observations:
        subject, source, at, status = obs.subject, obs.source, obs.at, obs.status
        if type(obs) is measured and obs.latency is not None and status is not down:
            latencies.setdefault(subject, []).append(obs.latency)
        tracks = touched.get(subject)
        if tracks is None:
            tracks = touched[subject] = dict(before.get(subject) or {})
        old = tracks.get(source)
        if old is None:
            grown.add(subject)
        elif at <= old.at:
            continue
        # tuple.__new__ builds the same Track as Track(...) in a third of the time (no Python-level __new__)
        if status is down:
            tracks[source] = tuple.__new__(Track, (status, at, (old.failures if old else 0) + 1, 0))
        elif status is unknown:
            tracks[source] = tuple.__new__(Track, (status, at, 0, 0))
        else:
            tracks[source] = tuple.__new__(Track, (status, at, 0, (old.oks if old else 0) + 1))
    for subject in grown:
        touched[subject] = _sorted(touched[subject])
    return HealthState(_Tracks({**before, **touched}), state.subjects, state.isolated, state.assessments,
                       state.gray, latencies)


# ---- assessment ----------------------------------------------------------------------------------------------------


def _is_provider(source: str) -> bool:
    return source.startswith(PROVIDER_PREFIX)


def _fresh(source: str, track: Track, now: float, settings: HealthSettings) -> bool:
    limit = settings.provider_stale_after if _is_provider(source) else settings.probe_stale_after
    return now - track.at <= limit and track.status is not Status.UNKNOWN


# One subject's votes from its fresh, non-isolated sources (a plain tuple: a NamedTuple costs 200 ns more to build):
# the sources that fail it and those with no failure in their current run (both sorted, as the index is), how many
# voted, how many ok ones have a run of oks long enough to leave `down`, and whether one is degraded or failing but
# not yet `failure_threshold` times; and for the gray window (rule 6), how many of the voters are probes that reported
# within the last probe interval and how many of those fail it (a failure run of any length).
_Tally = tuple[tuple[str, ...], tuple[str, ...], int, int, bool, int, int]


def _tally(
    index: _BySubject, now: float, settings: HealthSettings, isolated: frozenset[str]
) -> tuple[dict[str, _Tally], dict[str, int], dict[str, list[str]]]:
    """Every subject's tally without the `isolated` sources; and, from the same pass over the tracks, per vantage
    point the number of subjects it sees (fresh) and those it sees failing: the input of rule 2. The per-source
    facts (provider or probe, staleness limit, failures needed, isolated) are worked out once per source."""
    threshold, interval = settings.failure_threshold, settings.probe_interval
    unknown, degraded = Status.UNKNOWN, Status.DEGRADED  # as locals: enum members are slow to look up
    kinds: dict[str, tuple[bool, float, int, bool]] = {}
    seen: dict[str, int] = {}
    failing_by_source: dict[str, list[str]] = {}
    tallies: dict[str, _Tally] = {}
    for subject, tracks in index.items():
        failing: list[str] = []
        ok: list[str] = []
        voters = recovered = probes = dropped = 0
        wavering = False
        for source, (status, at, failures, oks) in tracks.items():
            kind = kinds.get(source)
            if kind is None:
                provider = _is_provider(source)
                kind = kinds[source] = (
                    provider,
                    settings.provider_stale_after if provider else settings.probe_stale_after,
                    1 if provider else threshold,
                    source in isolated,
                )
            provider, stale_after, needed, muted = kind
            if not (now - at <= stale_after and status is not unknown):
                continue
            if not provider:
                seen[source] = seen.get(source, 0) + 1
                if failures > 0:
                    failing_by_source.setdefault(source, []).append(subject)
            if muted:
                continue
            voters += 1
            if not provider and now - at < interval:
                probes += 1
                if failures:
                    dropped += 1
            if failures >= needed:
                failing.append(source)
            elif failures == 0:
                ok.append(source)
                wavering = wavering or status is degraded
                if oks >= threshold or provider:
                    recovered += 1
            else:
                wavering = True
        tallies[subject] = (tuple(failing), tuple(ok), voters, recovered, wavering, probes, dropped)
    return tallies, seen, failing_by_source


def _isolated_sources(
    index: _BySubject, seen: Mapping[str, int], failing: Mapping[str, list[str]], now: float, settings: HealthSettings
) -> frozenset[str]:
    """Vantage points that see most subjects failing at once while another source sees those subjects fine."""
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
                and not _is_provider(other)
                and track.failures == 0
                and _fresh(other, track, now, settings)
                for other, track in index[subject].items()
            )
        )
        if contradicted > len(subjects) / 2:
            isolated.add(source)
    return frozenset(isolated)


def assess(
    state: HealthState, now: float, settings: HealthSettings
) -> tuple[HealthState, dict[str, Assessment]]:
    """A verdict per subject at `now`, and the state that remembers downs for flapping and hysteresis."""
    index = _by_subject(state.tracks)
    tallies, seen, failing_by_source = _tally(index, now, settings, state.isolated)
    isolated = _isolated_sources(index, seen, failing_by_source, now, settings)
    if isolated != state.isolated:  # the guess was wrong (rare: isolation began or ended): tally again
        tallies = _tally(index, now, settings, isolated)[0]
    windows = state.gray
    objective = settings.gray
    if objective is not None:
        windows = gr.fold(windows, _gray_samples(tallies, settings.quorum, state.latencies), now, objective)
    subjects = dict(state.subjects)
    last = state.assessments
    verdicts: dict[str, Assessment] = {}
    horizon = now - settings.flap_window
    for subject, (failing, ok, voters, recovered, wavering, probes, dropped) in tallies.items():
        record, verdicts[subject] = judge(subject, failing, ok, voters, recovered, wavering, dropped < probes,
                                          subjects.get(subject), last.get(subject), now, horizon, settings, windows)
        if record is not None:
            subjects[subject] = record
    return HealthState(_Tracks(index), subjects, isolated, dict(verdicts), windows), verdicts


def judge(
    subject: str, failing: tuple[str, ...], ok: tuple[str, ...], voters: int, recovered: int, wavering: bool,
    answering: bool, old: SubjectRecord | None, same: Assessment | None, now: float, horizon: float,
    settings: HealthSettings, windows: gr.GrayState,
) -> tuple[SubjectRecord | None, Assessment]:
    """Rules 3-6 for one subject from its tally: its new record (None when the old one stands as it is) and its
    assessment (`same`, the last one, when nothing in it changed). One function for both evaluators (this module's
    and core/health_columns.py's), so that they cannot drift apart. `horizon` is `now - flap_window`; `answering`:
    a non-isolated probe source that reported within the last probe interval has no failure in its run."""
    quorum = settings.quorum
    was_down = old.down if old else False
    downs = old.downs if old else ()
    if downs and not all(t > horizon for t in downs):
        downs = tuple(t for t in downs if t > horizon)
    if len(failing) >= quorum and (was_down or not answering or any(map(_is_provider, failing))):
        down = True
    elif was_down:
        down = recovered < quorum
    else:
        down = False
    if down and not was_down:
        downs += (now,)
    objective = settings.gray
    if len(downs) >= settings.flap_count:
        verdict, reason = Verdict.FLAPPING, f"{len(downs)} downs within the flap window"
    elif down:
        verdict, reason = Verdict.DOWN, f"failing from {', '.join(failing) or 'too few sources to recover'}"
    elif voters < quorum:
        verdict, reason = Verdict.UNKNOWN, f"{voters} fresh source(s), quorum is {quorum}"
    elif objective is not None and (breach := gr.judge(windows.get(subject), objective)) is not None:
        verdict, reason = Verdict(gr.DEGRADED), breach.reason
    elif failing or wavering:
        verdict, reason = Verdict.SUSPECT, "some sources report failures or degradation"
    else:
        verdict, reason = Verdict.HEALTHY, ""
    record = None
    if old and old.verdict is verdict:  # an unchanged record is kept as it is, not rebuilt
        since = old.since
        if old.down is not down or old.downs is not downs:
            record = SubjectRecord(verdict, since, down, downs)
    else:
        since = now
        record = SubjectRecord(verdict, since, down, downs)
    # `since` by identity: it is the record's own float unless the verdict changed
    if (
        same is None
        or same.verdict is not verdict
        or same.since is not since
        or same.failing != failing
        or same.ok != ok
        or same.reason != reason
    ):
        same = Assessment(subject, verdict, since, failing, ok, reason)
    return record, same


def _gray_samples(tallies: Mapping[str, _Tally], quorum: int, latencies: Mapping[str, list[float]]
                  ) -> dict[str, gr.Sample]:
    """Each subject's sample for its gray window (rule 6), from the non-isolated probe sources that reported within
    the last probe interval (a vantage point inside a dark site cannot report: its last `ok` does not speak for
    now): unavailable when every one of them, and at least a quorum, fails it, whatever their count of failures so
    far (a two-second blackout never reaches `failure_threshold`); no sample with fewer than a quorum of them. All,
    not most: with 30 % of tries lost on a site, three of four vantage points lose the same round several times an
    hour, all four a hundred times less often. Cloud APIs are not counted: a status page does not see a two-second
    blackout. The latency is the median of this cycle's answers."""
    out: dict[str, gr.Sample] = {}
    new, kind, dark, unseen, unmeasured = tuple.__new__, gr.Sample, gr.DARK, gr.NO_SAMPLE, gr.UNMEASURED
    for subject, (_, _, _, _, _, probes, dropped) in tallies.items():
        if probes < quorum:
            out[subject] = unseen
        elif dropped == probes:
            out[subject] = dark
        else:
            answers = latencies.get(subject)
            out[subject] = new(kind, (True, sorted(answers)[len(answers) // 2])) if answers else unmeasured
    return out


# ---- verdicts without a history ----------------------------------------------------------------------------------


def one_look(engine: Engine, reachable: Collection[str], known: Mapping[str, Verdict], now: float) \
        -> dict[str, Assessment]:
    """Verdicts for a command with no history of its own (`failover plan`, `execute`): the last cycle's verdict
    where the store has one (`known`); otherwise a replica that answered now is healthy and one that did not is
    unknown (one look is no evidence of an outage), and a site is healthy only if all its replicas answered."""
    verdicts: dict[str, Assessment] = {}
    for replica in engine.replicas:
        on_site = [r.name for r in engine.replicas if r.site == replica.site]
        looks = {replica.name: replica.name in reachable, replica.site: all(name in reachable for name in on_site)}
        for subject, seen in looks.items():
            verdict = known.get(subject) or (Verdict.HEALTHY if seen else Verdict.UNKNOWN)
            verdicts[subject] = Assessment(subject, verdict, now)
    return verdicts


def assumed_loss(engine: Engine, lost_site: str, now: float) -> dict[str, Assessment]:
    """Verdicts as if `lost_site` had just been lost and everything else were healthy (a CI dry run, where no
    engine runs): what a failover would then do."""
    verdicts: dict[str, Assessment] = {}
    for replica in engine.replicas:
        verdict = Verdict.DOWN if replica.site == lost_site else Verdict.HEALTHY
        for subject in (replica.name, replica.site):
            verdicts[subject] = Assessment(subject, verdict, now, reason="assumed lost" if verdict is Verdict.DOWN
                                           else "")
    return verdicts
