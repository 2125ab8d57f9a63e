"""Webhook URLs (read from `url_file` when given) and the pre- and post-failover hook commands. Delivering
announcements to the webhooks is the outbox's job (`orchestrator.drivers.outbox`)."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import ConfigError

log = logging.getLogger(__name__)


def url_of(webhook: object) -> str:
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
