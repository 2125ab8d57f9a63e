"""Webhooks: URLs are credentials (from a file, never echoed), and announcements go through the store's outbox, so
that a slow or failing endpoint delays nobody: each attempt has a total deadline, failures are retried with backoff
and counted, and a pass over the outbox never takes longer than its budget."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from orchestrator.config import WebhookConfig
from orchestrator.core.errors import ConfigError
from orchestrator.drivers.events import Event, EventKind
from orchestrator.drivers.outbox import Channel, OutboxNotifier, WebhookSender, channels_from_config
from orchestrator.drivers.webhooks import url_of
from orchestrator.store import open_store
from orchestrator.store.base import StateStore

NOW = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with open_store(f"sqlite:///{tmp_path}/state.db") as opened:
        yield opened


def halted(at: float = NOW) -> Event:
    return Event(at, EventKind.PHASE, "spot", "[spot] HALTED from ...", {"phase": "halted"})


def test_url_from_a_file_receives_slack_compatible_json_with_the_audit_head(
        httpserver: HTTPServer, tmp_path: Path, store: StateStore) -> None:
    secret = tmp_path / "webhook-url"
    secret.write_text(httpserver.url_for("/T000/B000/XXXX") + "\n")
    httpserver.expect_request("/T000/B000/XXXX", method="POST").respond_with_data("ok")
    channels = channels_from_config([WebhookConfig(url_file=str(secret))])
    store.audit("tester", "phase.halt", {"engine": "spot"}, NOW)
    outbox = OutboxNotifier(store, channels)
    outbox.publish(halted())
    outbox.publish(Event(NOW, EventKind.VERDICT, None, "not announced", {}))
    assert httpserver.log == [], "publishing only writes to the outbox"
    stats = WebhookSender(store, channels, notifier=outbox, clock=lambda: NOW).deliver_due(budget=10)
    [(request, _)] = httpserver.log
    body = json.loads(request.data)
    assert body["text"] == "[spot] HALTED from ..." and body["engine"] == "spot"
    assert body["audit_head"] == str(store.audit_head())
    assert (stats.delivered, stats.failed, store.outbox_summary().pending) == (1, 0, 0)


def test_exactly_one_source_and_a_readable_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of url and url_file"):
        WebhookConfig()
    with pytest.raises(ValueError, match="exactly one"):
        WebhookConfig(url="https://hooks.example/x", url_file="/etc/x")
    with pytest.raises(ConfigError, match="cannot read"):
        url_of(WebhookConfig(url_file=str(tmp_path / "missing")))
    junk = tmp_path / "junk"
    junk.write_text("hunter2")
    with pytest.raises(ConfigError, match="does not hold an http") as caught:
        url_of(WebhookConfig(url_file=str(junk)))
    assert "hunter2" not in str(caught.value)


def test_a_failing_webhook_is_retried_with_backoff_then_abandoned(httpserver: HTTPServer, store: StateStore) -> None:
    httpserver.expect_request("/down", method="POST").respond_with_data("no", status=500)
    channels = [Channel("webhook-0", httpserver.url_for("/down"), 1.0, 3)]
    outbox = OutboxNotifier(store, channels)
    outbox.publish(Event(NOW, EventKind.PAGE, "spot", "NEEDS A HUMAN", {}))
    clock = [NOW]
    sender = WebhookSender(store, channels, notifier=outbox, clock=lambda: clock[0])
    assert sender.deliver_due(budget=5).failed == 1
    assert sender.deliver_due(budget=5).failed == 0, "not due again before its backoff"
    clock[0] += 3600
    assert sender.deliver_due(budget=5).failed == 1
    clock[0] += 3600
    assert sender.deliver_due(budget=5).abandoned == 1
    summary = store.outbox_summary()
    assert (summary.pending, summary.abandoned, len(httpserver.log)) == (0, 1, 3)


class DripServer:
    """An HTTP endpoint that reads the request, then answers one byte every `every` seconds: it never trips a
    per-read timeout, and a whole answer takes minutes."""

    def __init__(self, every: float = 0.5, size: int = 400) -> None:
        self.every, self.size = every, size
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {self.size}\r\n\r\n".encode()
            try:
                conn.sendall(head)
                for _ in range(self.size):
                    if self.stop.wait(self.every):
                        return
                    conn.sendall(b"x")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_a_slow_drip_endpoint_cannot_hold_a_pass_past_its_deadline(store: StateStore) -> None:
    """Each read gets a byte within 0.5 s, so a per-read timeout never fires; the attempt's total deadline does."""
    drip = DripServer()
    try:
        channels = [Channel("webhook-0", drip.url, 1.0, 10)]
        outbox = OutboxNotifier(store, channels)
        outbox.publish(halted())
        stats = WebhookSender(store, channels, notifier=outbox).deliver_due(budget=1.0)
    finally:
        drip.close()
    assert stats.failed == 1 and stats.delivered == 0
    [item] = store.notifications("pending", 10)
    assert item.attempts == 1 and "no complete answer within 1s" in (item.last_error or ""), item.last_error
