"""Quarantine end to end, through cron runs against the real testbed (moto, the fakes, real replicas): the lost
site is quarantined while it is down, its clock starts when it is healthy again and starts over when it relapses
(the seed's data centre came back and failed again all afternoon); no rejoin goes there meanwhile; `failover
release` ends it by hand, audited."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import load_config
from orchestrator.store import open_store
from orchestrator.testbed.world import LOADED_PROBE_INTERVAL, LOADED_PROBE_TIMEOUT, LOADED_PROTECTION, Testbed

DEADLINE = 600.0  # cron runs on a busy machine: a deadline, not a number of runs
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3 * DEADLINE + 300)]


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Testbed]:
    with Testbed(tmp_path / "bed", protection=LOADED_PROTECTION, probe_interval=LOADED_PROBE_INTERVAL,
                 probe_timeout=LOADED_PROBE_TIMEOUT,
                 extra={"daemon": {"listen": "127.0.0.1:0", "lease_ttl": "5s"}}) as testbed:
        yield testbed


def failover(bed: Testbed, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=bed.env(), capture_output=True,
                          text=True, timeout=300, check=False)


def quarantine(bed: Testbed) -> dict[str, Any] | None:
    answer = failover(bed, "status", "--output", "json")
    found = [q for q in json.loads(answer.stdout)["quarantines"] if q["site"] == "aws-hk"]
    return found[0] if found else None


def open_incident(bed: Testbed) -> bool:
    with open_store(load_config(bed.config_path).store_url) as store:
        return store.open_incident("spot") is not None


def checks_until(bed: Testbed, holds: Any, what: str) -> dict[str, Any]:
    began = time.monotonic()
    while time.monotonic() - began < DEADLINE:
        failover(bed, "check", "--output", "json")
        found = quarantine(bed)
        if found is not None and holds(found):
            return found
        time.sleep(0.3)
    raise AssertionError(f"no cron run saw {what} within {DEADLINE:.0f}s: {quarantine(bed)}")


def test_a_lost_site_is_quarantined_its_clock_restarts_on_a_relapse_and_a_human_can_end_it(bed: Testbed) -> None:
    failover(bed, "check")
    bed.lose_aws()
    down = checks_until(bed, lambda q: q["healthy_since"] is None, "aws-hk quarantined")
    assert down["relapses"] == 0 and down["ends_at"] is None  # no clock while it is down
    bed.restore_aws()
    healthy = checks_until(bed, lambda q: q["healthy_since"] is not None, "aws-hk healthy again")
    assert healthy["ends_at"] == pytest.approx(healthy["healthy_since"] + 7200.0)  # policy.quarantine, 2 h
    closed = time.monotonic()
    while open_incident(bed) and time.monotonic() - closed < DEADLINE:  # the failover's window, then its close
        failover(bed, "check")
        time.sleep(0.3)
    assert not open_incident(bed)
    refused = failover(bed, "rejoin", "spot-aws")  # the old primary, fenced, on the site that failed
    assert refused.returncode == 3 and "quarantine" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    bed.lose_aws()  # the relapse
    relapsed = checks_until(bed, lambda q: q["relapses"] >= 1, "the relapse counted")
    assert relapsed["healthy_since"] is None and relapsed["ends_at"] is None  # the clock starts over
    released = failover(bed, "release", "aws-hk", "--reason", "checked with the provider")
    assert released.returncode == 0, released.stderr
    assert quarantine(bed) is None or quarantine(bed)["ends_at"] is not None
    with open_store(load_config(bed.config_path).store_url) as store:
        audit = [e for e in store.audit_entries() if e.action == "quarantine.release"]
    assert len(audit) == 1 and audit[0].detail["site"] == "aws-hk"
