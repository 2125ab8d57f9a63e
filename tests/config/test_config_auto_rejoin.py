"""`policy.auto_rejoin`: off unless asked for; each field refused on one located line naming it and what it expects;
the JSON Schema documents it; the driver's policy reads the same numbers."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import json_schema, load_config
from orchestrator.drivers.auto_rejoin import AutoRejoin
from orchestrator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "example.yaml").read_text(encoding="utf-8"))


def written(tmp_path: Path, auto_rejoin: object) -> Path:
    data = copy.deepcopy(EXAMPLE)
    data.setdefault("policy", {})["auto_rejoin"] = auto_rejoin
    path = tmp_path / "failover.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_off_by_default_with_the_documented_defaults() -> None:
    policy = load_config(ROOT / "configs" / "example.yaml").config.policy.auto_rejoin
    assert (policy.enabled, policy.after, policy.retry, policy.max_concurrent) == (False, 300.0, 120.0, 1)
    assert load_config(ROOT / "configs" / "example.yaml").topology.policy.auto_rejoin == AutoRejoin()


def test_switched_on_with_durations(tmp_path: Path) -> None:
    loaded = load_config(written(tmp_path, {"enabled": True, "after": "10m", "retry": "30s", "max_concurrent": 2}))
    assert loaded.topology.policy.auto_rejoin == AutoRejoin(True, 600.0, 30.0, 2)
    immediately = load_config(written(tmp_path, {"enabled": True, "after": "0s"})).config.policy.auto_rejoin
    assert immediately.after == 0.0


@pytest.mark.parametrize(("value", "expected"), [
    ({"enabled": "sometimes"}, "policy.auto_rejoin.enabled: input should be a valid boolean"),
    ({"after": 300}, "policy.auto_rejoin.after: expected a duration string with a unit"),
    ({"after": "5 fortnights"}, "policy.auto_rejoin.after"),
    ({"retry": "0s"}, "policy.auto_rejoin.retry: must be longer than 0s"),
    ({"max_concurrent": 0}, "policy.auto_rejoin.max_concurrent: input should be greater than or equal to 1"),
    ({"max_concurrent": 101}, "policy.auto_rejoin.max_concurrent: input should be less than or equal to 100"),
    ({"enable": True}, "policy.auto_rejoin.enable: unknown key"),
])
def test_each_bad_field_is_one_located_line(tmp_path: Path, value: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(written(tmp_path, value))
    lines = str(refused.value).splitlines()
    assert len(lines) == 1, lines
    assert expected in lines[0] and lines[0].startswith(f"{tmp_path / 'failover.yaml'}:"), lines[0]


def test_the_schema_documents_it() -> None:
    schema = json_schema()
    text = yaml.safe_dump(schema)
    assert "auto_rejoin" in text and "max_concurrent" in text
