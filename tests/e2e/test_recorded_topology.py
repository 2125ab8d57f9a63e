"""After `failover replace`, the operator's commands act on the replica where it runs now, not where the file says.

The runbook it checks: spot-azure's host is gone for good (its process killed, its VM deallocated); the operator runs
`failover replace spot-azure --site S` onto another cloud, which starts a machine there (a Compute instance from an
image on the GCP fake, or an EC2 instance from a launch template on moto; the "image" is a fresh replica process on
an empty data directory, at a new control URL), rejoins it, and records its new place in the store. The
configuration file still says spot-azure is Azure's `spot-engine-azure` at the old address: it stays the operator's
to update. From then on:

- `failover plan --target spot-azure` reads the new machine (it answers, caught up) and plans the promotion there,
  its new instance checked, not the deallocated Azure VM;
- `failover status` shows spot-azure on its new site (cloud, instance) and says where the store and the file differ;
- `failover execute --target spot-azure` promotes the new machine; `failover halt` halts it (the new primary, which
  the file does not know); `failover reopen --force` reopens it; `failover rejoin spot-aws` rebuilds the fenced old
  primary as a standby of the new machine.

The switchover test replaces spot-azure on AWS, not GCP (promoted on GCP, its only live standby would be spot-gcp on
the same cloud). No replica is restarted: `failover replace` tells every replica of the engine the control URLs where
they run now (`POST /v1/peers`), so spot-gcp, whose flags still name spot-azure's old address, follows the new
machine once it is promoted. spot-gcp is down during the replacement: the command records the new machine, names
spot-gcp as still looking at the old address and exits 1; once spot-gcp is back, the same command tells it (exit 0).
Without that step (the first version of this test restarted spot-gcp with the new address by hand; without the
restart) the promoted new machine had no standby on another cloud and could not commit: `execute` exited 3, the
runbook extended the protection window three times ("new primary spot-azure is cannot_commit") and handed over to
a human with trading halted.

Before the fix (the operator's commands read replicas from the file) `plan --target spot-azure` exited 3, blocked by
"target site must be healthy; target replica must be healthy; target replica status must be known" (the old address
did not answer, the old site's VM was deallocated); `execute` was refused with the same three rules.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import yaml

from orchestrator.core.model import Phase, Role
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec
from orchestrator.testbed.world import AWS_REGION, Testbed, wait_until


def failover(bed: Testbed, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=bed.env(), capture_output=True,
                          text=True, timeout=600, check=False)


def replaced_onto(bed: Testbed, site: str, *, down: str | None = None) -> tuple[ReplicaCluster, str]:
    """spot-azure lost for good and replaced on `site` (gcp-hk from an image, or aws-hk from an EC2 launch template):
    the new machine (already booted, so the replace finishes in one run) and the instance the replace made. With
    `down`, that replica is stopped during the replacement: it is named as not told (exit 1), started again, and
    the same command tells it (exit 0)."""
    import boto3

    assert bed.replicas is not None and bed.azure is not None
    cluster, client = bed.replicas, bed.replicas.client()
    primary = cluster.replica("spot-aws")
    try:
        for n in range(5):
            assert client.submit_order(primary, client_order_id=f"before-{n}", account="a-1", market="BTC-USDT",
                                       side="buy", qty="1", price=str(100 + n)).accepted
    finally:
        client.close()
    cluster.kill("spot-azure")
    bed.azure.set_vm("spot-engine-azure", power="deallocated")
    machine = ReplicaCluster(bed.base / "new-machine", [ReplicaSpec("spot-azure", site.split("-")[0], peers=())])
    machine.token, machine.token_file = cluster.token, cluster.token_file
    machine.start()
    config: dict[str, Any] = bed.config()
    if site == "aws-hk":
        ec2 = boto3.client("ec2", region_name=AWS_REGION, endpoint_url=bed.moto_url)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        # moto keeps one EC2 per process, shared by every testbed of this worker: a name of its own per test
        name = f"spot-engine-{uuid.uuid4().hex[:8]}"
        template = ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={
            "ImageId": image, "InstanceType": "c6i.4xlarge"})["LaunchTemplate"]["LaunchTemplateId"]
        config["sites"][site]["launch"] = {"control_url": machine.url("spot-azure"), "launch_template": template}
    else:
        config["sites"][site]["launch"] = {"control_url": machine.url("spot-azure"),
                                           "source_image": "global/images/engine-2026-12",
                                           "machine_type": "c3-standard-8"}
    bed.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    everyone = {"spot-aws": cluster.url("spot-aws"), "spot-gcp": cluster.url("spot-gcp"),
                "spot-azure": machine.url("spot-azure")}
    if down is not None:
        cluster.stop(down)
        first = failover(bed, "replace", "spot-azure", "--site", site, "--output", "json")
        assert first.returncode == 1, first.stdout + first.stderr  # replaced, but one replica was not told
        told = json.loads(first.stdout)
        assert (told["state"], told["peers"]["urls"], list(told["peers"]["pending"])) == ("done", everyone, [down])
        assert f"{down} did not take the new peer list" in first.stderr, first.stderr
        assert f"at its old address {cluster.url('spot-azure')}" in first.stderr, first.stderr
        cluster.start(down)
    done = failover(bed, "replace", "spot-azure", "--site", site, "--output", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert (outcome["state"], outcome["site"], outcome["previous"]["site"]) == ("done", site, "azure-hk")
    assert (outcome["peers"]["urls"], outcome["peers"]["pending"]) == (everyone, {})
    assert sorted(outcome["peers"]["told"]) == sorted(everyone)
    assert outcome["stage"] == (None if down is None else "peers")  # the rerun only told the peers
    check = cluster.client()
    try:  # each replica polls the others where they run now: the old address is gone from every list
        for name, url in everyone.items():
            listed = check.peers(url)
            assert (listed["source"], sorted(listed["peers"])) == \
                ("control", sorted(other for peer, other in everyone.items() if peer != name)), (name, listed)
    finally:
        check.close()
    return machine, str(outcome["instance"])


def caught_up(bed: Testbed, machine: ReplicaCluster, primary: str) -> None:
    """The new standby holds every order its primary holds (a switchover onto it waits for no lag)."""
    assert bed.replicas is not None
    client = bed.replicas.client()
    try:
        new, old = machine.replica("spot-azure"), bed.replicas.replica(primary)
        wait_until(lambda: client.status(new).last_seq == client.status(old).last_seq >= 5,
                   "the new standby to hold every order of the primary")
    finally:
        client.close()


def test_plan_and_status_see_the_replaced_replica_where_it_runs_now(bed: Testbed) -> None:
    machine, instance = replaced_onto(bed, "gcp-hk")
    try:
        caught_up(bed, machine, "spot-aws")
        planned = failover(bed, "plan", "--target", "spot-azure", "--output", "json")
        assert planned.returncode == 0, planned.stdout + planned.stderr
        plan = json.loads(planned.stdout)
        assert (plan["target"], plan["safe"], plan["blocked_by"]) == ("spot-azure", True, [])
        [candidate] = [c for c in plan["candidates"] if c["replica"] == "spot-azure"]
        assert (candidate["eligible"], candidate["lag"]) == (True, 0)
        calls = [call for step in plan["steps"] for call in step["calls"]]
        print("\n".join(calls))
        assert f"gcp: instance {instance} already running (no call)" in calls  # its GCP instance, not the Azure VM
        assert not any("spot-engine-azure" in call for call in calls), calls
        assert any(call.startswith(f"POST {machine.url('spot-azure')}/v1/promote ") for call in calls), calls
        assert bed.replicas is not None
        assert not any(bed.replicas.url("spot-azure") in call for call in calls), calls  # the old address

        # the dry run asks about the instance where it runs now (the plain fakes serve no permission API: their
        # answers are "unknown", which blocks; what matters here is where the questions went)
        checked = json.loads(failover(bed, "plan", "--target", "spot-azure", "--check-permissions", "-o",
                                      "json").stdout)
        asked = {g["where"] for g in checked["permissions"]}
        assert f"site gcp-hk: instance {instance}" in asked, asked
        assert not any("spot-engine-azure" in where for where in asked), asked

        shown = json.loads(failover(bed, "status", "--output", "json").stdout)
        [line] = [r for e in shown["engines"] for r in e["replicas"] if r["name"] == "spot-azure"]
        assert (line["site"], line["provider"], line["instance"]) == ("gcp-hk", "gcp", instance)
        assert len(shown["topology_differs"]) == 1
        assert "site azure-hk -> gcp-hk" in shown["topology_differs"][0]
        assert f"instance spot-engine-azure -> {instance}" in shown["topology_differs"][0]
        table = failover(bed, "status", "--output", "wide")
        assert "spot/spot-azure: replaced, the configuration still says site azure-hk -> gcp-hk" in table.stdout
    finally:
        machine.close()


def test_execute_halt_reopen_and_rejoin_act_on_the_replaced_replica(bed: Testbed) -> None:
    assert bed.replicas is not None
    machine, instance = replaced_onto(bed, "aws-hk", down="spot-gcp")
    client = bed.replicas.client()
    new = machine.replica("spot-azure")
    try:
        caught_up(bed, machine, "spot-aws")
        restarted = bed.replicas.replicas["spot-gcp"].process
        before = client.status(new).epoch
        planned = json.loads(failover(bed, "plan", "--target", "spot-azure", "--output", "json").stdout)
        assert planned["safe"], planned["blocked_by"]
        assert any(instance in call for step in planned["steps"] for call in step["calls"]), planned["steps"]
        executed = failover(bed, "execute", "--target", "spot-azure", "--yes")
        assert executed.returncode == 0, executed.stdout + executed.stderr
        promoted = client.status(new)
        assert (promoted.role, promoted.phase) == (Role.PRIMARY, Phase.OPEN) and promoted.epoch > before
        gcp = client.status(bed.replicas.replica("spot-gcp"))  # its flags still name the old address
        assert (gcp.role, gcp.following) == (Role.STANDBY, machine.url("spot-azure"))
        assert bed.replicas.replicas["spot-gcp"].process is restarted  # nobody restarted it
        committed = client.submit_order(new, client_order_id="after-the-move", account="a-1", market="BTC-USDT",
                                        side="sell", qty="1", price="150")
        assert committed.accepted, committed  # synchronous: spot-gcp, on another cloud, holds it

        halted = failover(bed, "halt", "--reason", "after the move")
        assert halted.returncode == 0, halted.stdout + halted.stderr
        assert "halted spot on spot-azure (epoch " in halted.stdout, halted.stdout  # the new primary
        assert client.status(new).phase is Phase.HALTED
        reopened = failover(bed, "reopen", "--force", "--reason", "checked")
        assert reopened.returncode == 0, reopened.stdout + reopened.stderr
        assert client.status(new).phase is Phase.OPEN

        rejoined = failover(bed, "rejoin", "spot-aws", "--output", "json")
        assert rejoined.returncode == 0, rejoined.stdout + rejoined.stderr
        assert json.loads(rejoined.stdout)["primary"] == "spot-azure"
        old = client.status(bed.replicas.replica("spot-aws"))
        assert (old.role, old.following) == (Role.STANDBY, machine.url("spot-azure"))
    finally:
        client.close()
        machine.close()
