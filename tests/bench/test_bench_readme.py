"""README's benchmark table comes from a bench.json: rewritten between its two markers, nothing else touched, and
only from a complete run. A tiny fake record stands in for `make bench`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import __main__ as bench
from benchmarks import chart, readme, record
from benchmarks.figures import Figure

README = """# failover

## Simulation and benchmarks

Some prose that stays.

<!-- bench:start -->
| old | table |
<!-- bench:end -->

![chart](docs/bench.png)

## Configuration reference
"""


def _record(complete: bool = True) -> dict[str, Any]:
    figures = [Figure("simulator", "clean zone outage: detection (1 s probes)", 2.97, "s simulated",
                      "median of 10 seeds", goal=5.0, peer=89.0, peer_name="route53"),
               Figure("CLI start", "failover status", 0.62, "s wall", "median of 5", goal=0.3),
               Figure("cloud adapters", "local: one health poll", 0.05, "ms wall", "median of 20 polls")]
    sim = {"seeds": {"default": 10, "presets": 10}, "policies": {
        "zone-outage / default": {}, "hk-2022 / default": {},
        "ALL / default": {"detection_median_s": 2.968, "detection_p99_s": 3.0, "false_failovers": 0,
                          "orders_lost": 0, "bad_trades": 0, "expectations_met": 70, "runs": 70},
        "ALL / naive": {"detection_median_s": 0.5, "detection_p99_s": 1.0, "false_failovers": 20,
                        "orders_lost": 0, "bad_trades": 11223, "expectations_met": 31, "runs": 70}}}
    return record.record(
        mode="default", started_at="2026-12-01T03:00:00+00:00", calibration={"cpu_s": 0.485, "runs": 3},
        machine_info={"cores": 2, "python": "3.11.7", "load_at_start": [1.5, 2.0, 2.5], "load_at_end": [1, 1, 1]},
        commit={"commit": "e6dc680101" + "0" * 30, "dirty": False}, figures=figures, modules={},
        results={"sim_bench": sim}, detections={"default": [2.1, 2.9], "route53": [61.0, 89.0]},
        totals={"wall_s": 250.0, "cpu_s": 400.0, "complete": complete})


def _write(tmp_path: Path, data: dict[str, Any]) -> tuple[Path, Path, Path]:
    source, target, copy = tmp_path / "bench.json", tmp_path / "README.md", tmp_path / "docs" / "bench.png"
    record.write(source, data)
    chart.draw(data["detections"], source.with_suffix(".png"))
    target.write_text(README)
    return source, target, copy


def test_the_table_between_the_markers_comes_from_the_run_and_the_rest_stays(tmp_path: Path) -> None:
    source, target, copy = _write(tmp_path, _record())
    bench.update_readme(source, target, copy)
    text = target.read_text()
    before, table, after = text.partition(readme.START)[0], *text.partition(readme.START)[2].partition(readme.END)[::2]
    assert before == README.partition(readme.START)[0]
    assert after == README.partition(readme.END)[2]
    assert "| old | table |" not in table
    header = table.strip().split("\n\n")[0]
    assert max(len(row) for row in header.splitlines()) <= readme.WIDTH
    header = " ".join(header.split())
    assert "commit e6dc680101, 2026-12-01T03:00:00+00:00, on 2 cores, Python 3.11.7, load average 1.5" in header
    assert "Calibration (a fixed pure-Python workload" in header and "**0.485 CPU s**" in header
    assert "| ours (1 s probes, 3 failures, quorum 2) | 2.97 s / 3 s | 0 | 0 | 0 | 70/70 |" in table
    assert "| naive (first failed probe) | 0.5 s / 1 s | 20 | 0 | 11,223 | 31/70 |" in table
    assert ("| simulator | clean zone outage: detection (1 s probes) | 2.97 s simulated (median of 10 seeds) | "
            "≤ 5 s simulated | met | route53 89 s simulated |") in table
    assert "| CLI start | failover status | 0.62 s wall (median of 5) | ≤ 0.3 s wall | MISSED |  |" in table
    assert "| cloud adapters | local: one health poll | 0.05 ms wall (median of 20 polls) | no goal |  |  |" in table
    assert "Goals met: 1 of 2; missed: CLI start: failover status." in table
    assert copy.read_bytes() == source.with_suffix(".png").read_bytes()


def test_rewriting_twice_gives_the_same_readme(tmp_path: Path) -> None:
    source, target, copy = _write(tmp_path, _record())
    bench.update_readme(source, target, copy)
    once = target.read_text()
    bench.update_readme(source, target, copy)
    assert target.read_text() == once


def test_a_partial_run_does_not_replace_the_table(tmp_path: Path) -> None:
    source, target, copy = _write(tmp_path, _record(complete=False))
    with pytest.raises(readme.ReadmeError, match="comes from a complete run"):
        bench.update_readme(source, target, copy)
    assert target.read_text() == README and not copy.exists()


@pytest.mark.parametrize("text", ["no markers at all\n", f"{readme.END}\n{readme.START}\n",
                                  f"{readme.START}\n{readme.END}\n{readme.START}\n{readme.END}\n"])
def test_a_readme_without_one_pair_of_markers_in_order_is_refused(text: str) -> None:
    with pytest.raises(readme.ReadmeError, match="needs exactly one"):
        readme.rewrite(text, "| table |")


def test_a_missing_or_foreign_record_is_one_line_and_exit_2(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--readme", "--out", str(tmp_path / "nothing.json")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {tmp_path / 'nothing.json'}: cannot read a bench record")
    assert error.count("\n") == 1
    (tmp_path / "other.json").write_text(json.dumps({"schema": 99}))
    assert bench.main(["--readme", "--out", str(tmp_path / "other.json")]) == 2
    error = capsys.readouterr().err
    assert "not a bench record this code reads: no 'mode'" in error and "schema 99" in error


def test_the_chart_has_one_box_per_policy_that_detected_something(tmp_path: Path) -> None:
    drawn = chart.draw({"default": [2.1, 2.9], "route53": [61.0], "naive": []}, tmp_path / "bench.png", "sub")
    assert drawn == tmp_path / "bench.png" and drawn.read_bytes()[:4] == b"\x89PNG"
    assert chart.draw({"default": []}, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
