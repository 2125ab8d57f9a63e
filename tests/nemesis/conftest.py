"""The `nemesis` marker (registered here because pyproject.toml belongs to the lead), and the lab every end-to-end
nemesis test shares: moto, the GCP and Azure fakes, the proxies and (when a test asks) etcd, started once per
session; each test gets new replica processes and a new store from it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nemesis.world import Lab


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nemesis: the nemesis harness (issue 11): holes and seeded fault schedules")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab")) as shared:
        yield shared
