"""The catalog and the factory: adapters found through entry points, their options validated without their SDK,
lazy SDK imports, unknown providers, capabilities; and the fakes served as a separate process."""

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
from providers.catalog import PROVIDER_GROUP, PROVIDERS, ROUTER_GROUP, Catalog
from providers.local import LocalProvider
from providers.options import GCP, AdapterSpec, NoOptions

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
        "build_provider(Site('gcp-hk', 'gcp', 'asia-east2', ('asia-east2-a',), options={'project': 'p'}))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    ))
    assert "google.auth" in loaded and "google.cloud.compute_v1" not in loaded  # REST through google-auth
    assert not [name for name in loaded if name.startswith(("boto3", "azure.mgmt"))]


def test_unknown_provider_and_router_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="site x: unknown provider 'ibm'; known: aws, azure, gcp, local"):
        build_provider(Site("x", "ibm", "r"))
    expected = "dns record spot.example: unknown DNS router 'ns1'; known: aws, aws-arc, azure, gcp, local"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        build_router(DnsTarget("ns1", "zone", "spot.example"))


def test_registering_an_adapter_in_code() -> None:
    register_provider("local-too", AdapterSpec(NoOptions, "providers.local:LocalProvider"))
    try:
        assert isinstance(build_provider(Site("m", "local-too", "r", ("a",))), LocalProvider)
        assert "local-too" in PROVIDERS.names()
    finally:
        PROVIDERS.unregister("local-too")
    assert "local-too" not in PROVIDERS.names()


def test_the_built_ins_come_from_this_package_entry_points() -> None:
    """pyproject.toml declares them; the installed metadata is what the catalog reads (reinstall after editing)."""
    assert PROVIDERS.names() == ["aws", "azure", "gcp", "local"]
    assert Catalog(ROUTER_GROUP, "DNS router").names() == ["aws", "aws-arc", "azure", "gcp", "local"]
    assert PROVIDERS.find("gcp") is GCP
    with pytest.raises(ConfigError, match=re.escape("unknown provider 'gpc'; known: aws, azure, gcp, local "
                                                    "(did you mean 'gcp'?)")):
        PROVIDERS.find("gpc")


def test_validating_options_imports_no_sdk_and_no_adapter() -> None:
    loaded = json.loads(_run(
        "import json, sys\n"
        "from providers.catalog import PROVIDERS, ROUTERS\n"
        "for kind in PROVIDERS.names():\n"
        "    PROVIDERS.find(kind).options.model_validate({})  if kind not in ('gcp', 'azure') else None\n"
        "PROVIDERS.find('gcp').options.model_validate({'project': 'p'})\n"
        "ROUTERS.find('aws').options.model_validate({'profile': 'prod'})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    ))
    assert not [name for name in loaded if name.startswith(("boto3", "botocore", "google", "azure", "tenacity"))]
    assert not [name for name in loaded if name in ("providers.aws", "providers.gcp", "providers.azure",
                                                    "providers.base", "providers.registry")]


def test_a_site_built_in_code_has_its_options_checked_by_the_adapter_model() -> None:
    with pytest.raises(ConfigError, match=r"^site gcp-hk: project: Field required$"):
        build_provider(Site("gcp-hk", "gcp", "asia-east2"))
    with pytest.raises(ConfigError, match=r"^site m: zone: Extra inputs are not permitted"):
        build_provider(Site("m", "local", "r", options={"zone": "a"}))
    with pytest.raises(ConfigError, match=r"^dns record spot\.example: profile: Input should be a valid string"):
        build_router(DnsTarget("aws", "zone", "spot.example", options={"profile": 3}))


def test_two_packages_claiming_one_name_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin must never silently replace the adapter that fences production machines."""
    dist = tmp_path / "rogue-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rogue\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(f"[{PROVIDER_GROUP}]\naws = rogue:AWS\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    catalog = Catalog(PROVIDER_GROUP, "provider")
    with pytest.raises(ConfigError, match=r"provider 'aws' is registered by more than one package: .*rogue"):
        catalog.find("aws")
    assert catalog.find("gcp") is GCP  # the other names are unaffected


def test_a_broken_plugin_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(f"[{PROVIDER_GROUP}]\noci = no_such_module:OCI\nibm = json:dumps\n",
                                           encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    catalog = Catalog(PROVIDER_GROUP, "provider")
    with pytest.raises(ConfigError, match="the oci provider of package broken cannot be loaded "
                                          r"\(ModuleNotFoundError: No module named 'no_such_module'\)"):
        catalog.find("oci")
    with pytest.raises(ConfigError, match="entry point ibm = json:dumps of package broken is not an AdapterSpec"):
        catalog.find("ibm")


def test_check_capabilities_names_site_and_what_is_missing() -> None:
    provider = build_provider(Site("gcp-hk", "gcp", "asia-east2", options={"project": "p"}))
    check_capabilities(provider, {Capability.FENCE, Capability.ZONE_HEALTH})
    with pytest.raises(ConfigError, match="site gcp-hk: provider gcp lacks traffic"):
        check_capabilities(provider, {Capability.TRAFFIC, Capability.FENCE})


def test_fakes_run_as_a_process_with_drill_controls() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.testbed.fakes", "gcp", "--port", "0", "--instance", "spot-engine-1"],
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
