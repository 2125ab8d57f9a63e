"""Two suites from one tree: `make test` runs the fast one (the core, the stores, the replica, the adapters, the
CLI; a few minutes on 2 cores), `make test-all` adds the `e2e` tests, which run the whole system as real
processes: the end-to-end runbook and operator tests, the daemons and cron runs, the drill, and the nemesis."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
END_TO_END = ("e2e", "daemon", "drill", "nemesis")
END_TO_END_TESTS = ("tests/toycloud/test_toycloud.py::test_a_lost_gcp_primary_fails_over_onto_the_toy_cloud",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(item.fspath).resolve().relative_to(HERE).parts
        if parts[0] in END_TO_END or item.nodeid.split("[")[0] in END_TO_END_TESTS:
            item.add_marker(pytest.mark.e2e)
