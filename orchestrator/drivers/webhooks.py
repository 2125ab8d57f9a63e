"""Announcements to webhooks (Slack-compatible JSON) and the pre- and post-failover hook commands."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from orchestrator.core.errors import ConfigError
from orchestrator.drivers.events import Event, EventKind, Notifier

log = logging.getLogger(__name__)

ANNOUNCED = frozenset({EventKind.PHASE, EventKind.PAGE, EventKind.INCIDENT})


class WebhookNotifier(Notifier):
    """Posts `{"text": ...}` (what Slack, Mattermost and most chat tools accept) for phase changes and pages.

    A webhook that fails is logged and skipped: a chat outage must never stop a failover. URLs are never logged,
    because a Slack incoming-webhook URL is itself a credential.
    """

    def __init__(self, webhooks: Sequence[object], kinds: frozenset[EventKind] = ANNOUNCED) -> None:
        self._targets = [(_url_of(w), float(getattr(w, "timeout", 5.0))) for w in webhooks]
        self._kinds = kinds
        self._http = httpx.Client()
        self.failures = 0

    def publish(self, event: Event) -> None:
        if event.kind not in self._kinds:
            return
        body = {"text": event.message, "event": event.kind.value, "engine": event.engine, "at": event.at,
                "detail": dict(event.detail)}
        for position, (url, timeout) in enumerate(self._targets):
            try:
                self._http.post(url, json=body, timeout=timeout).raise_for_status()
            except httpx.HTTPError as error:
                self.failures += 1
                log.warning("webhook #%d failed: %s", position, type(error).__name__)


def _url_of(webhook: object) -> str:
    """The webhook's URL, read from `url_file` when given (a ConfigError naming the file, never its content)."""
    url_file = getattr(webhook, "url_file", None)
    if url_file:
        try:
            url = Path(url_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(f"notifications.webhooks.url_file {url_file}: cannot read: {error.strerror}") from None
        if not url.startswith(("https://", "http://")):
            raise ConfigError(f"notifications.webhooks.url_file {url_file}: does not hold an http(s) URL")
        return url
    return str(getattr(webhook, "url", None) or webhook)


@dataclass(frozen=True, slots=True)
class HookResult:
    command: str
    returncode: int
    output: str


def run_hooks(commands: Sequence[str], context: Mapping[str, str], *, timeout: float = 60.0) -> list[HookResult]:
    """Run each command with the failover's context as FAILOVER_* environment variables; stop at the first
    failure (a pre-failover hook that fails aborts the failover)."""
    env = {**os.environ, **{f"FAILOVER_{key.upper()}": value for key, value in context.items()}}
    results = []
    for command in commands:
        try:
            done = subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=timeout,
                                  check=False)
            result = HookResult(command, done.returncode, (done.stdout + done.stderr)[-2000:])
        except subprocess.TimeoutExpired:
            result = HookResult(command, 124, f"timed out after {timeout:g}s")
        results.append(result)
        if result.returncode != 0:
            break
    return results
