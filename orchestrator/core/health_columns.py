"""The health evaluator for exchange scale: the same rules and the same answers as `core/health.py`, with the tracks
held as arrays, so that a cycle in which most subjects are plainly healthy costs array operations, not Python work
per observation.

Why: one controller cycle for 10,000 engines x 3 replicas x 4 vantage points is 120,000 observations, and the
evaluator's fold and tally took about 1.7 us of Python per observation, two thirds of the cycle
(docs/daemon-scale.md). Here a probe round of one vantage point can arrive as one `Column` (its source, its instant,
its subjects in a tuple kept from round to round, a status code per subject); the fold is a scatter into arrays
indexed by (subject, source), and the tally of rules 1, 2 and 4 (every subject's failing, ok, voting and recovered
sources, the isolated vantage points) is a handful of array expressions. Only the subjects whose verdict or
evidence may move go through Python: `health.judge`, the very function `health.assess` runs for each subject.

A subject is *plain* when its last assessment was `healthy` with no failing source and no reason, its record is
not down and remembers no fall into `down`, and this cycle it has no failing source, no wavering one (degraded, or
failing fewer times than needed), at least `quorum` voters, and the same ok sources as last time. For such a subject
`judge` would keep the record and the assessment objects as they are (see the proof in `_plain`), so they are kept
without calling it. Every other subject is judged. The equivalence with `health.ingest`/`health.assess` is tested
over random and scripted streams (tests/core/test_health_columns*.py): every verdict, its evidence, `since`, the
records, the tracks and the isolated sources, cycle by cycle.

Not covered, and why (the controller keeps `core/health.py` for them): a gray objective (its windows fold per
subject anyway), and a state carried in the store between cron runs (one cycle per process: nothing to gain).

Unlike `health.HealthState`, a `ColumnarHealth` changes in place (copying the arrays each cycle would cost as much
as the work saved); `state()` hands out an immutable `HealthState` equal to the one `core/health.py` would hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.core.health import (
    PROVIDER_PREFIX,
    Assessment,
    HealthSettings,
    HealthState,
    SubjectRecord,
    Track,
    judge,
)
from orchestrator.core.model import Observation, Status, Verdict

OK, DEGRADED, DOWN, UNKNOWN = 0, 1, 2, 3  # status codes, in `STATUSES` order
STATUSES: tuple[Status, ...] = (Status.OK, Status.DEGRADED, Status.DOWN, Status.UNKNOWN)
_CODE_OF = {id(status): code for code, status in enumerate(STATUSES)}  # by identity, as health.ingest tests them
MAX_MASK_SOURCES = 62  # evidence tuples looked up by bit mask up to this many sources (int64), row by row beyond


def code_of(status: Status) -> int:
    """`status`'s code. Only the enum's own members: `health.ingest` tells statuses apart by identity, so a plain
    string equal to one would be read differently there; refused here rather than read differently."""
    try:
        return _CODE_OF[id(status)]
    except KeyError:
        raise TypeError(f"status {status!r}: expected a member of Status") from None


@dataclass(frozen=True, slots=True, eq=False)
class Column:
    """One source's observations of many subjects at one instant: what a vantage point's probe round is.

    `subjects` should be the same tuple object from round to round (the evaluator keeps its subjects' indices by
    the tuple's identity); `codes` are status codes (`OK`...`UNKNOWN`), one per subject; `details` each
    observation's detail, only for `observations()` (the evaluator never reads a detail)."""

    at: float
    source: str
    subjects: tuple[str, ...]
    codes: np.ndarray[Any, np.dtype[np.int8]]
    details: tuple[str, ...]

    def observations(self) -> list[Observation]:
        """The same observations as objects, in order (for a store that records them, and for the reference)."""
        at, source = self.at, self.source
        return [Observation(at, subject, source, STATUSES[code], detail)
                for subject, code, detail in zip(self.subjects, self.codes.tolist(), self.details, strict=True)]


Batch = Iterable[Observation | Column]


class ColumnarHealth:
    """`health.ingest` and `health.assess` over arrays; see the module's docstring."""

    def __init__(self, settings: HealthSettings) -> None:
        if settings.gray is not None:
            raise ValueError("ColumnarHealth does not evaluate gray objectives: use core.health")
        self.settings = settings
        self._subject_index: dict[str, int] = {}
        self._subjects: list[str] = []
        self._source_index: dict[str, int] = {}
        self._sources: list[str] = []
        self._by_tuple: dict[int, tuple[tuple[str, ...], np.ndarray[Any, np.dtype[np.intp]] | slice]] = {}
        capacity_s, capacity_v = 64, 8
        self._has = np.zeros((capacity_s, capacity_v), bool)
        self._code = np.zeros((capacity_s, capacity_v), np.int8)
        self._at = np.zeros((capacity_s, capacity_v), np.float64)
        self._failures = np.zeros((capacity_s, capacity_v), np.int64)
        self._oks = np.zeros((capacity_s, capacity_v), np.int64)
        self._ok_then = np.zeros((capacity_s, capacity_v), bool)  # each subject's ok sources in its last assessment
        self._plain = np.zeros(capacity_s, bool)  # its last assessment and record are plainly healthy
        self._provider = np.zeros(capacity_v, bool)
        self._stale = np.zeros(capacity_v, np.float64)
        self._needed = np.zeros(capacity_v, np.int64)
        self._weights: np.ndarray[Any, np.dtype[np.int64]] | None = None  # 1 << rank of each source's name
        self._named: dict[int, tuple[str, ...]] = {}  # a mask of sources -> their names, sorted
        self.records: dict[str, SubjectRecord] = {}
        self.assessments: dict[str, Assessment] = {}
        self.isolated: frozenset[str] = frozenset()
        self._shortcut = settings.quorum >= 1 and settings.flap_count >= 1  # else no subject is ever plain

    # ---- indices and growth ----------------------------------------------------------------------------------

    def _grow(self, subjects: int, sources: int) -> None:
        rows, columns = self._has.shape
        if subjects <= rows and sources <= columns:
            return
        rows, columns = max(rows, _doubled(rows, subjects)), max(columns, _doubled(columns, sources))
        for name in ("_has", "_code", "_at", "_failures", "_oks", "_ok_then"):
            old = getattr(self, name)
            new = np.zeros((rows, columns), old.dtype)
            new[: old.shape[0], : old.shape[1]] = old
            setattr(self, name, new)
        for name, size in (("_plain", rows), ("_provider", columns), ("_stale", columns), ("_needed", columns)):
            old = getattr(self, name)
            new = np.zeros(size, old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    def _subject(self, name: str) -> int:
        index = self._subject_index.get(name)
        if index is None:
            index = self._subject_index[name] = len(self._subjects)
            self._subjects.append(name)
            self._grow(index + 1, len(self._sources))
        return index

    def _source(self, name: str) -> int:
        index = self._source_index.get(name)
        if index is None:
            index = self._source_index[name] = len(self._sources)
            self._sources.append(name)
            self._grow(len(self._subjects), index + 1)
            provider = name.startswith(PROVIDER_PREFIX)
            settings = self.settings
            self._provider[index] = provider
            self._stale[index] = settings.provider_stale_after if provider else settings.probe_stale_after
            self._needed[index] = 1 if provider else settings.failure_threshold
            self._weights, self._named = None, {}  # the names' sorted order changed
        return index

    def _indices(self, subjects: tuple[str, ...]) -> np.ndarray[Any, np.dtype[np.intp]] | slice | None:
        """The subjects' indices (new ones numbered in order), kept by the tuple's identity: a slice when they are
        consecutive (a prober's round of every replica, the common case: no gather or scatter of copies); None if a
        subject repeats (then the column is folded observation by observation, as `health.ingest` would)."""
        kept = self._by_tuple.get(id(subjects))
        if kept is not None and kept[0] is subjects:
            return kept[1]
        if len(set(subjects)) != len(subjects):
            return None
        indices = np.fromiter((self._subject(name) for name in subjects), np.intp, len(subjects))
        found: np.ndarray[Any, np.dtype[np.intp]] | slice = indices
        if len(indices) and bool((indices == np.arange(indices[0], indices[0] + len(indices))).all()):
            found = slice(int(indices[0]), int(indices[0]) + len(indices))
        if len(self._by_tuple) > 64:
            self._by_tuple.clear()
        self._by_tuple[id(subjects)] = (subjects, found)  # the tuple is held, so its id is not reused
        return found

    # ---- ingest ----------------------------------------------------------------------------------------------

    def ingest(self, batch: Batch) -> None:
        """Fold observations and columns into the tracks, in order; as `health.ingest`, an observation not newer
        than its track's last one is ignored."""
        loose: list[Observation] = []
        for item in batch:
            if isinstance(item, Column):
                if loose:
                    self._fold_observations(loose)
                    loose = []
                self._fold_column(item)
            else:
                loose.append(item)
        if loose:
            self._fold_observations(loose)

    def _fold_column(self, column: Column) -> None:
        rows = self._indices(column.subjects)
        if rows is None:
            self._fold_observations(column.observations())
            return
        source = self._source(column.source)
        codes = np.asarray(column.codes, np.int8)
        if len(codes) != len(column.subjects):
            raise ValueError(f"column of {column.source}: {len(codes)} codes for {len(column.subjects)} subjects")
        if len(codes) and not OK <= int(codes.min()) <= int(codes.max()) <= UNKNOWN:
            raise ValueError(f"column of {column.source}: a status code outside {OK}..{UNKNOWN}")
        # the source's column of each array (a strided view): one-dimensional indexing, a third of the 2-D cost
        has, at, failures = self._has[:, source], self._at[:, source], self._failures[:, source]
        oks, kept = self._oks[:, source], self._code[:, source]
        newer = ~has[rows] | ~(column.at <= at[rows])  # not `>`: a NaN instant compares as health.ingest's does
        if not newer.all():
            if isinstance(rows, slice):
                rows = np.arange(rows.start, rows.stop)
            rows, codes = rows[newer], codes[newer]
        down = codes == DOWN
        failures[rows] = np.where(down, failures[rows] + 1, 0)
        oks[rows] = np.where(down | (codes == UNKNOWN), 0, oks[rows] + 1)
        at[rows] = column.at
        kept[rows] = codes
        has[rows] = True

    def _fold_observations(self, observations: Sequence[Observation]) -> None:
        """Observation by observation only to number subjects and sources; the fold itself in waves in which each
        (subject, source) appears once, so a track folds its observations in their order."""
        waves: list[tuple[list[int], list[int], list[float], list[int]]] = []
        count: dict[tuple[int, int], int] = {}
        subject, source = self._subject, self._source
        for obs in observations:
            key = (subject(obs.subject), source(obs.source))
            turn = count.get(key, 0)
            count[key] = turn + 1
            if turn == len(waves):
                waves.append(([], [], [], []))
            rows, columns, ats, codes = waves[turn]
            rows.append(key[0])
            columns.append(key[1])
            ats.append(obs.at)
            codes.append(code_of(obs.status))
        for rows, columns, ats, codes in waves:
            self._scatter(np.array(rows, np.intp), np.array(columns, np.intp), np.array(ats, np.float64),
                          np.array(codes, np.int8))

    def _scatter(self, rows: np.ndarray[Any, np.dtype[np.intp]], columns: np.ndarray[Any, np.dtype[np.intp]],
                 ats: np.ndarray[Any, np.dtype[np.float64]], codes: np.ndarray[Any, np.dtype[np.int8]]) -> None:
        """One observation per (row, column) pair, all pairs distinct: `health.ingest`'s fold, elementwise."""
        has = self._has[rows, columns]
        newer = ~has | ~(ats <= self._at[rows, columns])  # not `>`: a NaN instant compares as health.ingest's does
        if not newer.all():
            rows, columns, ats, codes = rows[newer], columns[newer], ats[newer], codes[newer]
        down = codes == DOWN
        self._failures[rows, columns] = np.where(down, self._failures[rows, columns] + 1, 0)
        self._oks[rows, columns] = np.where(down | (codes == UNKNOWN), 0, self._oks[rows, columns] + 1)
        self._at[rows, columns] = ats
        self._code[rows, columns] = codes
        self._has[rows, columns] = True

    # ---- assess ----------------------------------------------------------------------------------------------

    def assess(self, now: float) -> dict[str, Assessment]:
        """A verdict per subject at `now` (in the order subjects were first observed), as `health.assess`."""
        settings = self.settings
        n, v = len(self._subjects), len(self._sources)
        has, codes, at = self._has[:n, :v], self._code[:n, :v], self._at[:n, :v]
        failures, oks = self._failures[:n, :v], self._oks[:n, :v]
        provider, needed = self._provider[:v], self._needed[:v]
        fresh = has & ((now - at) <= self._stale[:v]) & (codes != UNKNOWN)
        self.isolated = self._isolated_sources(fresh, failures, provider)
        muted = np.array([name in self.isolated for name in self._sources], bool)
        votes = fresh & ~muted if self.isolated else fresh
        failing = votes & (failures >= needed)
        ok = votes & (failures == 0)
        voters = votes.sum(1)
        wavering = (ok & (codes == DEGRADED)).any(1) | (votes & (failures > 0) & (failures < needed)).any(1)
        if self._shortcut:
            plain = (self._plain[:n] & ~failing.any(1) & ~wavering & (voters >= settings.quorum)
                     & (ok == self._ok_then[:n, :v]).all(1))
            todo = np.flatnonzero(~plain)
        else:
            todo = np.arange(n)
        if len(todo):
            recovered = (ok[todo] & ((oks[todo] >= settings.failure_threshold) | provider)).sum(1)
            answering = (ok[todo] & ~provider & ((now - at[todo]) < settings.probe_interval)).any(1)  # rule 3's veto
            self._judge(todo, failing[todo], ok[todo], voters[todo], recovered, wavering[todo], answering, now)
        return dict(self.assessments)

    def _isolated_sources(self, fresh: np.ndarray[Any, np.dtype[np.bool_]], failures: np.ndarray[Any, Any],
                          provider: np.ndarray[Any, np.dtype[np.bool_]]) -> frozenset[str]:
        """Rule 2, as `health._isolated_sources`: a vantage point failing more than `isolation_fraction` of the
        (at least `isolation_min_subjects`) subjects it sees, more than half of them seen fine (no failure in its
        run) by another vantage point's fresh probe."""
        settings = self.settings
        probes = fresh & ~provider
        seen = probes.sum(0)
        failing = probes & (failures > 0)
        counts = failing.sum(0)
        suspects = np.flatnonzero((counts > 0) & (seen >= settings.isolation_min_subjects)
                                  & ~(counts <= seen * settings.isolation_fraction))
        if not len(suspects):
            return frozenset()
        seen_fine = (probes & (failures == 0)).any(1)  # a source failing a subject never sees it fine itself
        return frozenset(self._sources[source] for source in suspects.tolist()
                         if int(np.count_nonzero(failing[:, source] & seen_fine)) > int(counts[source]) / 2)

    def _judge(self, todo: np.ndarray[Any, np.dtype[np.intp]], failing: np.ndarray[Any, Any],
               ok: np.ndarray[Any, Any], voters: np.ndarray[Any, Any], recovered: np.ndarray[Any, Any],
               wavering: np.ndarray[Any, Any], answering: np.ndarray[Any, Any], now: float) -> None:
        """`health.judge` for the subjects in `todo` (ascending), from their rows of the tally."""
        failing_names, ok_names = self._names(failing), self._names(ok)
        horizon = now - self.settings.flap_window
        settings, records, assessments, subjects = self.settings, self.records, self.assessments, self._subjects
        windows: dict[str, Any] = {}  # gray windows: none here
        plain = []
        for row, failing_of, ok_of, voting, back, unsure, reached in zip(
                todo.tolist(), failing_names, ok_names, voters.tolist(), recovered.tolist(), wavering.tolist(),
                answering.tolist(), strict=True):
            name = subjects[row]
            record, assessment = judge(name, failing_of, ok_of, voting, back, unsure, reached, records.get(name),
                                       assessments.get(name), now, horizon, settings, windows)
            if record is not None:
                records[name] = record
            else:
                record = records[name]
            assessments[name] = assessment
            plain.append(_plain(record, assessment))
        self._plain[todo] = plain
        self._ok_then[todo, : ok.shape[1]] = ok

    def _names(self, rows: np.ndarray[Any, np.dtype[np.bool_]]) -> list[tuple[str, ...]]:
        """Per row of a (subject, source) mask, the names of its sources in sorted order (the evidence tuples)."""
        sources = self._sources
        if len(sources) > MAX_MASK_SOURCES:
            order = sorted(range(len(sources)), key=sources.__getitem__)
            return [tuple(sources[i] for i in order if row[i]) for row in rows.tolist()]
        if self._weights is None:
            ranks = {index: rank for rank, index in enumerate(sorted(range(len(sources)), key=sources.__getitem__))}
            self._weights = np.array([1 << ranks[index] for index in range(len(sources))], np.int64)
        masks = (rows.astype(np.int64) @ self._weights[: rows.shape[1]]).tolist() if rows.size else \
            [0] * rows.shape[0]
        named, found = self._named, []
        for mask in masks:
            names = named.get(mask)
            if names is None:
                ranked = sorted(sources)
                names = named[mask] = tuple(ranked[rank] for rank in range(len(ranked)) if mask >> rank & 1)
            found.append(names)
        return found

    # ---- the state, as core/health.py would hold it ----------------------------------------------------------

    def state(self) -> HealthState:
        """An immutable `HealthState` equal to the one `health.ingest`/`health.assess` would have reached from
        the same observations (tracks, records, isolated sources, last assessments); for the simulator's stepper,
        the store and the tests. A copy: later cycles do not change it."""
        n, v = len(self._subjects), len(self._sources)
        return HealthState(_ColumnTracks(self._subjects[:], self._sources[:], self._has[:n, :v].copy(),
                                         self._code[:n, :v].copy(), self._at[:n, :v].copy(),
                                         self._failures[:n, :v].copy(), self._oks[:n, :v].copy()),
                           dict(self.records), self.isolated, dict(self.assessments))


def _plain(record: SubjectRecord, assessment: Assessment) -> bool:
    """Whether `judge` would keep both as they are next cycle, given no failing or wavering source, at least a quorum
    of voters and the same ok sources (with quorum >= 1 and flap_count >= 1). Then: no fall into `down` to forget
    (`downs` is empty) or to add (`len(failing) = 0 < quorum`, and the record is not down, so `down` stays false);
    `len(downs) = 0 < flap_count`; `voters >= quorum`; no gray objective; no failing or wavering source: `healthy`
    with no reason, as the record already says, so the record stands (same `down`, the same `downs` object); and the
    assessment is `healthy`, with the record's own `since` (identity), no failing source, no reason and the same ok
    sources, so it is kept too."""
    return (record.verdict is Verdict.HEALTHY and not record.down and not record.downs
            and assessment.verdict is Verdict.HEALTHY and assessment.since is record.since
            and not assessment.failing and not assessment.reason)


def _doubled(size: int, needed: int) -> int:
    while size < needed:
        size *= 2
    return size


class _ColumnTracks(Mapping[tuple[str, str], Track]):
    """`HealthState.tracks` over a copy of the arrays: `(subject, source) -> Track`, subjects in the order they were
    first observed and each subject's sources sorted, as `health._Tracks` iterates them."""

    def __init__(self, subjects: list[str], sources: list[str], has: np.ndarray[Any, Any], codes: np.ndarray[Any, Any],
                 at: np.ndarray[Any, Any], failures: np.ndarray[Any, Any], oks: np.ndarray[Any, Any]) -> None:
        self._subjects = {name: row for row, name in enumerate(subjects)}
        self._sources = {name: column for column, name in enumerate(sources)}
        self._order = sorted(range(len(sources)), key=sources.__getitem__)
        self._names = sources
        self._has, self._codes, self._at, self._failures, self._oks = has, codes, at, failures, oks
        self._rows: list[tuple[list[bool], list[int], list[float], list[int], list[int]]] | None = None

    def _table(self) -> list[tuple[list[bool], list[int], list[float], list[int], list[int]]]:
        if self._rows is None:
            self._rows = list(zip(self._has.tolist(), self._codes.tolist(), self._at.tolist(),
                                  self._failures.tolist(), self._oks.tolist(), strict=True))
        return self._rows

    def __getitem__(self, key: tuple[str, str]) -> Track:
        try:
            subject, source = key
            row, column = self._subjects[subject], self._sources[source]
        except (KeyError, TypeError, ValueError):
            raise KeyError(key) from None
        if not self._has[row, column]:
            raise KeyError(key)
        return Track(STATUSES[int(self._codes[row, column])], float(self._at[row, column]),
                     int(self._failures[row, column]), int(self._oks[row, column]))

    def _items(self) -> Iterator[tuple[tuple[str, str], Track]]:
        order, names, new = self._order, self._names, tuple.__new__
        for subject, (has, codes, at, failures, oks) in zip(self._subjects, self._table(), strict=True):
            for column in order:
                if has[column]:
                    yield (subject, names[column]), new(Track, (STATUSES[codes[column]], at[column], failures[column],
                                                                oks[column]))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for key, _ in self._items():
            yield key

    def __len__(self) -> int:
        return int(np.count_nonzero(self._has))

    def items(self) -> Any:
        return dict(self._items()).items()

    def __repr__(self) -> str:
        return repr(dict(self._items()))
