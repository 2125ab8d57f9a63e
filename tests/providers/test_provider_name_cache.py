"""What a provider finds out about a configured name is remembered, and found out again once it is wrong.

An AWS replica may be configured by its `Name` tag and a GCP one by its bare name in a multi-zone site; turning
either into what the API wants (an instance id, a zone) costs calls. A cron run is a new process every minute, so
the answer is kept in a `NameCache` (the store, in production) and reused by the next run. A remembered answer goes
stale when the machine is replaced: the old id then answers "terminated" or nothing at all, the old zone 404. That
must lead to a new look-up in the same poll, never to a `down` verdict for a replica that is running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from provider_helpers import FAST, AwsWorld, gcp_site

from orchestrator.core.errors import StoreError
from orchestrator.core.model import Status
from orchestrator.drivers.wiring import NAMES_KEY, StoreNameCache
from orchestrator.store import open_store
from orchestrator.testbed.fakes import FakeServer, GcpComputeFake
from providers import build_provider
from providers.base import MemoryNameCache

pytestmark = pytest.mark.timeout(60)

Gcp = tuple[GcpComputeFake, FakeServer]


def run_named(world: AwsWorld, name: str) -> str:
    answer = world.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                     Placement={"AvailabilityZone": "ap-southeast-1a"},
                                     TagSpecifications=[{"ResourceType": "instance",
                                                         "Tags": [{"Key": "Name", "Value": name}]}])
    return str(answer["Instances"][0]["InstanceId"])


def replica_observation(provider: Any, instance: str, replica: str) -> Any:
    [found] = [o for o in provider.observe({instance: replica}) if o.subject == replica and o.source == provider.source]
    return found


# --- AWS: Name tag -> instance id ---------------------------------------------------------------------------------


def test_a_name_tag_is_looked_up_once_and_the_next_run_reuses_the_id(aws: AwsWorld) -> None:
    instance = run_named(aws, "spot-engine-hk")
    names = MemoryNameCache()
    first = aws.provider(names=names)
    assert first.instance_health(["spot-engine-hk"])["spot-engine-hk"].status is Status.OK
    assert first.calls["ec2.describe_instances"] == 1

    next_run = aws.provider(names=names)  # a new process, the same store
    health = next_run.instance_health(["spot-engine-hk"])["spot-engine-hk"]
    assert (health.instance, health.status) == ("spot-engine-hk", Status.OK)
    assert next_run.calls["ec2.describe_instances"] == 0
    assert next_run.calls["ec2.describe_instance_status"] == 1
    assert names.get("aws-sg/ec2-name/spot-engine-hk") == instance


def test_a_replaced_instance_is_looked_up_again_not_reported_down(aws: AwsWorld) -> None:
    provider = aws.provider()
    old = run_named(aws, "spot-engine-hk")
    assert replica_observation(provider, "spot-engine-hk", "spot-aws").status is Status.OK

    aws.ec2.terminate_instances(InstanceIds=[old])  # the machine is rebuilt: a new id under the same Name tag
    new = run_named(aws, "spot-engine-hk")
    seen = replica_observation(provider, "spot-engine-hk", "spot-aws")

    assert seen.status is Status.OK, seen.detail
    assert seen.detail.startswith("spot-engine-hk running")
    assert provider.calls["ec2.describe_instances"] == 2  # the first look-up, and one when the old id was gone
    provider.calls.clear()
    provider.observe({"spot-engine-hk": "spot-aws"})
    assert provider.calls["ec2.describe_instances"] == 0  # the new id is remembered
    provider.stop("spot-engine-hk", deadline=10)  # and used by the lifecycle calls
    states = {i["InstanceId"]: i["State"]["Name"] for r in aws.ec2.describe_instances()["Reservations"]
              for i in r["Instances"]}
    assert (states[old], states[new]) == ("terminated", "stopped")


def test_a_remembered_instance_that_is_only_stopped_stays_stopped(aws: AwsWorld) -> None:
    provider = aws.provider()
    instance = run_named(aws, "spot-engine-hk")
    provider.observe({"spot-engine-hk": "spot-aws"})
    aws.ec2.stop_instances(InstanceIds=[instance])
    provider.calls.clear()
    seen = replica_observation(provider, "spot-engine-hk", "spot-aws")
    assert seen.status is Status.DOWN and "stopped" in seen.detail  # a real state, not a stale id
    assert provider.calls["ec2.describe_instances"] == 0


def test_a_name_no_instance_carries_is_down_after_one_look_up(aws: AwsWorld) -> None:
    provider = aws.provider()
    seen = replica_observation(provider, "spot-engine-nowhere", "spot-aws")
    assert seen.status is Status.DOWN and "not found" in seen.detail
    assert provider.calls["ec2.describe_instances"] == 1


# --- GCP: bare instance name -> the zone it lives in ---------------------------------------------------------------


def test_the_zone_of_a_bare_name_is_remembered_for_the_next_run(gcp: Gcp) -> None:
    fake, server = gcp
    fake.add_instance("spot-engine-2", "asia-east2-b")
    names = MemoryNameCache()
    first = build_provider(gcp_site(server), names=names, **FAST)
    assert first.instance_state("spot-engine-2").value == "running"
    assert first.calls["compute.instances.get"] == 2  # not in the first zone, found in the second

    next_run = build_provider(gcp_site(server), names=names, **FAST)
    assert next_run.instance_state("spot-engine-2").value == "running"
    assert next_run.calls["compute.instances.get"] == 1


def test_an_instance_recreated_in_another_zone_is_found_there_not_reported_down(gcp: Gcp) -> None:
    fake, server = gcp
    fake.add_instance("spot-engine-2", "asia-east2-b")
    provider = build_provider(gcp_site(server), **FAST)
    assert replica_observation(provider, "spot-engine-2", "spot-gcp").status is Status.OK

    with fake.lock:  # rebuilt in the other zone
        del fake.instances[("asia-east2-b", "spot-engine-2")]
    fake.add_instance("spot-engine-2", "asia-east2-a")
    seen = replica_observation(provider, "spot-engine-2", "spot-gcp")
    assert seen.status is Status.OK, seen.detail
    assert "zone asia-east2-a" in seen.detail


def test_a_single_zone_site_needs_no_cache(gcp: Gcp) -> None:
    _, server = gcp
    names = MemoryNameCache()
    provider = build_provider(gcp_site(server, zones=("asia-east2-a",)), names=names, **FAST)
    assert provider.instance_state("spot-engine-1").value == "running"
    assert names.get("gcp-hk/gcp-zone/spot-engine-1") is None


# --- the store behind the cache (what `failover check` uses) ------------------------------------------------------


def test_the_store_keeps_the_names_for_the_next_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with open_store(url) as store:
        StoreNameCache(store).put("aws-hk/ec2-name/spot-engine-aws", "i-0123456789abcdef0")
    with open_store(url) as store:
        cache = StoreNameCache(store)
        assert cache.get("aws-hk/ec2-name/spot-engine-aws") == "i-0123456789abcdef0"
        cache.drop("aws-hk/ec2-name/spot-engine-aws")
        assert cache.get("aws-hk/ec2-name/spot-engine-aws") is None
    with open_store(url) as store:
        assert StoreNameCache(store).get("aws-hk/ec2-name/spot-engine-aws") is None


def test_two_runs_writing_at_once_keep_both_names(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        one, two = StoreNameCache(store), StoreNameCache(store)
        assert one.get("a") is None and two.get("b") is None  # both read the same (empty) version
        one.put("a", "1")
        two.put("b", "2")  # a conflict: read again, then write both
        assert StoreNameCache(store).get("a") == "1" and StoreNameCache(store).get("b") == "2"
        found = store.get_state(NAMES_KEY)
        assert found is not None and found[0] == {"names": {"a": "1", "b": "2"}}


def test_a_store_that_fails_only_costs_a_look_up(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    store.close()  # every call now raises StoreError
    with pytest.raises(StoreError):
        store.get_state(NAMES_KEY)
    cache = StoreNameCache(store)
    assert cache.get("a") is None
    cache.put("a", "1")  # kept in memory for this process
    assert cache.get("a") == "1"


def test_a_dry_run_remembers_for_itself_and_writes_nothing(tmp_path: Path) -> None:
    """`failover plan` changes nothing, not even the cache: what it looks up stays in its own process."""
    with open_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        StoreNameCache(store).put("kept", "1")
        planning = StoreNameCache(store, writable=False)
        planning.put("a", "2")
        planning.drop("kept")
        assert (planning.get("a"), planning.get("kept")) == ("2", None)
        assert store.get_state(NAMES_KEY) == ({"names": {"kept": "1"}}, 1)
