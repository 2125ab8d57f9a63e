"""Control calls that race (issue 11, hole 1): a promotion waits for its peers' status, and a newer fence or phase
stamp can arrive meanwhile. Every control change to one replica is decided against its state at the moment it
commits: a promotion whose epoch was overtaken while it waited is refused (`stale_epoch`), one whose replica was
fenced meanwhile is refused (`fenced`), and the newer call, answered 200 at once, is what holds.

The peer is a `Blackhole` (accepts, never answers: a dark data centre), so the promotion's peer poll takes its
full timeout (`--promote-poll-timeout`, 3 s here), which is the window the newer call lands in."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from orchestrator.testbed.replicas import Blackhole, ReplicaCluster, ReplicaSpec

pytestmark = pytest.mark.slow  # starts replica processes

POLL = 3.0  # the promotion's wait for each peer: long enough for the racing call to land inside it


@pytest.fixture(scope="module")
def dark_peer() -> Iterator[Blackhole]:
    with Blackhole() as hole:
        yield hole


@pytest.fixture(scope="module")
def cluster(make_cluster: Callable[..., ReplicaCluster], dark_peer: Blackhole) -> ReplicaCluster:
    """Two standbys with no primary, each knowing only the dark peer."""
    extra = ("--peer", dark_peer.url, "--promote-poll-timeout", str(POLL))
    return make_cluster([ReplicaSpec("s1", "gcp", peers=(), extra_args=extra),
                         ReplicaSpec("s2", "azure", peers=(), extra_args=extra)])


class Promotion(threading.Thread):
    """`POST /v1/promote` in the background; `answer` is (status code, body) once it returns."""

    def __init__(self, cluster: ReplicaCluster, name: str, epoch: int) -> None:
        super().__init__(daemon=True)
        self.cluster, self.name, self.epoch = cluster, name, epoch
        self.answer: tuple[int, Any] | None = None

    def run(self) -> None:
        response = post(self.cluster, self.name, "/v1/promote", {"epoch": self.epoch}, timeout=4 * POLL + 10)
        self.answer = (response.status_code, response.json())


def post(cluster: ReplicaCluster, name: str, path: str, body: dict[str, Any], timeout: float = 10.0) \
        -> httpx.Response:
    return httpx.post(cluster.url(name) + path, json=body, timeout=timeout,
                      headers={"Authorization": f"Bearer {cluster.token}"})


def start_promotion(cluster: ReplicaCluster, name: str, epoch: int) -> Promotion:
    """Start a promotion and return once it is waiting for its peers (it has recorded its epoch by then)."""
    promotion = Promotion(cluster, name, epoch)
    promotion.start()
    cluster.wait_for(lambda: cluster.status(name)["epoch"] == epoch, what=f"{name} to record epoch {epoch}")
    assert promotion.answer is None, f"the promotion ended before the racing call: {promotion.answer}"
    return promotion


def on_disk(cluster: ReplicaCluster, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((cluster.data_dir(name) / "control.json").read_text(encoding="utf-8"))
    return body


def test_a_fence_at_a_newer_epoch_during_a_promotion_wins(cluster: ReplicaCluster) -> None:
    promotion = start_promotion(cluster, "s1", 100)
    fenced = post(cluster, "s1", "/v1/fence", {"epoch": 101})
    assert fenced.status_code == 200 and fenced.json()["role"] == "fenced"
    promotion.join(4 * POLL + 15)

    assert promotion.answer is not None
    code, body = promotion.answer
    assert (code, body.get("reason"), body["epoch"]) == (409, "stale_epoch", 101), body
    status = cluster.status("s1")
    assert (status["role"], status["epoch"]) == ("fenced", 101)
    assert (on_disk(cluster, "s1")["role"], on_disk(cluster, "s1")["epoch"]) == ("fenced", 101)
    cluster.restart("s1")
    assert (cluster.status("s1")["role"], cluster.status("s1")["epoch"]) == ("fenced", 101)


def test_a_phase_stamp_at_a_newer_epoch_during_a_promotion_wins(cluster: ReplicaCluster) -> None:
    promotion = start_promotion(cluster, "s2", 100)
    stamped = post(cluster, "s2", "/v1/phase", {"phase": "halted", "epoch": 101})
    assert stamped.status_code == 200 and (stamped.json()["role"], stamped.json()["epoch"]) == ("standby", 101)
    promotion.join(4 * POLL + 15)

    assert promotion.answer is not None
    code, body = promotion.answer
    assert (code, body.get("reason"), body["epoch"]) == (409, "stale_epoch", 101), body
    status = cluster.status("s2")
    assert (status["role"], status["epoch"]) == ("standby", 101)
    assert (on_disk(cluster, "s2")["role"], on_disk(cluster, "s2")["epoch"]) == ("standby", 101)
    # the newer epoch's own promotion still works
    promoted = post(cluster, "s2", "/v1/promote", {"epoch": 101}, timeout=4 * POLL + 10)
    assert (promoted.status_code, promoted.json()["role"], promoted.json()["epoch"]) == (200, "primary", 101)
