"""The engine control interface: what the orchestrator may ask of one engine replica (docs/design.md §7).

Two implementations exist: `HttpEngineClient` speaks the HTTP protocol to real replicas (and to the reference
replica in `orchestrator.engine.replica`), and the simulator answers from its simulated world. The drivers only
know this class, so the runbook runs unchanged against either.

Contract for every implementation:
- times are float seconds since the Unix epoch (UTC); the wire format is the implementation's business;
- every mutating call carries an `epoch`; a replica that has seen a higher one raises `StaleEpoch` and changes
  nothing; the same call repeated with the same epoch is harmless, so callers may retry it after a timeout;
- a replica that cannot be reached, or answers nonsense, after the implementation's bounded retries raises
  `EngineError` whose message names the replica and where it was looked for;
- a promotion refused because the replica is behind a peer raises `PromoteRefused` (never retried: the caller
  decides whether to wait, pick another replica, or force).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from orchestrator.core.errors import EngineError, FailoverError
from orchestrator.core.model import Phase, Replica, ReplicaStatus


class PromoteRefused(EngineError):
    """The replica refused to become primary because a reachable peer holds journal entries it lacks.

    Promoting it anyway (``force=True``) would lose those entries, which may include acknowledged orders; the
    fields say by how much so that the runbook can report it to a human.
    """

    def __init__(self, message: str, *, last_seq: int = 0, peer_seq: int = 0, peer: str | None = None) -> None:
        super().__init__(message)
        self.last_seq = last_seq
        self.peer_seq = peer_seq
        self.peer = peer


class EngineControl(ABC):
    """Status and control of engine replicas; one instance serves every replica of every engine."""

    @abstractmethod
    def status(self, replica: Replica) -> ReplicaStatus:
        """The replica's role, epoch, trading phase and journal position, as it reports them now."""

    @abstractmethod
    def set_phase(self, replica: Replica, phase: Phase, until: float | None, epoch: int) -> ReplicaStatus:
        """Put the engine in `phase` (with the end of a protection window in `until`).

        On a primary this sets the trading phase. On a standby it only stamps `epoch` (recorded, and kept across
        restarts): the standby's phase stays the one it mirrors from its primary, and from then on it acknowledges
        no primary whose epoch is lower. That is how an unreachable old primary is fenced: once every standby on
        another cloud carries the new epoch, it cannot acknowledge an order under synchronous replication. A fenced
        replica refuses (`EngineError`, 409 fenced).

        Idempotent: setting the phase it already has (or stamping an epoch already recorded) changes nothing and
        answers the status.
        """

    @abstractmethod
    def promote(self, replica: Replica, epoch: int, *, force: bool = False) -> ReplicaStatus:
        """Make a standby the primary at `epoch`. Without `force`, a replica behind any reachable peer refuses
        with `PromoteRefused`. A newly promoted primary starts `halted`: trading resumes only by `set_phase`.

        Idempotent: promoting the primary again at the same epoch answers its status.
        """

    @abstractmethod
    def fence(self, replica: Replica, epoch: int) -> ReplicaStatus:
        """Stop every write on the replica at once and for good (it survives restarts). Idempotent."""

    # --- rejoin: optional; an engine that cannot rebuild a replica says so -----------------------------------

    def snapshot(self, replica: Replica) -> dict[str, Any]:
        """The replica's journal position (`last_seq`, `last_hash`), its ledger's hash there (`state_hash`), its
        role and epoch. EngineError if this engine offers none."""
        raise EngineError(f"replica {replica.name}: this engine offers no snapshot")

    def rejoin(self, replica: Replica, epoch: int, primary_url: str) -> dict[str, Any]:
        """Start rebuilding a fenced or diverged replica as a standby of the primary at `primary_url`: its
        diverged tail archived (listed in the answer's `tails`), its journal copied and checked by hash chain, a
        standby that acknowledges only once caught up. Answers the rejoin's record (`state`: started, copying,
        done, failed). Idempotent: the same call again answers the record. EngineError if unsupported."""
        raise EngineError(f"replica {replica.name}: this engine cannot rejoin a replica")

    def rejoin_status(self, replica: Replica) -> dict[str, Any]:
        """The last rejoin's record on the replica (state `none` if it never rejoined)."""
        raise EngineError(f"replica {replica.name}: this engine cannot rejoin a replica")

    # --- peers: optional; an engine whose replicas read their peers only from their own configuration says so ----

    def set_peers(self, replica: Replica, epoch: int, peers: Sequence[str]) -> dict[str, Any]:
        """Tell `replica` where the engine's other replicas run now (`peers`: their control URLs), replacing what
        it was started with; kept across its restarts, used at once to find its primary, to catch up and to check
        a promotion. The epoch rule: `StaleEpoch` below the highest epoch it has seen or the one that set its list;
        the epoch is checked, not recorded. Answers the list now (`peers`, `source`, `peers_epoch`). Idempotent.
        EngineError if this engine offers no such call (its operator updates the replicas' configuration)."""
        raise EngineError(f"replica {replica.name}: this engine cannot be told its peers at run time")


def answering(engines: EngineControl, replicas: Iterable[Replica]) -> dict[str, ReplicaStatus]:
    """The status of each replica that answers, by name; one that does not is left out (the callers decide what an
    absent replica means: not fenced yet, not a rejoin host, nothing to halt)."""
    found = {}
    for replica in replicas:
        try:
            found[replica.name] = engines.status(replica)
        except FailoverError:
            continue
    return found
