"""Launching a replica's machine (`failover replace`) through each cloud's create call, against moto and the fakes.

The runbook line each test checks: "start a new standby on site S from its configured template or image; if the
command is run again (after a crash), find the machine it already made instead of making a second one".
"""

from __future__ import annotations

from typing import Any

import pytest
from provider_helpers import AMI, AWS_REGION, FAST, AwsWorld, azure_site, gcp_site

from orchestrator.core.errors import ConfigError, ProviderError
from orchestrator.testbed.fakes import AzureComputeFake, FakeServer, GcpComputeFake
from providers import build_provider
from providers.base import InstanceState
from providers.launch import KEY_TAG, launcher_for, machine_name

KEY = "0123456789abcdef0123456789abcdef"
GCP_LAUNCH = {"control_url": "http://{private_ip}:8443", "source_image": "global/images/engine-2026-11",
              "machine_type": "c3-standard-8"}
AZURE_LAUNCH = {"control_url": "http://{name}:8443", "vm_size": "Standard_D8s_v5",
                "image_id": "/subscriptions/0/resourceGroups/img/providers/Microsoft.Compute/galleries/g/images/"
                            "engine/versions/2026.11.1",
                "subnet_id": "/subscriptions/0/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/"
                             "subnets/engines"}


def _template(world: AwsWorld) -> str:
    answer = world.ec2.create_launch_template(
        LaunchTemplateName="spot-engine", LaunchTemplateData={"ImageId": AMI, "InstanceType": "c6i.4xlarge"})
    return str(answer["LaunchTemplate"]["LaunchTemplateId"])


def _tagged(world: AwsWorld) -> list[dict[str, Any]]:
    answer = world.ec2.describe_instances(Filters=[{"Name": f"tag:{KEY_TAG}", "Values": [KEY]}])
    return [i for r in answer["Reservations"] for i in r["Instances"]]


