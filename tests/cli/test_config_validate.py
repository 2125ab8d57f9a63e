"""`failover config validate`: the example passes; every broken config exits 2 with one located line per problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.app import main

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "data" / "bad_configs"

# file -> (text the first error line must contain: the field path or the problem, and its line, or None)
EXPECTED: dict[str, tuple[str, int | None]] = {
    "a_directory.yaml": ("is a directory", None),
    "bad_approval.yaml": ("policy.approval", 14),
    "bad_control_url.yaml": ("engines.spot.replicas.spot-azure.control_url", 24),
    "bad_duration_unit.yaml": ("protection_window.duration", 16),
    "bad_provider.yaml": ("sites.aws-hk.provider", 4),
    "bad_timezone.yaml": ("display_timezone", 2),
    "bad_version.yaml": ("version", 1),
    "bad_yaml.yaml": ("invalid YAML", 11),
    "bare_number_duration.yaml": ("probes.interval", 8),
    "duplicate_site.yaml": ("sites.gcp-hk: duplicate key", 6),
    "empty.yaml": ("empty", 1),
    "gcp_missing_project.yaml": ("sites.gcp-hk.project", 5),
    "inconsistent_timing.yaml": ("probes.interval", 8),
    "missing_engines.yaml": ("engines: required", 1),
    "missing_primary.yaml": ("engines.spot.primary: required", 19),
    "negative_lag.yaml": ("policy.max_lag_on_failover", 15),
    "not_utf8.yaml": ("not UTF-8", None),
    "one_replica.yaml": ("engines.spot.replicas", 21),
    "only_comments.yaml": ("must be a mapping", 1),
    "primary_not_replica.yaml": ("engines.spot.primary", 20),
    "protection_allows_market.yaml": ("protection_window.allow.1", 17),
    "quorum_too_high.yaml": ("policy.quorum", 13),
    "replica_name_reused.yaml": ("engines.perp.replicas.spot-gcp", 28),
    "replicas_same_site.yaml": ("engines.spot.replicas.spot-azure.site", 24),
    "secret_aws_key.yaml": ("sites.aws-hk.aws_secret_access_key", 4),
    "secret_client_secret.yaml": ("sites.azure-hk.client_secret", 6),
    "secret_password.yaml": ("notifications.webhooks.0.password", 27),
    "single_provider.yaml": ("require_multi_cloud", 3),
    "tab_indent.yaml": ("invalid YAML", 13),
    "timeout_not_below_interval.yaml": ("probes.timeout", 9),
    "top_level_list.yaml": ("must be a mapping", 1),
    "unknown_site_key.yaml": ("sites.aws-hk.region: required", 4),
    "unknown_site_ref.yaml": ("engines.spot.replicas.spot-azure.site: unknown site", 24),
    "unknown_top_key.yaml": ("retries: unknown key", 25),
    "unknown_vantage.yaml": ("probes.vantage_points.2", 10),
    "wrong_type_threshold.yaml": ("policy.failure_threshold", 12),
    "missing_file.yaml": ("no such config file", None),  # not on disk, on purpose
}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_every_bad_config_on_disk_is_covered() -> None:
    on_disk = {p.name for p in BAD.iterdir()}
    assert on_disk <= set(EXPECTED), on_disk - set(EXPECTED)
    assert len(EXPECTED) >= 25


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_config_exits_2_with_one_located_line_per_problem(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / name
    code, out, err = run_cli(["config", "validate", str(path)], capsys)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert lines, "an error must be printed"
    assert "Traceback" not in err
    for line in lines:
        assert line.startswith(f"error: {path}"), line
    text, line_number = EXPECTED[name]
    assert text in lines[0]
    if line_number is not None:
        assert lines[0].startswith(f"error: {path}:{line_number}: "), lines[0]


def test_secret_error_points_to_the_credential_chain(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run_cli(["config", "validate", str(BAD / "secret_aws_key.yaml")], capsys)
    assert "standard credential chain" in err
    assert "wJalrXUtnFEMI" not in err  # the secret itself is never echoed


def test_unknown_key_suggests_the_field_meant(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run_cli(["config", "validate", str(BAD / "unknown_site_key.yaml")], capsys)
    assert "sites.aws-hk.regon: unknown key (did you mean 'region'?)" in err


def test_example_config_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["config", "validate", str(ROOT / "configs" / "example.yaml"), "--output", "json"], capsys)
    assert code == 0
    summary = json.loads(out)
    assert summary["valid"] is True
    assert summary["providers"] == ["aws", "azure", "gcp"]
    assert summary["engines"] == {"spot": 3}


def test_config_from_environment_variable(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAILOVER_CONFIG", str(BAD / "bad_version.yaml"))
    code, _, err = run_cli(["config", "validate"], capsys)
    assert code == 2 and "bad_version.yaml:1: version" in err


def test_schema_is_json_schema_with_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["config", "schema"], capsys)
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"sites", "engines", "policy", "probes", "protection_window"} <= set(schema["properties"])
    interval = schema["$defs"]["ProbesConfig"]["properties"]["interval"]
    assert interval["type"] == "string"


def test_no_traceback_from_the_real_entry_point() -> None:
    """The console script itself: one line, exit 2, no traceback; --debug shows it."""
    path = str(BAD / "bad_yaml.yaml")
    plain = subprocess.run([sys.executable, "-m", "orchestrator", "config", "validate", path],
                           capture_output=True, text=True, check=False)
    assert plain.returncode == 2
    assert len(plain.stderr.splitlines()) == 1 and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "orchestrator", "--debug", "config", "validate", path],
                           capture_output=True, text=True, check=False)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


@pytest.mark.parametrize("name", ["example.yaml", "ci-moto.yaml", "deploy/failover-ha.yaml",
                                  "scenarios/hk-topology.yaml"])
def test_shipped_configs_are_valid(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["config", "validate", str(ROOT / "configs" / name)], capsys)
    assert code == 0, err
