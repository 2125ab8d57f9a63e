"""Killed at each runbook step in turn (failpoints), a restarted `failover execute` resumes from the journal and
ends in the same state as an uninterrupted run: the engine issue's acceptance."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.core.model import Phase, Role
from orchestrator.core.runbook import STEPS, Step
from orchestrator.store import open_store
from orchestrator.testbed.world import LOADED_PROBE_INTERVAL, LOADED_PROBE_TIMEOUT, LOADED_PROTECTION, Testbed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A step's deadline counts from its first start, the killed run's time included: at the default scale
    `announce` has 10 s, which a busy machine spends between the kill and the second run's first cycle (the
    killed process's exit, a new interpreter importing the cloud SDKs), and the resumed run rightly pages
    instead of resuming. Deadlines are not what this test is about (tests/core/test_runbook.py holds them):
    scaled up 10x here, so that resuming is."""
    base = tmp_path_factory.mktemp("resume")
    with Testbed(Path(base), protection=LOADED_PROTECTION, probe_interval=LOADED_PROBE_INTERVAL,
                 probe_timeout=LOADED_PROBE_TIMEOUT, step_deadline="10m") as bed:
        yield bed


def execute(bed: Testbed, failpoint: str | None) -> subprocess.CompletedProcess[str]:
    env = bed.env()
    env.pop("FAILOVER_FAILPOINT", None)
    if failpoint:
        env["FAILOVER_FAILPOINT"] = failpoint
    return subprocess.run([sys.executable, "-m", "orchestrator", "execute", "--target", "spot-gcp", "--yes"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


# Every step killed after it acted and before its outcome was journaled (the world changed, the journal does not
# know); a few also killed before acting.
FAILPOINTS = [(s.value, "acted") for s in STEPS] + [(s, "before") for s in ("halt", "promote", "reopen")]


@pytest.mark.parametrize(("step", "where"), FAILPOINTS)
def test_killed_at_a_step_then_rerun_resumes_and_finishes(shared_bed: Testbed, step: str, where: str) -> None:
    bed = shared_bed
    bed.renew(f"{step}-{where}")
    killed = execute(bed, f"{step}:{where}")
    assert killed.returncode == -9, killed.stdout + killed.stderr  # SIGKILL at the failpoint

    loaded = load_config(bed.config_path)
    with open_store(loaded.store_url) as store:
        [incident] = store.incidents()
        assert incident.status.value == "running"
        last = store.journal(incident.id)[-1]
        assert last.step == step and last.state == "started"  # the journal stops where the process died

    resumed = execute(bed, None)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    with open_store(loaded.store_url) as store:
        [incident] = store.incidents()
        assert incident.status.value == "closed"
        journal = store.journal(incident.id)
    done = [e.step for e in journal if e.state in ("done", "skipped")]
    assert done == [s.value for s in Step]  # every step finished exactly once, in order
    assert bed.replicas is not None
    client = bed.replicas.client()
    new = client.status(bed.replicas.replica("spot-gcp"))
    old = client.status(bed.replicas.replica("spot-aws"))
    assert (new.role, new.phase) == (Role.PRIMARY, Phase.OPEN)
    assert old.role is Role.FENCED
    assert client.status(bed.replicas.replica("spot-azure")).role is Role.STANDBY
