"""The notification outbox contract, on every backend: notifications wait in the store, a sender claims what is
due, every attempt is recorded, retries are bounded, and two senders never deliver the same notification.

Read it as the sender's runbook: enqueue (the runbook step, in a millisecond), claim what is due, post it, mark
the attempt, back off on failure, give up after `max_attempts`, prune what was delivered."""

from __future__ import annotations

import time

import pytest
from test_store_concurrency import run_together

from orchestrator.errors import StoreError
from orchestrator.store import Conflict, NotFound, StateStore, open_store
from orchestrator.store.outbox import OutboxStatus, OutboxSummary

T0 = 1_671_332_412.0
HALT = {"text": "Trading halted on spot", "incident": "INC-1", "audit_head": "57:" + "ab" * 8}


def test_a_notification_waits_until_it_is_delivered(store: StateStore) -> None:
    first = store.enqueue_notification("slack-ops", HALT, T0)
    second = store.enqueue_notification("pagerduty", {"event": "trigger"}, T0 + 1)
    assert second > first >= 1
    assert store.due_notifications(T0 - 1, 10) == []  # not before it was written
    due = store.due_notifications(T0 + 1, 10)
    assert [(i.id, i.channel, i.status, i.attempts) for i in due] == [
        (first, "slack-ops", OutboxStatus.PENDING, 0), (second, "pagerduty", OutboxStatus.PENDING, 0)]
    assert due[0].body == HALT and due[0].created_at == T0 and due[0].next_attempt_at == T0
    assert [i.id for i in store.due_notifications(T0 + 1, 1)] == [first]  # oldest first, limited
    assert store.outbox_summary() == OutboxSummary(pending=2, abandoned=0, delivered=0, oldest_pending_at=T0)

    done = store.mark_notification(first, delivered=True, at=T0 + 2)
    assert (done.status, done.attempts, done.delivered_at, done.next_attempt_at) == (
        OutboxStatus.DELIVERED, 1, T0 + 2, None)
    assert store.notification(first) == done
    assert [i.id for i in store.due_notifications(T0 + 5, 10)] == [second]
    assert store.outbox_summary() == OutboxSummary(pending=1, abandoned=0, delivered=1, oldest_pending_at=T0 + 1)
    with pytest.raises(Conflict, match="already delivered"):
        store.mark_notification(first, delivered=True, at=T0 + 3)


def test_failed_attempts_back_off_and_are_abandoned_after_the_last(store: StateStore) -> None:
    ident = store.enqueue_notification("slack-ops", HALT, T0, max_attempts=3)
    item = store.mark_notification(ident, delivered=False, at=T0 + 1, error="timed out after 5s",
                                   next_attempt_at=T0 + 10)
    assert (item.status, item.attempts, item.next_attempt_at, item.last_error) == (
        OutboxStatus.PENDING, 1, T0 + 10, "timed out after 5s")
    assert store.due_notifications(T0 + 9, 10) == []  # backing off
    assert [i.id for i in store.due_notifications(T0 + 10, 10)] == [ident]
    store.mark_notification(ident, delivered=False, at=T0 + 10, error="HTTP 502", next_attempt_at=T0 + 30)
    last = store.mark_notification(ident, delivered=False, at=T0 + 30, error="HTTP 502", next_attempt_at=T0 + 90)
    assert (last.status, last.attempts, last.next_attempt_at) == (OutboxStatus.ABANDONED, 3, None)
    assert store.due_notifications(T0 + 1000, 10) == []
    assert store.outbox_summary() == OutboxSummary(pending=0, abandoned=1, delivered=0, oldest_pending_at=None)
    assert [i.id for i in store.notifications(OutboxStatus.ABANDONED)] == [ident]

    hopeless = store.enqueue_notification("teams", {"text": "x"}, T0)
    gone = store.mark_notification(hopeless, delivered=False, at=T0 + 1, error="HTTP 404: no such webhook")
    assert (gone.status, gone.attempts) == (OutboxStatus.ABANDONED, 1)  # no next attempt: give up now


def test_a_claim_keeps_other_senders_away(store: StateStore) -> None:
    ids = [store.enqueue_notification("slack-ops", {"n": n}, T0) for n in range(3)]
    mine = store.claim_notifications(T0 + 1, 2, "sender-a", 60)
    assert [(i.id, i.claimed_by) for i in mine] == [(ids[0], "sender-a"), (ids[1], "sender-a")]
    assert [i.id for i in store.due_notifications(T0 + 1, 10)] == [ids[2]]  # claimed ones are in flight
    theirs = store.claim_notifications(T0 + 1, 10, "sender-b", 60)
    assert [i.id for i in theirs] == [ids[2]]
    assert store.claim_notifications(T0 + 1, 10, "sender-c", 60) == []
    assert store.notification(ids[0]) is not None and store.notification(ids[0]).claimed_by == "sender-a"
    with pytest.raises(Conflict, match="claimed by sender-a"):
        store.mark_notification(ids[0], delivered=True, at=T0 + 2, holder="sender-b")
    failed = store.mark_notification(ids[0], delivered=False, at=T0 + 2, error="HTTP 500", next_attempt_at=T0 + 3,
                                     holder="sender-a")
    assert failed.claimed_by is None  # the claim ends with the attempt: the retry is anyone's
    assert [i.id for i in store.claim_notifications(T0 + 3, 10, "sender-c", 60)] == [ids[0]]
    assert store.outbox_summary().pending == 3  # claimed items are still pending


