"""A wall clock 30 s off, on the holder or on the taker, neither blocks a failover nor steals a live lease (issue 11,
hole 7). The etcd lease decides: the leader key exists exactly while its etcd lease lives, on etcd's clock, and no
host compares its wall clock with another's.

Each holder and taker is a process of its own whose `time.time` is shifted by a sitecustomize module, as the
nemesis harness does it. The holder renews every TTL/6; a taker polls every 100 ms. While the holder renews, the
taker never gets the lease; once the holder is frozen (SIGSTOP), the taker gets it after the TTL ran out (plus
etcd's expiry sweep), and the thawed holder learns at its next renewal that it lost it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
WORKER = HERE / "lease_worker.py"
TTL = 3.0
MARGIN = 10.0  # etcd sweeps expired leases every 500 ms; the rest is a loaded machine's slack

pytestmark = [pytest.mark.etcd, pytest.mark.slow]


def spawn(mode: str, url: str, holder: str, skew: float, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE / "clock_skew"), str(HERE.parents[1])]),
           "FAILOVER_TEST_CLOCK_SKEW": str(skew)}
    return subprocess.Popen([sys.executable, str(WORKER), mode, url, holder, str(TTL), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    text = proc.stdout.readline()
    assert text, f"worker said nothing: {proc.stderr.read() if proc.stderr else ''}"
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def grab(url: str, skew: float, window: float) -> dict[str, Any]:
    proc = spawn("grab", url, "host-b", skew, str(window))
    out, err = proc.communicate(timeout=window + 60)
    assert proc.returncode == 0, err
    loaded: dict[str, Any] = json.loads(out.splitlines()[-1])
    return loaded


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize(("holder_skew", "taker_skew"), [(30, 0), (0, 30), (-30, 0), (0, -30)],
                         ids=["holder-fast", "taker-fast", "holder-slow", "taker-slow"])
def test_a_skewed_clock_neither_steals_nor_blocks_the_lease(
    etcd_url: str, request: pytest.FixtureRequest, holders: list[subprocess.Popen[str]],
    holder_skew: float, taker_skew: float,
) -> None:
    url = f"{etcd_url}/skew/{request.node.callspec.id}-{time.monotonic_ns()}"
    holder = spawn("hold", url, "host-a", holder_skew)
    holders.append(holder)
    held = line(holder)
    assert abs(held["wall"] - time.time() - holder_skew) < 5, "the holder's clock was not shifted"

    early = grab(url, taker_skew, window=2 * TTL)
    assert early["token"] is None, f"a live lease was taken from a holder that kept renewing: {early}"

    holder.send_signal(signal.SIGSTOP)  # frozen: it stops renewing, and does not know it
    frozen_at = time.monotonic()
    late = grab(url, taker_skew, window=TTL + MARGIN)
    assert late["token"] is not None, f"the lease never came free after the holder stopped renewing ({late})"
    assert late["token"] > held["token"]
    waited = late["at"] - frozen_at
    assert waited > TTL * 5 / 6 - 0.3, f"taken {waited:.1f}s after the last renewal, before its TTL of {TTL}s"

    holder.send_signal(signal.SIGCONT)
    assert "lost" in line(holder), "the thawed holder must learn at once that it lost the lease"
