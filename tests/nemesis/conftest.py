"""The `nemesis` marker, registered here because pyproject.toml belongs to the lead."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nemesis: the nemesis harness (issue 11): holes and seeded fault schedules")
