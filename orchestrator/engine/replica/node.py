"""One replica's state and the rules that change it: role, epoch, journal, ledger, replication acks, counters.

Every method here is synchronous and runs on the server's single event loop, so each one is atomic with respect
to the others: a request is checked, journaled (fsync'd), applied and announced in one go. The only awaiting is
done by callers, outside these methods: waiting for a standby's acknowledgement, talking to peers. One control
call does await in its middle: a promotion asks its peers for their status first. So control changes (phase,
fence, promote) take `control_lock`, and a promotion takes it twice, to start and to commit, and is decided at
commit against the state then (`promotion_refused`): a fence or a newer epoch that arrived while it waited wins.

Roles: a *primary* accepts writes; a *standby* applies what it fetches from the primary; a *fenced* replica does
neither, for good (the role is persisted, so a restart does not undo a fence). The epoch rule: every control call
carries an epoch; one below the highest seen is refused (`stale_epoch`) before anything else is looked at, one
above it is persisted before the call acts, so an orchestrator that lost its leadership can never act again here.

Fencing through the standbys: `set_phase` on a standby only *stamps* the epoch (the rule above records it); its
trading phase stays the one it mirrors from its primary's journal. A standby never acknowledges a primary whose
epoch is below the highest it has seen (`Replicator` enforces it), so once every standby on another cloud carries
a new epoch, an old primary that nobody could reach can no longer acknowledge anything in synchronous mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.core.model import Phase, Role
from orchestrator.core.phases import DEFAULT_PROTECTION_ALLOW
from orchestrator.engine.protocol import MAX_EPOCH_JUMP, Reason, StandbySeen, StatusBody, to_wire_time
from orchestrator.engine.replica.book import Check, Duplicate, Ledger, Refusal
from orchestrator.engine.replica.journal import ControlState, Entry, Journal
from orchestrator.engine.replica.peers import normalized

log = logging.getLogger("orchestrator.engine.replica")


MAX_NAMED_ACCOUNTS = 10_000  # accounts named in refused_by_phase; beyond, "(other)"


@dataclass(frozen=True, slots=True)
class Settings:
    """What the command line gives a replica; the token is kept out of `repr` so it is never logged."""

    replica_id: str
    data_dir: Path
    cloud: str = "local"
    initial_role: Role = Role.STANDBY
    standby_of: str | None = None
    peers: tuple[str, ...] = ()
    synchronous: bool = True
    sync_timeout: float = 2.0
    protection_allow: tuple[str, ...] = DEFAULT_PROTECTION_ALLOW
    peer_catch_up: bool = True  # with no primary reachable, copy from the peer with the longest journal
    promote_poll_timeout: float = 1.0  # how long a promotion waits for each peer's status
    public_read: bool = False  # GET /v1/journal and /v1/trades without the token
    token: str = field(default="", repr=False)


class Signal:
    """Wakes every waiter when something happened (an entry appended, an acknowledgement received)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Return when notified or after `timeout` seconds, whichever is first; callers re-check their state."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


def _die(message: str) -> None:  # pragma: no cover - reached only when the disk fails
    log.critical("%s; stopping so that nothing unsaved is ever acknowledged", message)
    os._exit(70)


@dataclass(frozen=True, slots=True)
class Accepted:
    seq: int


Outcome = Accepted | Refusal


