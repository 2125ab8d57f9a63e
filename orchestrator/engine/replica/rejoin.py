"""Rebuilding a fenced or diverged replica as a standby of the current primary (`POST /v1/rejoin`).

Why a procedure of its own: a deposed primary's journal may hold a tail nobody acknowledged (it kept journaling
while no standby would copy it), and a diverged standby's journal is not a prefix of its primary's; neither may
ever follow again as it is (`replication`), and wiping the data directory by hand loses the only record of the
orders in that tail. Here the tail is archived durably first, then cut, and the journal is refilled from the
primary, each step checked:

1. *Snapshot*: `GET /v1/snapshot` of the named primary gives its journal position (seq and hash) and the hash of
   its ledger there (`Ledger.state_hash`). It must answer as primary at an epoch not below ours (the epoch rules of
   `replication`: a standby copies only from journals vouched at its own epoch or above).
2. *Common history*: entries are hash-chained, so entry k equal means 1..k equal; a binary search over single
   journal entries finds the last one both hold (log2 n requests).
3. *Archive*: what we hold beyond it is written to `DATA/archive/tail-after-<seq>-<hash>.jsonl` (fsync'd, renamed,
   directory fsync'd) and listed in `DATA/rejoin.json` with each order's `client_order_id` and account; only then
   is the journal cut (`Journal.truncate`, atomic too) and the ledger replayed from what is left.
4. *Copy*: plain journal reads (no `replica`, so they acknowledge nothing: the primary does not count us as a
   standby yet), chain-checked by `Node.receive`. At the snapshot's seq our hash must be its hash and our ledger's
   hash its ledger's hash. The copy goes on until a read returns less than a page: caught up.
5. *Finish*: the primary's status is read again (still primary, still not below our epoch), then role standby
   and the journal vouched at our epoch again, in one write of the control state. From then on the replicator
   follows the primary with acknowledging fetches: synchronous replication counts us only from here.

While it runs the replica is fenced (a role persisted before the first step): it takes no write, is never
promoted (`Reason.REJOINING`, even with force), and its journal stays vouched at the epoch it had, so no peer at
the current epoch copies from a journal being rebuilt. The epoch rule holds as in `Replicator.fetch_once`: a page
that arrives after our epoch rose above the primary's last reported epoch is dropped and the primary asked again.

Resumable: `rejoin.json` is written before the fence, after the archive and at the end. A replica killed at any
point finds it on start and runs the procedure again from step 1: the archive is idempotent (same file name for
the same tail), a journal already cut is a prefix of the primary's (nothing to archive), a copy resumes from the
last entry fsync'd. A primary that dies meanwhile is waited for (with backoff); one that answers but is no longer
primary, or is below our epoch, ends the rejoin `failed`: the orchestrator rejoins to the new primary.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orchestrator.core.model import Role
from orchestrator.engine.protocol import JOURNAL, SNAPSHOT, STATUS, to_wire_time
from orchestrator.engine.replica.journal import Entry, write_atomically
from orchestrator.engine.replica.node import Node

log = logging.getLogger("orchestrator.engine.replica")

RECORD_FILE = "rejoin.json"
ARCHIVE_DIR = "archive"
PAGE = 500  # entries per journal read while copying: as a standby's fetch, so the primary never stalls longer
MAX_LISTED = 1000  # archived entries listed in the record (all are archived and counted)
SUMMARY_KEYS = ("client_order_id", "account", "market", "side", "type", "price", "qty", "post_only", "tif",
                "amount", "request_id", "phase")
ACTIVE = ("started", "copying")


class Retry(Exception):
    """The primary did not answer (or answered 5xx): wait and run the procedure again."""


class Failed(Exception):
    """The rejoin cannot succeed against this primary; it ends `failed` with this message."""


def summarize(entry: Entry) -> dict[str, Any]:
    """What support needs to find the client and the order (the shape of `drivers.reconcile.summarize`)."""
    return {"seq": entry.seq, "at": entry.at, "epoch": entry.epoch, "kind": entry.kind,
            **{key: entry.data[key] for key in SUMMARY_KEYS if key in entry.data}}


@dataclass
class RejoinRecord:
    """`DATA/rejoin.json`: the rejoin asked for, how far it got, and every tail archived on this data directory."""

    epoch: int
    primary: str
    state: str = "started"  # started | copying | done | failed
    started_at: str = ""
    finished_at: str | None = None
    common_seq: int | None = None
    snapshot_seq: int | None = None
    error: str | None = None
    tails: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "primary": self.primary, "state": self.state, "started_at": self.started_at,
                "finished_at": self.finished_at, "common_seq": self.common_seq, "snapshot_seq": self.snapshot_seq,
                "error": self.error, "tails": self.tails}

    @classmethod
    def load(cls, path: Path) -> RejoinRecord | None:
        """The record, or None if there is none; a record that does not parse is kept aside (renamed) and the
        replica starts as if none existed: it is fenced, so an operator rejoins it again."""
        if not path.exists():
            return None
        try:
            body = json.loads(path.read_bytes())
            return cls(epoch=int(body["epoch"]), primary=str(body["primary"]), state=str(body["state"]),
                       started_at=str(body.get("started_at", "")), finished_at=body.get("finished_at"),
                       common_seq=body.get("common_seq"), snapshot_seq=body.get("snapshot_seq"),
                       error=body.get("error"), tails=list(body.get("tails") or []))
        except (ValueError, KeyError, TypeError) as error:
            aside = path.with_name(path.name + ".corrupt")
            path.replace(aside)
            log.error("%s: not a rejoin record (%s); moved to %s", path, error, aside)
            return None

    def save(self, path: Path) -> None:
        write_atomically(path, json.dumps(self.to_json(), sort_keys=True).encode())


def archive_tail(data_dir: Path, common: int, tail: list[Entry], now: str) -> dict[str, Any]:
    """Write `tail` (the entries after seq `common`) to its archive file, durably, unless it is already there, and
    describe it. The file name depends only on the tail, so a rejoin run again after a crash finds its archive."""
    directory = data_dir / ARCHIVE_DIR
    directory.mkdir(exist_ok=True)
    path = directory / f"tail-after-{common}-{tail[0].hash[:16]}.jsonl"
    if not path.exists():
        lines = "".join(json.dumps(entry.to_wire(), sort_keys=True, separators=(",", ":")) + "\n" for entry in tail)
        write_atomically(path, lines.encode("ascii"))
    orders = [entry for entry in tail if entry.kind != "phase"]
    return {"file": f"{ARCHIVE_DIR}/{path.name}", "common_seq": common, "count": len(tail), "orders": len(orders),
            "archived_at": now, "entries": [summarize(entry) for entry in tail[:MAX_LISTED]]}


class Rejoiner:
    """Runs the procedure of the module's docstring on the replica's event loop; one at a time."""

    def __init__(self, node: Node, client: httpx.AsyncClient, *, retry: float = 0.5,
                 follow: Any = None) -> None:
        self.node = node
        self.client = client
        self.retry = retry
        self.follow = follow  # called with the primary's URL once rejoined (the replicator learns of it)
        self.path = node.settings.data_dir / RECORD_FILE
        self.record = RejoinRecord.load(self.path)
        self.task: asyncio.Task[None] | None = None
        self.primary_epoch = 0
        self.target_seq: int | None = None

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.node.settings.token}"}

    # --- control ------------------------------------------------------------------------------------------

    def active(self) -> bool:
        return self.record is not None and self.record.state in ACTIVE

    def resume(self) -> None:
        """At start: a rejoin that a crash interrupted runs again from its first step."""
        if self.record is not None and self.active():
            log.warning("%s: resuming the rejoin to %s at epoch %d", self.node.settings.replica_id,
                        self.record.primary, self.record.epoch)
            self._launch()
        elif self.record is not None and self.record.state == "done" and self.follow is not None:
            self.follow(self.record.primary)

    def start(self, epoch: int, primary: str) -> dict[str, Any]:
        """`POST /v1/rejoin` once the epoch rule passed and the replica is not primary (the caller holds the control
        lock). The same call again answers the record: one running (or done) to the same primary at the same
        epoch is not started over."""
        record = self.record
        if record is not None and (record.epoch, record.primary) == (epoch, primary) and \
                (record.state in ACTIVE or (record.state == "done" and self.node.role is Role.STANDBY)):
            return self.to_wire()
        if self.task is not None:
            self.task.cancel()
        self.record = RejoinRecord(epoch, primary, started_at=to_wire_time(self.node.clock()),
                                   tails=list(record.tails) if record is not None else [])
        self.record.save(self.path)
        self._launch()
        return self.to_wire()

    def _launch(self) -> None:
        assert self.record is not None
        self.node.begin_rejoin()
        self.task = asyncio.create_task(self._run(self.record))

    def to_wire(self) -> dict[str, Any]:
        """`GET /v1/rejoin`: the record, with how far the copy is."""
        body: dict[str, Any] = {"replica": self.node.settings.replica_id, "role": str(self.node.role),
                                "last_seq": self.node.journal.last_seq, "target_seq": self.target_seq}
        if self.record is None:
            return {**body, "state": "none", "tails": []}
        return {**body, **self.record.to_json()}

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    # --- the procedure --------------------------------------------------------------------------------------

    async def _run(self, record: RejoinRecord) -> None:
        delay = self.retry
        while True:
            try:
                await self._attempt(record)
                return
            except Retry as error:
                record.error = str(error)
                log.warning("%s: rejoin waits for %s: %s", self.node.settings.replica_id, record.primary, error)
            except Failed as error:
                self._end(record, "failed", str(error))
                log.error("%s: rejoin to %s failed: %s", self.node.settings.replica_id, record.primary, error)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _end(self, record: RejoinRecord, state: str, error: str | None) -> None:
        record.state, record.error, record.finished_at = state, error, to_wire_time(self.node.clock())
        record.save(self.path)
        self.node.rejoining = False

    async def _attempt(self, record: RejoinRecord) -> None:
        snapshot = await self._snapshot(record)
        common = await self._common(record.primary, int(snapshot["last_seq"]))
        tail = self.node.journal.entries[common:]
        if tail:
            found = archive_tail(self.node.settings.data_dir, common, tail, to_wire_time(self.node.clock()))
            if all(known.get("file") != found["file"] for known in record.tails):
                record.tails.append(found)
            log.warning("%s: archived %d entries after seq %d in %s before rejoining", self.node.settings.replica_id,
                        len(tail), common, found["file"])
        if record.common_seq is None:
            record.common_seq = common
        record.snapshot_seq, record.state, record.error = int(snapshot["last_seq"]), "copying", None
        record.save(self.path)  # the archive is listed before anything is cut
        if tail:
            self.node.keep_only(common)
        await self._copy(record.primary, snapshot)
        await self._finish(record)

    async def _get(self, url: str, params: dict[str, Any] | None = None) -> Any:
        try:
            response = await self.client.get(url, params=params, headers=self._auth, timeout=10.0)
            body = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise Retry(f"{url}: {type(error).__name__}") from None
        if response.status_code >= 500:
            raise Retry(f"{url} answered {response.status_code}")
        if response.status_code != 200:
            reason = body.get("reason") if isinstance(body, dict) else None
            raise Failed(f"{url} refused with {response.status_code} {reason}")
        return body

    def _check_primary(self, body: Any, primary: str) -> None:
        """The source answers as primary at an epoch not below ours (our floor: see `replication`)."""
        if not isinstance(body, dict) or body.get("role") != Role.PRIMARY:
            raise Failed(f"{primary} is not primary now ({body.get('role') if isinstance(body, dict) else body})")
        epoch = body.get("epoch")
        if not isinstance(epoch, int) or epoch < self.node.epoch:
            raise Failed(f"{primary} is primary at epoch {epoch}, below ours ({self.node.epoch}): deposed")
        self.primary_epoch = epoch

    async def _snapshot(self, record: RejoinRecord) -> dict[str, Any]:
        body = await self._get(record.primary + SNAPSHOT)
        self._check_primary(body, record.primary)
        if not isinstance(body.get("last_seq"), int) or not isinstance(body.get("state_hash"), str):
            raise Failed(f"{record.primary}: malformed snapshot")
        self.target_seq = int(body["last_seq"])
        return dict(body)

    async def _hash_at(self, primary: str, seq: int) -> str:
        page = await self._get(primary + JOURNAL, {"after": seq - 1, "limit": 1})
        if not isinstance(page, list) or len(page) != 1 or not isinstance(page[0], dict):
            raise Retry(f"{primary} did not return its entry {seq}")
        return str(page[0].get("hash"))

    async def _common(self, primary: str, their_last: int) -> int:
        """The last seq both journals hold with the same hash: a binary search, since equal at k means equal
        before k."""
        journal = self.node.journal
        high = min(journal.last_seq, their_last)
        if high == 0 or await self._hash_at(primary, high) == journal.hash_at(high):
            return high
        low = 0  # equal (the genesis); `high` differs
        while high - low > 1:
            middle = (low + high) // 2
            if await self._hash_at(primary, middle) == journal.hash_at(middle):
                low = middle
            else:
                high = middle
        return low

    def _check_snapshot(self, snapshot: dict[str, Any]) -> None:
        seq = int(snapshot["last_seq"])
        if self.node.journal.hash_at(seq) != snapshot.get("last_hash"):
            raise Failed(f"our entry {seq} is not the primary's snapshot entry")
        if self.node.ledger.state_hash() != snapshot["state_hash"]:
            raise Failed(f"the primary's journal replayed to seq {seq} does not give its snapshot's book")

    async def _copy(self, primary: str, snapshot: dict[str, Any]) -> None:
        """Plain reads (they acknowledge nothing) until caught up; checked at the snapshot's seq."""
        node, target = self.node, int(snapshot["last_seq"])
        checked = False
        while True:
            last = node.journal.last_seq
            if last == target and not checked:
                self._check_snapshot(snapshot)
                checked = True
            limit = PAGE if last >= target else min(PAGE, target - last)
            if node.epoch > self.primary_epoch:  # our floor rose: is the primary still at or above it?
                self._check_primary(await self._get(primary + STATUS), primary)
            sent_at = node.epoch
            page = await self._get(primary + JOURNAL, {"after": last, "limit": limit})
            if node.epoch != sent_at and node.epoch > self.primary_epoch:
                continue  # it may have written these after it was deposed: ask again under the new epoch
            if not isinstance(page, list):
                raise Retry(f"{primary}: the journal is not a list")
            if not page and last < target:  # never once fsync'd; a restarted primary is asked for a new snapshot
                raise Retry(f"{primary}'s journal ends at {last}, before its snapshot's seq {target}")
            try:
                node.receive([Entry.from_wire(item) for item in page])
            except ValueError as error:
                raise Failed(f"{primary}'s entries do not chain onto ours: {error}") from None
            if node.journal.last_seq > target:
                self.target_seq = node.journal.last_seq
            if checked and len(page) < limit:
                return

    async def _finish(self, record: RejoinRecord) -> None:
        self._check_primary(await self._get(record.primary + STATUS), record.primary)
        async with self.node.control_lock:
            if self.node.epoch > self.primary_epoch:
                raise Retry("our epoch rose above the primary's while finishing")
            self.node.end_rejoin()
        self._end(record, "done", None)
        if self.follow is not None:
            self.follow(record.primary)
        log.warning("%s: rejoined as a standby of %s at seq %d", self.node.settings.replica_id, record.primary,
                    self.node.journal.last_seq)
