"""Fixtures for the store contract suite: one `store_url` per backend, the test bodies never name a backend.

Adding a backend is one more entry in `_BACKENDS`: a name and a function that turns a test's temporary directory
(and the test's node id, for a unique namespace) into a fresh, empty store URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.store import StateStore, open_store


def _sqlite_url(tmp_path: Path, test_id: str) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"  # tmp_path is absolute: sqlite:////tmp/...


def _etcd_url(tmp_path: Path, test_id: str) -> str:
    # A key prefix per test keeps tests apart on one shared etcd cluster.
    base = os.environ["FAILOVER_TEST_ETCD_URL"].rstrip("/")
    return f"{base}/failover-test/{re.sub(r'[^A-Za-z0-9_.-]+', '_', test_id)}-{os.getpid()}"


_BACKENDS: list[tuple[str, Callable[[Path, str], str], tuple[pytest.MarkDecorator, ...]]] = [
    ("sqlite", _sqlite_url, ()),
]
if os.environ.get("FAILOVER_TEST_ETCD_URL"):
    _BACKENDS.append(("etcd", _etcd_url, (pytest.mark.etcd,)))


@pytest.fixture(params=[pytest.param(make, id=name, marks=marks) for name, make, marks in _BACKENDS])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL naming a fresh, empty store of each backend in turn."""
    make: Callable[[Path, str], str] = request.param
    return make(tmp_path, request.node.nodeid)


@pytest.fixture
def store(store_url: str) -> Iterator[StateStore]:
    with open_store(store_url) as opened:
        yield opened
