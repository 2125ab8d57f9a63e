"""A bad scenario file is a ConfigError whose every line names the file, the line and the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sim_helpers import SCENARIOS

from orchestrator.errors import EXIT_BAD_INPUT, ConfigError
from orchestrator.sim import load_scenario

TOPOLOGY = SCENARIOS / "hk-topology.yaml"
HEAD = f"name: bad\ntopology: {TOPOLOGY}\nstart: 2022-12-18T11:00:00+08:00\nduration: 1h\n"


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert caught.value.exit_code == EXIT_BAD_INPUT
    lines = str(caught.value).splitlines()
    assert all(line.startswith(str(path)) for line in lines), lines
    return [line.removeprefix(str(path)) for line in lines]


CASES = [
    (HEAD + "colour: red\n", r":5: colour: unknown key"),
    (HEAD + "faults:\n  - {at: 0s, site: aws-hk, kind: meltdown, duration: 1m}\n",
     r":6: faults\.0\.kind: must be one of .*outage"),
    (HEAD + "faults:\n  - {at: 0s, site: nowhere, kind: outage, duration: 1m}\n",
     r":6: faults\.0\.site: unknown site 'nowhere'"),
    (HEAD + "faults:\n  - at: 0s\n    site: aws-hk\n    kind: outage\n    duration: 1m\n    loss: 0.3\n",
     r":10: faults\.0\.loss: unknown key"),
    (HEAD + "faults:\n  - {at: 0s, site: aws-hk, kind: probe_loss, duration: 1m, loss: 1.5}\n",
     r":6: faults\.0\.loss: .*less than or equal to 1"),
    (HEAD + "faults:\n  - {at: 0s, kind: observer_partition, observer: mars, duration: 1m}\n",
     r":6: faults\.0\.observer: 'mars' is not a vantage point"),
    (HEAD + "faults:\n  - {at: 0s, kind: lag, duration: 1m}\n", r":6: faults\.0\.replica: a lag needs"),
    (HEAD + "faults:\n  - {at: 0s, kind: lag, replica: spot-zz, duration: 1m}\n",
     r":6: faults\.0\.replica: unknown replica 'spot-zz'"),
    (HEAD + "faults:\n  - {at: 2h, site: aws-hk, kind: outage, duration: 1m}\n",
     r":6: faults\.0\.at: starts after the scenario ends"),
    (HEAD + "faults:\n  - {at: 0s, site: aws-hk, kind: outage}\n", r":6: faults\.0\.duration: required field"),
    (HEAD.replace("duration: 1h", "duration: 60"), r":4: duration: expected a duration string"),
    (HEAD.replace("+08:00", ""), r":3: start: needs a UTC offset"),
    (HEAD.replace(str(TOPOLOGY), "missing.yaml"), r":2: topology: no such config file .*missing\.yaml"),
    (HEAD + "expect:\n  failovers: one\n", r":6: expect\.failovers: .*integer"),
    (HEAD + "expect:\n  final_phase: closed\n", r":6: expect\.final_phase: "),
    (HEAD + "name: twice\n", r":5: name: duplicate key"),
    (HEAD + "faults: [\n", r":\d+: invalid YAML"),
    ("- just\n- a list\n", r":1: a scenario must be a mapping"),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[expected.split(": ")[1] for _, expected in CASES])
def test_bad_scenario_is_located(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(re.match(expected, line) for line in found), found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, HEAD + "colour: red\nfaults:\n  - {at: 0s, kind: outage, duration: 1m, site: 3}\n"
                     "expect: {failovers: -1}\n")
    assert len(found) >= 2, found


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such scenario file"):
        load_scenario(tmp_path / "absent.yaml")


def test_a_bad_topology_is_reported_in_its_own_file(tmp_path: Path) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text(TOPOLOGY.read_text(encoding="utf-8").replace("quorum: 2", "quorum: many"), encoding="utf-8")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(HEAD.replace(str(TOPOLOGY), "topology.yaml"), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(topology))}:\d+: policy\.quorum"):
        load_scenario(scenario)
