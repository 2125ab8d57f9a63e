"""The outbox on etcd (see outbox.py for the contract, etcd_layout.py for the keys).

Why a claim is a key on an etcd lease: claims must expire even when their sender dies, and several hosts with
their own clocks decide whether a claim is live. A claim key attached to an etcd lease of `claim_ttl` seconds
exists exactly while the lease lives, on etcd's clock; nobody compares wall clocks. (etcd rounds a TTL up to whole
seconds and to its minimum, about 1.5 election timeouts.)

Why one transaction per claim call with a nested transaction per item: each item is claimed only if its claim key
does not exist and the item is unchanged since it was read (`create_revision == 0`, `mod_revision` equal), and
one item lost to another sender must not cost the others. The nested transactions succeed or fail one by one in
one round trip. All the items of one call share one etcd lease.

Why an item lives under its status's directory: the sender scans only the pending directory, which stays small
however many delivered items wait for pruning.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from orchestrator.errors import StoreError
from orchestrator.store import etcd_layout as layout
from orchestrator.store.etcd_client import (
    KV,
    EtcdClient,
    TxnResult,
    created_at,
    delete_op,
    get_op,
    modified_at,
    prefix_end,
    put_op,
    range_body,
    serialised,
    txn_op,
)
from orchestrator.store.outbox import OutboxItem, OutboxStatus, OutboxStore, OutboxSummary
from orchestrator.store.records import Conflict, NotFound, strict_json

MAX_ATTEMPTS = 64  # compare-and-set rounds before a hook gives up with Conflict
MAX_OPS = 100  # items per transaction, under etcd's default of 128 operations


class EtcdOutbox(OutboxStore):
    """The outbox hooks of EtcdStore, which provides the client, the keys and the lock."""

    url: str
    keys: layout.Layout
    _etcd: EtcdClient
    _lock: threading.RLock

    def _outbox_gave_up(self, what: str) -> Conflict:
        return Conflict(f"etcd {self._etcd.names}: {what}: other writers kept changing it ({MAX_ATTEMPTS} attempts)")

    @serialised
    def _insert_notification(self, channel: str, body: dict[str, Any], at: float, max_attempts: int) -> int:
        seq_key = self.keys.outbox_seq
        kv = self._etcd.get(seq_key)
        for _ in range(MAX_ATTEMPTS):
            ident = (_load_seq(kv) if kv else 0) + 1
            item = OutboxItem(ident, channel, body, at, OutboxStatus.PENDING, 0, max_attempts, at, None, None, None)
            key, value = self.keys.outbox_item(item.status, ident), dump_item(item)
            result = self._etcd.commit(
                [modified_at(seq_key, kv.mod_revision if kv else 0), created_at(key, 0)],
                [put_op(seq_key, layout.dump({"id": ident})), put_op(key, value)], [get_op(seq_key)], (key, value))
            if result.succeeded:
                return ident
            kv = result.first(0) if result.known else self._etcd.get(seq_key)
        raise self._outbox_gave_up("notification ids")

    def _pending(self) -> tuple[list[tuple[KV, OutboxItem]], dict[int, str], int]:
        """Pending items (by id) and live claims (id -> holder), read at one revision, and that revision."""
        _, revision = self._etcd.read(self.keys.outbox_seq)
        directory = self.keys.outbox_dir(OutboxStatus.PENDING)
        items = [(kv, load_item(kv)) for kv in self._etcd.scan(directory, prefix_end(directory), revision=revision)]
        claims = {claim_id(self.keys, kv): claim_holder(kv)
                  for kv in self._etcd.scan(self.keys.outbox_claims, prefix_end(self.keys.outbox_claims),
                                            revision=revision)}
        return items, claims, revision

    @staticmethod
    def _due(items: Iterable[tuple[KV, OutboxItem]], claims: dict[int, str], now: float,
             limit: int) -> list[tuple[KV, OutboxItem]]:
        due = [(kv, item) for kv, item in items if item.next_attempt_at is not None
               and item.next_attempt_at <= now and item.id not in claims]
        return due[:limit]

    @serialised
    def _select_due_notifications(self, now: float, limit: int) -> list[OutboxItem]:
        items, claims, _ = self._pending()
        return [item for _, item in self._due(items, claims, now, limit)]

    @serialised
    def _claim_notifications(self, now: float, limit: int, holder: str, ttl: float) -> list[OutboxItem]:
        items, claims, _ = self._pending()
        due = self._due(items, claims, now, min(limit, MAX_OPS))
        if not due:
            return []
        lease, nonce = self._etcd.grant(math.ceil(ttl)), uuid.uuid4().hex
        value = layout.dump({"holder": holder, "ttl": ttl, "w": nonce})
        ops = [txn_op([created_at(self.keys.outbox_claim(item.id), 0), modified_at(kv.key, kv.mod_revision)],
                      [put_op(self.keys.outbox_claim(item.id), value, lease=lease)]) for kv, item in due]
        result = self._etcd.commit([], ops, [])
        won = self._claimed(result, [item for _, item in due], value)
        if not won:
            self._etcd.revoke(lease)
        return [replace(item, claimed_by=holder) for item in won]

    def _claimed(self, result: TxnResult, items: list[OutboxItem], value: bytes) -> list[OutboxItem]:
        """The items whose nested transaction succeeded; if the answer was lost, those whose claim key holds this
        call's unique value."""
        if result.responses is not None:
            return [item for item, answer in zip(items, result.responses, strict=True)
                    if answer.get("response_txn", {}).get("succeeded")]
        ours = {claim_id(self.keys, kv) for kv in self._etcd.scan(self.keys.outbox_claims,
                                                                  prefix_end(self.keys.outbox_claims))
                if kv.value == value}
        return [item for item in items if item.id in ours]

    def _locate(self, item_id: int) -> tuple[KV | None, KV | None]:
        """The item's key (whichever status holds it) and its claim key, from one consistent read."""
        statuses = list(OutboxStatus)
        gets = [get_op(self.keys.outbox_item(status, item_id)) for status in statuses]
        for _ in range(MAX_ATTEMPTS):
            result = self._etcd.commit([], [*gets, get_op(self.keys.outbox_claim(item_id))], [])
            if result.known:
                found = [result.first(index) for index in range(len(statuses))]
                return next((kv for kv in found if kv is not None), None), result.first(len(statuses))
        raise self._outbox_gave_up(f"notification {item_id}")

    @serialised
    def _update_notification(
        self, item_id: int, change: Callable[[OutboxItem], OutboxItem], holder: str | None, now: float
    ) -> OutboxItem:
        claim_key = self.keys.outbox_claim(item_id)
        for _ in range(MAX_ATTEMPTS):
            kv, claim = self._locate(item_id)
            if kv is None:
                raise NotFound(f"no notification {item_id} in {self.url}")
            other = None if claim is None else claim_holder(claim)
            if holder is not None and other not in (None, holder):
                raise Conflict(f"notification {item_id} is claimed by {other}, not {holder}")
            new = change(replace(load_item(kv), claimed_by=other))
            key, value = self.keys.outbox_item(new.status, item_id), dump_item(new)
            success = ([] if key == kv.key else [delete_op(kv.key)]) + [put_op(key, value), delete_op(claim_key)]
            claim_unchanged = modified_at(claim_key, claim.mod_revision if claim else 0)
            result = self._etcd.commit([modified_at(kv.key, kv.mod_revision), claim_unchanged], success, [],
                                       (key, value))
            if result.succeeded:
                return new
        raise self._outbox_gave_up(f"notification {item_id}")

    @serialised
    def _select_notification(self, item_id: int) -> OutboxItem | None:
        kv, claim = self._locate(item_id)
        if kv is None:
            return None
        return replace(load_item(kv), claimed_by=None if claim is None else claim_holder(claim))

    @serialised
    def _select_notifications(self, status: OutboxStatus | None, limit: int | None) -> list[OutboxItem]:
        _, revision = self._etcd.read(self.keys.outbox_seq)
        found: list[OutboxItem] = []
        for each in [status] if status is not None else list(OutboxStatus):
            directory = self.keys.outbox_dir(each)
            found.extend(load_item(kv) for kv in self._etcd.scan(directory, prefix_end(directory), revision=revision))
        claims = {claim_id(self.keys, kv): claim_holder(kv)
                  for kv in self._etcd.scan(self.keys.outbox_claims, prefix_end(self.keys.outbox_claims),
                                            revision=revision)}
        found.sort(key=lambda item: item.id)
        chosen = found if limit is None else found[:limit]
        return [replace(item, claimed_by=claims.get(item.id)) for item in chosen]

    @serialised
    def _outbox_summary(self) -> OutboxSummary:
        items, _, revision = self._pending()
        counts = [self._count(self.keys.outbox_dir(status), revision)
                  for status in (OutboxStatus.ABANDONED, OutboxStatus.DELIVERED)]
        return OutboxSummary(len(items), counts[0], counts[1], min((i.created_at for _, i in items), default=None))

    def _count(self, directory: bytes, revision: int) -> int:
        body = range_body(directory, prefix_end(directory), count_only=True, revision=revision)
        return int(self._etcd.call("kv/range", body, write=False).get("count", 0))

    @serialised
    def _delete_notifications(self, before: float, abandoned: bool) -> int:
        doomed: list[bytes] = []
        for status in [OutboxStatus.DELIVERED] + ([OutboxStatus.ABANDONED] if abandoned else []):
            directory = self.keys.outbox_dir(status)
            for kv in self._etcd.scan(directory, prefix_end(directory)):
                item = load_item(kv)
                when = item.delivered_at if status is OutboxStatus.DELIVERED else item.last_attempt_at
                if when is not None and when < before:
                    doomed.append(kv.key)
        for start in range(0, len(doomed), MAX_OPS):  # items no longer change: deleting twice is harmless
            part = doomed[start : start + MAX_OPS]
            for _ in range(MAX_ATTEMPTS):
                if self._etcd.commit([], [delete_op(key) for key in part], []).known:
                    break
        return len(doomed)


