"""`failover plan` in CI must fail (exit 3) on a credential the cloud would refuse.

Against a moto server with IAM authentication switched on (moto then checks every request's signature against the
access keys it issued, and each action against the user's policies): keys moto never issued are refused
(InvalidClientTokenId), a user holding configs/iam/aws-policy.json may do everything a failover does, and a user whose
policy lacks one action is caught by `--check-permissions` (EC2 `DryRun=True`: DryRunOperation is allowed, an
authorization error refused).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "configs" / "iam" / "aws-policy.json"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def moto_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A moto server seeded from configs/ci-moto.yaml (before IAM authentication is on)."""
    from moto.iam.access_control import IAMRequestBase
    from moto.server import ThreadedMotoServer

    # moto's server recomputes a Route 53 GET's signature over a lowercased query string, so it refuses every
    # correctly signed ListHostedZonesByName (SignatureDoesNotMatch). Its access key and policy checks still run.
    original = IAMRequestBase.check_signature

    def check_signature(self: Any) -> None:
        if not (self._service == "route53" and "?" in self._path):
            original(self)

    monkeypatch.setattr(IAMRequestBase, "check_signature", check_signature)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "ap-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    config = tmp_path / "ci-moto.yaml"
    shutil.copy(ROOT / "configs" / "ci-moto.yaml", config)
    # moto's state is one per process, shared by every server in it: start from none (a Name tag seeded twice
    # names two instances, and an IAM user made twice already exists)
    requests.post(f"{env['AWS_ENDPOINT_URL']}/moto-api/reset", timeout=10)
    try:
        subprocess.run([sys.executable, "-m", "orchestrator.drill.ci_seed", "--config", str(config)], env=env,
                       capture_output=True, text=True, check=True)
        yield {"env": env, "config": config, "endpoint": env["AWS_ENDPOINT_URL"]}
    finally:
        server.stop()


