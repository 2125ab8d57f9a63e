"""`failover check` as cron runs it: one cycle per process, hysteresis carried in the store, one actor at a time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.core.model import Phase, Role
from orchestrator.core.runbook import STEPS
from orchestrator.store import open_store
from orchestrator.store.records import Incident, JournalEntry
from orchestrator.testbed.world import LOADED_PROBE_INTERVAL, LOADED_PROBE_TIMEOUT, LOADED_PROTECTION, Testbed

# A failover by cron runs lasts its protection window plus a few runs; each run is a new Python process that spends
# seconds of CPU importing the cloud SDKs, which a busy machine gives slowly (three at a time in the overlap test):
# a deadline, not a number of runs, bounds the waiting, and pytest's own timeout is set above it.
FAILOVER_DEADLINE = 600.0
pytestmark = [pytest.mark.slow, pytest.mark.timeout(FAILOVER_DEADLINE + 300)]


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Testbed]:
    # provider API polled on every run; probes a loaded machine can keep, and the shortest protection window the
    # configuration accepts with them, so that a failover completes in a few runs
    with Testbed(tmp_path / "bed", protection=LOADED_PROTECTION, probe_interval=LOADED_PROBE_INTERVAL,
                 probe_timeout=LOADED_PROBE_TIMEOUT,
                 extra={"daemon": {"listen": "127.0.0.1:0", "lease_ttl": "5s"}}) as testbed:
        yield testbed


def check(bed: Testbed) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "check", "--output", "json"], env=bed.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_checks(bed: Testbed, parallel: int = 1) -> list[tuple[int, dict[str, object]]]:
    processes = [check(bed) for _ in range(parallel)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert out, err
        results.append((process.returncode, json.loads(out)))
    return results


def incidents_and_journal(bed: Testbed) -> tuple[list[Incident], list[JournalEntry]]:
    with open_store(load_config(bed.config_path).store_url) as store:
        incidents = store.incidents()
        journal = store.journal(incidents[0].id) if incidents else []
    return incidents, journal


def test_healthy_world_exits_0(bed: Testbed) -> None:
    [(code, result)] = run_checks(bed)
    assert (code, result["message"]) == (0, "all healthy")
    assert set(result["verdicts"].values()) == {"healthy"}  # type: ignore[union-attr]


def test_cron_detects_across_runs_then_fails_over_to_the_end(bed: Testbed) -> None:
    run_checks(bed)
    bed.lose_aws()
    first, second = run_checks(bed)[0], run_checks(bed)[0]
    assert first[1]["actions"] == second[1]["actions"] == []  # hysteresis: 3 failed probes are needed
    assert incidents_and_journal(bed)[0] == []
    codes = []
    began = time.monotonic()
    while time.monotonic() - began < FAILOVER_DEADLINE:
        [(code, _result)] = run_checks(bed)
        codes.append(code)
        incidents, _ = incidents_and_journal(bed)
        if incidents and incidents[0].status.value == "closed":
            break
        time.sleep(0.5)  # cron's pace, compressed
    incidents, journal = incidents_and_journal(bed)
    assert [i.status.value for i in incidents] == ["closed"]
    assert codes[0] == 1  # acted
    assert [e.step for e in journal if e.state == "done"][:3] == ["announce", "halt", "fence_old_primary"]
    fenced = next(e for e in journal if e.step == "fence_old_primary" and e.state == "done")
    assert fenced.detail["how"] in ("instance stopped", "unreachable; every other replica carries the new epoch")
    assert bed.replicas is not None
    new = bed.replicas.client().status(bed.replicas.replica("spot-gcp"))
    assert (new.role, new.phase) == (Role.PRIMARY, Phase.OPEN)


def test_three_overlapping_runs_never_act_twice(bed: Testbed) -> None:
    run_checks(bed)
    bed.lose_aws()
    began = time.monotonic()
    while time.monotonic() - began < FAILOVER_DEADLINE:
        results = run_checks(bed, parallel=3)
        incidents, _ = incidents_and_journal(bed)
        assert len(incidents) <= 1
        if incidents and incidents[0].status.value == "closed":
            break
        assert sum(1 for _, r in results if r["actions"]) <= 1  # one leader decides per round
    incidents, journal = incidents_and_journal(bed)
    assert len(incidents) == 1 and incidents[0].status.value == "closed"
    done = [e.step for e in journal if e.state in ("done", "skipped")]
    assert len(done) == len(set(done)) == len(STEPS)  # every step exactly once
    tokens = [e.token for e in journal]
    assert tokens == sorted(tokens)  # a deposed runner never wrote after a newer one
