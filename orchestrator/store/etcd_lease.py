"""Leases on etcd (the leader lock), as patroni's etcd3 leader key, with expiry on etcd's clock alone.

Why no wall clock: hosts in three clouds do not agree on the time (one with broken NTP ran 30 s fast). A lease
whose expiry is a timestamp written by the holder and compared by a reader with its own clock is stolen from a live
holder by a reader whose clock runs ahead (or from a holder whose clock runs behind), and outlives a dead holder
whose clock ran ahead. So the key exists exactly while its etcd lease lives:

- acquiring creates the key only if it is absent (`create_revision == 0`), attached to a new etcd lease of the
  requested TTL (whole seconds, rounded up; etcd raises a TTL below its minimum, about 1.5 election timeouts). The
  fencing token is the key's create revision, which grows with every acquisition because etcd revisions only grow.
  A key that exists is a live lease: its holder's, or nobody else's to take;
- renewing is a compare-and-set on that create revision plus a keepalive of the etcd lease, which restarts its TTL
  on etcd's clock. A renewal that asks for another TTL moves the key to a new etcd lease of that TTL (same key,
  same create revision, so the same token). A lease whose etcd lease ran out is gone, key and all: renewing it is
  LeaseLost, even if nobody took it since;
- a holder that stops renewing (dead, frozen, partitioned) loses the key when etcd expires its lease (etcd checks
  every 500 ms), and the next taker creates it afresh;
- a follower learns of that as it happens by watching the key for its delete (`wait_for_lease_change`), rather
  than by polling once a cycle; taking it over is still the create-if-absent above, so a watch can make a
  successor sooner but never makes one while the old holder's etcd lease lives.

`Lease.expires_at` is for display only: for the holder, its own clock at the grant or renewal plus the TTL; for a
reader, its own clock plus the TTL etcd says is left. Never compare it with another host's clock.
"""

from __future__ import annotations

import math
import threading
import time
import uuid

from orchestrator.errors import LeaseLost
from orchestrator.store import etcd_layout as layout
from orchestrator.store.etcd_client import (
    KV,
    EtcdClient,
    TxnResult,
    created_at,
    delete_op,
    get_op,
    modified_at,
    put_op,
    serialised,
)
from orchestrator.store.records import Conflict, Lease

MAX_ATTEMPTS = 64


def whole_seconds(ttl: float) -> int:
    """etcd counts lease TTLs in whole seconds: round up, never down (a shorter lease could end while the holder,
    timing itself with `ttl`, still acts)."""
    return max(1, math.ceil(ttl))


