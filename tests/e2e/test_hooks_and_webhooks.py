"""Notifications and hooks: Slack-compatible webhooks carry the phase announcements (UTC and display time);
a failing pre-failover hook aborts before anything changes; post-failover hooks get the context."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pytest_httpserver import HTTPServer

from orchestrator.core.model import Phase, Role
from orchestrator.testbed.world import Testbed


def execute(bed: Testbed) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "execute", "--target", "spot-gcp", "--yes"],
                          env=bed.env(), capture_output=True, text=True, timeout=120, check=False)


def configure(bed: Testbed, notifications: dict[str, object]) -> None:
    bed.extra["notifications"] = {"stdout": True, **notifications}
    bed.write_config()


def test_webhooks_and_post_hook_see_the_failover(bed: Testbed, httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    out = tmp_path / "post-hook.txt"
    configure(bed, {"webhooks": [{"url": httpserver.url_for("/hook")}],
                    "post_failover": [f'echo "$FAILOVER_ENGINE $FAILOVER_SOURCE $FAILOVER_TARGET" > {out}']})
    result = execute(bed)
    assert result.returncode == 0, result.stderr
    bodies = [json.loads(request.data) for request, _ in httpserver.log]
    texts = [b["text"] for b in bodies]
    assert all(set(b) >= {"text", "event", "engine", "at"} for b in bodies)
    protection = next(t for t in texts if "PROTECTION from" in t)
    assert " UTC (" in protection and "UTC+08:00)" in protection  # both UTC and the display zone
    assert any("HALTED from" in t for t in texts) and any("OPEN from" in t for t in texts)
    assert out.read_text().split() == ["spot", "spot-aws", "spot-gcp"]


def test_failing_pre_hook_aborts_before_anything_changes(bed: Testbed) -> None:
    configure(bed, {"pre_failover": ["echo change freeze in force >&2; exit 7"]})
    result = execute(bed)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "needs_human" in result.stdout
    assert bed.replicas is not None
    client = bed.replicas.client()
    old = client.status(bed.replicas.replica("spot-aws"))
    assert (old.role, old.phase) == (Role.PRIMARY, Phase.OPEN)  # trading untouched: the hook ran first
    assert client.status(bed.replicas.replica("spot-gcp")).role is Role.STANDBY