def _user(endpoint: str, name: str, policy: dict[str, Any]) -> dict[str, str]:
    """An IAM user in moto holding `policy`, and its access keys (made while authentication is still off)."""
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="failover", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def _plan(moto_ci: dict[str, Any], keys: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    from moto.core import enable_iam_authentication

    with enable_iam_authentication():
        return subprocess.run([sys.executable, "-m", "orchestrator", "plan", "--config", str(moto_ci["config"]),
                               "--assume-primary-lost", *extra], env={**moto_ci["env"], **keys},
                              capture_output=True, text=True, check=False)


def test_a_refused_credential_blocks_the_plan(moto_ci: dict[str, Any]) -> None:
    """Keys the cloud does not know: every read fails, so no state can be vouched for. The plan used to print
    "safe to proceed" (exit 0) with "already running (no call)" for a machine it could not read."""
    result = _plan(moto_ci, {"AWS_ACCESS_KEY_ID": "AKIANOTISSUEDBYMOTO0", "AWS_SECRET_ACCESS_KEY": "x" * 40})
    assert result.returncode == 3, result.stdout + result.stderr
    assert "safe to proceed" not in result.stdout
    assert "already running (no call)" not in result.stdout
    assert "unknown" in result.stdout


def _without(policy: dict[str, Any], action: str) -> dict[str, Any]:
    statements = [{**s, "Action": [a for a in s["Action"] if a != action]} for s in policy["Statement"]]
    return {**policy, "Statement": [s for s in statements if s["Action"]]}


def test_the_shipped_aws_policy_allows_every_call_a_failover_makes(moto_ci: dict[str, Any]) -> None:
    keys = _user(moto_ci["endpoint"], "failover", json.loads(POLICY.read_text()))
    result = _plan(moto_ci, keys, "--check-permissions", "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    verdicts = {(g["permission"], g["verdict"]) for g in plan["permissions"]}
    # each site: two reads; each instance: the look-up, then stop and start asked with DryRun; the zone read
    assert len(plan["permissions"]) == 2 * 2 + 2 * 3 + 1
    assert {v for _, v in verdicts} == {"allowed"}
    assert {p for p, _ in verdicts} >= {"ec2:StopInstances", "ec2:StartInstances", "route53:ListResourceRecordSets"}
    assert (plan["safe"], plan["blocked_by"]) == (True, [])


@pytest.mark.parametrize("action", ["ec2:StopInstances", "ec2:StartInstances"])
def test_a_policy_without_a_write_the_failover_needs_fails_the_dry_run(moto_ci: dict[str, Any], action: str) -> None:
    """Reads all pass, so a plan alone says safe; the dry-run write says what the fence or start would meet."""
    keys = _user(moto_ci["endpoint"], "failover-" + action.split(":")[1].lower(),
                 _without(json.loads(POLICY.read_text()), action))
    assert _plan(moto_ci, keys).returncode == 0  # without the check: every read is allowed

    result = _plan(moto_ci, keys, "--check-permissions")
    assert result.returncode == 3, result.stdout + result.stderr
    refused = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("refused")]
    assert len(refused) == 2 and all(action in line for line in refused)  # one per instance
    assert "permissions: 11 asked, 2 refused, 0 unknown" in result.stdout
    assert f"permission_refused: {action} on site aws-" in result.stdout


# --- GCP and Azure, against fakes that enforce the shipped roles ------------------------------------------------------

GCP_ROLE = ROOT / "configs" / "iam" / "gcp-role.yaml"
AZURE_ROLE = ROOT / "configs" / "iam" / "azure-role.json"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"

CONFIG = """\
version: 1
store: sqlite:///{store}
require_multi_cloud: false
sites:
  gcp-hk: {{provider: gcp, region: asia-east2, zones: [asia-east2-a], project: exchange-prod, endpoint_url: "{gcp}"}}
  azure-hk: {{provider: azure, region: eastasia, zones: ["1"], subscription: "{sub}", resource_group: trading,
             endpoint_url: "{azure}"}}
probes: {{interval: 1s, timeout: 500ms, provider_interval: 30s}}
policy:
  failure_threshold: 3
  quorum: 2
  quorum_may_count_cloud_apis: true   # a dry run against fakes: nothing real is probed or failed over
  min_failover_interval: 1h
  approval: auto
protection_window: {{duration: 20m}}
engines:
  spot:
    primary: spot-gcp
    replicas:
      spot-gcp: {{site: gcp-hk, instance: spot-engine-1, control_url: "http://10.1.1.10:8700"}}
      spot-az: {{site: azure-hk, instance: spot-engine-2, control_url: "http://10.2.1.10:8700"}}
    dns: {dns}
"""


def _clouds(tmp_path: Path, *, gcp: list[str], azure: tuple[list[str], list[str]], dns: str,
            dns_granted: list[str] | None = None) -> Iterator[Path]:
    from orchestrator.testbed.fakes import FakeServer
    from orchestrator.testbed.fakes.dns_azure import AzureDnsFake
    from orchestrator.testbed.fakes.dns_gcp import CloudDnsFake
    from orchestrator.testbed.fakes.iam import AzureComputeIamFake, GcpComputeIamFake

    compute = GcpComputeIamFake("exchange-prod", "asia-east2", ("asia-east2-a",), granted=gcp)
    compute.add_instance("spot-engine-1", "asia-east2-a")
    vms = AzureComputeIamFake(SUBSCRIPTION, "trading", "eastasia", actions=azure[0], not_actions=azure[1])
    vms.add_vm("spot-engine-2", "1")
    zone: Any
    if dns == "gcp":
        zone = CloudDnsFake("exchange-prod", granted=gcp if dns_granted is None else dns_granted)
        zone.add_zone("engine-zone", "engine.example.internal.")
    else:
        zone = AzureDnsFake(SUBSCRIPTION, "dns", granted=azure[0] if dns_granted is None else dns_granted)
        zone.add_zone("engine.example.internal")
    with FakeServer(compute) as g, FakeServer(vms) as a, FakeServer(zone) as d:
        record = ("{provider: gcp, project: exchange-prod, zone_id: engine-zone" if dns == "gcp" else
                  f'{{provider: azure, subscription: "{SUBSCRIPTION}", resource_group: dns, '
                  "zone_id: engine.example.internal")
        record += f', record: spot.engine.example.internal, endpoint_url: "{d.url}"}}'
        config = tmp_path / "failover.yaml"
        config.write_text(CONFIG.format(store=tmp_path / "state.db", gcp=g.url, azure=a.url, sub=SUBSCRIPTION,
                                        dns=record))
        yield config


def _check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "plan", "--config", str(config),
                           "--assume-primary-lost", "--check-permissions", "--output", "json"],
                          capture_output=True, text=True, check=False, timeout=120)


