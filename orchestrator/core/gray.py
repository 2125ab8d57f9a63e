"""Gray failures: a subject that answers, but misses its availability or latency objective over a sliding window.

Why a window and not the probe series: a two-second blackout every minute never gives a source three failures in a
row, so `health.py`'s hysteresis resets before it counts one, and an answer six times slower than usual is still an
answer. Users see both all afternoon. So each subject's recent past is kept as time, not as probe counts:

- every cycle gives a *sample* per subject: available or not (a majority of its fresh, non-isolated probe sources,
  and at least a quorum, fail it in this cycle: one lossy vantage point or a lost probe is not a blackout), and its
  latency (the median of this cycle's measured answers). A sample holds until the next one, so the window counts
  seconds: the same answer whether the cycles came every second or a skipped stretch apart (the simulator's
  event-driven stepping stays equal to tick-by-tick);
- the window is `buckets` buckets aligned on absolute time, counted in integer milliseconds (exact, in any order of
  crediting); memory per subject is one open bucket, at most `buckets - 1` closed ones and the baseline's ring;
- the availability objective is a budget: more than `(1 - availability) x window` unavailable within the window is
  a breach (99.5 % over 10 minutes: 3 s). The latency objective is a p99: more than 1 % of the window answered
  slower than `latency_p99_factor` times the subject's own baseline is a breach;
- the baseline is the median of the fastest answer of each of the last `baseline_buckets` clean buckets (no
  unavailable, no slow time, the objective met), so a slow hour does not teach the tracker that slow is normal.
  Until one window of clean buckets is known there is no baseline and no latency verdict.

Pure: `fold` and `judge` take the time in; states are immutable NamedTuples. Nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from orchestrator.core.model import Observation

DEGRADED = "degraded"  # the verdict (core/model.Verdict.DEGRADED) a breach gives
P99_SHARE = 0.01  # a p99 above the limit: more than 1 % of the window slower than it


class GrayAction(StrEnum):
    """What a degraded primary leads to (`policy.gray.action`)."""

    PAGE = "page"  # notify a human; trading stays open on the primary
    SWITCHOVER = "switchover"  # a planned switchover to a healthy, caught-up standby (the runbook, halt first)


@dataclass(frozen=True, slots=True)
class GrayObjective:
    """`policy.gray`: the objective each subject is held to, and what a breach of the primary's leads to."""

    availability: float = 0.995
    window: float = 600.0
    latency_p99_factor: float = 4.0
    action: GrayAction = GrayAction.PAGE
    buckets: int = 20
    baseline_buckets: int = 120

    @property
    def bucket_ms(self) -> int:
        return max(1, round(self.window * 1000 / self.buckets))

    @property
    def budget_ms(self) -> float:
        return (1.0 - self.availability) * self.bucket_ms * self.buckets

    @property
    def slow_budget_ms(self) -> float:
        return P99_SHARE * self.bucket_ms * self.buckets


@dataclass(frozen=True, slots=True)
class Measured(Observation):
    """An observation with the answer's round-trip time, in seconds (None: not measured)."""

    latency: float | None = None


class Sample(NamedTuple):
    """One cycle's view of one subject: `up` None when no fresh source voted (the time is then not counted)."""

    up: bool | None
    latency: float | None


Bucket = tuple[int, int, int, int]  # (index, ms seen, ms unavailable, ms slow)


class Window(NamedTuple):
    """One subject's recent past."""

    at_ms: int  # credited up to here
    sample: Sample  # the last sample: it holds until the next
    bucket: int  # the open bucket's index
    seen: int
    bad: int
    slow: int
    fastest: float  # the open bucket's fastest answer (inf: none)
    closed: tuple[Bucket, ...]  # non-empty closed buckets within the window, oldest first
    closed_bad: int  # their unavailable and slow milliseconds, summed
    closed_slow: int
    mins: tuple[float, ...]  # fastest answers of the last clean buckets, for the baseline
    baseline: float | None
    since: float | None  # breached since (None: the objective is met)


class Breach(NamedTuple):
    since: float
    reason: str


GrayState = Mapping[str, Window]
NO_SAMPLE = Sample(None, None)
DARK = Sample(False, None)
UNMEASURED = Sample(True, None)


def _ms(at: float) -> int:
    return round(at * 1000)


