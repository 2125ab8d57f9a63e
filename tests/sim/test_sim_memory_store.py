"""The in-memory store keeps the store contract: the contract suite of tests/store runs against it.

Only the tests that take the `store` fixture are borrowed; those that open a store by URL need `memory://` in
`orchestrator.store.open_store`, which is the lead's to register, and those that need a second handle to see the
first one's writes do not apply: a memory store is one process's, one handle's.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from sim_helpers import ROOT

from orchestrator.errors import ConfigError, LeaseLost
from orchestrator.store.base import StateStore
from orchestrator.store.memory import MemoryStore, open_url


def _contract() -> Any:
    spec = importlib.util.spec_from_file_location("_store_contract_for_memory",
                                                  ROOT / "tests" / "store" / "test_store_contract.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_NEEDS_A_SECOND_HANDLE = {"test_incident_round_trips_with_a_sortable_id"}
_CONTRACT = _contract()
for _name, _test in vars(_CONTRACT).items():
    if _name.startswith("test_") and "store_url" not in inspect.signature(_test).parameters \
            and _name not in _NEEDS_A_SECOND_HANDLE:
        globals()[f"{_name}_on_memory"] = _test


@pytest.fixture
def store() -> Iterator[StateStore]:
    with MemoryStore() as opened:
        yield opened


def test_leases_expire_on_the_injected_clock() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    lease = store.acquire_lease("leader", "a", 10.0)
    assert lease is not None and store.acquire_lease("leader", "b", 10.0) is None
    now[0] += 11
    taken = store.acquire_lease("leader", "b", 10.0)
    assert taken is not None and taken.token == lease.token + 1
    with pytest.raises(LeaseLost):
        store.renew_lease(lease, 10.0)


def test_open_url() -> None:
    assert isinstance(open_url("memory://sim"), MemoryStore)
    with pytest.raises(ConfigError):
        open_url("sqlite:///x.db")
