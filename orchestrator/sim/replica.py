"""`SimReplica`: one simulated engine replica's own state, and its journal as a view of a shared history.

Journals are shared arrays of entry ids: a replica is a view `(log, n)` of a history, so replicating is an
assignment and checking that one journal is a prefix of another compares one entry (entry ids are unique). Arrays,
not lists: a simulated day is millions of entries, and the garbage collector walks every object a list holds at each
full collection (that walk was a fifth of a ten-engine day's cost); an array holds no objects.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from urllib.parse import urlparse

from orchestrator.core.model import Phase, Replica, ReplicaStatus, Role
from orchestrator.sim.builders import builder
from providers.local import LocalInstance

_status = builder(ReplicaStatus)  # a status per replica per probe round: see builders.py


class SimReplica:
    """One replica's own state: what `GET /v1/status` would answer, and its journal as a view of a history."""

    __slots__ = ("address", "applied", "cloud", "engine", "epoch", "instance", "log", "machine", "n", "name",
                 "phase", "phase_until", "rejoin", "role", "site", "zone")

    def __init__(self, replica: Replica, cloud: str, zone: str, role: Role, machine: LocalInstance) -> None:
        self.name, self.engine, self.site, self.instance = replica.name, replica.engine, replica.site, replica.instance
        self.cloud, self.zone = cloud, zone
        self.machine = machine  # the simulated cloud's record of its instance (state, pending transition)
        self.address = urlparse(replica.control_url).hostname or replica.control_url
        self.role = role
        self.epoch = 0
        self.phase = Phase.OPEN
        self.phase_until: float | None = None
        self.log: array[int] = array("q")  # entry ids; shared with the replicas that hold the same history
        self.n = 0  # last_seq: entries 1..n of `log` are this replica's journal
        self.applied = 0
        self.rejoin: RejoinJob | None = None  # the last rejoin asked of it (`GET /v1/rejoin`), None if never

    def status(self) -> ReplicaStatus:
        return _status(self.name, self.role, self.epoch, self.phase, self.phase_until, self.n, self.applied)


@dataclass(slots=True)
class RejoinJob:
    """A rejoin under way on a replica (docs/rejoin.md, "What happens on the replica"), as the simulator models it:
    the replica is fenced, cuts its journal to the last entry it shares with the primary (`common`; what it held
    beyond is archived, `archived` entries), then copies the primary's journal at the world's `rejoin_rate` after
    `rejoin_setup` seconds (snapshot, binary search, ledger replay), and becomes a standby of that primary once it
    holds everything the primary holds. It copies only while both answer; a primary deposed meanwhile fails it."""

    primary: str
    epoch: int
    started_at: float
    common: int
    archived: int
    copied: float  # the seq copied so far (fractional: the rate is per second, stretches are shorter)
    since: float  # the time `copied` was last brought up to
    state: str = "started"  # started | copying | done | failed
    done_at: float | None = None
    error: str | None = None

    def record(self) -> dict[str, object]:
        """What `GET /v1/rejoin` answers about it."""
        return {"state": self.state, "epoch": self.epoch, "primary": self.primary, "last_seq": int(self.copied),
                "common_seq": self.common, "archived": self.archived, "error": self.error, "tails": []}


def holds(standby: SimReplica, source: SimReplica) -> bool:
    """Whether `standby`'s journal is a prefix of `source`'s (entry ids are unique, so one comparison suffices)."""
    n = standby.n
    return n <= source.n and (n == 0 or standby.log is source.log or source.log[n - 1] == standby.log[n - 1])


def common_prefix(one: SimReplica, other: SimReplica) -> int:
    """The last seq at which both journals hold the same entry (entry ids are unique, and a history forks by copying
    its prefix, so equal at k means equal up to k): a binary search, as the reference replica's rejoin does it."""
    low, high = 0, min(one.n, other.n)
    if one.log is other.log:
        return high
    while low < high:
        middle = (low + high + 1) // 2
        if one.log[middle - 1] == other.log[middle - 1]:
            low = middle
        else:
            high = middle - 1
    return low
