"""The notification outbox: webhook posts written to the store, sent later by a background sender.

Why an outbox: a webhook that answers one byte every half second held the runbook, and `failover halt`, for as
long as it liked (issue 11, hole 4). Writing the notification to the store costs a millisecond and cannot hang on
anyone's web server; a sender outside the critical path delivers it, retries it with backoff, and gives up after a
bounded number of attempts, and everything it has not delivered shows in `failover status` and `/metrics`.

How a notification moves:

    enqueue -> pending --claim--> (claimed: in flight) --mark(delivered)--> delivered --prune--> gone
                  ^                        |
                  +---mark(failed, next)---+---mark(failed, no next / attempts used up)--> abandoned

Why claims: two senders (two daemons, or a daemon and a cron run) must not both post the same notification.
`claim_notifications` takes due items atomically for one holder for `claim_ttl` seconds; another sender skips
them until the claim is marked or expires. A claim that expires (its sender died mid-attempt) makes the item due
again, so delivery is at least once: a sender must bound each attempt well inside its claim's TTL (an attempt that
outlives its claim may race a second sender), and a receiver that must not see a message twice dedupes on the
item's id. On etcd a claim is a key on an etcd lease, so it expires on etcd's clock, not on any sender's; on SQLite
and in memory it expires at the claimer's `now + claim_ttl`.

This module holds the records, the pure rule for an attempt's outcome, and the public half of the store interface
(`OutboxStore`, mixed into `StateStore`); each backend implements the hooks.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from orchestrator.errors import StoreError
from orchestrator.store.records import Conflict, check_duration, check_name, check_time, normalise_detail

__all__ = ["DEFAULT_MAX_ATTEMPTS", "OutboxItem", "OutboxStatus", "OutboxStore", "OutboxSummary", "after_attempt"]

DEFAULT_MAX_ATTEMPTS = 8
MAX_ATTEMPTS_LIMIT = 1000
MAX_ERROR_CHARS = 500
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt, or in flight under a claim
    DELIVERED = "delivered"
    ABANDONED = "abandoned"  # attempts used up, or the sender said not to retry: a human should look


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One notification. `next_attempt_at` is set only while pending. `claimed_by` is for display: items returned
    by `claim_notifications` carry the caller's name; other reads name the holder of the claim not yet ended by a
    mark (on etcd only while it lives; SQLite and memory judge expiry against a caller's `now`, which a plain
    read does not have)."""

    id: int
    channel: str
    body: Mapping[str, Any]
    created_at: float
    status: OutboxStatus
    attempts: int
    max_attempts: int
    next_attempt_at: float | None
    last_attempt_at: float | None
    last_error: str | None
    delivered_at: float | None
    claimed_by: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxSummary(Mapping[str, Any]):
    """What `failover status` and `/metrics` show: how much is waiting, how long the oldest has waited, and what
    was given up on. Read it as attributes, or as the mapping `{"pending": n, "abandoned": n, "delivered": n,
    "oldest_pending_at": t | None}`."""

    pending: int
    abandoned: int
    delivered: int
    oldest_pending_at: float | None

    def __getitem__(self, key: str) -> Any:
        if key not in _SUMMARY_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_SUMMARY_FIELDS)

    def __len__(self) -> int:
        return len(_SUMMARY_FIELDS)


_SUMMARY_FIELDS = ("pending", "abandoned", "delivered", "oldest_pending_at")


def after_attempt(
    item: OutboxItem, *, delivered: bool, at: float, error: str | None, next_attempt_at: float | None
) -> OutboxItem:
    """The item after one attempt (pure). Conflict if it is no longer pending."""
    if item.status is not OutboxStatus.PENDING:
        raise Conflict(f"notification {item.id} is already {item.status}: a second attempt was not expected")
    tried = replace(item, attempts=item.attempts + 1, last_attempt_at=at, last_error=error, claimed_by=None)
    if delivered:
        return replace(tried, status=OutboxStatus.DELIVERED, delivered_at=at, next_attempt_at=None)
    if next_attempt_at is None or tried.attempts >= item.max_attempts:
        return replace(tried, status=OutboxStatus.ABANDONED, next_attempt_at=None)
    return replace(tried, next_attempt_at=next_attempt_at)


def clean_error(error: str | None) -> str | None:
    """One line, at most MAX_ERROR_CHARS, URLs replaced by `<url>`: a webhook's URL is a credential (Slack's
    carries its secret in the path) and HTTP clients put it in their error messages."""
    if error is None:
        return None
    if not isinstance(error, str):
        raise StoreError(f"a notification error must be text or None, got {type(error).__name__}")
    one_line = " ".join(_URL.sub("<url>", error).split())
    return one_line[:MAX_ERROR_CHARS]