def _roles() -> tuple[list[str], tuple[list[str], list[str]]]:
    from orchestrator.testbed.fakes.iam import load_azure_role, load_gcp_role

    return load_gcp_role(GCP_ROLE), load_azure_role(AZURE_ROLE)


@pytest.mark.parametrize("dns", ["gcp", "azure"])
def test_the_shipped_gcp_and_azure_roles_allow_every_call_a_failover_makes(tmp_path: Path, dns: str) -> None:
    gcp, azure = _roles()
    for config in _clouds(tmp_path, gcp=gcp, azure=azure, dns=dns):
        result = _check(config)
        assert result.returncode == 0, result.stdout + result.stderr
        plan = json.loads(result.stdout)
        asked = [(g["permission"], g["verdict"]) for g in plan["permissions"]]
        # GCP: 3 project permissions and the 2 signals' reads, 3 on the instance; Azure: 2 on the group, 4 on the VM
        # and its Resource Health read; the DNS zone read, and the zone's write permissions (Cloud DNS: 8 by
        # testIamPermissions; Azure DNS: 11 actions)
        assert len(asked) == (3 + 2) + 3 + 2 + (4 + 1) + 1 + (8 if dns == "gcp" else 11)
        assert {verdict for _, verdict in asked} == {"allowed"}
        assert ("compute.instances.stop", "allowed") in asked
        assert ("Microsoft.Compute/virtualMachines/deallocate/action", "allowed") in asked
        assert {"servicehealth.events.list", "compute.globalOperations.aggregatedList",
                "Microsoft.ResourceHealth/availabilityStatuses/read"} <= {permission for permission, _ in asked}


@pytest.mark.parametrize(("cloud", "missing"), [
    ("gcp", "compute.instances.stop"),
    ("gcp", "compute.zoneOperations.get"),
    ("azure", "Microsoft.Compute/virtualMachines/deallocate/action"),
    ("azure", "Microsoft.Compute/virtualMachines/start/action"),
    # the outage signals' reads: a signal the credential cannot read would say `unknown` in every outage
    ("gcp", "servicehealth.events.list"),
    ("gcp", "compute.globalOperations.aggregatedList"),
    ("azure", "Microsoft.ResourceHealth/availabilityStatuses/read"),
    ("azure", "Microsoft.Compute/locations/operations/read"),
])
def test_a_role_without_a_permission_the_failover_needs_fails_the_dry_run(tmp_path: Path, cloud: str,
                                                                         missing: str) -> None:
    gcp, (actions, not_actions) = _roles()
    if cloud == "gcp":
        gcp = [p for p in gcp if p != missing]
    else:
        actions = [a for a in actions if a != missing]
    for config in _clouds(tmp_path, gcp=gcp, azure=(actions, not_actions), dns="gcp",
                          dns_granted=_roles()[0]):
        result = _check(config)
        assert result.returncode == 3, result.stdout + result.stderr
        plan = json.loads(result.stdout)
        refused = [g["permission"] for g in plan["permissions"] if g["verdict"] != "allowed"]
        assert refused == [missing]
        assert any(line.startswith(f"permission_refused: {missing} on site ") for line in plan["blocked_by"])