def test_a_claim_whose_sender_died_expires(store: StateStore) -> None:
    """The sender that claimed it never comes back: after the claim's TTL another sender takes the item."""
    ident = store.enqueue_notification("slack-ops", HALT, time.time())
    assert [i.id for i in store.claim_notifications(time.time(), 10, "dead-sender", 1)] == [ident]
    claimed_at = time.monotonic()
    taken: list[int] = []
    while not taken and time.monotonic() - claimed_at < 20:
        taken = [i.id for i in store.claim_notifications(time.time(), 10, "sender-b", 30)]
        if not taken:
            time.sleep(0.1)
    assert taken == [ident]
    assert time.monotonic() - claimed_at > 0.9, "taken over before the claim's TTL"
    store.mark_notification(ident, delivered=True, at=time.time(), holder="sender-b")
    with pytest.raises(Conflict, match="already delivered"):  # the dead sender's late result does not count
        store.mark_notification(ident, delivered=True, at=time.time(), holder="dead-sender")


def test_pruning_removes_only_old_delivered_notifications(store: StateStore) -> None:
    old, recent, waiting, given_up = (store.enqueue_notification("ops", {"n": n}, T0) for n in range(4))
    store.mark_notification(old, delivered=True, at=T0 + 10)
    store.mark_notification(recent, delivered=True, at=T0 + 100)
    store.mark_notification(given_up, delivered=False, at=T0 + 10, error="HTTP 410")
    assert store.prune_notifications(T0 + 50) == 1
    assert store.notification(old) is None and store.notification(recent) is not None
    assert store.notification(waiting) is not None and store.notification(given_up) is not None
    assert store.prune_notifications(T0 + 50, abandoned=True) == 1
    assert store.notification(given_up) is None
    assert store.prune_notifications(T0 + 1000) == 1 and [i.id for i in store.notifications()] == [waiting]
    assert store.enqueue_notification("ops", {}, T0) > given_up, "ids never come back after a prune"


def test_what_the_outbox_refuses(store: StateStore) -> None:
    with pytest.raises(StoreError, match="secret"):
        store.enqueue_notification("slack-ops", {"text": "x", "token": "xoxb-123"}, T0)
    with pytest.raises(StoreError, match="max_attempts"):
        store.enqueue_notification("slack-ops", {}, T0, max_attempts=0)
    with pytest.raises(StoreError, match="limit"):
        store.due_notifications(T0, 0)
    with pytest.raises(StoreError, match="claim_ttl"):
        store.claim_notifications(T0, 1, "a", 0)
    with pytest.raises(NotFound):
        store.mark_notification(999, delivered=True, at=T0)
    assert store.notifications() == []
    ident = store.enqueue_notification("slack-ops", {}, T0)
    item = store.mark_notification(
        ident, delivered=False, at=T0, next_attempt_at=T0 + 1,
        error="POST https://hooks.slack.com/services/T000/B000/XXXXSECRET failed:\n  read timeout")
    assert item.last_error == "POST <url> failed: read timeout"  # one line, and the webhook's secret path gone
    assert "SECRET" not in str(store.notification(ident))


@pytest.mark.slow
def test_two_sender_processes_deliver_everything_exactly_once(store_url: str) -> None:
    with open_store(store_url) as store:
        ids = [store.enqueue_notification("slack-ops", {"n": n}, time.time()) for n in range(150)]
    summaries = run_together(store_url, "send", ["sender-a", "sender-b"], "-")
    a, b = (set(s["delivered"]) for s in summaries)
    assert len(a) + len(b) == sum(len(s["delivered"]) for s in summaries), "a sender delivered an item twice"
    assert not a & b, f"delivered by both senders: {sorted(a & b)[:10]}"
    assert a | b == set(ids), f"never delivered: {sorted(set(ids) - (a | b))[:10]}"
    assert a and b, "one sender did everything: the test proved nothing"
    with open_store(store_url) as store:
        assert store.outbox_summary() == OutboxSummary(pending=0, abandoned=0, delivered=150,
                                                       oldest_pending_at=None)
        retried = [i for i in store.notifications() if i.attempts == 2]
        assert sorted(i.id for i in retried) == [i for i in ids if i % 5 == 0]
