"""How the etcd store lays observations out: pure functions, no I/O (the store does the reads and writes).

Why batches and not one key per observation: a cycle writes hundreds or thousands of observations and the write
must be atomic, while an etcd transaction holds at most 128 operations (`--max-txn-ops`). So a batch becomes a few
JSON documents, one per 10-second time bucket it touches, all put in one transaction:

    <prefix>/obs/<bucket, 12 digits>/<batch uuid>  ->  [[at, subject, source, status, detail], ...]

- a time range is a key range: everything at or after `since` lives in buckets >= bucket(since);
- insertion order is the document's create revision (etcd revisions are global and only grow), then the position
  in the document; a pruned document is rewritten in place, which keeps its create revision;
- pruning deletes whole buckets with one range delete and rewrites only the documents of the one bucket that
  straddles the cutoff.

`latest_observations` must find the last N observations of every (subject, source) pair without reading the whole
retention window. One small document lists the pairs with the first and last bucket holding each of them:

    <prefix>/obs-pairs  ->  {"pairs": [[subject, source, first_bucket, last_bucket], ...], "w": nonce}

Reading buckets newest first, the scan stops once every pair has N rows or has passed its first bucket. The
document changes only when a new pair appears, a pair reaches a new bucket, or a prune runs; every batch compares
its revision, so a batch and a prune never disagree about which pairs exist.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import StoreError
from orchestrator.store.base import ObservationRow
from orchestrator.store.etcd_client import KV
from orchestrator.store.records import canonical_json

BUCKET_SECONDS = 10
MAX_DOCS_PER_WRITE = 100  # leaves room under etcd's default 128 operations per transaction
MAX_WRITE_BYTES = 1_400_000  # etcd refuses requests over 1.5 MiB (--max-request-bytes); keep room for the rest

Pair = tuple[str, str]
Spans = dict[Pair, tuple[int, int]]  # pair -> (first bucket, last bucket) holding its rows
SortKey = tuple[float, int, int]  # (at, create revision of the document, position in it)


def bucket_of(at: float) -> int:
    return math.floor(at / BUCKET_SECONDS)


def bucket_key(directory: bytes, bucket: int) -> bytes:
    """The prefix of every document of `bucket`; also the start of the key range from that bucket on."""
    return directory + f"{bucket:012d}/".encode()


def bucket_of_key(directory: bytes, key: bytes) -> int:
    return int(key[len(directory) : len(directory) + 12])


def split_batch(rows: Sequence[ObservationRow]) -> dict[int, list[ObservationRow]]:
    """The batch's rows per bucket, each list in batch order. StoreError if it spans too many buckets to be
    written in one transaction (a cycle's batch spans one or two)."""
    buckets: dict[int, list[ObservationRow]] = {}
    for row in rows:
        buckets.setdefault(bucket_of(row[0]), []).append(row)
    if len(buckets) > MAX_DOCS_PER_WRITE:
        span = (max(buckets) - min(buckets) + 1) * BUCKET_SECONDS
        raise StoreError(
            f"an observation batch spanning {span}s ({len(buckets)} buckets of {BUCKET_SECONDS}s) cannot be stored "
            f"atomically in etcd; write at most {MAX_DOCS_PER_WRITE} buckets per batch"
        )
    return buckets


def check_size(docs: Sequence[tuple[bytes, bytes]], count: int) -> None:
    """StoreError, before sending, for a batch etcd would refuse as too large (about 20,000 observations)."""
    size = sum(len(key) + len(value) for key, value in docs)
    if size > MAX_WRITE_BYTES:
        raise StoreError(
            f"an observation batch of {count} observations is {size / 1e6:.1f} MB; etcd takes at most "
            f"{MAX_WRITE_BYTES / 1e6:.1f} MB per transaction: write smaller batches"
        )


def spans_of(rows: Iterable[ObservationRow]) -> Spans:
    spans: Spans = {}
    for at, subject, source, _, _ in rows:
        bucket = bucket_of(at)
        first, last = spans.get((subject, source), (bucket, bucket))
        spans[(subject, source)] = (min(first, bucket), max(last, bucket))
    return spans


def encode_rows(rows: Sequence[ObservationRow]) -> bytes:
    return canonical_json([list(row) for row in rows]).encode()


def decode_rows(kv: KV) -> list[ObservationRow]:
    """A document's rows; StoreError naming the key if it is not what this module writes."""
    try:
        loaded = json.loads(kv.value)
        rows = [(float(at), str(subject), str(source), str(status), str(detail))
                for at, subject, source, status, detail in loaded]
    except (ValueError, TypeError) as error:
        raise StoreError(f"etcd key {kv.key.decode(errors='replace')}: corrupt observation document: {error}") from None
    return rows


# --- the pairs document -------------------------------------------------------------------------------------------


def decode_pairs(kv: KV | None) -> Spans:
    if kv is None:
        return {}
    try:
        loaded = json.loads(kv.value)
        return {(str(s), str(src)): (int(first), int(last)) for s, src, first, last in loaded["pairs"]}
    except (ValueError, TypeError, KeyError) as error:
        raise StoreError(f"etcd key {kv.key.decode(errors='replace')}: corrupt pairs document: {error}") from None


def encode_pairs(spans: Spans, nonce: str) -> bytes:
    """`nonce` makes every write of the document unique, so that a write whose answer was lost can be recognised."""
    pairs = [[subject, source, first, last] for (subject, source), (first, last) in sorted(spans.items())]
    return canonical_json({"pairs": pairs, "w": nonce}).encode()


def merge_spans(known: Spans, batch: Spans) -> Spans | None:
    """The pairs document after a batch, or None if the batch changes nothing (the common case)."""
    merged = dict(known)
    for pair, (first, last) in batch.items():
        old = known.get(pair)
        merged[pair] = (first, last) if old is None else (min(old[0], first), max(old[1], last))
    return None if merged == known else merged


def prune_spans(known: Spans, bucket: int, kept_in_bucket: set[Pair]) -> Spans:
    """The pairs document after deleting every row before some time inside `bucket`: pairs whose rows all went
    disappear, the others start at `bucket` at the earliest."""
    pruned: Spans = {}
    for pair, (first, last) in known.items():
        if last < bucket or (last == bucket and pair not in kept_in_bucket):
            continue
        pruned[pair] = (max(first, bucket), last)
    return pruned


# --- reading ------------------------------------------------------------------------------------------------------


def ordered_rows(kvs: Iterable[KV], keep: Any = None) -> list[tuple[SortKey, ObservationRow]]:
    """Rows of the documents with their sort key, filtered by `keep(row)` if given, in time-then-insertion order."""
    found = [
        ((row[0], kv.create_revision, position), row)
        for kv in kvs
        for position, row in enumerate(decode_rows(kv))
        if keep is None or keep(row)
    ]
    found.sort(key=lambda item: item[0])
    return found


@dataclass
class LatestScan:
    """Collects the newest `limit` rows of every pair from documents fed newest bucket first.

    `done` turns true when no older document can change the answer: every known pair has `limit` rows from the
    buckets already complete, or all of its rows (its first bucket has been passed).
    """

    limit: int
    since: float | None
    spans: Mapping[Pair, tuple[int, int]]
    rows: dict[Pair, list[tuple[SortKey, ObservationRow]]] = field(default_factory=dict)
    _bucket: int | None = None
    done: bool = False

    def feed(self, directory: bytes, kv: KV) -> None:
        bucket = bucket_of_key(directory, kv.key)
        if self._bucket is not None and bucket < self._bucket:
            self.done = self._complete(self._bucket)
            if self.done:
                return
        self._bucket = bucket
        for sort_key, row in ordered_rows([kv], self._keep):
            self.rows.setdefault((row[1], row[2]), []).append((sort_key, row))

    def _keep(self, row: ObservationRow) -> bool:
        return self.since is None or row[0] >= self.since

    def _complete(self, oldest_read: int) -> bool:
        if not self.spans:
            return False  # no pairs document: nothing tells us where to stop
        for pair, (first, _) in self.spans.items():
            if first < oldest_read and len(self.rows.get(pair, ())) < self.limit:
                return False
        return True

    def result(self) -> list[ObservationRow]:
        newest: list[tuple[SortKey, ObservationRow]] = []
        for found in self.rows.values():
            found.sort(key=lambda item: item[0])
            newest.extend(found[-self.limit :])
        newest.sort(key=lambda item: item[0])
        return [row for _, row in newest]