class EtcdLeases:
    """The lease hooks of EtcdStore, which provides the client, the keys and the lock."""

    keys: layout.Layout
    _etcd: EtcdClient
    _lock: threading.RLock

    @serialised
    def _acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        key = self.keys.lease(name)
        for _ in range(MAX_ATTEMPTS):
            kv = self._etcd.get(key)
            if kv is not None and layout.load_lease(name, kv).holder != holder:
                return None  # the key exists only while its holder's etcd lease lives
            granted = self._etcd.grant(whole_seconds(ttl))
            try:
                expires_at = time.time() + ttl
                value = layout.dump_lease(holder, expires_at, ttl, uuid.uuid4().hex)
                # Absent: create it. Ours: move it to the new etcd lease (a full TTL), keeping its create revision.
                compare = created_at(key, 0) if kv is None else modified_at(key, kv.mod_revision)
                result = self._etcd.commit([compare], [put_op(key, value, lease=granted)], [], (key, value))
                if result.succeeded:
                    granted, token = 0, _token(result, kv)
                    if kv is not None and kv.lease:
                        self._etcd.revoke(kv.lease)  # re-acquired: the old etcd lease backs nothing any more
                    return Lease(name, holder, token, expires_at)
            finally:
                if granted:
                    self._etcd.revoke(granted)
        return None  # lost every race for it: others are taking it right now

    @serialised
    def _renew_lease(self, lease: Lease, ttl: float) -> Lease:
        key = self.keys.lease(lease.name)
        for _ in range(MAX_ATTEMPTS):
            expires_at = time.time() + ttl
            value = layout.dump_lease(lease.holder, expires_at, ttl, uuid.uuid4().hex)
            result = self._etcd.commit(
                [created_at(key, lease.token)],
                [get_op(key), put_op(key, value, ignore_lease=True)],  # the get sees the value before the put
                [get_op(key)],
                (key, value),
            )
            if not result.known:
                continue
            if not result.succeeded:
                raise LeaseLost(self._lost(lease, result.first(0)))
            before = result.first(0) if result.responses is not None else result.confirmed
            if before is None:
                raise LeaseLost(self._lost(lease, None))
            self._keep_alive(lease, before, ttl, expires_at)
            return Lease(lease.name, lease.holder, lease.token, expires_at)
        raise Conflict(f"etcd {self._etcd.names}: lease {lease.name!r}: others kept changing it")

    def _keep_alive(self, lease: Lease, before: KV, ttl: float, expires_at: float) -> None:
        """Restart the etcd lease's TTL; move the key to a new etcd lease if the renewal asks for another TTL."""
        needed = whole_seconds(ttl)
        left = self._etcd.keepalive(before.lease) if before.lease else -1
        if left <= 0:
            raise LeaseLost(f"lease {lease.name!r} (token {lease.token}): its etcd lease has expired")
        asked_before = layout.lease_ttl(before)
        if left >= needed and (asked_before is None or whole_seconds(asked_before) == needed):
            return
        granted, key = self._etcd.grant(needed), self.keys.lease(lease.name)
        for _ in range(MAX_ATTEMPTS):
            value = layout.dump_lease(lease.holder, expires_at, ttl, uuid.uuid4().hex)
            result = self._etcd.commit(
                [created_at(key, lease.token)], [put_op(key, value, lease=granted)], [], (key, value)
            )
            if result.succeeded:
                self._etcd.revoke(before.lease)
                return
            if result.known:
                break
        self._etcd.revoke(granted)
        raise LeaseLost(f"lease {lease.name!r} (token {lease.token}) was lost while moving to a ttl of {ttl:g}s")

    def _lost(self, lease: Lease, kv: KV | None) -> str:
        if kv is None:
            return f"lease {lease.name!r} (token {lease.token}) is no longer held by {lease.holder}: it is gone"
        other = layout.load_lease(lease.name, kv)
        return (f"lease {lease.name!r} (token {lease.token}) is no longer held by {lease.holder}: "
                f"{other.holder} holds it with token {other.token}")

    @serialised
    def _release_lease(self, lease: Lease) -> None:
        key = self.keys.lease(lease.name)
        for _ in range(2):  # an unanswered delete is repeated once; the compare makes that harmless
            result = self._etcd.commit([created_at(key, lease.token)], [get_op(key), delete_op(key)], [])
            if result.known:
                held = result.first(0)
                if result.succeeded and held is not None and held.lease:
                    self._etcd.revoke(held.lease)
                return

    def wait_for_lease_change(self, name: str, timeout: float) -> bool:
        """Block until the lease `name` is free or may have changed hands, or `timeout` seconds pass. True when it
        is free now or its key was deleted meanwhile (expired on etcd's clock, or released); False when its holder
        kept it throughout. Either way the caller only learns when to try `acquire_lease`, which decides.

        Holds the store's lock only for the first read: the watch runs on a connection of its own, so a daemon's
        watching thread never delays its cycle's calls. StoreError when etcd cannot be reached."""
        key = self.keys.lease(name)
        with self._lock:
            kv, revision = self._etcd.read(key)
        if kv is None:
            return True
        return self._etcd.wait_deleted(key, revision, timeout)

    @serialised
    def _select_lease(self, name: str) -> Lease | None:
        kv = self._etcd.get(self.keys.lease(name))
        if kv is None:
            return None
        left = self._etcd.time_to_live(kv.lease) if kv.lease else -1
        if left < 0:
            return None  # its etcd lease ended a moment ago; etcd is deleting the key
        found = layout.load_lease(name, kv)
        return Lease(name, found.holder, found.token, time.time() + left)


def _token(result: TxnResult, kv: KV | None) -> int:
    """The key's create revision after a successful acquisition."""
    if result.confirmed is not None:
        return result.confirmed.create_revision
    return result.revision if kv is None else kv.create_revision
