"""Notifications off the critical path: written to the store as an outbox, delivered by a background sender.

A webhook endpoint that answers one byte every half second never trips a per-read timeout; when announcements
were posted synchronously between runbook steps, such an endpoint stalled the failover and `failover halt` hung
after halting the engine. Now publishing only writes the announcement to the store (one small write); a sender
delivers it later with a total deadline per attempt (cancelled, not merely timed out between reads), retries with
backoff, and gives up after `max_attempts`, leaving the item counted as abandoned for `failover status` and
`/metrics`. No runbook step and no operator command waits on a webhook: the daemon runs the sender on its own
thread; a cron run or an operator command gives it a bounded moment after its own work is done and printed.

Every notification carries the audit log's head (`SEQ:HASH`) at the time it was written, so the chat history
itself anchors the audit chain against a quiet rewrite.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from orchestrator.core.errors import FailoverError, StoreError
from orchestrator.drivers.events import Event, EventKind, Notifier
from orchestrator.drivers.webhooks import url_of
from orchestrator.store.base import StateStore
from orchestrator.store.outbox import OutboxItem

log = logging.getLogger(__name__)

ANNOUNCED = frozenset({EventKind.PHASE, EventKind.PAGE, EventKind.INCIDENT})
RETRY_BASE = 2.0
RETRY_MAX = 300.0
CLAIM_TTL = 60.0  # a sender that died mid-delivery releases its items after this long


@dataclass(frozen=True, slots=True)
class Channel:
    """One webhook: where to post, how long one attempt may take in total, how many attempts before giving up.
    The URL is never logged: a Slack incoming-webhook URL is itself a credential."""

    name: str
    url: str
    deadline: float
    max_attempts: int


def channels_from_config(webhooks: Sequence[object]) -> list[Channel]:
    return [Channel(f"webhook-{position}", url_of(webhook), float(getattr(webhook, "timeout", 5.0)),
                    int(getattr(webhook, "max_attempts", 10)))
            for position, webhook in enumerate(webhooks)]


def notification_body(event: Event, audit_head: str) -> dict[str, Any]:
    """Slack-compatible (`text`), with the event's fields for machines."""
    return {"text": event.message, "event": event.kind.value, "engine": event.engine, "at": event.at,
            "detail": dict(event.detail), "audit_head": audit_head}


