"""Arrival order on etcd (see arrivals.py): a sequence number per observation batch, and heartbeats.

Why a sequence and not revisions alone: observation documents are keyed by the time bucket of their writer's clock
(etcd_obs.py), so "what arrived after revision R" is no key range: a skewed writer's batch lands in any bucket.
Each batch therefore also takes the next number of `<p>/obs-seq` (compare-and-set, in the batch's own transaction)
and writes `<p>/obs-arr/<seq>`, naming its batch id and buckets: a key range in arrival order. A cursor is
`seq * POSITION + rows of that batch already read` (POSITION - 1: all of it), so a reader can stop inside a batch.

Pruning deletes arrival entries from the oldest while every bucket they name is gone; an entry that outlives its
documents (a writer far behind or ahead) is skipped by readers and deleted by a later prune.

Heartbeats are one key per writer; the key's mod_revision is the arrival marker etcd gives every write.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from orchestrator.errors import StoreError
from orchestrator.store import etcd_layout as layout
from orchestrator.store import etcd_obs as obs
from orchestrator.store.arrivals import ArrivalStore
from orchestrator.store.etcd_client import KV, EtcdClient, get_op, prefix_end, put_op, serialised
from orchestrator.store.records import Heartbeat, ObservationRow, strict_json

POSITION = 1 << 20  # rows a batch may hold (an etcd transaction of 1.4 MB holds about 40,000)
DOCS_PER_READ = 90  # documents fetched per transaction, under etcd's 128 operations
MAX_ATTEMPTS = 8


def encode_arrival(batch: bytes, buckets: Iterable[int]) -> bytes:
    return layout.dump({"batch": batch.decode(), "buckets": sorted(buckets)})


def decode_arrival(kv: KV) -> tuple[bytes, list[int]]:
    try:
        doc = json.loads(kv.value)
        return str(doc["batch"]).encode(), [int(bucket) for bucket in doc["buckets"]]
    except (ValueError, TypeError, KeyError) as error:
        raise StoreError(f"etcd key {kv.key.decode(errors='replace')}: corrupt arrival entry: {error}") from None


def decode_seq(kv: KV | None) -> tuple[int, int]:
    """The last batch number and the key's mod revision ((0, 0): no batch yet)."""
    if kv is None:
        return 0, 0
    seq = layout.load(kv, "observation sequence").get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise StoreError(f"etcd key {kv.key.decode(errors='replace')}: corrupt observation sequence")
    return seq, kv.mod_revision


class EtcdArrivals(ArrivalStore):
    """The arrival hooks of EtcdStore, which provides the client, the keys and the lock."""

    keys: layout.Layout
    _etcd: EtcdClient
    _lock: threading.RLock

    def _entries(self, seq: int) -> Iterator[tuple[int, list[bytes]]]:
        """(batch number, its document keys) from batch `seq` on, in arrival order."""
        start = self.keys.obs_arrival(max(seq, 1))
        for kv in self._etcd.scan(start, self.keys.obs_arrivals_end):
            batch, buckets = decode_arrival(kv)
            number = int(kv.key[len(self.keys.obs_arrivals) :])
            yield number, [obs.bucket_key(self.keys.obs, bucket) + batch for bucket in buckets]

    def _documents(self, keys: list[bytes]) -> dict[bytes, KV]:
        """The documents that still exist among `keys`, from one consistent read."""
        for _ in range(MAX_ATTEMPTS):
            result = self._etcd.commit([], [get_op(key) for key in keys], [])
            if result.known:
                return {kv.key: kv for index in range(len(keys)) if (kv := result.first(index)) is not None}
        raise StoreError(f"etcd {self._etcd.names}: observation documents could not be read")

    @serialised
    def _select_observations_after(self, cursor: int, limit: int) -> tuple[list[ObservationRow], int]:
        first, skip = divmod(cursor, POSITION)
        rows: list[ObservationRow] = []
        after = cursor
        group: list[tuple[int, list[bytes]]] = []
        entries = self._entries(first + 1 if skip == POSITION - 1 else first)  # batch `first` read to its end
        while True:
            entry = next(entries, None)
            if entry is not None:
                group.append(entry)
                if sum(len(keys) for _, keys in group) < DOCS_PER_READ:
                    continue
            if not group:
                return rows, after
            found = self._documents([key for _, keys in group for key in keys])
            for seq, keys in group:
                batch = [row for key in keys if key in found for row in obs.decode_rows(found[key])]
                offset = skip if seq == first else 0
                taken = batch[offset : offset + limit - len(rows)]
                rows.extend(taken)
                done = offset + len(taken) >= len(batch)
                after = max(after, seq * POSITION + (POSITION - 1 if done else offset + len(taken)))
                if len(rows) >= limit:
                    return rows, after
            group = []
            if entry is None:
                return rows, after

    @serialised
    def _observations_end(self) -> int:
        seq, _ = decode_seq(self._etcd.get(self.keys.obs_seq))
        return seq * POSITION + (POSITION - 1) if seq else 0

    @serialised
    def _put_heartbeat(self, identity: str, wall: float, detail: dict[str, Any]) -> None:
        value = layout.dump({"wall": wall, "detail": detail})
        for _ in range(MAX_ATTEMPTS):  # a plain put: repeating one whose answer was lost is harmless
            if self._etcd.commit([], [put_op(self.keys.heartbeat(identity), value)], []).known:
                return
        raise StoreError(f"etcd {self._etcd.names}: the heartbeat of {identity} got no answer")

    @serialised
    def _select_heartbeats(self) -> list[Heartbeat]:
        directory = self.keys.heartbeats
        return [_heartbeat(directory, kv) for kv in self._etcd.scan(directory, prefix_end(directory))]


def _heartbeat(directory: bytes, kv: KV) -> Heartbeat:
    identity = kv.key[len(directory) :].decode(errors="replace")
    try:
        doc = strict_json(kv.value)
        wall, detail = doc["wall"], doc["detail"]
        if isinstance(wall, bool) or not isinstance(wall, int | float) or not isinstance(detail, dict):
            raise TypeError("wall must be a number and detail an object")
    except (ValueError, TypeError, KeyError) as error:
        raise StoreError(f"etcd key {kv.key.decode(errors='replace')}: corrupt heartbeat: {error}") from None
    return Heartbeat(identity, float(wall), detail, kv.mod_revision)