def _positive_int(value: int, what: str, most: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (most is not None and value > most):
        bound = "" if most is None else f" up to {most}"
        raise StoreError(f"{what} must be a positive integer{bound}, got {value!r}")
    return value


class OutboxStore(abc.ABC):
    """The outbox half of `StateStore`: public methods validate, the backend's hooks store."""

    url: str

    @abc.abstractmethod
    def _open_guard(self) -> None: ...

    def enqueue_notification(
        self, channel: str, body: Mapping[str, Any], at: float, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> int:
        """Store a notification for `channel` (the sender's name for a webhook); returns its id, which only grows.
        The body is JSON and refused (StoreError) if it looks like it holds a secret."""
        self._open_guard()
        channel = check_name(channel, "notification channel")
        clean = normalise_detail(body, f"notification for {channel}")
        at = check_time(at, "notification time")
        return self._insert_notification(channel, clean, at, _positive_int(max_attempts, "max_attempts",
                                                                           MAX_ATTEMPTS_LIMIT))

    def due_notifications(self, now: float, limit: int) -> list[OutboxItem]:
        """Pending notifications whose next attempt time has come and that nobody has claimed, oldest (lowest id)
        first. Reads only: a sender that is not alone uses `claim_notifications`."""
        self._open_guard()
        return self._select_due_notifications(check_time(now, "now"), _positive_int(limit, "limit"))

    def claim_notifications(self, now: float, limit: int, holder: str, claim_ttl: float) -> list[OutboxItem]:
        """Atomically take up to `limit` due notifications (as `due_notifications` would list them) for `holder`,
        for `claim_ttl` seconds: no other holder gets them until they are marked or the claim expires."""
        self._open_guard()
        return self._claim_notifications(check_time(now, "now"), _positive_int(limit, "limit"),
                                         check_name(holder, "claim holder"), check_duration(claim_ttl, "claim_ttl"))

    def mark_notification(
        self,
        item_id: int,
        *,
        delivered: bool,
        at: float,
        error: str | None = None,
        next_attempt_at: float | None = None,
        holder: str | None = None,
    ) -> OutboxItem:
        """Record one attempt: delivered, or failed with `error` and retried at `next_attempt_at` (None: give up).
        A failure on the item's last allowed attempt abandons it too. Ends the item's claim. With `holder`,
        Conflict if another holder's claim is live (ours expired and someone else took the item over: our result
        no longer counts); NotFound for an unknown id; Conflict for an item already delivered or abandoned."""
        self._open_guard()
        if not isinstance(delivered, bool):
            raise StoreError(f"delivered must be True or False, got {delivered!r}")
        at = check_time(at, "attempt time")
        retry = None if next_attempt_at is None else check_time(next_attempt_at, "next_attempt_at")
        note = clean_error(error)
        who = None if holder is None else check_name(holder, "claim holder")

        def change(item: OutboxItem) -> OutboxItem:
            return after_attempt(item, delivered=delivered, at=at, error=note, next_attempt_at=retry)

        return self._update_notification(_positive_int(item_id, "notification id"), change, who, at)

    def notification(self, item_id: int) -> OutboxItem | None:
        """One notification by id, or None."""
        self._open_guard()
        return self._select_notification(_positive_int(item_id, "notification id"))

    def notifications(self, status: OutboxStatus | str | None = None, limit: int | None = None) -> list[OutboxItem]:
        """Notifications oldest first, of one status if given (`failover status` lists the abandoned ones)."""
        self._open_guard()
        try:
            wanted = None if status is None else OutboxStatus(status)
        except ValueError:
            raise StoreError(f"outbox status must be one of {', '.join(OutboxStatus)}, got {status!r}") from None
        return self._select_notifications(wanted, None if limit is None else _positive_int(limit, "limit"))

    def outbox_summary(self) -> OutboxSummary:
        """Counts by status and the creation time of the oldest pending notification."""
        self._open_guard()
        return self._outbox_summary()

    def prune_notifications(self, before: float, *, abandoned: bool = False) -> int:
        """Delete delivered notifications delivered before `before` (and, if asked, abandoned ones last tried
        before it). Returns how many went. Pending ones are never pruned."""
        self._open_guard()
        return self._delete_notifications(check_time(before, "before"), abandoned)

    # --- hooks ----------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _insert_notification(self, channel: str, body: dict[str, Any], at: float, max_attempts: int) -> int:
        """Store a new pending item (attempts 0, next attempt at `at`) with an id greater than every id before;
        return the id. Atomic; two enqueuers never get the same id."""

    @abc.abstractmethod
    def _select_due_notifications(self, now: float, limit: int) -> list[OutboxItem]:
        """Pending items with next_attempt_at <= now and no live claim, by id, at most `limit`."""

    @abc.abstractmethod
    def _claim_notifications(self, now: float, limit: int, holder: str, ttl: float) -> list[OutboxItem]:
        """Atomically per item: what `_select_due_notifications` would return, each claimed for `holder` for `ttl`
        seconds. An item claimed by anyone else meanwhile is skipped, never returned to two holders."""

    @abc.abstractmethod
    def _update_notification(
        self, item_id: int, change: Callable[[OutboxItem], OutboxItem], holder: str | None, now: float
    ) -> OutboxItem:
        """Atomically: NotFound if absent; Conflict if `holder` is given and another holder's claim is live (at
        `now`, the attempt's time, where claims expire on the claimer's clock);
        apply `change` (pure; it raises Conflict for an item no longer pending), store the result, end any claim,
        return it."""

    @abc.abstractmethod
    def _select_notification(self, item_id: int) -> OutboxItem | None:
        """The item with its live claim's holder, or None."""

    @abc.abstractmethod
    def _select_notifications(self, status: OutboxStatus | None, limit: int | None) -> list[OutboxItem]:
        """Items by id, of `status` if given, at most `limit`."""

    @abc.abstractmethod
    def _outbox_summary(self) -> OutboxSummary:
        """Counts by status and the oldest pending created_at, from one consistent read."""

    @abc.abstractmethod
    def _delete_notifications(self, before: float, abandoned: bool) -> int:
        """Delete delivered items with delivered_at < before (and abandoned ones with last_attempt_at < before if
        `abandoned`); return the count."""