class OutboxNotifier(Notifier):
    """Writes each announcement to the store's outbox, once per channel. Never raises and never waits on a
    webhook; if the store cannot take the write, the announcement is delivered straight from memory by the
    sender (a page must not be lost because the store is having a bad moment)."""

    def __init__(self, store: StateStore | None, channels: Sequence[Channel],
                 kinds: frozenset[EventKind] = ANNOUNCED) -> None:
        self.store = store
        self.channels = list(channels)
        self.kinds = kinds
        self.unstored: list[tuple[Channel, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def publish(self, event: Event) -> None:
        if event.kind not in self.kinds or not self.channels:
            return
        try:
            head = self.store.audit_head() if self.store is not None else None
            anchor = str(head) if head is not None else ""
        except FailoverError:
            anchor = ""
        body = notification_body(event, anchor)
        for channel in self.channels:
            try:
                if self.store is None:
                    raise StoreError("no store")
                self.store.enqueue_notification(channel.name, body, event.at, max_attempts=channel.max_attempts)
            except FailoverError as error:
                log.warning("outbox: %s not stored (%s); will post from memory", channel.name, type(error).__name__)
                with self._lock:
                    self.unstored.append((channel, body))

    def take_unstored(self) -> list[tuple[Channel, dict[str, Any]]]:
        with self._lock:
            taken, self.unstored = self.unstored, []
        return taken


@dataclass
class SendStats:
    delivered: int = 0
    failed: int = 0
    abandoned: int = 0


class WebhookSender:
    """Delivers what the outbox holds. `deliver_due` is one bounded pass; `start` runs passes on a thread."""

    def __init__(self, store: StateStore | None, channels: Sequence[Channel], *,
                 notifier: OutboxNotifier | None = None,
                 identity: str = "sender", clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.channels = {channel.name: channel for channel in channels}
        self.notifier = notifier
        self.identity = identity
        self.clock = clock
        self.stats = SendStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- one pass ----------------------------------------------------------------------------------------------

    def deliver_due(self, budget: float, limit: int = 50) -> SendStats:
        """Post every due item (claimed, so two senders never post the same one), each attempt bounded by its
        channel's deadline and the whole pass by `budget` seconds."""
        stats = SendStats()
        if not self.channels:
            return stats
        unstored = self.notifier.take_unstored() if self.notifier is not None else []
        try:
            items = [] if self.store is None else self.store.claim_notifications(self.clock(), limit, self.identity,
                                                                                 CLAIM_TTL)
        except FailoverError as failure:
            log.warning("outbox: cannot read (%s)", type(failure).__name__)
            items = []
        jobs = [(item, self.channels.get(item.channel)) for item in items]
        results = asyncio.run(self._post_all([(c, dict(item.body)) for item, c in jobs if c is not None]
                                             + [(c, body) for c, body in unstored], budget))
        for (item, channel), error in zip(jobs, results[: len(jobs)], strict=False):
            self._settle(item, channel, error, stats)
        for (channel, _), error in zip(unstored, results[len(jobs):], strict=True):
            if error is None:
                stats.delivered += 1
            else:
                stats.abandoned += 1
                log.warning("outbox: %s lost an unstored notification: %s", channel.name, error)
        self.stats.delivered += stats.delivered
        self.stats.failed += stats.failed
        self.stats.abandoned += stats.abandoned
        return stats

    def _settle(self, item: OutboxItem, channel: Channel | None, error: str | None, stats: SendStats) -> None:
        now = self.clock()
        if channel is None:
            error, retry_at = "no such channel in this configuration", None
        elif error is None:
            retry_at = None
        else:
            attempts = item.attempts + 1
            retry_at = (now + min(RETRY_MAX, RETRY_BASE * 2 ** (attempts - 1))
                        if attempts < item.max_attempts else None)
        try:
            assert self.store is not None  # an item came from it
            self.store.mark_notification(item.id, delivered=error is None, at=now, error=error,
                                         next_attempt_at=retry_at, holder=self.identity)
        except FailoverError as failure:
            log.warning("outbox: cannot record delivery of %s (%s)", item.id, type(failure).__name__)
        if error is None:
            stats.delivered += 1
        elif retry_at is None:
            stats.abandoned += 1
        else:
            stats.failed += 1

    async def _post_all(self, jobs: list[tuple[Channel, dict[str, Any]]], budget: float) -> list[str | None]:
        if not jobs:
            return []
        async with httpx.AsyncClient() as client:
            tasks = [asyncio.create_task(self._post(client, channel, body, budget)) for channel, body in jobs]
            return list(await asyncio.gather(*tasks))

    @staticmethod
    async def _post(client: httpx.AsyncClient, channel: Channel, body: dict[str, Any], budget: float) \
            -> str | None:
        """One attempt; the deadline covers connecting, sending and every byte of the answer."""
        deadline = max(0.05, min(channel.deadline, budget, CLAIM_TTL / 2))
        try:
            response = await asyncio.wait_for(client.post(channel.url, json=body, timeout=deadline), deadline)
            response.raise_for_status()
        except TimeoutError:
            return f"no complete answer within {deadline:g}s"
        except httpx.HTTPStatusError as error:
            return f"answered {error.response.status_code}"
        except httpx.HTTPError as error:
            return type(error).__name__
        return None

    # ---- in the background -------------------------------------------------------------------------------------

    def start(self, every: float = 1.0) -> None:
        """Run passes on a daemon thread until `stop` (the daemon's sender)."""
        if self._thread is not None or not self.channels:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.deliver_due(budget=max(channel.deadline for channel in self.channels.values()))
                except Exception as error:  # the sender must outlive any one bad pass
                    log.warning("outbox: pass failed: %s", type(error).__name__)
                self._stop.wait(every)

        self._thread = threading.Thread(target=run, name="webhook-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def storeless(webhooks: Sequence[object], budget: float = 2.0) -> OutboxNotifier:
    """Announcements for a command that must work without the store (`failover halt` with the store down): held
    in memory and posted once, within `budget` seconds in all, when the process exits."""
    channels = channels_from_config(webhooks)
    notifier = OutboxNotifier(None, channels)
    sender = WebhookSender(None, channels, notifier=notifier)
    atexit.register(sender.deliver_due, budget)
    return notifier


class FlushingOutbox(OutboxNotifier):
    """For a one-shot command that holds the store only briefly (`failover halt`): each announcement is queued in
    the outbox, then given one delivery pass of at most `budget` seconds; whatever the webhook does, the command
    goes on, and the next cron run or the daemon delivers what is left."""

    def __init__(self, store: StateStore, channels: Sequence[Channel], budget: float = 2.0) -> None:
        super().__init__(store, channels)
        self.sender = WebhookSender(store, channels, notifier=self)
        self.budget = budget

    def publish(self, event: Event) -> None:
        super().publish(event)
        if event.kind in self.kinds and self.channels:
            self.sender.deliver_due(self.budget)
