"""A few fixed seeds of the soak's random schedules, run on every submission: together they inject 13 of the fault
kinds across the three modes (one daemon with probe agents, cron, three daemons on etcd), and every invariant of
the checker must hold. A failure prints the schedule, what was done when, the violations with their numbers, and
the command that replays it (`.venv/bin/python tests/nemesis/soak.py --seed S --replay`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nemesis.schedule import generate, run
from nemesis.world import Lab
from orchestrator.store.etcd_cluster import etcd_binary

pytestmark = [pytest.mark.nemesis, pytest.mark.slow]

# 14: daemon; the leader dies at `halt`, a one-way replication cut, the primary's disk full, GCP's API failing,
#     the primary lost, a standby restored from a stale copy
# 23: cron; a blind vantage point, a blind orchestrator, both standbys cut from the primary, the primary lost
# 27: three daemons on etcd; an etcd member killed, Azure's API failing, the leader killed, client connections reset
SEEDS = (14, 23, 27)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("schedules")) as shared:
        yield shared


@pytest.mark.parametrize("seed", SEEDS)
def test_a_fixed_schedule_holds_every_invariant(lab: Lab, seed: int) -> None:
    schedule = generate(seed)
    if schedule.mode == "ha" and etcd_binary() is None:
        pytest.skip("etcd binary not found: CI must install Debian's etcd-server")
    result = run(lab, schedule, say=lambda text: None)
    assert result.ok, result.report()
    assert len(result.verdict.checked) == 8
