"""`failover check` as cron runs it, against the testbed's clouds: what one run looked up, the next run reuses; a
replaced machine is looked up again without a false verdict; a cloud whose API never answers costs the run its own
deadline and leaves the other clouds' verdicts alone.

EC2 calls are counted where they arrive: a small HTTP proxy in front of moto records each request's `Action`.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import yaml

from orchestrator.config import load_config
from orchestrator.drivers.wiring import NAMES_KEY
from orchestrator.store import open_store
from orchestrator.testbed.world import (
    AWS_REGION,
    AWS_ZONE,
    LOADED_PROBE_INTERVAL,
    LOADED_PROBE_TIMEOUT,
    LOADED_PROTECTION,
    Testbed,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

NAME = "spot-engine-aws"


class CountingProxy:
    """Forwards every request to `upstream` and counts the EC2 query API's `Action` of each."""

    def __init__(self, upstream: str) -> None:
        self.actions: Counter[str] = Counter()
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fields = parse_qs(body.decode("utf-8", "replace")) | parse_qs(urlsplit(self.path).query)
                with lock:
                    proxy.actions[fields.get("Action", ["?"])[0]] += 1
                upstream_conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream_conn.request(self.command, self.path, body=body, headers=headers)
                answer = upstream_conn.getresponse()
                payload = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                upstream_conn.close()

            do_GET = do_POST = _forward

            def log_message(self, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Testbed]:
    with Testbed(tmp_path / "bed", protection=LOADED_PROTECTION, probe_interval=LOADED_PROBE_INTERVAL,
                 probe_timeout=LOADED_PROBE_TIMEOUT) as testbed:
        yield testbed


@pytest.fixture
def named_bed(bed: Testbed) -> Iterator[tuple[Testbed, CountingProxy]]:
    """The AWS replica named by its `Name` tag, and AWS's API reached through a counting proxy."""
    ec2(bed).create_tags(Resources=[bed.aws_instance], Tags=[{"Key": "Name", "Value": NAME}])
    proxy = CountingProxy(bed.moto_url)
    config = bed.config()
    config["sites"]["aws-hk"]["endpoint_url"] = proxy.url
    config["engines"]["spot"]["replicas"]["spot-aws"]["instance"] = NAME
    bed.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    yield bed, proxy
    proxy.close()


def ec2(bed: Testbed) -> Any:
    return boto3.client("ec2", region_name=AWS_REGION, endpoint_url=bed.moto_url)


def check(bed: Testbed) -> tuple[int, dict[str, Any]]:
    answer = subprocess.run([sys.executable, "-m", "orchestrator", "check", "--output", "json"], env=bed.env(),
                            capture_output=True, text=True, timeout=300)
    assert answer.stdout, answer.stderr
    result: dict[str, Any] = json.loads(answer.stdout)
    return answer.returncode, result


def stored_names(bed: Testbed) -> dict[str, Any]:
    with open_store(load_config(bed.config_path).store_url) as store:
        found = store.get_state(NAMES_KEY)
    return found[0]["names"] if found else {}


def test_a_name_tag_is_looked_up_by_one_run_and_again_only_when_the_machine_is_replaced(
    named_bed: tuple[Testbed, CountingProxy],
) -> None:
    bed, proxy = named_bed
    code, result = check(bed)
    assert (code, result["message"], set(result["verdicts"].values())) == (0, "all healthy", {"healthy"})
    assert proxy.actions["DescribeInstances"] == 1
    assert stored_names(bed) == {f"aws-hk/ec2-name/{NAME}": bed.aws_instance}

    code, result = check(bed)  # the next cron run: a new process
    assert (code, result["message"]) == (0, "all healthy")
    assert proxy.actions["DescribeInstances"] == 1  # no new look-up
    assert proxy.actions["DescribeInstanceStatus"] == 2

    # the machine is rebuilt: the old instance terminated, a new one carries the same Name tag
    ec2(bed).terminate_instances(InstanceIds=[bed.aws_instance])
    new = ec2(bed).run_instances(ImageId=ec2(bed).describe_images(Owners=["amazon"])["Images"][0]["ImageId"],
                                 MinCount=1, MaxCount=1, Placement={"AvailabilityZone": AWS_ZONE},
                                 TagSpecifications=[{"ResourceType": "instance",
                                                     "Tags": [{"Key": "Name", "Value": NAME}]}],
                                 )["Instances"][0]["InstanceId"]
    code, result = check(bed)
    assert (code, result["message"], result["verdicts"]["spot-aws"]) == (0, "all healthy", "healthy"), result
    assert proxy.actions["DescribeInstances"] == 2  # looked up again, in the same run
    assert stored_names(bed) == {f"aws-hk/ec2-name/{NAME}": new}

    assert check(bed)[0] == 0
    assert proxy.actions["DescribeInstances"] == 2


def test_a_cloud_api_that_never_answers_holds_up_no_other_cloud(bed: Testbed) -> None:
    assert bed.gcp is not None
    assert check(bed)[0] == 0
    bed.gcp.hang_next(3600, count=10_000)  # GCP's API takes every request and never answers (until teardown)
    asked_before = len(bed.gcp.requests)
    began = time.time()

    code, result = check(bed)

    verdicts = result["verdicts"]
    assert (verdicts["aws-hk"], verdicts["azure-hk"], verdicts["spot-aws"], verdicts["spot-azure"]) == (
        "healthy", "healthy", "healthy", "healthy")
    assert (verdicts["gcp-hk"], verdicts["spot-gcp"]) == ("unknown", "unknown")  # never healthy
    assert (code, result["message"]) == (1, "no action; not healthy: gcp-hk, spot-gcp")
    # the run ended while the first request of each GCP source still hung (the main source, Service Health and
    # host errors are each polled on a thread of their own): one request each, none asked again
    asked = bed.gcp.requests[asked_before:]
    assert len(asked) == 3 and len(set(asked)) == 3, asked
    with open_store(load_config(bed.config_path).store_url) as store:
        latest = {(o.subject, o.source): o for o in store.latest_observations(1, since=began)}
    for site, source in (("aws-hk", "provider:aws"), ("azure-hk", "provider:azure")):
        assert latest[(site, source)].status.value == "ok"  # heard in this run, while GCP hung
    for subject in ("gcp-hk", "spot-gcp"):
        silent = latest[(subject, "provider:gcp")]
        assert silent.status.value == "unknown"  # the store keeps the detail, not the typed cause
        assert silent.detail.startswith("provider API failed: no answer within")
