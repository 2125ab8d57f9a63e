"""`make bench`'s plumbing, on a tiny fake benchmark: what bench.json holds, what a figure says beside its goal,
which repetitions each set asks for. No timing is asserted: speed is what the benchmarks measure, not the tests."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from benchmarks import __main__ as bench
from benchmarks import calibration, record
from benchmarks.figures import Figure, line, render

FAKE = "fake_bench"


def _fake_module() -> ModuleType:
    """A benchmark with one figure met, one missed, one without a goal, and detection times for the chart."""
    module = ModuleType(f"benchmarks.{FAKE}")

    def run(repeats: int = 1) -> dict[str, Any]:
        return {"repeats": repeats, "detections": {"default": [2.1, 2.4, 2.9], "route53": [61.0, 75.0, 89.0]}}

    def figures(result: dict[str, Any]) -> list[Figure]:
        return [Figure("fake", "detection", 2.4, "s simulated", "median of 3", goal=5.0, peer=75.0,
                       peer_name="route53"),
                Figure("fake", "cycle", 120.0, "ms", "median of 3", goal=50.0),
                Figure("fake", "floor", 0.02, "s wall"),
                Figure("fake", "a day simulated", 1.5, "CPU s", goal=10.0)]

    module.run = run  # type: ignore[attr-defined]
    module.figures = figures  # type: ignore[attr-defined]
    return module


@pytest.fixture
def fake_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, f"benchmarks.{FAKE}", _fake_module())
    monkeypatch.setitem(bench.SETS, FAKE, ({"repeats": 2}, {"repeats": 9}))
    monkeypatch.setattr(calibration, "RUNS", 1)


def test_a_run_writes_every_figure_with_its_goal_peer_verdict_and_the_machine(
        fake_bench: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert bench.run([FAKE], full=False, out=out, as_json=False) == 0
    data = json.loads(out.read_text())
    assert record.problems(data) == []
    assert data["mode"] == "only fake_bench" and data["complete"] is False
    assert data["calibration"]["cpu_s"] > 0 and data["calibration"]["checksum"] == calibration.workload()
    assert data["machine"]["cores"] >= 1 and data["machine"]["python"].startswith("3.")
    assert len(data["machine"]["load_at_start"]) == 3
    assert data["commit"] is None or len(data["commit"]) == 40
    detection, cycle, floor, cpu = data["figures"]
    assert detection == {"group": "fake", "name": "detection", "value": 2.4, "unit": "s simulated",
                         "stat": "median of 3", "goal": 5.0, "op": "<=", "peer": 75.0, "peer_name": "route53",
                         "met": True, "per_calibration": None}
    assert cycle["met"] is False and floor["met"] is None and floor["goal"] is None
    assert cpu["per_calibration"] == round(1.5 / data["calibration"]["cpu_s"], 2)
    assert data["goals"] == {"judged": 3, "met": 2, "missed": ["fake: cycle"]}
    assert data["modules"][FAKE]["settings"] == {"repeats": 2} and data["results"][FAKE]["repeats"] == 2
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert printed.index("== calibration") < printed.index("== every figure")
    assert ("detection: 2.4 s simulated (median of 3); goal ≤ 5 s simulated: met; "
            "peer: route53 75 s simulated") in printed
    assert "cycle: 120 ms (median of 3); goal ≤ 50 ms: MISSED" in printed
    assert "goals: 2 of 3 met; missed: fake: cycle" in printed


def test_the_full_set_asks_for_the_full_repetitions(fake_bench: None, tmp_path: Path) -> None:
    bench.run([FAKE], full=True, out=tmp_path / "bench.json", as_json=True)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["results"][FAKE]["repeats"] == 9


def test_a_failing_benchmark_is_recorded_and_the_others_still_run(fake_bench: None, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    broken = ModuleType("benchmarks.broken_bench")

    def run() -> dict[str, Any]:
        raise RuntimeError("the testbed did not start")

    broken.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks.broken_bench", broken)
    out = tmp_path / "bench.json"
    assert bench.run(["broken_bench", FAKE], full=False, out=out, as_json=True) == 1
    data = json.loads(out.read_text())
    assert data["modules"]["broken_bench"]["error"] == "RuntimeError: the testbed did not start"
    assert [f["name"] for f in data["figures"]] == ["detection", "cycle", "floor", "a day simulated"]


@pytest.mark.parametrize(("figure", "met"), [
    (Figure("g", "at the goal", 5.0, "s", goal=5.0), True),
    (Figure("g", "over", 5.01, "s", goal=5.0), False),
    (Figure("g", "at least", 3, "", goal=4, op=">="), False),
    (Figure("g", "exactly", 0, "", goal=0, op="=="), True),
    (Figure("g", "verdicts right", True, "", goal=True, op="=="), True),
    (Figure("g", "not measured", None, "s", goal=1.0), False),
    (Figure("g", "context", 0.03, "s"), None),
])
def test_a_figure_is_met_only_on_the_right_side_of_its_goal(figure: Figure, met: bool | None) -> None:
    assert figure.met is met
    assert Figure.from_dict(figure.as_dict()) == figure


def test_an_unknown_comparison_is_refused() -> None:
    with pytest.raises(ValueError, match="op '<'"):
        Figure("g", "x", 1.0, "s", goal=2.0, op="<")


def test_figures_print_beside_their_goals_and_the_count_of_misses() -> None:
    figures = [Figure("sim", "false failovers", 0, "", "total of 70 runs", goal=0, op="==", peer=20,
                      peer_name="naive"),
               Figure("cli", "failover status", 0.62, "s wall", "median of 5", goal=0.3)]
    assert line(figures[0]) == "false failovers: 0 (total of 70 runs); goal = 0: met; peer: naive 20"
    text = render(figures)
    assert "-- sim" in text and "-- cli" in text
    assert text.endswith("== goals: 1 of 2 met; missed: cli: failover status")


def test_every_benchmark_has_both_sets_and_each_accepts_its_settings() -> None:
    """A misspelt setting would only fail minutes into `make bench`; the default set never asks for more."""
    assert set(bench.SETS) == set(bench.MODULES)
    for name, (default, full) in bench.SETS.items():
        assert default.keys() == full.keys(), name
        def most(value: int | bool | None) -> float:
            return float("inf") if value is None else float(value)  # None: no cap

        assert all(most(default[key]) <= most(full[key]) for key in default), name
        parameters = inspect.signature(__import__(f"benchmarks.{name}", fromlist=["run"]).run).parameters
        assert set(default) <= set(parameters), (name, set(default) - set(parameters))


def test_a_record_missing_its_machine_or_a_figures_goal_is_named() -> None:
    data = {"schema": record.SCHEMA, "mode": "default", "started_at": "x", "commit": None, "calibration": {},
            "machine": {"cores": 2}, "figures": [{"name": "cycle", "value": 1}], "modules": {}, "results": {}}
    found = record.problems(data)
    assert "machine lacks 'python'" in found and "calibration lacks 'cpu_s'" in found
    assert any(problem.startswith("figure 0 (cycle) lacks group, unit") for problem in found)


def test_an_out_path_that_cannot_be_written_is_refused_before_measuring(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--only", "providers_bench", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error == f"error: --out {tmp_path}: is a directory (give a file name, e.g. bench.json)\n"
