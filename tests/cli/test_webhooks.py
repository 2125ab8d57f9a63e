"""Webhook URLs are credentials: they may come from a file, named in the config, and are never echoed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from orchestrator.config import WebhookConfig
from orchestrator.core.errors import ConfigError
from orchestrator.drivers.events import Event, EventKind
from orchestrator.drivers.webhooks import WebhookNotifier


def test_url_from_a_file_receives_slack_compatible_json(httpserver: HTTPServer, tmp_path: Path) -> None:
    secret = tmp_path / "webhook-url"
    secret.write_text(httpserver.url_for("/T000/B000/XXXX") + "\n")
    httpserver.expect_request("/T000/B000/XXXX", method="POST").respond_with_data("ok")
    notifier = WebhookNotifier([WebhookConfig(url_file=str(secret))])
    notifier.publish(Event(1.0, EventKind.PHASE, "spot", "[spot] HALTED from ...", {"phase": "halted"}))
    notifier.publish(Event(2.0, EventKind.VERDICT, None, "not announced", {}))
    [(request, _)] = httpserver.log
    body = json.loads(request.data)
    assert body["text"] == "[spot] HALTED from ..." and body["engine"] == "spot" and notifier.failures == 0


def test_exactly_one_source_and_a_readable_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of url and url_file"):
        WebhookConfig()
    with pytest.raises(ValueError, match="exactly one"):
        WebhookConfig(url="https://hooks.example/x", url_file="/etc/x")
    with pytest.raises(ConfigError, match="cannot read"):
        WebhookNotifier([WebhookConfig(url_file=str(tmp_path / "missing"))])
    junk = tmp_path / "junk"
    junk.write_text("hunter2")
    with pytest.raises(ConfigError, match="does not hold an http") as caught:
        WebhookNotifier([WebhookConfig(url_file=str(junk))])
    assert "hunter2" not in str(caught.value)


def test_a_failing_webhook_never_raises(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/down", method="POST").respond_with_data("no", status=500)
    notifier = WebhookNotifier([WebhookConfig.model_validate({"url": httpserver.url_for("/down"), "timeout": "1s"})])
    notifier.publish(Event(1.0, EventKind.PAGE, "spot", "NEEDS A HUMAN", {}))
    assert notifier.failures == 1