# --- values ---------------------------------------------------------------------------------------------------------


def dump_item(item: OutboxItem) -> bytes:
    """The item's JSON; `w` makes every write unique, so that a write whose answer was lost can be recognised."""
    return layout.dump({
        "id": item.id, "channel": item.channel, "body": dict(item.body), "created_at": item.created_at,
        "status": item.status, "attempts": item.attempts, "max_attempts": item.max_attempts,
        "next_attempt_at": item.next_attempt_at, "last_attempt_at": item.last_attempt_at,
        "last_error": item.last_error, "delivered_at": item.delivered_at, "w": uuid.uuid4().hex,
    })


def load_item(kv: KV) -> OutboxItem:
    where = kv.key.decode(errors="replace")
    try:
        doc = strict_json(kv.value)
        return OutboxItem(
            int(doc["id"]), str(doc["channel"]), dict(doc["body"]), float(doc["created_at"]),
            OutboxStatus(doc["status"]), int(doc["attempts"]), int(doc["max_attempts"]),
            _optional(doc["next_attempt_at"]), _optional(doc["last_attempt_at"]),
            None if doc["last_error"] is None else str(doc["last_error"]), _optional(doc["delivered_at"]),
        )
    except (ValueError, TypeError, KeyError) as error:
        raise StoreError(f"etcd key {where}: corrupt notification: {error}") from None


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def _load_seq(kv: KV) -> int:
    seq = layout.load(kv, "outbox sequence").get("id")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise StoreError(f"etcd key {kv.key.decode(errors='replace')}: corrupt outbox sequence")
    return seq


def claim_id(keys: layout.Layout, kv: KV) -> int:
    return int(kv.key[len(keys.outbox_claims) :])


def claim_holder(kv: KV) -> str:
    return str(layout.load(kv, "outbox claim").get("holder"))
