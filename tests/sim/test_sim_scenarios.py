"""Every scenario shipped in configs/scenarios meets its own expectations under the default policy."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from sim_helpers import SCENARIOS

from orchestrator.sim import SimResult, load_scenario, run_scenario

FILES = sorted(path for path in SCENARIOS.glob("*.yaml") if path.name != "hk-topology.yaml")
# 14 and 24 simulated hours: one seed here; the benchmark runs more
LONG = {"hk-2022.yaml", "hk-2022-rejoin.yaml", "exchange-10.yaml"}


@cache
def result_of(path: Path, seed: int) -> SimResult:
    return run_scenario(path, seed=seed)


def test_the_issue_s_scenarios_are_all_there() -> None:
    names = {path.stem for path in FILES}
    assert {"hk-2022", "zone-outage", "gray-failure", "api-errors", "observer-partition", "lagging-standby",
            "relapse"} <= names


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_scenario_meets_its_expectations(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.expect, f"{path.name} states no expectations"
    seeds = (0,) if path.name in LONG else (0, 1, 2)
    for seed in seeds:
        result = result_of(path, seed)
        failed = {name: result.expect[name] for name, ok in result.expectations.items() if not ok}
        assert not failed, f"{path.name} seed {seed}: {failed}; figures: " + str(
            {k: v for k, v in result.to_json().items() if k not in ("timeline", "expect", "expectations")})
        assert result.max_primaries <= 1 and result.trades_while_halted == 0
        assert result.trades_during_protection == 0 and result.orders_lost == 0


def test_hk_2022_fails_over_once_and_never_back() -> None:
    result = result_of(SCENARIOS / "hk-2022.yaml", 0)
    assert result.failovers == 1
    assert result.final_primary == {"spot": "spot-gcp"}
    promotions = [item for item in result.timeline if item.get("event") == "step" and "promoted" in item]
    assert [item["promoted"] for item in promotions] == ["spot-gcp"]
