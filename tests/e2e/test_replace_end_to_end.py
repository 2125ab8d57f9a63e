"""`failover replace` through the CLI: a replica whose host is gone for good is rebuilt on another cloud.

The runbook it checks: spot-azure's VM is gone (its process killed, the VM deallocated); the operator runs
`failover replace spot-azure --site gcp-hk`; a new Compute instance is inserted from the site's launch settings (the
GCP fake; the "image" boots a fresh replica process on an empty data directory when the instance is made), the
command waits for it to answer the control protocol, rejoins it to the primary, and records where it runs in the
store. A first run whose machine does not answer in time exits 1; the same command again resumes with the same
idempotency key and finds the machine it made: one instance, never two. At the end the new standby holds every
order the primary holds, acknowledges, and `failover status` says the configuration file still places it on Azure.
Every refusal is one line, exit 2 or 3, and changes nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from orchestrator.config import load_config
from orchestrator.core.model import Role
from orchestrator.store import open_store
from orchestrator.store.records import IncidentStatus
from orchestrator.store.topology_record import topology_book
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec
from orchestrator.testbed.world import AWS_REGION, Testbed, wait_until
from providers.launch import KEY_TAG

# until orchestrator/cli/commands.py registers it, the command runs as the CLI would with it registered
RUN = ("import sys; from orchestrator.cli import commands; commands.COMMANDS.setdefault('replace', 'replace_cmd'); "
       "from orchestrator.cli.app import main; main(sys.argv[1:])")


def failover(bed: Testbed, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN, *args], env=bed.env(), capture_output=True, text=True,
                          timeout=600, check=False)


def with_launch(bed: Testbed, control_url: str) -> None:
    """gcp-hk gets launch settings (an image and a machine type); the configuration is written again."""
    config: dict[str, Any] = bed.config()
    config["sites"]["gcp-hk"]["launch"] = {"control_url": control_url, "source_image": "global/images/engine-2026-12",
                                           "machine_type": "c3-standard-8"}
    bed.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def new_machine(bed: Testbed, name: str = "spot-azure", cloud: str = "gcp") -> ReplicaCluster:
    """What the image runs once booted: a replica on an empty data directory, holding the control token, standby of
    nobody (it learns its primary from the rejoin)."""
    assert bed.replicas is not None
    cluster = ReplicaCluster(bed.base / "new-machine", [ReplicaSpec(name, cloud, peers=())])
    cluster.token, cluster.token_file = bed.replicas.token, bed.replicas.token_file
    return cluster


def audit_actions(bed: Testbed) -> list[str]:
    with open_store(load_config(bed.config_path).store_url) as store:
        assert store.verify_audit().ok
        return [entry.action for entry in store.audit_entries()]


def inserts(bed: Testbed) -> int:
    assert bed.gcp is not None
    return sum(1 for request in bed.gcp.received if request.method == "POST" and request.path.endswith("/instances"))


def test_a_lost_replica_is_replaced_on_another_cloud_resumably_and_ends_in_sync(bed: Testbed) -> None:
    assert bed.replicas is not None and bed.gcp is not None and bed.azure is not None
    cluster, client = bed.replicas, bed.replicas.client()
    primary = cluster.replica("spot-aws")
    for n in range(5):
        assert client.submit_order(primary, client_order_id=f"before-{n}", account="a-1", market="BTC-USDT",
                                   side="buy", qty="1", price=str(100 + n)).accepted
    cluster.kill("spot-azure")  # its host is gone for good
    bed.azure.set_vm("spot-engine-azure", power="deallocated")
    machine = new_machine(bed)
    try:
        with_launch(bed, machine.url("spot-azure"))

        first = failover(bed, "replace", "spot-azure", "--site", "gcp-hk", "--timeout", "4s")
        assert first.returncode == 1, first.stdout + first.stderr  # made, but its engine has not booted
        assert "run the same command again to resume" in first.stderr
        assert inserts(bed) == 1

        booted = threading.Thread(target=machine.start)  # the image finishes booting
        booted.start()
        booted.join(60)
        for n in range(3):  # the primary keeps trading meanwhile
            assert client.submit_order(primary, client_order_id=f"during-{n}", account="a-2", market="BTC-USDT",
                                       side="sell", qty="1", price=str(200 + n)).accepted

        second = failover(bed, "replace", "spot-azure", "--site", "gcp-hk")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "(resuming)" in second.stdout and "found by its key" in second.stdout
        print(second.stdout)
        assert inserts(bed) == 1  # one machine, never two
        assert len(bed.gcp.created) == 1

        new = machine.replica("spot-azure")
        status = client.status(new)
        assert (status.role, status.following) == (Role.STANDBY, cluster.url("spot-aws"))
        assert client.submit_order(primary, client_order_id="after", account="a-3", market="BTC-USDT",
                                   side="buy", qty="1", price="99").accepted
        wait_until(lambda: client.status(new).last_seq == client.status(primary).last_seq > 8,
                   "the new standby to hold every order of the primary")

        with open_store(load_config(bed.config_path).store_url) as store:
            recorded = topology_book(store).recorded_replicas()[("spot", "spot-azure")]
            assert topology_book(store).replace_progress("spot", "spot-azure") is None
        zone, name = next(iter(bed.gcp.created))
        assert (recorded.site, recorded.instance, recorded.control_url) == \
            ("gcp-hk", f"{zone}/{name}", machine.url("spot-azure"))
        assert recorded.previous["site"] == "azure-hk"
        actions = audit_actions(bed)
        assert actions.count("replace.start") == 2 and actions.count("replace.unfinished") == 1
        assert actions[-7:] == ["replace.start", "replace.created", "replace.answering", "rejoin.start",
                                "rejoin.done", "replace.peers", "replace.done"]
        assert "peers told its place: spot-aws, spot-gcp, spot-azure" in second.stdout, second.stdout
        told = client.peers(cluster.url("spot-gcp"))  # started with spot-azure's old address among its peers
        assert (told["source"], told["peers"]) == ("control", [cluster.url("spot-aws"), machine.url("spot-azure")])

        status = failover(bed, "status")
        said = [line for line in status.stdout.splitlines() if "topology differs from the configuration" in line]
        assert len(said) == 1 and "spot/spot-azure: replaced" in said[0] and "site azure-hk -> gcp-hk" in said[0], \
            status.stdout
        plain = json.loads(failover(bed, "status", "-o", "json").stdout)
        assert plain["topology_differs"] == [said[0].split(": ", 1)[1]]

        again = failover(bed, "replace", "spot-azure", "--site", "gcp-hk")  # a healthy standby now
        assert again.returncode == 3 and again.stderr.count("\n") == 1 and "--force" in again.stderr, again.stderr
        assert inserts(bed) == 1
    finally:
        client.close()
        machine.close()


def test_unsafe_or_bad_replacements_are_refused_with_one_line_and_change_nothing(bed: Testbed) -> None:
    assert bed.replicas is not None and bed.gcp is not None
    with_launch(bed, "http://127.0.0.1:9")
    cases = [
        (("replace", "spot-nowhere", "--site", "gcp-hk"), 2, "spot-nowhere"),
        (("replace", "spot-azure", "--site", "mars-1"), 2, "--site mars-1"),
        (("replace", "spot-azure", "--site", "azure-hk"), 2, "no launch options"),
        (("replace", "spot-azure", "--site", "gcp-hk", "--timeout", "soon"), 2, "--timeout"),
        (("replace", "spot-aws", "--site", "gcp-hk"), 3, "spot-aws is the primary"),
        (("replace", "spot-azure", "--site", "gcp-hk"), 3, "--force"),  # it still answers as a healthy standby
    ]
    for args, code, said in cases:
        result = failover(bed, *args)
        assert (result.returncode, result.stderr.count("\n")) == (code, 1), (args, result.stderr)
        assert said in result.stderr, (args, result.stderr)

    config = load_config(bed.config_path)
    with open_store(config.store_url) as store:
        now = time.time()
        store.observe_quarantines({"gcp-hk": ("down", "zone asia-east2-a down")}, now, 7200.0)
    quarantined = failover(bed, "replace", "spot-azure", "--site", "gcp-hk", "--force")
    assert quarantined.returncode == 3 and "site gcp-hk is quarantined" in quarantined.stderr, quarantined.stderr
    assert quarantined.stderr.count("\n") == 1
    with open_store(config.store_url) as store:
        store.release_quarantine("gcp-hk", "test", time.time())
        running = store.create_incident("spot", "failover", "a runbook in flight", time.time(), source="spot-aws",
                                        target="spot-gcp", status=IncidentStatus.RUNNING)
    in_flight = failover(bed, "replace", "spot-azure", "--site", "gcp-hk", "--force")
    assert in_flight.returncode == 3 and f"incident {running.id}" in in_flight.stderr, in_flight.stderr

    assert inserts(bed) == 0 and bed.gcp.created == {}
    assert [a for a in audit_actions(bed) if a.startswith("replace.")] == []


def boot_when(made: Callable[[], bool], machine: ReplicaCluster) -> threading.Thread:
    """The image boots once the cloud has made the machine (polled like an operator would, every 200 ms)."""
    def watch() -> None:
        wait_until(made, "the cloud to make the new machine", poll=0.2)
        machine.start()
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def ec2_tagged(bed: Testbed) -> list[dict[str, Any]]:
    import boto3

    ec2 = boto3.client("ec2", region_name=AWS_REGION, endpoint_url=bed.moto_url)
    answer = ec2.describe_instances(Filters=[{"Name": "tag-key", "Values": [KEY_TAG]}])
    return [i for r in answer["Reservations"] for i in r["Instances"]]


@pytest.mark.parametrize("target", ["aws-hk", "azure-hk"])
def test_a_lost_gcp_replica_is_replaced_on_aws_from_a_launch_template_or_on_azure(bed: Testbed, target: str) -> None:
    """spot-gcp's host is gone; it comes back on AWS (run_instances from a launch template, moto) or on Azure
    (virtualMachines createOrUpdate, the fake's long-running operation), its address given with --control-url."""
    import boto3

    assert bed.replicas is not None and bed.azure is not None
    cluster, client = bed.replicas, bed.replicas.client()
    primary = cluster.replica("spot-aws")
    for n in range(4):
        assert client.submit_order(primary, client_order_id=f"o-{n}", account="a-1", market="BTC-USDT", side="buy",
                                   qty="1", price=str(100 + n)).accepted
    cluster.kill("spot-gcp")
    machine = new_machine(bed, "spot-gcp", target.split("-")[0])
    config: dict[str, Any] = bed.config()
    if target == "aws-hk":
        ec2 = boto3.client("ec2", region_name=AWS_REGION, endpoint_url=bed.moto_url)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        # moto keeps one EC2 per process, shared by every testbed of this worker: a name of its own per test
        name = f"spot-engine-{uuid.uuid4().hex[:8]}"
        template = ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={
            "ImageId": image, "InstanceType": "c6i.4xlarge"})["LaunchTemplate"]["LaunchTemplateId"]
        config["sites"][target]["launch"] = {"control_url": "http://{private_ip}:8443", "launch_template": template}
        before = {i["InstanceId"] for i in ec2_tagged(bed)}  # another test on this worker may have launched some
        made: Callable[[], bool] = lambda: any(i["InstanceId"] not in before for i in ec2_tagged(bed))  # noqa: E731
    else:
        config["sites"][target]["launch"] = {"control_url": "http://{name}:8443", "image_id": "/subscriptions/s/"
                                             "resourceGroups/img/providers/Microsoft.Compute/galleries/g/images/engine/"
                                             "versions/2026.12.1", "vm_size": "Standard_D8s_v5",
                                             "subnet_id": "/subscriptions/s/resourceGroups/net/providers/"
                                             "Microsoft.Network/virtualNetworks/v/subnets/engines"}
        made = lambda: any((vm.tags or {}).get(KEY_TAG) for vm in list(bed.azure.vms.values()))  # noqa: E731
    bed.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    watcher = boot_when(made, machine)
    try:
        result = failover(bed, "replace", "spot-gcp", "--site", target, "--control-url", machine.url("spot-gcp"),
                          "--output", "json")
        assert result.returncode == 0, result.stdout + result.stderr
        outcome = json.loads(result.stdout)
        assert (outcome["state"], outcome["created"], outcome["site"]) == ("done", True, target)
        print(f"replaced onto {target} in {outcome['seconds']}s (rejoin copied to seq {outcome['rejoin']['last_seq']})")
        assert outcome["rejoin"]["acknowledging"] and outcome["rejoin"]["primary"] == "spot-aws"
        if target == "aws-hk":
            tagged = [i for i in ec2_tagged(bed) if i["InstanceId"] not in before]
            assert [i["InstanceId"] for i in tagged] == [outcome["instance"]]
            assert tagged[0]["InstanceType"] == "c6i.4xlarge"
        else:
            assert [name for name, vm in bed.azure.vms.items() if vm.tags] == [outcome["instance"]]
            assert bed.azure.power(outcome["instance"]) == "running"
        new = machine.replica("spot-gcp")
        wait_until(lambda: client.status(new).last_seq == client.status(primary).last_seq >= 4,
                   "the new standby to hold every order of the primary")
    finally:
        watcher.join(0)
        client.close()
        machine.close()
