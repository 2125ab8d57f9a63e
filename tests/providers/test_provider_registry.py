"""The factory: lazy SDK imports, unknown providers, capabilities; and the fakes served as a separate process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from orchestrator.core.errors import ConfigError
from orchestrator.core.model import DnsTarget, Site
from providers import Capability, build_provider, build_router, check_capabilities, register_provider
from providers.memory import MemoryProvider
from providers.registry import PROVIDERS

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("google.cloud.compute_v1", "azure.mgmt.compute", "azure.identity")


def _run(code: str) -> str:
    answer = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=True)
    return answer.stdout


def test_building_an_aws_provider_imports_no_other_cloud_sdk() -> None:
    loaded = json.loads(_run(
        "import json, sys\n"
        "import providers\n"
        "before = sorted(m for m in sys.modules if m.startswith(('boto3', 'google', 'azure')))\n"
        "from orchestrator.core.model import Site\n"
        "p = providers.build_provider(Site('aws-hk', 'aws', 'ap-east-1', ('ap-east-1a',)))\n"
        "print(json.dumps({'before': before, 'after': sorted(sys.modules)}))\n"
    ))
    assert loaded["before"] == []  # importing the package imports no SDK at all
    assert "boto3" in loaded["after"]
    assert not [name for name in loaded["after"] if name.startswith(HEAVY)]


def test_building_a_gcp_provider_imports_no_aws_or_azure_sdk() -> None:
    loaded = json.loads(_run(
        "import json, sys\n"
        "from providers import build_provider\n"
        "from orchestrator.core.model import Site\n"
        "build_provider(Site('gcp-hk', 'gcp', 'asia-east2', ('asia-east2-a',), project='p'))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    ))
    assert "google.cloud.compute_v1" in loaded
    assert not [name for name in loaded if name.startswith(("boto3", "azure.mgmt"))]


def test_unknown_provider_and_router_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="site x: unknown provider 'ibm'; known: aws, azure, gcp, local, memory"):
        build_provider(Site("x", "ibm", "r"))
    with pytest.raises(ConfigError, match=re.escape("dns record spot.example: unknown provider 'gcp'")):
        build_router(DnsTarget("gcp", "zone", "spot.example"))


def test_registering_an_adapter() -> None:
    register_provider("memory-too", "providers.memory:MemoryProvider")
    try:
        assert isinstance(build_provider(Site("m", "memory-too", "r", ("a",))), MemoryProvider)
    finally:
        PROVIDERS.pop("memory-too")


def test_check_capabilities_names_site_and_what_is_missing() -> None:
    provider = build_provider(Site("gcp-hk", "gcp", "asia-east2", project="p"))
    check_capabilities(provider, {Capability.FENCE, Capability.ZONE_HEALTH})
    with pytest.raises(ConfigError, match="site gcp-hk: provider gcp lacks traffic"):
        check_capabilities(provider, {Capability.TRAFFIC, Capability.FENCE})


def test_fakes_run_as_a_process_with_drill_controls() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "providers.fakes", "gcp", "--port", "0", "--instance", "spot-engine-1"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        instance = f"{url}/compute/v1/projects/exchange-prod/zones/asia-east2-a/instances/spot-engine-1"
        with urllib.request.urlopen(instance, timeout=5) as answer:
            assert json.load(answer)["status"] == "RUNNING"
        control = urllib.request.Request(f"{url}/_fake/zones/asia-east2-a", data=b'{"status": "DOWN"}',
                                         method="POST")
        urllib.request.urlopen(control, timeout=5).close()
        with urllib.request.urlopen(f"{url}/_fake/state", timeout=5) as answer:
            assert json.load(answer)["zones"] == {"asia-east2-a": "DOWN"}
    finally:
        process.terminate()
        process.wait(timeout=10)
