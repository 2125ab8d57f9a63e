"""The checker: what must hold at the end of any run, whatever the nemesis did, from records alone.

It reads what the run left behind (`Observed`): the clients' history, every replica's journal, trades and final
status (read directly, with the bearer token, after every fault is healed), the monitor's status samples, the
announcements the webhook receiver got, and the orchestrator's incidents from the store. Each invariant is a
function of those records that returns readable sentences with the numbers, one per violation:

- `acknowledged-durable`: every acknowledged request is on the final primary at the seq it was acknowledged with;
- `no-trade-halted-wallclock`: no trade on the final primary timed between an announced halt and the end of the
  protection window that followed (by the announcements' clock);
- `no-trade-halted-phase`: no trade in the halted or protection phase by the journal's own phase entries;
- `one-writer-per-epoch`: at most one replica acknowledged writes of its own under each epoch;
- `no-write-below-carried-epoch`: once a replica carries epoch E (as the monitor saw it), no entry written below E
  after that moment is in its journal (hole 2's rule). A replica the stale-standby fault put back on an old copy
  of its data directory carries, from then on, only what it is seen carrying after the restore: the fault took its
  epoch away (its control.json with it), and entries it then took were not written "after it carried" anything;
- `journals-prefix-or-archived`: every other journal is a prefix of the final primary's, or archived as diverged;
- `failover-count`: the number of failovers is within what the schedule expects;
- `ends-open-or-needs-human`: one primary at the end, trading open, or `needs_human` with trading halted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nemesis.client import Op
from orchestrator.drill.orders import journal_keys, trades_by_phase
from orchestrator.engine.protocol import from_wire_time

INVARIANTS = ("acknowledged-durable", "no-trade-halted-wallclock", "no-trade-halted-phase", "one-writer-per-epoch",
              "no-write-below-carried-epoch", "journals-prefix-or-archived", "failover-count",
              "ends-open-or-needs-human")


@dataclass(frozen=True, slots=True)
class Sample:
    """One status of one replica as the monitor saw it (`at`: when the answer arrived, harness clock)."""

    at: float
    replica: str
    role: str
    epoch: int
    phase: str
    last_seq: int


@dataclass(frozen=True, slots=True)
class Announcement:
    """One webhook body as the receiver got it: `at` is the sender's time, `received` the receiver's."""

    received: float
    at: float
    event: str
    text: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def phase(self) -> str | None:
        value = self.detail.get("phase")
        return str(value) if self.event == "phase" and value is not None else None


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    id: str
    kind: str
    status: str
    source: str | None
    target: str | None
    steps: tuple[tuple[str, str, float], ...] = ()  # (step, state, at) from the runbook journal
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Observed:
    history: list[Op]
    journals: dict[str, list[dict[str, Any]]]
    trades: dict[str, list[dict[str, Any]]]
    statuses: dict[str, dict[str, Any] | None]
    samples: list[Sample] = field(default_factory=list)
    announcements: list[Announcement] = field(default_factory=list)
    incidents: list[IncidentRecord] = field(default_factory=list)
    archived: dict[str, str] = field(default_factory=dict)  # replica -> where its divergence is archived
    ended: float = 0.0
    restored: dict[str, list[float]] = field(default_factory=dict)  # replica -> when a stale copy was put back


@dataclass(frozen=True, slots=True)
class Expect:
    failovers: tuple[int, int] = (0, 1)
    announcer_clock_trusted: bool = True  # False when an orchestrator's clock was skewed: use receipt times


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    message: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.message}"


@dataclass(frozen=True, slots=True)
class Verdict:
    checked: tuple[str, ...]
    violations: tuple[Violation, ...]
    reference: str | None  # the final primary (or the replica judged in its place)

    @property
    def ok(self) -> bool:
        return not self.violations

    def text(self) -> str:
        if self.ok:
            return f"all {len(self.checked)} invariants held (reference {self.reference})"
        return "\n".join(f"  VIOLATED {v}" for v in self.violations)


# ---- the reference replica ---------------------------------------------------------------------------------------


def reference_replica(observed: Observed) -> str | None:
    """The final primary (highest epoch); with none, the non-fenced replica holding the most entries."""
    primaries = sorted(((int(s["epoch"]), name) for name, s in observed.statuses.items()
                        if s is not None and s.get("role") == "primary"), reverse=True)
    if primaries:
        return primaries[0][1]
    others = sorted(((len(observed.journals.get(name, [])), name) for name, s in observed.statuses.items()
                     if s is not None and s.get("role") != "fenced"), reverse=True)
    return others[0][1] if others else None


def when(at: float) -> str:
    """A wall-clock instant as people read it in a log: `14:03:07.250 UTC`."""
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-3] + " UTC"


def _seqs(values: Sequence[int]) -> str:
    values = sorted(values)
    if not values:
        return "none"
    shown = ", ".join(str(v) for v in values[:8])
    return shown + (f", ... ({len(values)} in all)" if len(values) > 8 else "")


# ---- invariants ----------------------------------------------------------------------------------------------------


def acknowledged_durable(observed: Observed, reference: str | None, expect: Expect) -> list[str]:
    acked = {op.key: op for op in observed.history if op.type == "ok"}
    if not acked:
        return []
    if reference is None:
        return [f"{len(acked)} acknowledged requests and no replica left to hold them"]
    found = journal_keys(observed.journals.get(reference, []))
    lost = sorted((op.seq or 0, key) for key, op in acked.items() if key not in found)
    moved = sorted((op.seq or 0, key, found[key]) for key, op in acked.items() if key in found and found[key] != op.seq)
    problems = []
    if lost:
        first = acked[lost[0][1]]
        problems.append(f"{len(lost)} of {len(acked)} acknowledged requests are not on {reference}: acknowledged "
                        f"at seq {_seqs([s for s, _ in lost])} (first: {lost[0][1]} by {first.target} at "
                        f"{when(first.at)})")
    if moved:
        seq, key, now = moved[0]
        problems.append(f"{len(moved)} acknowledged requests sit at another seq on {reference}: {key} was "
                        f"acknowledged at seq {seq} by {acked[key].target} and is at seq {now}")
    return problems


def halt_windows(observed: Observed, expect: Expect, reference: str | None = None) -> list[tuple[float, float]]:
    """[announced halted-or-protection, end of protection) intervals. The end is the earliest of: the `open`
    announcement, the last announced `until` of the protection window, and the reference replica's own reopening
    (its journal's `phase: open` entry): the announcement of a reopening is made a moment after the engine reopened,
    and a trade in that moment is not inside the window. A window never closed runs to the end of the run."""
    reopened = sorted(from_wire_time(str(e["at"])) for e in observed.journals.get(reference or "", [])
                      if e.get("kind") == "phase" and (e.get("data") or {}).get("phase") == "open")
    windows: list[tuple[float, float]] = []
    start: float | None = None
    until: float | None = None
    for item in sorted(observed.announcements, key=lambda a: a.at if expect.announcer_clock_trusted else a.received):
        at = item.at if expect.announcer_clock_trusted else item.received
        if item.phase in ("halted", "protection") and start is None:
            start, until = at, None
        announced_until = item.detail.get("until") if expect.announcer_clock_trusted else None
        if item.phase == "protection" and start is not None and isinstance(announced_until, int | float):
            until = float(announced_until)
        elif item.phase == "open" and start is not None:
            engine_open = next((t for t in reopened if t >= start), at)
            windows.append((start, min(at, engine_open, until if until is not None else at)))
            start = None
    if start is not None:
        windows.append((start, max(observed.ended, start)))
    return windows


def no_trade_halted_wallclock(observed: Observed, reference: str | None, expect: Expect) -> list[str]:
    if reference is None:
        return []
    windows = halt_windows(observed, expect, reference)
    inside: dict[tuple[float, float], list[dict[str, Any]]] = defaultdict(list)
    for trade in observed.trades.get(reference, []):
        at = from_wire_time(str(trade["at"]))
        for window in windows:
            if window[0] <= at < window[1]:
                inside[window].append(trade)
    return [f"{len(trades)} trades on {reference} inside the announced halt/protection window "
            f"{when(w[0])} - {when(w[1])} ({w[1] - w[0]:.1f} s): seq {_seqs([int(t['seq']) for t in trades])}, "
            f"first at {trades[0]['at']}" for w, trades in sorted(inside.items())]


def no_trade_halted_phase(observed: Observed, reference: str | None, expect: Expect) -> list[str]:
    if reference is None:
        return []
    counts = trades_by_phase(observed.journals.get(reference, []), observed.trades.get(reference, []))
    return [f"{counts[phase]} trades on {reference} while its own journal says {phase}"
            for phase in ("halted", "protection") if counts[phase]]


def one_writer_per_epoch(observed: Observed, reference: str | None, expect: Expect) -> list[str]:
    """Two replicas acknowledged writes under one epoch, each holding an acknowledged entry the other does not: two
    writers. (A new primary answering a retried request with the seq its predecessor wrote is not a second writer:
    it holds that very entry, hash for hash.)"""
    acked: dict[int, dict[str, list[tuple[int, str, str]]]] = defaultdict(lambda: defaultdict(list))
    for op in observed.history:
        if op.type != "ok" or op.target is None or op.seq is None:
            continue
        journal = observed.journals.get(op.target, [])
        if 0 < op.seq <= len(journal):
            entry = journal[op.seq - 1]
            acked[int(entry["epoch"])][op.target].append((op.seq, str(entry["hash"]), op.key))

    def foreign(entries: list[tuple[int, str, str]], other: str) -> list[tuple[int, str, str]]:
        journal = observed.journals.get(other, [])
        return [e for e in entries if not (e[0] <= len(journal) and journal[e[0] - 1]["hash"] == e[1])]

    problems = []
    for epoch, by in sorted(acked.items()):
        names = sorted(by)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                only_a, only_b = foreign(by[a], b), foreign(by[b], a)
                if only_a and only_b:
                    problems.append(f"under epoch {epoch}, {a} and {b} both acknowledged writes the other does not "
                                    f"hold: {a} {len(only_a)} (seq {_seqs([e[0] for e in only_a])}, first "
                                    f"{only_a[0][2]}), {b} {len(only_b)} (seq {_seqs([e[0] for e in only_b])}, "
                                    f"first {only_b[0][2]})")
    return problems


def no_write_below_carried_epoch(observed: Observed, reference: str | None, expect: Expect) -> list[str]:
    problems = []
    by_replica: dict[str, list[Sample]] = defaultdict(list)
    for sample in sorted(observed.samples, key=lambda s: s.at):
        by_replica[sample.replica].append(sample)
    for name, journal in sorted(observed.journals.items()):
        restored = max(observed.restored.get(name, []), default=float("-inf"))
        samples = [s for s in by_replica.get(name, []) if s.at > restored]  # its life since the last restore
        bad: list[tuple[int, int, int, float, str]] = []  # seq, written epoch, carried epoch, since, written at
        for entry in journal:
            epoch = int(entry["epoch"])
            carried = next((s for s in samples if s.epoch > epoch), None)
            if carried is not None and from_wire_time(str(entry["at"])) > carried.at:
                bad.append((int(entry["seq"]), epoch, carried.epoch, carried.at, str(entry["at"])))
        if bad:
            seq, epoch, above, since, entry_at = bad[0]
            trades = sum(1 for t in observed.trades.get(name, []) if int(t["seq"]) in {b[0] for b in bad})
            problems.append(f"{name} holds {len(bad)} entries written under an epoch below one it already carried "
                            f"(seq {_seqs([b[0] for b in bad])}, {trades} trades): seq {seq} was written under "
                            f"epoch {epoch} at {entry_at} after {name} was seen carrying epoch {above} at "
                            f"{when(since)}")
    return problems


def journals_prefix_or_archived(observed: Observed, reference: str | None, expect: Expect) -> list[str]:
    if reference is None:
        return []
    main = observed.journals.get(reference, [])
    problems = []
    for name, journal in sorted(observed.journals.items()):
        if name == reference or not journal:
            continue
        part = next((i for i, entry in enumerate(journal) if i >= len(main) or main[i]["hash"] != entry["hash"]),
                    None)
        if part is None or name in observed.archived:
            continue
        extra = len(journal) - part
        problems.append(f"{name}'s journal is not a prefix of {reference}'s: they part at seq {part + 1} "
                        f"({name} holds {len(journal)} entries, {extra} of them not on {reference}; "
                        f"{reference} holds {len(main)}) and nothing says it was archived as diverged")
    return problems


def failover_count(observed: Observed, reference: str | None, expect: Expect) -> list[str]:
    failovers = [i for i in observed.incidents if i.kind == "failover"]
    low, high = expect.failovers
    if low <= len(failovers) <= high:
        return []
    listed = ", ".join(f"{i.id} {i.source}->{i.target} ({i.status})" for i in failovers) or "none"
    wanted = f"exactly {low}" if low == high else f"between {low} and {high}"
    return [f"{len(failovers)} failovers, expected {wanted}: {listed}"]


def ends_open_or_needs_human(observed: Observed, reference: str | None, expect: Expect) -> list[str]:
    trading = sorted(name for name, s in observed.statuses.items()
                     if s is not None and s.get("role") == "primary" and s.get("phase") != "halted")
    if len(trading) > 1:
        return [f"{len(trading)} primaries not halted at the end: " + ", ".join(
            f"{n} (epoch {observed.statuses[n]['epoch']}, {observed.statuses[n]['phase']})"  # type: ignore[index]
            for n in trading)]
    status = observed.statuses.get(reference or "") if reference else None
    open_incidents = [i for i in observed.incidents if i.status != "closed"]
    human = [i for i in open_incidents if i.status == "needs_human"]
    if status is not None and status.get("role") == "primary" and status.get("phase") == "open" \
            and not open_incidents:
        return []
    halted = not trading
    if human and halted:
        return []
    where = (f"{reference} is {status.get('role')} in phase {status.get('phase')}" if status
             else "no replica answers")
    incidents = ", ".join(f"{i.id} {i.status}" + (f" at {i.steps[-1][0]} {i.steps[-1][1]}" if i.steps else "")
                          for i in open_incidents) or "no open incident"
    return [f"at the end {where}; {incidents}: trading is neither open nor halted for a human"]


CHECKS: dict[str, Callable[[Observed, str | None, Expect], list[str]]] = {
    "acknowledged-durable": acknowledged_durable,
    "no-trade-halted-wallclock": no_trade_halted_wallclock,
    "no-trade-halted-phase": no_trade_halted_phase,
    "one-writer-per-epoch": one_writer_per_epoch,
    "no-write-below-carried-epoch": no_write_below_carried_epoch,
    "journals-prefix-or-archived": journals_prefix_or_archived,
    "failover-count": failover_count,
    "ends-open-or-needs-human": ends_open_or_needs_human,
}


def check(observed: Observed, expect: Expect | None = None, *, skip: Sequence[str] = ()) -> Verdict:
    """Run every invariant (but those in `skip`) and collect the violations."""
    expect = expect or Expect()
    reference = reference_replica(observed)
    violations: list[Violation] = []
    checked: list[str] = []
    for name, invariant in CHECKS.items():
        if name in skip:
            continue
        checked.append(name)
        violations.extend(Violation(name, message) for message in invariant(observed, reference, expect))
    return Verdict(tuple(checked), tuple(violations), reference)
