"""How far this host's wall clock is from the others', from the heartbeats every daemon writes to the store.

Hosts in three clouds, one with broken NTP: a leader whose clock ran 30 s fast judged every other vantage point's
observations stale and never reached a quorum, and no failover happened. Observations are now judged by when they
reached the store, but a daemon must still know when its own clock is the odd one out, say so, and refuse to lead.

Each daemon writes a beat (its identity and its wall time) every cycle; a reader notes, for each new beat of
another daemon, its own wall time minus the beat's. That sample is the offset between the two clocks plus the
beat's delay (writing, then waiting for the reader's next read), which is never negative; the smallest recent
sample is the best estimate. Pure: the driver passes beats and its own time in.

Who is wrong when two clocks disagree? With three or more daemons, the majority: a daemon refuses to lead when a
strict majority of all daemons (itself included) agree with each other within the bound and it is not one of them.
With two, nobody can tell, and both report the offset without refusing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SAMPLES = 20  # per peer: the smallest of the last SAMPLES is the estimate
FORGET_AFTER = 120.0  # seconds without a new beat after which a peer no longer counts


@dataclass(frozen=True, slots=True)
class Beat:
    identity: str
    wall: float  # the writer's wall clock when it wrote the beat
    marker: int  # the store's arrival marker (revision or counter): a new value is a new beat


@dataclass(frozen=True, slots=True)
class Peer:
    marker: int
    heard_at: float  # our wall time when we first saw its latest beat
    samples: tuple[float, ...]  # our wall time minus its wall time, for each beat we saw arrive

    @property
    def offset(self) -> float:
        """Our clock minus its clock, overstated by at most the smallest delay we saw."""
        return min(self.samples)


@dataclass(frozen=True, slots=True)
class ClockState:
    peers: Mapping[str, Peer] = field(default_factory=dict)


def hear(state: ClockState, beats: Iterable[Beat], me: str, now: float) -> ClockState:
    """Fold the beats read at our wall time `now` into the state; a beat seen before counts once."""
    peers = dict(state.peers)
    for beat in beats:
        if beat.identity == me:
            continue
        old = peers.get(beat.identity)
        if old is None:  # a beat already there when we first looked may be old (its writer dead): not a sample
            peers[beat.identity] = Peer(beat.marker, now, ())
            continue
        if old.marker == beat.marker:
            continue
        samples = (*old.samples, now - beat.wall)[-SAMPLES:]
        peers[beat.identity] = Peer(beat.marker, now, samples)
    return ClockState({name: peer for name, peer in peers.items() if now - peer.heard_at <= FORGET_AFTER})


def offsets(state: ClockState) -> dict[str, float]:
    """Per peer heard lately: our clock minus its clock (positive: ours is ahead)."""
    return {name: peer.offset for name, peer in sorted(state.peers.items()) if peer.samples}


@dataclass(frozen=True, slots=True)
class ClockVerdict:
    may_lead: bool
    offset: float | None  # our offset against the agreeing majority (median), None when there is none to judge by
    reason: str = ""


def judge(state: ClockState, bound: float) -> ClockVerdict:
    """Whether our clock agrees with the majority of the daemons within `bound` seconds."""
    found = offsets(state)
    if not found:
        return ClockVerdict(True, None)
    # every clock as seen from ours: 0 for ours, minus each peer's offset for theirs
    points = sorted([(0.0, True)] + [(-offset, False) for offset in found.values()])
    total = len(points)
    best: list[tuple[float, bool]] = []
    for start in range(total):
        window = [point for point in points[start:] if point[0] - points[start][0] <= bound]
        if len(window) > len(best) or (len(window) == len(best) and any(mine for _, mine in window)):
            best = window
    majority = len(best) * 2 > total
    ours = sorted(-value for value, mine in best if not mine) or [0.0]
    median = ours[len(ours) // 2]
    if majority and not any(mine for _, mine in best):
        return ClockVerdict(False, median, f"this host's clock is {median:+.1f}s off {len(best)} of {total} daemons "
                                           f"that agree within {bound:g}s: fix NTP here; not leading meanwhile")
    return ClockVerdict(True, median if majority else None)
