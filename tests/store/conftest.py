"""Fixtures for the store contract suite: one `store_url` per backend, the test bodies never name a backend.

Adding a backend is one more entry in `_BACKENDS`: a name, a function that turns the test's request and temporary
directory into a fresh, empty store URL, and marks. The `store` fixture also runs on the in-memory store (the
simulator's), which has no URL a second handle could open: tests that need a second handle, or another process,
take `store_url`.

etcd runs against a real one-member cluster on loopback, started once per session (`etcd_url`) and removed with
its data directory at the end; each test gets its own key prefix on it. `FAILOVER_TEST_ETCD_URL` points the suite
at an existing cluster instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.store import StateStore, open_store
from orchestrator.store.memory import MemoryStore
from orchestrator.testbed.etcd import EtcdCluster, etcd_binary

ETCD_MISSING = (
    "etcd binary not found: install Debian's etcd-server (CI must install it: .ci/run does), "
    "or set FAILOVER_ETCD_BIN or FAILOVER_TEST_ETCD_URL"
)
ETCD_AVAILABLE = bool(os.environ.get("FAILOVER_TEST_ETCD_URL")) or etcd_binary() is not None


@pytest.fixture(scope="session")
def etcd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`etcd://127.0.0.1:PORT` of a one-member cluster shared by the session (or $FAILOVER_TEST_ETCD_URL)."""
    external = os.environ.get("FAILOVER_TEST_ETCD_URL")
    if external:
        yield external.rstrip("/")
        return
    if etcd_binary() is None:
        pytest.skip(ETCD_MISSING)
    cluster = EtcdCluster(size=1, base_dir=tmp_path_factory.mktemp("etcd"))
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.cleanup()


def _sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"  # tmp_path is absolute: sqlite:////tmp/...


def _etcd_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # A key prefix per test keeps tests apart on one shared etcd cluster.
    base = request.getfixturevalue("etcd_url")
    test_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
    return f"{base}/failover-test/{test_id}-{os.getpid()}"


_ETCD_MARKS = (pytest.mark.etcd,) + (() if ETCD_AVAILABLE else (pytest.mark.skip(reason=ETCD_MISSING),))

_BACKENDS: list[tuple[str, Callable[[pytest.FixtureRequest, Path], str], tuple[pytest.MarkDecorator, ...]]] = [
    ("sqlite", _sqlite_url, ()),
    ("etcd", _etcd_url, _ETCD_MARKS),
]


@pytest.fixture(params=[pytest.param(make, id=name, marks=marks) for name, make, marks in _BACKENDS])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL naming a fresh, empty store of each backend in turn."""
    make: Callable[[pytest.FixtureRequest, Path], str] = request.param
    return make(request, tmp_path)


@pytest.fixture(params=[pytest.param(make, id=name, marks=marks) for name, make, marks in _BACKENDS]
                + [pytest.param(None, id="memory")])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """A fresh, empty store of each backend in turn, the in-memory one included."""
    make: Callable[[pytest.FixtureRequest, Path], str] | None = request.param
    with MemoryStore() if make is None else open_store(make(request, tmp_path)) as opened:
        yield opened
