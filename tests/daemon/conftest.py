from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.testbed.etcd import EtcdCluster, etcd_binary


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    if etcd_binary() is None:
        pytest.skip("etcd binary not found: CI must install Debian's etcd-server (.ci/run does)")
    with EtcdCluster(3, tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