class Node:
    """One replica: its disk state recovered at construction, then changed only through the methods below."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time,
                 on_disk_failure: Callable[[str], None] = _die,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.clock = clock
        self.monotonic = monotonic  # ages in the status are on this clock, never on the wall clock
        self.on_disk_failure = on_disk_failure
        self.journal = Journal.open(settings.data_dir / "journal.jsonl")
        self.control = ControlState.load(settings.data_dir / "control.json")
        if self.control.role is None:
            self.control.commit(role=settings.initial_role)
        elif self.control.role is not settings.initial_role:
            log.warning("%s: role %s from %s overrides the command line", settings.replica_id,
                        self.control.role, self.control.path)
        self.ledger = Ledger(protection_allow=settings.protection_allow)
        for entry in self.journal.entries:
            self.ledger.apply(entry)
        self.acks: dict[str, tuple[str, int]] = {}  # standby -> (its cloud, the seq it holds durably)
        self.acked_at: dict[str, float] = {}  # standby -> when its last acknowledging fetch arrived
        # on a primary: (last seq of a run of entries, when that run was appended), oldest first, for the entries
        # no standby on another cloud is known to hold yet
        self.unreplicated: deque[tuple[int, float]] = deque()
        self.primary_contact_at: float | None = None  # on a standby: its last fetch from a primary it follows
        self.appended = Signal()
        self.acked = Signal()
        self.following: str | None = None
        self.error: str | None = None  # set when replication cannot go on (diverged journal)
        self.rejoining = False  # the journal is being rebuilt from a primary (`rejoin`): fenced, never promoted
        self.accepted: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.refused_by_phase: Counter[tuple[str, str, str]] = Counter()  # (phase, account, reason)
        self._accounts_named: set[str] = set()
        self.control_lock = asyncio.Lock()  # serializes control changes (see the module's docstring)
        if self.role is Role.PRIMARY:
            self._count_held_as_unreplicated()
            self._finish_promotion()  # a promotion cut short by a crash ends halted before anything is served

    @property
    def role(self) -> Role:
        assert self.control.role is not None
        return self.control.role

    def is_primary(self) -> bool:
        """A call, not a property, so that type checkers do not assume it unchanged across an `await`."""
        return self.role is Role.PRIMARY

    @property
    def epoch(self) -> int:
        return self.control.epoch

    @property
    def journal_epoch(self) -> int:
        """The epoch this replica's journal is vouched at: its epoch, except on a fenced replica, where it stays the
        epoch it carried when it was fenced (see `ControlState`). Standbys copy only from journals vouched at
        their own epoch or above (`Replicator`)."""
        return self.control.epoch if self.control.journal_epoch is None else self.control.journal_epoch

    # --- status -------------------------------------------------------------------------------------------

    def replicated_seq(self) -> int:
        """The highest seq durably held by a standby on another cloud (what synchronous mode waits for)."""
        return max((seq for cloud, seq in self.acks.values() if cloud != self.settings.cloud), default=0)

    def unreplicated_age(self) -> float | None:
        """Seconds since the oldest entry that no standby on another cloud holds was appended (0.0 if none); None
        unless this is a synchronous primary, the only kind that waits for such a copy."""
        if self.role is not Role.PRIMARY or not self.settings.synchronous:
            return None
        held = self.replicated_seq()
        while self.unreplicated and self.unreplicated[0][0] <= held:
            self.unreplicated.popleft()
        return self.monotonic() - self.unreplicated[0][1] if self.unreplicated else 0.0

    def standbys(self) -> dict[str, StandbySeen] | None:
        """On a primary, each standby that fetched as one: its cloud, the seq it holds, and how long ago it asked."""
        if self.role is not Role.PRIMARY:
            return None
        now = self.monotonic()
        return {replica: StandbySeen(cloud=cloud, seq=seq, age_s=now - self.acked_at[replica])
                for replica, (cloud, seq) in sorted(self.acks.items())}

    def primary_contact_age(self) -> float | None:
        if self.role is not Role.STANDBY or self.primary_contact_at is None:
            return None
        return self.monotonic() - self.primary_contact_at

    def status(self) -> StatusBody:
        return {
            "replica": self.settings.replica_id, "role": str(self.role), "epoch": self.epoch,
            "phase": str(self.ledger.phase), "phase_until": self.ledger.phase_until,
            "last_seq": self.journal.last_seq, "applied_seq": self.ledger.applied_seq,
            "journal_epoch": self.journal_epoch,
            "cloud": self.settings.cloud, "synchronous": self.settings.synchronous,
            "following": self.following if self.role is Role.STANDBY else None,
            "replicated_seq": self.replicated_seq() if self.role is Role.PRIMARY else None,
            "error": self.error,
            "unreplicated_age_s": self.unreplicated_age(),
            "replication_timeouts": self.refused[Reason.REPLICATION_TIMEOUT],
            "standbys": self.standbys(),
            "primary_contact_age_s": self.primary_contact_age(),
            "rejoining": self.rejoining,
        }

    def snapshot(self, depth: int = 50) -> dict[str, Any]:
        """`GET /v1/snapshot`: the journal position with its hash, the ledger's hash there, and the books (up to
        `depth` levels a side), all at one instant (no await in between). A rejoining replica checks its replay
        against it (`rejoin`)."""
        return {"replica": self.settings.replica_id, "role": str(self.role), "epoch": self.epoch,
                "journal_epoch": self.journal_epoch, "last_seq": self.journal.last_seq,
                "last_hash": self.journal.last_hash, "phase": str(self.ledger.phase),
                "phase_until": self.ledger.phase_until, "state_hash": self.ledger.state_hash(),
                "book": self.ledger.levels(depth), "at": to_wire_time(self.clock())}

    def stats(self) -> dict[str, Any]:
        by_phase: dict[str, dict[str, dict[str, int]]] = {}
        for (phase, account, reason), count in self.refused_by_phase.items():
            by_phase.setdefault(phase, {}).setdefault(account, {})[reason] = count
        return {"replica": self.settings.replica_id, "accepted": dict(self.accepted),
                "refused": dict(self.refused), "accepted_total": self.accepted.total(),
                "refused_total": self.refused.total(), "refused_by_phase": by_phase}

    def count_refusal(self, account: object, reason: str) -> None:
        """An order refused in the phase it met, by account: whom to compensate after a halt or a protection window.
        Accounts come from clients, so only the first `MAX_NAMED_ACCOUNTS` are named; the rest count as one."""
        name = account if isinstance(account, str) and account else "(none)"
        if name not in self._accounts_named:
            if len(self._accounts_named) >= MAX_NAMED_ACCOUNTS:
                name = "(other)"
            else:
                self._accounts_named.add(name)
        self.refused_by_phase[(str(self.ledger.phase), name, reason)] += 1

    # --- writes (primary) ---------------------------------------------------------------------------------

    def _write(self, kind: str, data: Mapping[str, Any]) -> Entry:
        entry = self.journal.make(to_wire_time(self.clock()), self.epoch, kind, data)
        try:
            self.journal.append([entry])
        except OSError as error:
            self.on_disk_failure(f"journal write failed: {error}")
            raise
        self.ledger.apply(entry)
        self.unreplicated.append((entry.seq, self.monotonic()))
        self.appended.notify()
        return entry

    def _count_held_as_unreplicated(self) -> None:
        """On becoming primary (at start or by promotion), nothing it holds is known to be on another cloud yet:
        count it all from now, until a standby's fetch says otherwise."""
        self.unreplicated.clear()
        if self.journal.last_seq:
            self.unreplicated.append((self.journal.last_seq, self.monotonic()))

    def _writable(self) -> Refusal | None:
        if self.role is Role.FENCED:
            return Refusal(Reason.FENCED)
        if self.role is not Role.PRIMARY:
            return Refusal(Reason.NOT_PRIMARY)
        return None

    def submit(self, kind: str, request: Mapping[str, Any]) -> Outcome:
        """Journal an order, cancel or margin request if the role, the phase and the book allow it."""
        refused = self._writable()
        if refused is not None:
            return refused
        checks: dict[str, Callable[[Mapping[str, Any]], Check]] = {
            "order": self.ledger.check_order, "cancel": self.ledger.check_cancel,
            "margin": self.ledger.check_margin,
        }
        verdict = checks[kind](request)
        if isinstance(verdict, Refusal):
            return verdict
        if isinstance(verdict, Duplicate):
            return Accepted(verdict.seq)
        return Accepted(self._write(kind, request).seq)

    async def wait_replicated(self, seq: int) -> bool:
        """In synchronous mode, wait until a standby on another cloud holds `seq`; False after the timeout."""
        if not self.settings.synchronous:
            return True
        deadline = asyncio.get_running_loop().time() + self.settings.sync_timeout
        while self.replicated_seq() < seq:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await self.acked.wait(remaining)
        return True

    # --- control ------------------------------------------------------------------------------------------

    def see_epoch(self, epoch: int) -> Refusal | None:
        """The epoch rule: refuse one below the highest seen, persist a higher one before acting on it; refuse one
        so far above it that it can only be a mistake or an attack (`MAX_EPOCH_JUMP`, in `protocol`)."""
        if epoch < self.control.epoch:
            return Refusal(Reason.STALE_EPOCH)
        if epoch - self.control.epoch > MAX_EPOCH_JUMP:
            return Refusal(Reason.EPOCH_TOO_FAR)
        if epoch > self.control.epoch:
            self._commit_control(epoch=epoch)
            if self.role is Role.STANDBY:
                log.warning("%s: epoch %d recorded; no primary below it is acknowledged from now on",
                            self.settings.replica_id, epoch)
        return None

    def _commit_control(self, **changes: Any) -> None:
        """Persist a change of epoch or role before it takes effect. A disk that refuses it stops the replica, as
        a failed journal write does: the epoch rule and a fence hold only if they survive a restart."""
        try:
            self.control.commit(**changes)
        except OSError as error:
            self.on_disk_failure(f"control state write failed: {error}")
            raise

    def peer_urls(self) -> tuple[str, ...]:
        """The peers this replica polls: the list the orchestrator last set (`POST /v1/peers`, persisted), else the
        command line's `--standby-of` and `--peer` URLs."""
        if self.control.peers is not None:
            return self.control.peers
        settings = self.settings
        return normalized(([settings.standby_of] if settings.standby_of else []) + list(settings.peers))

    def peers_floor(self) -> int:
        """The lowest epoch a new peer list may carry: the highest epoch seen, or the one that set the list now."""
        return max(self.control.epoch, self.control.peers_epoch)

    def set_peers(self, epoch: int, peers: tuple[str, ...]) -> Refusal | None:
        """`POST /v1/peers`: the epoch checked as by every control call (below `peers_floor`: `stale_epoch`; absurdly
        far above: `epoch_too_far`), then the list persisted with its epoch before it takes effect.

        The epoch is checked, never recorded as this replica's epoch: a peer list is no order to act at that epoch,
        and stamping it on a deposed primary nobody fenced would make it claim the new epoch (a deposed primary is
        fenced, never stamped). Told its new peers at its old epoch, such a primary sees one of them above it on
        its next poll and fences itself. The same list at the same epoch again changes nothing."""
        if epoch < self.peers_floor():
            return Refusal(Reason.STALE_EPOCH)
        if epoch - self.control.epoch > MAX_EPOCH_JUMP:
            return Refusal(Reason.EPOCH_TOO_FAR)
        peers = normalized(peers)
        if (peers, epoch) == (self.control.peers, self.control.peers_epoch):
            return None
        before = self.peer_urls()
        self._commit_control(peers=peers, peers_epoch=epoch)
        log.warning("%s: peers set at epoch %d: %s (were %s)", self.settings.replica_id, epoch, ", ".join(peers),
                    ", ".join(before) or "none")
        return None

    def acknowledges(self, primary_epoch: int) -> bool:
        """Whether this standby may replicate from, and so acknowledge, a primary at `primary_epoch`."""
        return primary_epoch >= self.epoch

    def set_phase(self, phase: Phase, until: str | None) -> Refusal | None:
        """On a primary, journal the phase (unless it is the current one). On a standby, do nothing more: the
        caller has already stamped the epoch through `see_epoch`, which is the whole effect there, since a
        standby's phase is the one in its primary's journal. A fenced replica refuses."""
        if self.role is Role.STANDBY:
            return None
        refused = self._writable()
        if refused is not None:
            return refused
        if (phase, until) != (self.ledger.phase, self.ledger.phase_until):
            self._write("phase", {"phase": str(phase), "until": until})
        return None

    def stamp(self, epoch: int, phase: Phase, until: str | None) -> Refusal | None:
        """`POST /v1/phase`: the epoch rule, then `set_phase`."""
        return self.see_epoch(epoch) or self.set_phase(phase, until)

    def fence_at(self, epoch: int) -> Refusal | None:
        """`POST /v1/fence`: the epoch rule and the fence, persisted in one write of the control state, so that no
        crash can leave the new epoch recorded but the fence not."""
        if epoch < self.control.epoch or epoch - self.control.epoch > MAX_EPOCH_JUMP or self.role is Role.FENCED:
            return self.see_epoch(epoch)
        log.warning("%s: fenced by the orchestrator at epoch %d (was %d); no more writes",
                    self.settings.replica_id, epoch, self.control.epoch)
        self._commit_control(epoch=epoch, role=Role.FENCED, journal_epoch=self.control.epoch)
        return None

    def fence(self, why: str = "fenced by the orchestrator") -> None:
        if self.role is not Role.FENCED:
            log.warning("%s: %s at epoch %d; no more writes", self.settings.replica_id, why, self.epoch)
            self._commit_control(role=Role.FENCED, journal_epoch=self.control.epoch)

    def can_promote(self, force: bool) -> Refusal | None:
        """A fenced replica, or one whose journal diverged from its primary's, becomes primary only by force; one
        whose journal is being rebuilt (`rejoin`), never."""
        if self.rejoining:
            return Refusal(Reason.REJOINING)
        if force:
            return None
        if self.role is Role.FENCED:
            return Refusal(Reason.FENCED)
        if self.error is not None:
            return Refusal(Reason.DIVERGED)
        return None

    def promotion_refused(self, epoch: int, force: bool, was_fenced: bool) -> Refusal | None:
        """A promotion at `epoch` that waited for its peers, decided against the state now: refused if a higher
        epoch arrived meanwhile (whoever sent it is newer than whoever promotes), or if the replica was fenced
        meanwhile (`force` overrides only a fence that was already there when the promotion was asked)."""
        if self.epoch > epoch:
            return Refusal(Reason.STALE_EPOCH)
        if self.rejoining:
            return Refusal(Reason.REJOINING)
        if self.role is Role.FENCED and not (force and was_fenced):
            return Refusal(Reason.FENCED)
        if self.error is not None and not force:
            return Refusal(Reason.DIVERGED)
        return None

    def begin_rejoin(self) -> None:
        """A rejoin starts (`rejoin`): fenced first, persisted, with the journal vouched at the epoch it had, so
        that no write is taken and no peer at a newer epoch copies from a journal being rebuilt."""
        self.rejoining = True
        if self.role is not Role.FENCED:
            log.warning("%s: fenced for a rejoin at epoch %d", self.settings.replica_id, self.epoch)
            self._commit_control(role=Role.FENCED, journal_epoch=self.journal_epoch)

    def keep_only(self, seq: int) -> None:
        """Cut the journal after `seq` (its tail already archived by `rejoin`) and replay the ledger from it."""
        try:
            self.journal.truncate(seq)
        except OSError as error:
            self.on_disk_failure(f"journal rewrite failed: {error}")
            raise
        self.ledger = Ledger(protection_allow=self.settings.protection_allow)
        for entry in self.journal.entries:
            self.ledger.apply(entry)

    def end_rejoin(self) -> None:
        """The rebuilt journal is a prefix of a primary's at an epoch not below ours: a standby again, its journal
        vouched at our epoch, in one write of the control state."""
        self._commit_control(role=Role.STANDBY, journal_epoch=None)
        self.error = None
        self.rejoining = False

    def promote(self) -> None:
        """Become primary; the engine starts halted so that trading resumes only on the orchestrator's word
        (docs/design.md §5: after a failover, `halted` → `protection` → `open`)."""
        if self.role is Role.PRIMARY:
            return
        # `must_halt` with the role, in one write: a crash before the halt below is journaled is finished at the
        # next start (`_finish_promotion`), never leaving a primary open in its old primary's last phase
        self._commit_control(role=Role.PRIMARY, journal_epoch=None, must_halt=True)
        log.warning("%s: promoted to primary at epoch %d, last seq %d", self.settings.replica_id, self.epoch,
                    self.journal.last_seq)
        self.acks.clear()
        self.acked_at.clear()
        self._count_held_as_unreplicated()
        self.following = None
        self._finish_promotion()

    def _finish_promotion(self) -> None:
        """The halt a new primary starts in, journaled; then the promotion is complete."""
        if not self.control.must_halt:
            return
        if self.ledger.phase is not Phase.HALTED:
            self._write("phase", {"phase": str(Phase.HALTED), "until": None})
        self._commit_control(must_halt=False)

    # --- replication ------------------------------------------------------------------------------------------

    def check_fetch(self, replica: str, cloud: str, after: int, after_hash: str) -> Refusal | None:
        """A replicating fetch `after=N`: the fetcher holds 1..N durably. Refuse it (`diverged`) if its entry N
        is not ours; on a primary, count it as that standby's acknowledgement. A standby or fenced replica
        serves fetches too (catch-up) but counts nothing, and one that is simply behind the fetcher has nothing
        to offer yet rather than a quarrel."""
        held = self.journal.hash_at(after)
        if held is None:
            return Refusal(Reason.DIVERGED) if self.role is Role.PRIMARY else None
        if held != after_hash:
            return Refusal(Reason.DIVERGED)
        if self.role is Role.PRIMARY:
            self.acks[replica] = (cloud, after)
            self.acked_at[replica] = self.monotonic()
            self.acked.notify()
        return None

    def receive(self, batch: list[Entry]) -> None:
        """Store and apply entries fetched from the primary; ValueError if they do not chain onto ours."""
        try:
            self.journal.append(batch)
        except OSError as error:
            self.on_disk_failure(f"journal write failed: {error}")
            raise
        for entry in batch:
            self.ledger.apply(entry)
        if batch:
            self.appended.notify()