def test_a_not_action_wildcard_takes_away_what_actions_give(tmp_path: Path) -> None:
    """Azure evaluates Actions minus NotActions: a role granting virtualMachines/* but not */powerOff/action."""
    gcp, (actions, _) = _roles()
    for config in _clouds(tmp_path, gcp=gcp, dns="gcp", dns_granted=gcp,
                          azure=(["Microsoft.Compute/virtualMachines/*", *actions[4:]],
                                 ["Microsoft.Compute/*/powerOff/action"])):
        result = _check(config)
        assert result.returncode == 3, result.stdout + result.stderr
        refused = [g["permission"] for g in json.loads(result.stdout)["permissions"] if g["verdict"] != "allowed"]
        assert refused == ["Microsoft.Compute/virtualMachines/powerOff/action"]


def test_a_dns_zone_the_credential_cannot_read_fails_the_dry_run(tmp_path: Path) -> None:
    gcp, azure = _roles()
    for config in _clouds(tmp_path, gcp=gcp, azure=azure, dns="gcp",
                          dns_granted=[p for p in gcp if p != "dns.resourceRecordSets.list"]):
        result = _check(config)
        assert result.returncode == 3, result.stdout + result.stderr
        plan = json.loads(result.stdout)
        refused = [(g["permission"], g["verdict"]) for g in plan["permissions"] if g["verdict"] != "allowed"]
        assert refused == [("dns.resourceRecordSets.list", "refused")]
        assert any(line.startswith("state_unknown: switch_traffic: DNS record") for line in plan["blocked_by"])


@pytest.mark.parametrize(("dns", "missing"), [
    ("gcp", "dns.changes.create"),
    ("azure", "Microsoft.Network/dnsZones/A/write"),
])
def test_a_dns_zone_the_credential_cannot_write_fails_the_dry_run(tmp_path: Path, dns: str, missing: str) -> None:
    """The record reads fine, so a plan alone says safe; the zone's own permission answer says the switch would
    be refused."""
    gcp, azure = _roles()
    granted = [p for p in (gcp if dns == "gcp" else azure[0]) if p != missing]
    for config in _clouds(tmp_path, gcp=gcp, azure=azure, dns=dns, dns_granted=granted):
        result = _check(config)
        assert result.returncode == 3, result.stdout + result.stderr
        refused = [g["permission"] for g in json.loads(result.stdout)["permissions"] if g["verdict"] != "allowed"]
        assert refused == [missing]


def test_a_signal_switched_off_is_not_asked_about(tmp_path: Path) -> None:
    """Least privilege: a site that reads no Service Health, host errors or Resource Health needs none of their
    permissions, so a role without them passes."""
    gcp, (actions, not_actions) = _roles()
    signals = {"servicehealth.events.list", "compute.globalOperations.aggregatedList",
               "Microsoft.ResourceHealth/availabilityStatuses/read"}
    for config in _clouds(tmp_path, gcp=[p for p in gcp if p not in signals], dns="gcp", dns_granted=gcp,
                          azure=([a for a in actions if a not in signals], not_actions)):
        text = config.read_text().replace("project: exchange-prod,", "project: exchange-prod, service_health: false, "
                                          "host_errors: false,", 1)  # the site's line, not the zone's
        config.write_text(text.replace("resource_group: trading,", "resource_group: trading, resource_health: false,"))
        result = _check(config)
        assert result.returncode == 0, result.stdout + result.stderr
        asked = {g["permission"] for g in json.loads(result.stdout)["permissions"]}
        assert not asked & signals


# --- the shipped files hold exactly what the adapters need -------------------------------------------------------

