"""The keys issue 11 added and the checks that come with them, each shown accepted where it is right and refused,
located and explained, where it is not. The refusals of whole files live in tests/data/bad_configs."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import (
    MAX_ALIASES,
    LoadedConfig,
    find_secret,
    is_loopback,
    json_schema,
    load_config,
    parse_listen,
    redact,
    store_url_problem,
)
from orchestrator.config.checks import _comment
from orchestrator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "example.yaml").read_text(encoding="utf-8"))
Edit = Callable[[dict[str, Any]], None]


@pytest.fixture
def write(tmp_path: Path) -> Callable[[Edit], Path]:
    """The example configuration with one change, written as a file."""

    def written(change: Edit) -> Path:
        data = copy.deepcopy(EXAMPLE)
        change(data)
        path = tmp_path / "failover.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return written


def refusal(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    return str(refused.value).splitlines()


def test_new_keys_have_safe_defaults() -> None:
    loaded = load_config(ROOT / "configs" / "example.yaml")
    config, policy = loaded.config, loaded.topology.policy
    assert (policy.suspect_timeout, policy.quorum_may_count_cloud_apis) == (30.0, False)
    assert (config.daemon.max_clock_offset, config.daemon.listen_public, config.daemon.lease_ttl) == (5.0, False, 10.0)
    assert config.audit.head_file is None and loaded.audit_head_path is None
    bare = load_config(ROOT / "configs" / "ci-moto.yaml").config
    assert (bare.daemon.max_clock_offset, bare.policy.suspect_timeout) == (5.0, 30.0)
    assert bare.daemon.listen == "127.0.0.1:9464"


def test_new_keys_reach_the_typed_config_and_the_topology(write: Callable[[Edit], Path]) -> None:
    def change(data: dict[str, Any]) -> None:
        data["policy"]["suspect_timeout"] = "45s"
        data["daemon"]["max_clock_offset"] = "250ms"
        data["notifications"]["webhooks"] = [{"url_file": "/etc/failover/slack-url", "timeout": "3s",
                                              "max_attempts": 100}, {"url_file": "/etc/failover/teams-url"}]
        data["audit"] = {"head_file": "anchors/audit-head"}

    path = write(change)
    loaded = load_config(path)
    assert loaded.topology.policy.suspect_timeout == 45.0
    assert loaded.config.daemon.max_clock_offset == 0.25
    first, second = loaded.config.notifications.webhooks
    assert (first.timeout, first.max_attempts, second.timeout, second.max_attempts) == (3.0, 100, 5.0, 10)
    assert loaded.audit_head_path == (path.parent / "anchors" / "audit-head").resolve()


def test_the_schema_documents_every_new_key() -> None:
    defs = json_schema()["$defs"]
    assert {"suspect_timeout", "quorum_may_count_cloud_apis"} <= set(defs["PolicyConfig"]["properties"])
    assert {"listen_public", "max_clock_offset"} <= set(defs["DaemonConfig"]["properties"])
    assert defs["WebhookConfig"]["properties"]["max_attempts"]["maximum"] == 100
    assert "head_file" in defs["AuditConfig"]["properties"]
    assert defs["DaemonConfig"]["properties"]["max_clock_offset"]["type"] == "string"  # written as a duration
    assert "audit" in json_schema()["properties"]


# ---- the quorum the data plane must reach alone (issue 11, hole 5) ----------------------------------------------


@pytest.mark.parametrize(("vantage_points", "quorum"), [
    ([], 1), (["aws-hk"], 2), (["aws-hk", "gcp-hk"], 3), (["aws-hk", "gcp-hk", "azure-hk"], 4),
    (["orchestrator", "aws-hk"], 2),
])
def test_a_quorum_the_data_plane_reaches_alone_is_accepted(
    write: Callable[[Edit], Path], vantage_points: list[str], quorum: int
) -> None:
    def change(data: dict[str, Any]) -> None:
        data["probes"]["vantage_points"] = vantage_points
        data["policy"]["quorum"] = quorum

    load_config(write(change))


@pytest.mark.parametrize(("vantage_points", "quorum", "data_plane"), [
    ([], 2, 1), (["aws-hk"], 3, 2), (["aws-hk", "aws-hk"], 3, 2), (["orchestrator"], 2, 1),
])
def test_a_quorum_only_a_cloud_api_can_complete_is_refused(
    write: Callable[[Edit], Path], vantage_points: list[str], quorum: int, data_plane: int
) -> None:
    def change(data: dict[str, Any]) -> None:
        data["probes"]["vantage_points"] = vantage_points
        data["policy"]["quorum"] = quorum

    path = write(change)
    [line] = refusal(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: policy\.quorum: {quorum} can only be reached with a cloud API's "
                    rf"vote: the data plane has {data_plane} source\(s\)", line), line
    assert "lag real outages by minutes to hours" in line and "quorum_may_count_cloud_apis: true" in line


OVERRIDE_BASE = (ROOT / "tests" / "data" / "bad_configs" / "quorum_override_without_comment.yaml").read_text()


def with_override_line(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "failover.yaml"
    path.write_text(OVERRIDE_BASE.replace("  quorum_may_count_cloud_apis: true\n", line + "\n"), encoding="utf-8")
    return path


@pytest.mark.parametrize("line", [
    "  quorum_may_count_cloud_apis: true  # single-site lab; EC2 status is the only second opinion we have",
    "  quorum_may_count_cloud_apis: yes #lab",
    "  quorum_may_count_cloud_apis: 'true'   # quoted, still a boolean to pydantic",
])
def test_the_override_with_its_reason_is_accepted(tmp_path: Path, line: str) -> None:
    assert load_config(with_override_line(tmp_path, line)).topology.policy.quorum_may_count_cloud_apis is True


@pytest.mark.parametrize("line", [
    "  quorum_may_count_cloud_apis: true",
    "  quorum_may_count_cloud_apis: true   #   ",
    "  quorum_may_count_cloud_apis: true#no-blank-before-the-hash",
])
def test_the_override_without_a_reason_is_refused(tmp_path: Path, line: str) -> None:
    path = with_override_line(tmp_path, line)
    if "true#" in line:  # YAML reads `true#no ...` as one string, which is not a boolean either
        assert any("quorum_may_count_cloud_apis: input should be a valid boolean" in p for p in refusal(path))
        return
    [problem] = refusal(path)
    assert problem.startswith(f"{path}:15: policy.quorum_may_count_cloud_apis: the override needs its reason")


def test_the_override_never_lifts_a_quorum_above_every_source(write: Callable[[Edit], Path]) -> None:
    def change(data: dict[str, Any]) -> None:
        data["probes"]["vantage_points"] = ["aws-hk"]
        data["policy"]["quorum"] = 4

    [line] = refusal(write(change))
    assert "policy.quorum: 4 exceeds the 3 independent sources" in line


@pytest.mark.parametrize(("text", "comment"), [
    ("  key: true  # the reason", "the reason"),
    ("# a whole-line comment", "a whole-line comment"),
    ('  key: "a # b"', ""),
    ("  key: 'it''s # not one'", ""),
    ('  key: {a: "x # y", b: true}  # but this is', "but this is"),
    ('  key: "esc \\" # still quoted"', ""),
    ("  key: a#b", ""),
    ("  key: it's # a comment after an apostrophe", "a comment after an apostrophe"),
])
def test_what_counts_as_a_comment(text: str, comment: str) -> None:
    assert _comment(text) == comment


# ---- the daemon's listener and lease ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected", "loopback"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464), True),
    ("127.0.0.2:1", ("127.0.0.2", 1), True),
    ("localhost:65535", ("localhost", 65535), True),
    ("[::1]:9464", ("::1", 9464), True),
    ("127.0.0.1:0", ("127.0.0.1", 0), True),  # the system picks a free port: how the tests run daemons
    ("0.0.0.0:9464", ("0.0.0.0", 9464), False),
    ("[::]:9464", ("::", 9464), False),
    ("10.0.0.5:9464", ("10.0.0.5", 9464), False),
    ("metrics.internal:9464", ("metrics.internal", 9464), False),
])
def test_listen_addresses_that_parse(text: str, expected: tuple[str, int], loopback: bool) -> None:
    assert parse_listen(text) == expected
    assert is_loopback(expected[0]) is loopback


@pytest.mark.parametrize(("text", "why"), [
    ("nonsense", "has no port"), ("127.0.0.1:99999", "from 0 to 65535"), ("127.0.0.1:-1", "from 0 to 65535"),
    ("127.0.0.1:http", "from 0 to 65535"), (":9464", "is not host:port"), ("::1:9464", "in brackets"),
    ("[::1]9464", "is not [IPv6 address]:port"), ("[10.0.0.1]:9464", "is not [IPv6 address]:port"),
    ("256.0.0.1:9464", "is not host:port"), ("exa mple:9464", "is not host:port"), ("", "is not host:port"),
])
def test_listen_addresses_that_do_not(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_listen(text)


@pytest.mark.parametrize("listen", ["0.0.0.0:9464", "[::]:9464", "10.0.0.5:9464"])
def test_a_public_listener_is_accepted_when_meant(write: Callable[[Edit], Path], listen: str) -> None:
    def change(data: dict[str, Any]) -> None:
        data["daemon"].update(listen=listen, listen_public=True)

    assert load_config(write(change)).config.daemon.listen == listen


@pytest.mark.parametrize(("probe_interval", "cycle", "lease", "ok"), [
    ("1s", None, "3s", True), ("1s", None, "2900ms", False), ("100ms", None, "2s", True),
    ("100ms", None, "1900ms", False), ("100ms", "2s", "6s", True), ("100ms", "2s", "5s", False),
])
def test_the_lease_covers_three_cycles_and_two_seconds(
    write: Callable[[Edit], Path], probe_interval: str, cycle: str | None, lease: str, ok: bool
) -> None:
    def change(data: dict[str, Any]) -> None:
        data["probes"].update(interval=probe_interval, timeout="50ms")
        data["daemon"]["lease_ttl"] = lease
        if cycle:
            data["daemon"]["cycle_interval"] = cycle

    path = write(change)
    if ok:
        load_config(path)
    else:
        [line] = refusal(path)
        assert "daemon.lease_ttl:" in line and "must renew several times per TTL" in line


@pytest.mark.parametrize(("suspect_timeout", "ok"), [("3s", False), ("3100ms", True), ("30s", True)])
def test_a_suspect_timeout_longer_than_detection(
    write: Callable[[Edit], Path], suspect_timeout: str, ok: bool
) -> None:
    path = write(lambda data: data["policy"].update(suspect_timeout=suspect_timeout))  # detection: 1s x 3
    if ok:
        assert load_config(path).topology.policy.suspect_timeout > 3
    else:
        [line] = refusal(path)
        assert "policy.suspect_timeout: 3s must be longer than probes.interval x failure_threshold = 3s" in line


# ---- the store URL ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "sqlite:///failover-state.db", "sqlite:////var/lib/failover/state.db", "sqlite:///state/dir/x.db",
    "etcd://10.0.0.11", "etcd://10.0.0.11:2379,10.1.0.11:2379,10.2.0.11:2379/failover",
    "etcd://etcd-1.internal:2379/failover/prod", "etcd://[::1]:2379", "etcd://127.0.0.1:2379,127.0.0.1:2380/t-1a2b",
])
def test_store_urls_the_backends_read(url: str) -> None:
    assert store_url_problem(url) is None


@pytest.mark.parametrize(("url", "why"), [
    ("mongodb://db:27017", "not a store URL (mongodb://)"), ("redis://cache:6379", "not a store URL"),
    ("memory://", "not a store URL (memory://)"), ("/var/lib/failover.db", "not a store URL (no scheme)"),
    ("sqlite://relative.db", "names no database file"), ("sqlite:///dir/", "names no database file"),
    ("sqlite:///x.db?mode=ro", "options are not supported"), ("etcd://h:0", "from 1 to 65535"),
    ("etcd://h:2379/", "the etcd key prefix must look like /name"), ("etcd://h:2379/a//b", "the etcd key prefix"),
    ("etcd://", "an empty etcd member"), ("etcd://h:2379,", "an empty etcd member"),
    ("etcd://u:p@h:2379", "credentials are not supported"),
])
def test_store_urls_refused(url: str, why: str) -> None:
    problem = store_url_problem(url)
    assert problem is not None and why in problem


# ---- secrets by value: what is found, what is not, what is shown ------------------------------------------------


@pytest.mark.parametrize("harmless", [
    "i-0123456789abcdef0", "AKIA", "akiaiosfodnn7example", "AKIAIOSFODNN7EXAMPLEX", "spot-engine-1",
    "00000000-0000-0000-0000-000000000000", "http://10.0.1.10:8700", "https://alerts.example.com/in?page=2&monkey=1",
    "etcd://10.0.0.11:2379/failover", "curl -fsS https://ops.example.com/page", "https://user@example.com/x",
    "https://hooks.example.com/services/T0/B0/X", "/etc/failover/slack-webhook-url", "Bearer", "sqlite:///x.db",
])
def test_harmless_values_are_not_secrets(harmless: str) -> None:
    assert find_secret(harmless) is None


@pytest.mark.parametrize(("value", "shown"), [
    ("AKIAIOSFODNN7EXAMPLE", "AKIA****************"),
    ("export AWS_ACCESS_KEY_ID=ASIAY34FZKBOKMUTVV7A", "export AWS_ACCESS_KEY_ID=ASIA****************"),
    ("https://hooks.slack.com/services/T0/B0/abc", "https://hooks.slack.com/services/***"),
    ("https://hooks.slack.com/workflows/T0/A0/1/abc", "https://hooks.slack.com/workflows/***"),
    ("https://x.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d", "https://x.webhook.office.com/***"),
    ("https://discordapp.com/api/webhooks/1/abc", "https://discordapp.com/api/webhooks/***"),
    ("https://u:pw@h/x", "https://u:***@h/x"), ("etcd://:pw@h:2379", "etcd://:***@h:2379"),
    ("https://h/p?a=1&access_token=t&b=2#f", "https://h/p?a=1&access_token=***&b=2#f"),
    ("https://h/p?X-Amz-Signature=s&X-Amz-Credential=c", "https://h/p?X-Amz-Signature=***&X-Amz-Credential=***"),
    ("https://h/api?code=c", "https://h/api?code=***"), ("https://h/?sig=s&key=k", "https://h/?sig=***&key=***"),
    ("curl -H 'Authorization: Bearer abcdefgh12345'", "curl -H 'Authorization: Bearer ***'"),
])
def test_secrets_are_found_and_shown_redacted(value: str, shown: str) -> None:
    assert find_secret(value) is not None
    assert redact(value) == shown
    assert redact(redact(value)) == shown  # the final pass over every error line changes nothing more


def test_an_aliased_secret_is_reported_once_per_place(tmp_path: Path) -> None:
    """Aliases are few (at most MAX_ALIASES) but allowed; a secret behind one is found where it is used."""
    text = (ROOT / "configs" / "example.yaml").read_text(encoding="utf-8")
    text = text.replace("  pre_failover: []", "  pre_failover: [&hook 'curl https://u:hunter2@ops.example/x']")
    text = text.replace("  post_failover: []", "  post_failover: [*hook]")
    path = tmp_path / "failover.yaml"
    path.write_text(text, encoding="utf-8")
    lines = refusal(path)
    assert [line.split(": ")[1] for line in lines] == ["notifications.pre_failover.0", "notifications.post_failover.0"]
    assert all("hunter2" not in line for line in lines)
    assert MAX_ALIASES >= 1


def test_loaded_config_keeps_the_store_url_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "failover.yaml"
    path.write_text((ROOT / "configs" / "example.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    loaded = load_config(path)
    assert isinstance(loaded, LoadedConfig)
    assert loaded.store_url == f"sqlite:///{(tmp_path / 'failover-state.db').resolve()}"


def test_a_file_of_junk_gets_a_bounded_report(write: Callable[[Edit], Path]) -> None:
    path = write(lambda data: data["probes"].update(vantage_points=[f"nowhere-{n}" for n in range(150)]))
    lines = refusal(path)
    assert len(lines) == 101
    assert lines[0].endswith("probes.vantage_points.0: unknown site 'nowhere-0'")
    assert lines[-1] == f"{path}: and 50 more problems"
