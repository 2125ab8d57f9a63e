"""Every fake a drill needs runs as a process of its own: `python -m orchestrator.testbed.fakes CHOICE`.

A drill in another process (a rehearsal on a staging host, `failover drill` against fakes) starts the fakes from the
command line, reads the `listening on URL` lines, points the config at them, and talks to them as the adapters do:
AWS Health through boto3 (and posts the outage's event over `/_fake/events`, late, as the status page confirms),
Cloud DNS and Azure DNS through our own routers, a Route 53 ARC cluster through our router on several regional
endpoints that share one state.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.model import DnsTarget
from providers.registry import build_router

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
GENEROUS = 30.0
RECORD = "spot.engine.example.internal"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
ARN = "arn:aws:route53-recovery-control::111122223333:controlpanel/p/routingcontrol/{}"
ROUTER = {"backoff": (0.1, 0.5), "call_deadline": GENEROUS, "poll_interval": 0.1}


class Fake:
    """A fake started from the command line; `urls` as it printed them."""

    def __init__(self, *args: str, lines: int = 1) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "orchestrator.testbed.fakes", *args], cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        printed: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=self._read, args=(printed,), daemon=True).start()
        self.urls = []
        for _ in range(lines):
            try:
                line = printed.get(timeout=GENEROUS)
            except queue.Empty:
                self.stop()
                raise AssertionError(f"no 'listening on' line from {args}: {self.process.stderr}") from None
            assert line.startswith("listening on http://127.0.0.1:"), line
            self.urls.append(line.split()[-1])

    def _read(self, printed: queue.SimpleQueue[str]) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            printed.put(line.strip())

    @property
    def url(self) -> str:
        return self.urls[0]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=GENEROUS)


def _started(*args: str, lines: int = 1) -> Iterator[Fake]:
    fake = Fake(*args, lines=lines)
    try:
        yield fake
    finally:
        fake.stop()


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=GENEROUS) as answer:
        return json.load(answer)


def _health_client(url: str, region: str) -> Any:
    import boto3

    return boto3.client("health", region_name=region, endpoint_url=url, aws_access_key_id="placeholder",
                        aws_secret_access_key="placeholder")


def test_aws_health_serves_the_events_a_drill_posts_on_both_endpoints() -> None:
    for fake in _started("aws-health", "--standby", lines=2):
        active, passive = fake.urls
        assert _health_client(active, "us-east-1").describe_events(filter={"services": ["EC2"]})["events"] == []
        arn = _post(f"{fake.url}/_fake/events", {"region": "ap-east-1", "zone": "ap-east-1a", "service": "EC2"})["arn"]
        for url, region in ((active, "us-east-1"), (passive, "us-east-2")):  # one book of events behind both
            events = _health_client(url, region).describe_events(filter={"services": ["EC2"],
                                                                         "regions": ["ap-east-1"]})["events"]
            assert [(e["arn"], e["availabilityZone"], e["statusCode"]) for e in events] == [(arn, "ap-east-1a",
                                                                                              "open")]
        _post(f"{fake.url}/_fake/events/end", {"arn": arn})
        with urllib.request.urlopen(f"{fake.url}/_fake/events", timeout=GENEROUS) as answer:
            assert json.load(answer) == []  # no open event left


def test_cloud_dns_moves_a_record_through_our_router() -> None:
    for fake in _started("dns-gcp", "--managed-zone", "engine-zone=engine.example.internal."):
        dns = DnsTarget("gcp", "engine-zone", RECORD, ttl=15, endpoint_url=fake.url,
                        options={"project": "exchange-prod"})
        router = build_router(dns, **ROUTER)
        assert router.current_target(dns) is None
        router.point_to(dns, "10.1.1.10", deadline=GENEROUS)  # done only once the change reads `done`
        assert build_router(dns, **ROUTER).current_target(dns) == "10.1.1.10"


def test_azure_dns_moves_a_record_through_our_router() -> None:
    for fake in _started("dns-azure", "--resource-group", "dns", "--dns-zone", "engine.example.internal"):
        dns = DnsTarget("azure", "engine.example.internal", RECORD, ttl=15, endpoint_url=fake.url,
                        options={"subscription": SUBSCRIPTION, "resource_group": "dns"})
        router = build_router(dns, **ROUTER)
        router.point_to(dns, "10.2.1.10", deadline=GENEROUS)
        assert build_router(dns, **ROUTER).current_target(dns) == "10.2.1.10"


def test_an_arc_cluster_serves_one_state_from_every_endpoint() -> None:
    controls = {"10.0.1.10": ARN.format("hk"), "10.3.1.10": ARN.format("sg")}
    for fake in _started("arc", "--endpoints", "3", "--control", f"{ARN.format('hk')}=On",
                         "--control", f"{ARN.format('sg')}=Off", lines=3):
        assert len(set(fake.urls)) == 3
        endpoints = [{"url": url, "region": region}
                     for url, region in zip(fake.urls, ("us-east-1", "us-west-2", "eu-west-1"), strict=True)]
        dns = DnsTarget("aws-arc", "engine.example.internal", RECORD,
                        options={"cluster_endpoints": endpoints, "controls": controls})
        router = build_router(dns, **ROUTER)
        assert router.current_target(dns) == "10.0.1.10"
        router.point_to(dns, "10.3.1.10", deadline=GENEROUS)
        for endpoint in endpoints[1:]:  # another region's endpoint alone reads the new state
            alone = DnsTarget("aws-arc", "engine.example.internal", RECORD,
                              options={"cluster_endpoints": [endpoint], "controls": controls})
            assert build_router(alone, **ROUTER).current_target(alone) == "10.3.1.10"


def test_a_bad_argument_is_one_line_and_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "orchestrator.testbed.fakes", "arc", "--control", "x=Maybe"],
                            cwd=ROOT, capture_output=True, text=True, timeout=GENEROUS, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith("error: --control 'x=Maybe': expected ARN=On or ARN=Off")