def test_the_shipped_policies_grant_exactly_what_the_adapters_call() -> None:
    """Least privilege: every permission a file grants is one an adapter or router calls (`required.py`), and every
    one they call is granted; the Azure role adds only the permissions API the dry run itself reads."""
    from orchestrator.testbed.fakes.iam import load_azure_role, load_gcp_role
    from providers.permissions import required

    aws = {a for s in json.loads(POLICY.read_text())["Statement"] for a in s["Action"]}
    assert aws == {*required.AWS_EC2_READ, *required.AWS_EC2_WRITE, *required.AWS_ROUTE53, *required.AWS_HEALTH,
                   *required.AWS_EC2_LAUNCH}
    assert "iam:PassRole" not in aws  # only for a launch template with an instance profile, scoped to its role
    assert set(load_gcp_role(GCP_ROLE)) == {*required.GCP_INSTANCE, *required.GCP_PROJECT,
                                             *required.GCP_SERVICE_HEALTH, *required.GCP_HOST_ERRORS,
                                             *required.GCP_DNS, *required.GCP_LAUNCH, *required.GCP_LAUNCH_TEMPLATE}
    actions, not_actions = load_azure_role(AZURE_ROLE)
    assert (set(actions), not_actions) == ({*required.AZURE_VM, *required.AZURE_GROUP, *required.AZURE_RESOURCE_HEALTH,
                                            *required.AZURE_DNS, required.AZURE_CHECK, *required.AZURE_LAUNCH,
                                            required.AZURE_LAUNCH_SUBNET, *required.AZURE_LAUNCH_IMAGE.values()}, [])


# --- AWS Health: a real read, since the Health API has no dry run -----------------------------------------------

def _health_iam(allowed_keys: set[str]) -> Any:
    """An AWS Health fake that answers only the access keys whose policy allows health:DescribeEvents (moto has no
    Health API, so its IAM cannot be asked): any other signed request gets AWS's AccessDeniedException."""
    from orchestrator.testbed.fakes._http import FakeRequest, FakeResponse
    from orchestrator.testbed.fakes.aws_health import AwsHealthFake

    class HealthIamFake(AwsHealthFake):
        def _dispatch(self, request: FakeRequest) -> FakeResponse:
            credential = request.headers.get("authorization", "").partition("Credential=")[2].split("/", 1)[0]
            if credential not in allowed_keys:
                return self._error(400, "AccessDeniedException", "User is not authorized to perform "
                                   "health:DescribeEvents")
            return super()._dispatch(request)

    return HealthIamFake()


@pytest.mark.parametrize("granted", [True, False])
def test_the_aws_health_signal_is_asked_with_a_real_read(moto_ci: dict[str, Any], granted: bool) -> None:
    from orchestrator.testbed.fakes import FakeServer

    policy = json.loads(POLICY.read_text())
    keys = _user(moto_ci["endpoint"], "failover-health", policy if granted else
                 _without(policy, "health:DescribeEvents"))
    health = _health_iam({keys["AWS_ACCESS_KEY_ID"]} if granted else set())
    with FakeServer(health) as served:
        config: Path = moto_ci["config"]
        config.write_text(config.read_text().replace(
            "zones: [ap-east-1a]}", f'zones: [ap-east-1a], health_api: true, health_endpoint_urls: ["{served.url}"]}}'))
        result = _plan(moto_ci, keys, "--check-permissions")
    lines = [line.strip() for line in result.stdout.splitlines() if "health:DescribeEvents" in line]
    if granted:
        assert result.returncode == 0, result.stdout + result.stderr
        assert lines == ["allowed  health:DescribeEvents  site aws-hk: AWS Health at us-east-1"]
        assert "permissions: 12 asked, 0 refused, 0 unknown" in result.stdout
    else:
        assert result.returncode == 3, result.stdout + result.stderr
        assert lines[0].startswith("refused  health:DescribeEvents  site aws-hk: AWS Health at us-east-1")
        assert "permissions: 12 asked, 1 refused, 0 unknown" in result.stdout
        assert "permission_refused: health:DescribeEvents on site aws-hk" in result.stdout