def test_ec2_launches_from_a_launch_template_once_and_finds_it_again(aws: AwsWorld) -> None:
    template = _template(aws)
    site = aws.site(options={"launch": {"control_url": "http://{private_ip}:8443", "launch_template": template}})
    launcher = launcher_for(build_provider(site, session=aws.session, **FAST))

    first = launcher.launch("spot-azure", KEY, deadline=10)
    assert first.created and first.instance.startswith("i-") and first.private_ip
    made = _tagged(aws)
    assert [i["InstanceId"] for i in made] == [first.instance]
    assert made[0]["InstanceType"] == "c6i.4xlarge"  # from the template
    assert made[0]["Placement"]["AvailabilityZone"] == site.zones[0]
    assert {t["Key"]: t["Value"] for t in made[0]["Tags"]}["Name"] == machine_name("spot-azure", KEY)
    assert first.control_url(launcher.control_url_template) == f"http://{first.private_ip}:8443"

    again = launcher_for(build_provider(site, session=aws.session, **FAST)).launch("spot-azure", KEY, deadline=10)
    assert (again.instance, again.created) == (first.instance, False)
    assert len(_tagged(aws)) == 1
    assert aws.ec2.describe_instances()["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"


def test_ec2_launches_from_an_image_and_instance_type(aws: AwsWorld) -> None:
    site = aws.site(options={"launch": {"control_url": "http://{private_ip}:8443", "image_id": AMI,
                                        "instance_type": "m6i.large", "zone": "ap-southeast-1b"}})
    launched = launcher_for(build_provider(site, session=aws.session, **FAST)).launch("spot-x", KEY, deadline=10)
    made = _tagged(aws)[0]
    assert (made["InstanceId"], made["InstanceType"], made["ImageId"]) == (launched.instance, "m6i.large", AMI)
    assert made["Placement"]["AvailabilityZone"] == "ap-southeast-1b"
    assert AWS_REGION in site.region


def test_gcp_inserts_an_instance_waits_for_its_operation_and_finds_it_by_label(
        gcp: tuple[GcpComputeFake, FakeServer]) -> None:
    fake, server = gcp
    fake.settle_reads = 3
    site = gcp_site(server, options={"project": "exchange-prod", "launch": GCP_LAUNCH})
    launcher = launcher_for(build_provider(site, **FAST))

    launched = launcher.launch("spot-azure", KEY, deadline=10)
    name = machine_name("spot-azure", KEY)
    assert (launched.instance, launched.created) == (f"asia-east2-a/{name}", True)
    assert fake.instance_status(name, "asia-east2-a") == "RUNNING"
    assert launched.private_ip == fake.created[("asia-east2-a", name)]["networkIP"]
    inserts = [r for r in fake.received if r.method == "POST" and r.path.endswith("/instances")]
    assert len(inserts) == 1 and inserts[0].query["requestId"]
    body = inserts[0].json()
    assert body["labels"][KEY_TAG] == KEY
    assert body["machineType"] == "zones/asia-east2-a/machineTypes/c3-standard-8"
    assert body["disks"][0]["initializeParams"]["sourceImage"] == "global/images/engine-2026-11"
    assert any("/operations/" in r.path for r in fake.received)  # the insert's operation was polled to DONE

    again = launcher_for(build_provider(site, **FAST)).launch("spot-azure", KEY, deadline=10)
    assert (again.instance, again.created) == (launched.instance, False)
    assert len([r for r in fake.received if r.method == "POST" and r.path.endswith("/instances")]) == 1


def test_gcp_insert_from_an_instance_template_and_a_failed_operation(
        gcp: tuple[GcpComputeFake, FakeServer]) -> None:
    fake, server = gcp
    launch = {"control_url": "http://{private_ip}:8443", "instance_template": "global/instanceTemplates/engine"}
    site = gcp_site(server, options={"project": "exchange-prod", "launch": launch})
    fake.fail_operations(1)
    with pytest.raises(ProviderError, match="ZONE_RESOURCE_POOL_EXHAUSTED"):
        launcher_for(build_provider(site, **FAST)).launch("spot-azure", KEY, deadline=10)
    insert = next(r for r in fake.received if r.method == "POST")
    assert insert.query["sourceInstanceTemplate"] == "global/instanceTemplates/engine"
    name = machine_name("spot-azure", KEY)
    assert fake.instance_status(name, "asia-east2-a") == "TERMINATED"  # made, but it never came up

    again = launcher_for(build_provider(site, **FAST)).launch("spot-azure", KEY, deadline=10)
    assert (again.instance, again.created) == (f"asia-east2-a/{name}", False)  # the same machine, started
    assert fake.instance_status(name, "asia-east2-a") == "RUNNING"
    posts = [r.path.rsplit("/", 1)[-1] for r in fake.received if r.method == "POST"]
    assert posts == ["instances", "start"]


def test_azure_creates_a_vm_through_its_long_running_operation_once(
        azure: tuple[AzureComputeFake, FakeServer]) -> None:
    fake, server = azure
    fake.settle_reads = 2
    site = azure_site(server, options={"subscription": "00000000-0000-0000-0000-000000000000",
                                       "resource_group": "trading", "launch": AZURE_LAUNCH})
    launcher = launcher_for(build_provider(site, **FAST))

    launched = launcher.launch("spot-gcp", KEY, deadline=10)
    name = machine_name("spot-gcp", KEY)
    assert (launched.instance, launched.created) == (name, True)
    assert fake.power(name) == "running"
    assert launched.control_url(launcher.control_url_template) == f"http://{name}:8443"
    puts = [r for r in fake.received if r.method == "PUT"]
    assert len(puts) == 1
    body = puts[0].json()
    assert body["tags"][KEY_TAG] == KEY and body["zones"] == ["1"] and body["location"] == "eastasia"
    assert body["properties"]["hardwareProfile"]["vmSize"] == "Standard_D8s_v5"
    assert body["properties"]["storageProfile"]["imageReference"]["id"] == AZURE_LAUNCH["image_id"]
    nic = body["properties"]["networkProfile"]["networkInterfaceConfigurations"][0]
    assert nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"] == AZURE_LAUNCH["subnet_id"]
    assert any("/operations/" in r.path for r in fake.received)

    again = launcher_for(build_provider(site, **FAST)).launch("spot-gcp", KEY, deadline=10)
    assert (again.instance, again.created) == (name, False)
    assert len([r for r in fake.received if r.method == "PUT"]) == 1


def test_a_site_without_launch_options_is_refused(gcp: tuple[GcpComputeFake, FakeServer]) -> None:
    _, server = gcp
    with pytest.raises(ConfigError, match=r"site gcp-hk: no launch options"):
        launcher_for(build_provider(gcp_site(server), **FAST))


def test_machine_names_suit_every_cloud() -> None:
    assert machine_name("Spot_AWS.1", KEY) == "spot-aws-1-01234567"
    assert machine_name("9lives", KEY).startswith("r-9lives-")
    assert InstanceState.RUNNING == "running"
