"""`failover config validate`: the example passes; every broken config exits 2 with one located line per problem."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
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
    # files that could hurt the process: refused while reading, before anything is built from them
    "billion_laughs.yaml": ("more than 50000 values, each alias counted as the values it repeats", 31),
    "alias_bomb_vantage_points.yaml": ("more than 50000 values, each alias counted as the values it repeats", 16),
    "too_many_aliases.yaml": ("more than 64 YAML aliases", 11),
    "recursive_alias.yaml": ("YAML alias *v lies inside the collection it names", 11),
    "undefined_alias.yaml": ("invalid YAML: found undefined alias", 11),
    "deep_flow_nesting.yaml": ("invalid YAML: exceeded maximum nesting depth", 11),
    "deep_block_nesting.yaml": ("YAML nested deeper than 50 levels", 61),
    "alias_nests_too_deep.yaml": ("YAML alias *deep nests values deeper than 50 levels", 28),
    "huge_integer.yaml": ("a number of 5000 characters", 13),
    "bad_date.yaml": ("invalid YAML: invalid value: month must be in 1..12", 3),
    "python_tag.yaml": ("invalid YAML: could not determine a constructor", 15),
    "integer_top_key.yaml": ("42: keys should be strings", 26),
    "null_top_key.yaml": ("None: keys should be strings", 26),
    # the store: a backend that exists, spelt as it reads it
    "store_mongodb.yaml": ("store: not a store URL (mongodb://)", 4),
    "store_no_scheme.yaml": ("store: not a store URL (no scheme)", 4),
    "store_sqlite_no_file.yaml": ("store: names no database file", 4),
    "store_memory.yaml": ("store: not a store URL (memory://)", 4),
    "store_etcd_bad_port.yaml": ("store: etcd member '10.1.0.11:99999': the port must be a number from 1 to 65535", 4),
    "store_etcd_empty_member.yaml": ("store: an empty etcd member between commas", 4),
    "store_etcd_options.yaml": ("store: options are not supported in store URLs", 4),
    "store_etcd_twice.yaml": ("store: etcd member '10.0.0.11:2379' is named twice", 4),
    "store_credentials.yaml": ("store: a password in a URL (user:password@)", 4),
    # secrets found by their value, wherever they are
    "secret_akia_profile.yaml": ("sites.aws-hk.profile: an AWS access key id", 5),
    "secret_asia_in_command.yaml": ("notifications.pre_failover.0: an AWS access key id", 28),
    "secret_control_url_password.yaml": ("engines.spot.replicas.spot-gcp.control_url: a password in a URL", 24),
    "secret_endpoint_userinfo.yaml": ("sites.gcp-hk.endpoint_url: a password in a URL", 6),
    "secret_slack_webhook.yaml": ("notifications.webhooks.0.url: an inline chat webhook URL", 28),
    "secret_teams_webhook.yaml": ("notifications.webhooks.0.url: an inline chat webhook URL", 28),
    "secret_discord_webhook.yaml": ("notifications.webhooks.0.url: an inline chat webhook URL", 28),
    "secret_token_param.yaml": ("notifications.webhooks.0.url: a secret in the URL's token= parameter", 28),
    "secret_key_param.yaml": ("sites.azure-hk.endpoint_url: a secret in the URL's key= parameter", 7),
    "secret_sig_param.yaml": ("notifications.webhooks.0.url: a secret in the URL's sig= parameter", 28),
    "secret_signature_param.yaml": ("notifications.webhooks.0.url: a secret in the URL's signature= parameter", 28),
    "secret_code_param.yaml": ("notifications.webhooks.0.url: a secret in the URL's code= parameter", 28),
    "secret_bearer_in_command.yaml": ("notifications.post_failover.0: a bearer token", 28),
    "secret_token_key.yaml": ("control_token: secrets do not belong in the configuration", 4),
    # a quorum only a cloud API can complete (issue 11, hole 5)
    "quorum_needs_cloud_api.yaml": ("policy.quorum: 2 can only be reached with a cloud API's vote", 14),
    "quorum_three_with_one_vantage.yaml": ("policy.quorum: 3 can only be reached with a cloud API's vote", 14),
    "quorum_orchestrator_counts_once.yaml": ("policy.quorum: 2 can only be reached with a cloud API's vote", 14),
    "quorum_override_without_comment.yaml": ("policy.quorum_may_count_cloud_apis: the override needs its reason", 15),
    "quorum_override_empty_comment.yaml": ("policy.quorum_may_count_cloud_apis: the override needs its reason", 15),
    # the daemon: its listener and its lease
    "listen_nonsense.yaml": ("daemon.listen: 'nonsense' has no port", 27),
    "listen_port_out_of_range.yaml": ("daemon.listen: '127.0.0.1:99999': the port must be a number", 27),
    "listen_public_without_flag.yaml": ("daemon.listen: 0.0.0.0 is not a loopback address", 27),
    "listen_ipv6_any_without_flag.yaml": ("daemon.listen: :: is not a loopback address", 27),
    "listen_ipv6_unbracketed.yaml": ("daemon.listen: '::1:9464': write an IPv6 address in brackets", 27),
    "listen_hostname_without_flag.yaml": ("daemon.listen: metrics.example.com is not a loopback address", 27),
    "listen_bad_ip.yaml": ("daemon.listen: '10.0.0.300:9464' is not host:port", 27),
    "listen_public_not_bool.yaml": ("daemon.listen_public: input should be a valid boolean", 27),
    "lease_ttl_below_two_seconds.yaml": ("daemon.lease_ttl: 1s is too short", 27),
    "lease_ttl_below_three_cycles.yaml": ("daemon.lease_ttl: 10s is too short: at least 3 cycles of 5s", 28),
    "lease_ttl_zero.yaml": ("daemon.lease_ttl: must be longer than 0s", 27),
    "max_clock_offset_bare_number.yaml": ("daemon.max_clock_offset: expected a duration string with a unit", 27),
    # notifications, policy, audit, durations
    "webhook_max_attempts_zero.yaml": ("notifications.webhooks.0.max_attempts: input should be greater than", 28),
    "webhook_max_attempts_too_many.yaml": ("notifications.webhooks.0.max_attempts: input should be less than", 28),
    "webhook_timeout_zero.yaml": ("notifications.webhooks.0.timeout: must be longer than 0s", 28),
    "webhook_url_and_url_file.yaml": ("notifications.webhooks.0: give exactly one of url and url_file", 28),
    "suspect_timeout_below_detection.yaml": ("policy.suspect_timeout: 2s must be longer than", 16),
    "suspect_timeout_bare_number.yaml": ("policy.suspect_timeout: expected a duration string with a unit", 16),
    "audit_unknown_key.yaml": ("audit.head: unknown key (did you mean 'head_file'?)", 27),
    "audit_head_file_empty.yaml": ("audit.head_file: string should have at least 1 character", 27),
    "duration_overflow.yaml": ("protection_window.duration: '99999999999h' is longer than", 17),
    "probe_interval_zero.yaml": ("probes.interval: must be longer than 0s", 9),
    # a provider's own options, checked by the options model its adapter registered (issue 13)
    "gcp_option_typo.yaml": ("sites.gcp-hk.project: required field is missing for provider gcp", 5),
    "azure_missing_options.yaml": ("sites.azure-hk.subscription: required field is missing for provider azure", 29),
    "aws_profile_not_a_string.yaml": ("sites.aws-hk.profile: input should be a valid string", 4),
    "provider_typo.yaml": ("sites.gcp-hk.provider: unknown provider 'gpc'; known: aws, azure, gcp, local "
                           "(did you mean 'gcp'?)", 5),
    "dns_router_unknown.yaml": ("engines.spot.dns.provider: unknown DNS router 'ns1'; known: aws, aws-arc, azure, "
                                "gcp, local", 69),
    "dns_option_typo.yaml": ("engines.spot.dns.profle: unknown key (did you mean 'profile'?)", 71),
}

# file -> the secret it holds: never printed, whatever else the error line shows
SECRETS: dict[str, str] = {
    "secret_aws_key.yaml": "wJalrXUtnFEMI",
    "store_credentials.yaml": "store-pw-4711",
    "secret_akia_profile.yaml": "IOSFODNN7EXAMPLE",
    "secret_asia_in_command.yaml": "Y34FZKBOKMUTVV7A",
    "secret_control_url_password.yaml": "ctl-pw-4711",
    "secret_endpoint_userinfo.yaml": "gcp-pw-4711",
    "secret_slack_webhook.yaml": "slackSecret4711",
    "secret_teams_webhook.yaml": "teamsSecret4711",
    "secret_discord_webhook.yaml": "discordSecret4711",
    "secret_token_param.yaml": "tokSecret4711",
    "secret_key_param.yaml": "keySecret4711",
    "secret_sig_param.yaml": "sigSecret4711",
    "secret_signature_param.yaml": "signatureSecret4711",
    "secret_code_param.yaml": "codeSecret4711",
    "secret_bearer_in_command.yaml": "bearerSecret4711",
    "secret_token_key.yaml": "tokenValue4711",
}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_every_bad_config_on_disk_is_covered() -> None:
    on_disk = {p.name for p in BAD.iterdir()}
    assert on_disk <= set(EXPECTED), on_disk - set(EXPECTED)
    assert set(EXPECTED) - on_disk == {"missing_file.yaml"}
    assert len(on_disk) >= 60


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


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_a_secret_is_refused_without_being_echoed(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert SECRETS[name] in (BAD / name).read_text(encoding="utf-8")  # the file does hold it
    code, _, err = run_cli(["config", "validate", str(BAD / name)], capsys)
    assert code == 2
    assert SECRETS[name] not in err
    assert any(hint in err for hint in ("credential chain", "url_file", "control_token_file", "no credentials"))


@pytest.mark.parametrize(("name", "shown"), [
    ("secret_slack_webhook.yaml", "'https://hooks.slack.com/services/***'"),
    ("secret_token_param.yaml", "'https://alerts.example.com/hook?channel=ops&token=***'"),
    ("secret_control_url_password.yaml", "'http://admin:***@10.1.1.10:8700'"),
    ("secret_akia_profile.yaml", "'AKIA****************'"),
])
def test_the_value_is_shown_redacted(name: str, shown: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run_cli(["config", "validate", str(BAD / name)], capsys)
    assert f"(got {shown})" in err


def test_unknown_key_suggests_the_field_meant(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run_cli(["config", "validate", str(BAD / "unknown_site_key.yaml")], capsys)
    assert "sites.aws-hk.regon: unknown key (did you mean 'region'?)" in err


def test_a_typo_in_an_adapter_option_is_located_and_corrected(capsys: pytest.CaptureFixture[str]) -> None:
    """`projct` is neither a common site key nor one of the gcp adapter's options: both lines, at the site's line."""
    path = BAD / "gcp_option_typo.yaml"
    _, _, err = run_cli(["config", "validate", str(path)], capsys)
    assert err.splitlines() == [
        f"error: {path}:5: sites.gcp-hk.project: required field is missing for provider gcp",
        f"error: {path}:5: sites.gcp-hk.projct: unknown key (did you mean 'project'?)",
    ]


def test_adapter_problems_come_with_every_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """All at once: a broken policy does not hide an adapter's options, nor they the cross-field rules."""
    text = (BAD / "azure_missing_options.yaml").read_text(encoding="utf-8")
    path = tmp_path / "two-problems.yaml"
    path.write_text(text.replace("  quorum: 2 ", "  quorum: two "), encoding="utf-8")
    _, _, err = run_cli(["config", "validate", str(path)], capsys)
    fields = [line.split(": ")[2] for line in err.splitlines()]
    assert fields == ["policy.quorum", "sites.azure-hk.subscription", "sites.azure-hk.resource_group"]


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
    site = schema["$defs"]["SiteConfig"]  # each registered adapter's options, under its provider's name
    branches = {branch["if"]["properties"]["provider"]["const"]: branch["then"] for branch in site["allOf"]}
    assert set(branches) == {"aws", "azure", "gcp", "local"}
    assert branches["gcp"]["required"] == ["project"]  # the rest have defaults: the fence, the outage signals
    assert {"project", "fence", "service_health", "host_errors"} <= set(branches["gcp"]["properties"])
    assert site["unevaluatedProperties"] is False


def test_adapter_options_reach_the_topology_untouched_by_the_core() -> None:
    from orchestrator.config import load_config

    topology = load_config(ROOT / "configs" / "example.yaml").topology
    assert {name: dict(site.options) for name, site in topology.sites.items()} == {
        "aws-hk": {"profile": "exchange-prod"},
        "gcp-hk": {"project": "exchange-prod"},
        "azure-hk": {"subscription": "00000000-0000-0000-0000-000000000000", "resource_group": "trading"},
    }
    gcp = topology.sites["gcp-hk"]
    with pytest.raises(TypeError, match="immutable"):
        gcp.options["project"] = "elsewhere"  # type: ignore[index]
    assert hash(gcp) == hash(copy.deepcopy(gcp)) and pickle.loads(pickle.dumps(gcp)) == gcp  # still a value
    assert json.loads(json.dumps(dataclasses.asdict(gcp)))["options"] == {"project": "exchange-prod"}
    dns = topology.engines["spot"].dns
    assert dns is not None and (dns.provider, dict(dns.options)) == ("aws", {})


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
