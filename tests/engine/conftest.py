"""Fixtures for the engine tests: real replica processes over real HTTP on 127.0.0.1 (no mocks).

Clusters are started once per module (process start-up is most of the cost) through `make_cluster`, and killed
at the module's end; each test uses its own markets and ids so that tests in a module do not disturb each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

MakeCluster = Callable[..., ReplicaCluster]


@pytest.fixture(scope="module")
def make_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeCluster]:
    """`make_cluster(specs, **options)` starts a cluster that lives until the end of the module."""
    clusters: list[ReplicaCluster] = []

    def make(specs: Sequence[ReplicaSpec], **options: Any) -> ReplicaCluster:
        cluster = ReplicaCluster(tmp_path_factory.mktemp("cluster"), specs, **options)
        clusters.append(cluster)
        cluster.start()
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()