# --- `failover replace`'s launch: asked only with --for replace (or --for all) --------------------------------------

def _with_aws_launch(moto_ci: dict[str, Any]) -> None:
    """Both AWS sites may host a replacement: an AMI moto knows and an instance type (read before IAM is on)."""
    ec2 = boto3.client("ec2", region_name="ap-east-1", endpoint_url=moto_ci["endpoint"], aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    config: Path = moto_ci["config"]
    launch = f'launch: {{control_url: "http://{{private_ip}}:8700", image_id: {image}, instance_type: c6i.4xlarge}}'
    text = config.read_text()
    for zone in ("ap-east-1a", "ap-southeast-1a"):
        text = text.replace(f"zones: [{zone}]}}", f"zones: [{zone}], {launch}}}")
    config.write_text(text)


def test_the_shipped_aws_policy_allows_a_replacement_launch(moto_ci: dict[str, Any]) -> None:
    _with_aws_launch(moto_ci)
    keys = _user(moto_ci["endpoint"], "failover-launch", json.loads(POLICY.read_text()))
    result = _plan(moto_ci, keys, "--check-permissions", "--for", "replace", "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    asked = [(g["permission"], g["where"], g["verdict"]) for g in json.loads(result.stdout)["permissions"]]
    # each site with launch options: RunInstances with DryRun, then CreateTags with DryRun on the site's instance
    assert [(p, v) for p, _, v in asked] == [("ec2:RunInstances", "allowed"), ("ec2:CreateTags", "allowed")] * 2
    assert [w.split(":")[0] for _, w, _ in asked] == ["site aws-hk", "site aws-hk", "site aws-sg", "site aws-sg"]

    both = _plan(moto_ci, keys, "--check-permissions", "--for", "all")
    assert both.returncode == 0, both.stdout + both.stderr
    assert "permissions: 15 asked, 0 refused, 0 unknown" in both.stdout  # the failover's 11 and the launch's 4


@pytest.mark.parametrize("action", ["ec2:RunInstances", "ec2:CreateTags"])
def test_a_policy_without_a_launch_permission_fails_the_replace_dry_run(moto_ci: dict[str, Any], action: str) -> None:
    """The failover's own dry run does not ask about launching (its credential need not make machines); asked for,
    a missing launch permission is exit 3 naming it, once per site."""
    _with_aws_launch(moto_ci)
    keys = _user(moto_ci["endpoint"], "failover-no-" + action.split(":")[1].lower(),
                 _without(json.loads(POLICY.read_text()), action))
    assert _plan(moto_ci, keys, "--check-permissions").returncode == 0  # the failover's calls are all allowed

    result = _plan(moto_ci, keys, "--check-permissions", "--for", "replace", "--output", "json")
    assert result.returncode == 3, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    assert [g["permission"] for g in plan["permissions"] if g["verdict"] != "allowed"] == [action, action]
    assert [line.split(" on ")[0] for line in plan["blocked_by"]] == [f"permission_refused: {action}"] * 2


def test_for_replace_without_check_permissions_is_bad_input(tmp_path: Path) -> None:
    config = tmp_path / "failover.yaml"
    shutil.copy(ROOT / "configs" / "ci-moto.yaml", config)
    result = subprocess.run([sys.executable, "-m", "orchestrator", "plan", "--config", str(config),
                             "--assume-primary-lost", "--for", "replace"], capture_output=True, text=True,
                            check=False, timeout=120)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr
    assert "--for replace" in result.stderr and "--check-permissions" in result.stderr


GCP_LAUNCH = ('launch: {control_url: "http://{name}:8700", instance_template: global/instanceTemplates/engine, '
              'subnetwork: regions/asia-east2/subnetworks/engines}')
AZURE_LAUNCH = ('launch: {control_url: "http://{name}:8700", vm_size: Standard_D8s_v5, image_id: "/subscriptions/'
                f'{SUBSCRIPTION}/resourceGroups/img/providers/Microsoft.Compute/galleries/g/images/engine/versions/'
                f'2026.12.1", subnet_id: "/subscriptions/{SUBSCRIPTION}/resourceGroups/net/providers/'
                'Microsoft.Network/virtualNetworks/v/subnets/engines"}')


def _launching(config: Path) -> Path:
    """gcp-hk launches from an instance template, azure-hk from a gallery image onto a subnet in another group."""
    text = config.read_text().replace('project: exchange-prod, endpoint_url:', f"project: exchange-prod, {GCP_LAUNCH}, "
                                      "endpoint_url:", 1)
    config.write_text(text.replace("resource_group: trading,", f"resource_group: trading, {AZURE_LAUNCH},"))
    return config


def _check_replace(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "plan", "--config", str(config),
                           "--assume-primary-lost", "--check-permissions", "--for", "replace", "--output", "json"],
                          capture_output=True, text=True, check=False, timeout=120)


def test_the_shipped_gcp_and_azure_roles_allow_a_replacement_launch(tmp_path: Path) -> None:
    from providers.permissions import required

    gcp, azure = _roles()
    for config in _clouds(tmp_path, gcp=gcp, azure=azure, dns="gcp"):
        result = _check_replace(_launching(config))
        assert result.returncode == 0, result.stdout + result.stderr
        asked = [(g["permission"], g["where"], g["verdict"]) for g in json.loads(result.stdout)["permissions"]]
        assert {v for _, _, v in asked} == {"allowed"}
        assert [p for p, _, _ in asked] == [*required.GCP_LAUNCH, *required.GCP_LAUNCH_TEMPLATE, *required.AZURE_LAUNCH,
                                            required.AZURE_LAUNCH_SUBNET, required.AZURE_LAUNCH_IMAGE["gallery"]]
        wheres = {p: w for p, w, _ in asked}
        assert wheres["compute.instances.create"] == "site gcp-hk: launch in project exchange-prod"
        assert wheres[required.AZURE_LAUNCH_SUBNET] == "site azure-hk: launch: engines in resource group net"
        image = required.AZURE_LAUNCH_IMAGE["gallery"]
        assert wheres[image] == "site azure-hk: launch: 2026.12.1 in resource group img"


@pytest.mark.parametrize(("cloud", "missing"), [
    ("gcp", "compute.instances.create"),
    ("gcp", "compute.instances.setMetadata"),
    ("gcp", "compute.instances.setTags"),
    ("gcp", "compute.disks.create"),
    ("gcp", "compute.subnetworks.use"),
    ("gcp", "compute.instanceTemplates.useReadOnly"),
    ("azure", "Microsoft.Compute/virtualMachines/write"),
    ("azure", "Microsoft.Network/networkInterfaces/join/action"),
    ("azure", "Microsoft.Network/virtualNetworks/subnets/join/action"),
])
def test_a_role_without_a_launch_permission_fails_the_replace_dry_run(tmp_path: Path, cloud: str,
                                                                     missing: str) -> None:
    gcp, (actions, not_actions) = _roles()
    if cloud == "gcp":
        gcp = [p for p in gcp if p != missing]
    else:
        actions = [a for a in actions if a != missing]
    for config in _clouds(tmp_path, gcp=gcp, azure=(actions, not_actions), dns="gcp", dns_granted=_roles()[0]):
        _launching(config)
        assert _check(config).returncode == 0  # the failover's own dry run is not about launching
        result = _check_replace(config)
        assert result.returncode == 3, result.stdout + result.stderr
        plan = json.loads(result.stdout)
        assert [g["permission"] for g in plan["permissions"] if g["verdict"] != "allowed"] == [missing]
        assert any(line.startswith(f"permission_refused: {missing} on site ") for line in plan["blocked_by"])