def start(sample: Sample, now: float, objective: GrayObjective) -> Window:
    at = _ms(now)
    return Window(at, sample, at // objective.bucket_ms, 0, 0, 0, math.inf, (), 0, 0, (), None, None)


def _median(values: tuple[float, ...]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _close(w: Window, objective: GrayObjective) -> Window:
    """The open bucket closed (kept if anything was seen in it) and the next one opened."""
    closed, mins, baseline = w.closed, w.mins, w.baseline
    closed_bad, closed_slow = w.closed_bad, w.closed_slow
    if w.seen:
        closed = (*closed, (w.bucket, w.seen, w.bad, w.slow))
        closed_bad += w.bad
        closed_slow += w.slow
        if not w.bad and not w.slow and w.since is None and w.fastest < math.inf:
            mins = (*mins, w.fastest)[-objective.baseline_buckets:]
            baseline = _median(mins) if len(mins) >= objective.buckets else None
    bucket = w.bucket + 1
    oldest = bucket - objective.buckets  # buckets at or below this have left the window
    if closed and closed[0][0] <= oldest:
        gone = [b for b in closed if b[0] <= oldest]
        closed = closed[len(gone):]
        closed_bad -= sum(b[2] for b in gone)
        closed_slow -= sum(b[3] for b in gone)
    return w._replace(bucket=bucket, seen=0, bad=0, slow=0, fastest=math.inf, closed=closed, closed_bad=closed_bad,
                      closed_slow=closed_slow, mins=mins, baseline=baseline)


def credit(w: Window, now: float, objective: GrayObjective) -> Window:
    """The time from the window's last credit to `now`, spent as its last sample says, bucket by bucket."""
    to, size = _ms(now), objective.bucket_ms
    up, latency = w.sample
    while w.at_ms < to:
        if up is None and not w.seen:  # nothing to count: jump to `now`'s bucket
            index = to // size
            if index > w.bucket:
                w = _close(w._replace(bucket=index - 1), objective)
            return w._replace(at_ms=to)
        end = min(to, (w.bucket + 1) * size)
        span = end - w.at_ms
        if up is not None:
            slow = w.slow
            if not up:
                bad = w.bad + span
            else:
                bad = w.bad
                if latency is not None and w.baseline is not None and \
                        latency > objective.latency_p99_factor * w.baseline:
                    slow += span
            fastest = w.fastest if latency is None or not up else min(w.fastest, latency)
            w = w._replace(seen=w.seen + span, bad=bad, slow=slow, fastest=fastest)
        w = w._replace(at_ms=end)
        if end == (w.bucket + 1) * size:
            w = _close(w, objective)
    return w


def totals(w: Window) -> tuple[int, int]:
    """Unavailable and slow milliseconds within the window (the open bucket included)."""
    return w.closed_bad + w.bad, w.closed_slow + w.slow


def _reason(w: Window, objective: GrayObjective) -> str:
    bad, slow = totals(w)
    window_ms = objective.bucket_ms * objective.buckets
    if bad > objective.budget_ms:
        return (f"available {100 * (1 - bad / window_ms):.2f}% over the last {objective.window:g}s "
                f"({bad / 1000:g}s unavailable), objective {100 * objective.availability:g}%")
    return (f"p99 latency above {objective.latency_p99_factor:g}x its baseline of {1000 * (w.baseline or 0):.3g}ms "
            f"({slow / 1000:g}s of {objective.window:g}s slower), objective at most {100 * P99_SHARE:g}%")


def _breached(w: Window, objective: GrayObjective) -> bool:
    bad, slow = totals(w)
    return bad > objective.budget_ms or slow > objective.slow_budget_ms


def fold(state: GrayState, samples: Mapping[str, Sample], now: float, objective: GrayObjective) -> dict[str, Window]:
    """Each subject's window credited up to `now` with its last sample, then holding this cycle's sample; a subject
    with no sample this cycle keeps its window as it is.

    On every cycle for every replica (3,000 at 1,000 engines), so the common case costs nothing: the same clean
    sample as before, within the open bucket, leaves the window as it is. Its time is credited later, in one span,
    when the sample changes or the bucket closes: the same integers as crediting it cycle by cycle, and nothing
    unavailable or slow is added meanwhile, so no breach can begin or end (`since` stands)."""
    out = dict(state)
    to, size, factor = _ms(now), objective.bucket_ms, objective.latency_p99_factor
    for subject, sample in samples.items():
        w = out.get(subject)
        if w is None:
            out[subject] = start(sample, now, objective)
            continue
        last = w[1]
        if (sample is last or sample == last) and last[0] is True and w[0] <= to < (w[2] + 1) * size:
            latency, baseline = last[1], w[11]
            if latency is None or baseline is None or latency <= factor * baseline:
                continue
        w = credit(w, now, objective)
        breached = _breached(w, objective)
        if breached != (w.since is not None):
            w = w._replace(since=now if breached else None)
        out[subject] = w if w.sample == sample else w._replace(sample=sample)
    return out


def judge(w: Window | None, objective: GrayObjective) -> Breach | None:
    """The breach this window shows, as of its last fold; None when the objective is met."""
    if w is None or w.since is None:
        return None
    return Breach(w.since, _reason(w, objective))


def next_change(state: GrayState, now: float, objective: GrayObjective) -> float:
    """The earliest time at which a fold with the same samples could judge differently (inf: never): the next
    bucket edge of a window that holds unavailable or slow time (it may leave the window) or whose sample keeps
    adding some, or sooner, when the time still being added crosses a budget. For the simulator's event-driven
    stepping: a cycle at this time runs."""
    size = objective.bucket_ms
    until = math.inf
    for w in state.values():
        up, latency = w.sample
        adding = up is False or (
            up is True and latency is not None and w.baseline is not None
            and latency > objective.latency_p99_factor * w.baseline)
        adding = adding or (up is True and latency is not None and w.baseline is None)  # a baseline may form
        if not adding and not w.bad and not w.slow and not w.closed:
            continue
        if not adding and w.since is None and all(b == 0 and s == 0 for _, _, b, s in w.closed) \
                and not w.bad and not w.slow and w.baseline is not None:
            continue
        edge = (w.bucket + 1) * size / 1000
        until = min(until, edge)
        if adding and w.since is None:
            bad, slow = totals(w)
            used, budget = (bad, objective.budget_ms) if up is False else (slow, objective.slow_budget_ms)
            until = min(until, w.at_ms / 1000 + max(0.0, budget - used) / 1000)
    return max(until, now) if until < math.inf else until


def samples_of(latencies: Mapping[str, list[float]]) -> dict[str, float]:
    """Per subject, the median of this cycle's measured answers."""
    return {subject: _median(tuple(values)) for subject, values in latencies.items() if values}


def latencies(observations: Iterable[Observation]) -> dict[str, list[float]]:
    """The measured answers among `observations`, by subject (a `down` answer has no latency)."""
    found: dict[str, list[float]] = {}
    for obs in observations:
        latency = getattr(obs, "latency", None)
        if latency is not None and obs.status.value != "down":
            found.setdefault(obs.subject, []).append(latency)
    return found


def to_json(state: GrayState) -> dict[str, list[object]]:
    """For the cron command, which carries the health state in the store between runs."""
    return {subject: [w.at_ms, w.sample.up, w.sample.latency, w.bucket, w.seen, w.bad, w.slow,
                      None if w.fastest == math.inf else w.fastest, [list(b) for b in w.closed], list(w.mins),
                      w.baseline, w.since] for subject, w in state.items()}  # the closed sums follow from `closed`


def from_json(value: Mapping[str, list[object]]) -> dict[str, Window]:
    out: dict[str, Window] = {}
    for subject, fields in value.items():
        at, up, latency, index, seen, bad, slow, fastest, closed, mins, baseline, since = fields
        out[subject] = Window(
            int(at),  # type: ignore[call-overload]
            Sample(None if up is None else bool(up), None if latency is None else float(latency)),  # type: ignore[arg-type]
            int(index), int(seen), int(bad), int(slow),  # type: ignore[call-overload]
            math.inf if fastest is None else float(fastest),  # type: ignore[arg-type]
            tuple((int(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in closed),  # type: ignore[attr-defined]
            sum(int(b[2]) for b in closed), sum(int(b[3]) for b in closed),  # type: ignore[attr-defined, misc]
            tuple(float(m) for m in mins),  # type: ignore[attr-defined]
            None if baseline is None else float(baseline),  # type: ignore[arg-type]
            None if since is None else float(since),  # type: ignore[arg-type]
        )
    return out
