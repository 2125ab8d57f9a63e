"""The CI dry run: `failover plan --config configs/ci-moto.yaml --assume-primary-lost` against a moto server shows
the EC2 and Route 53 calls a failover would make, and makes none of them; with `--check-permissions` it also asks
EC2 about the stop and start with `DryRun=True` (tests/e2e/test_check_permissions.py holds a refused credential
and the shipped policies to exit 3 and 0)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def moto_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "ap-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    # moto's state is one per process, shared by every server in it: a Name tag seeded twice names two instances,
    # which the plan rightly reports as an instance it cannot identify
    requests.post(f"{env['AWS_ENDPOINT_URL']}/moto-api/reset", timeout=10)
    try:
        yield env
    finally:
        server.stop()


def test_plan_against_moto_lists_the_calls_and_writes_nothing(moto_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "ci-moto.yaml"
    shutil.copy(ROOT / "configs" / "ci-moto.yaml", config)
    seeded = subprocess.run([sys.executable, "-m", "orchestrator.drill.ci_seed", "--config", str(config)],
                            env=moto_env, capture_output=True, text=True, check=True)
    assert "spot-engine-hk: i-" in seeded.stdout

    result = subprocess.run([sys.executable, "-m", "orchestrator", "plan", "--config", str(config),
                             "--assume-primary-lost", "--output", "json"],
                            env=moto_env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert (plan["source"], plan["target"], plan["blocked_by"]) == ("spot-hk", "spot-sg", [])
    calls = {step["step"]: step["calls"] for step in plan["steps"]}
    [hk_id] = [line.split(": ")[1] for line in seeded.stdout.splitlines() if line.startswith("spot-engine-hk")]
    # the old primary is assumed unreachable: once the halt has stamped both standbys it counts fenced, so the
    # runbook stops its machine only if that did not hold (the plan says so rather than promising a call)
    assert f"if needed: ec2.stop_instances(InstanceIds=['{hk_id}'], Force=True)" in calls["fence_old_primary"]
    assert any(c.startswith("route53.change_resource_record_sets(") and "'UPSERT'" in c and "10.3.1.10" in c
               for c in calls["switch_traffic"])
    assert calls["ensure_target_running"] == ["aws: instance spot-engine-sg already running (no call)"]

    # nothing was written: the instance still runs and no record exists
    endpoint = moto_env["AWS_ENDPOINT_URL"]
    ec2 = boto3.client("ec2", region_name="ap-east-1", endpoint_url=endpoint, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    state = ec2.describe_instances(InstanceIds=[hk_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"
    route53 = boto3.client("route53", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="testing",
                           aws_secret_access_key="testing")
    # the zone the seed made: moto's state is shared by every moto server in this process, and a testbed of an
    # earlier test may have left a zone of the same name (with a record its failover moved)
    [zone] = [line.split(": ")[1] for line in seeded.stdout.splitlines() if line.startswith("engine.example.internal")]
    records = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    assert [r for r in records if r["Name"].startswith("spot.")] == []


def test_check_permissions_asks_the_writes_with_a_dry_run_and_writes_nothing(moto_env: dict[str, str],
                                                                            tmp_path: Path) -> None:
    config = tmp_path / "ci-moto.yaml"
    shutil.copy(ROOT / "configs" / "ci-moto.yaml", config)
    subprocess.run([sys.executable, "-m", "orchestrator.drill.ci_seed", "--config", str(config)], env=moto_env,
                   capture_output=True, text=True, check=True)

    result = subprocess.run([sys.executable, "-m", "orchestrator", "plan", "--config", str(config),
                             "--assume-primary-lost", "--check-permissions"],
                            env=moto_env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "permissions: 11 asked, 0 refused, 0 unknown" in result.stdout
    lines = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("allowed")]
    assert sorted(words[1] for words in lines if words[1] in ("ec2:StopInstances", "ec2:StartInstances")) == [
        "ec2:StartInstances", "ec2:StartInstances", "ec2:StopInstances", "ec2:StopInstances"]
    assert "safe to proceed" in result.stdout

    ec2 = boto3.client("ec2", region_name="ap-east-1", endpoint_url=moto_env["AWS_ENDPOINT_URL"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    states = {i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert states == {"running"}  # a dry run stops nothing
