"""Fencing the old primary on AWS, as the runbook's fence step judges it: fenced only when EC2 *reads* the machine
stopped or terminated. A terminated instance is fenced (also when it is named by its Name tag); one still
`stopping` is not yet; a stop call that timed out is not. Against moto in-process, through the real adapter and the
driver's own look-up of the old primary's state (`StepIO.instance_state`), judged by the runbook's `fenced` rule."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest
from provider_helpers import AMI, AWS_REGION, AWS_ZONES, FAST, AwsWorld

from orchestrator.core import runbook as rb
from orchestrator.core.errors import ProviderError
from orchestrator.core.model import Engine, Replica
from orchestrator.drivers.steps import StepIO
from providers import CloudProvider, InstanceState, build_provider

pytestmark = pytest.mark.timeout(60)

PLAN = rb.Plan("spot", "spot-aws", "spot-gcp", epoch=7_000_001, protection=20.0,
               replicas=("spot-aws", "spot-gcp", "spot-azure"))


def _tagged(world: AwsWorld, name: str) -> str:
    answer = world.ec2.run_instances(
        ImageId=AMI, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": AWS_ZONES[0]},
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}])
    return str(answer["Instances"][0]["InstanceId"])


def _provider(world: AwsWorld, **options: Any) -> CloudProvider:
    return build_provider(world.site(options=options), session=world.session, **FAST)


def _fenced(provider: CloudProvider, instance: str) -> str | None:
    """What the fence step concludes when no replica answers: the old primary's machine state, read by the driver
    exactly as in a failover, judged by the runbook's rule."""
    engine = Engine("spot", "spot-aws", (Replica("spot-aws", "spot", provider.site.name, instance, "http://x"),))
    io = StepIO(engines=None, providers={provider.site.name: provider}, routers={})  # type: ignore[arg-type]
    return rb.fenced(PLAN, rb.Facts({}, old_instance_state=io.instance_state(engine, "spot-aws")))


def test_a_terminated_instance_named_by_its_tag_is_fenced_without_a_call(aws: AwsWorld) -> None:
    instance = _tagged(aws, "spot-engine-aws")
    provider = _provider(aws)
    assert provider.instance_state("spot-engine-aws") is InstanceState.RUNNING  # the id is now remembered
    assert _fenced(provider, "spot-engine-aws") is None
    aws.ec2.terminate_instances(InstanceIds=[instance])

    provider.fence("spot-engine-aws", deadline=5)

    assert provider.writes == {}
    assert provider.instance_state("spot-engine-aws") is InstanceState.TERMINATED
    assert _fenced(provider, "spot-engine-aws") == "instance terminated"
    fresh = _provider(aws)  # a new cron run: nothing remembered, the tag is looked up and still names it
    assert _fenced(fresh, "spot-engine-aws") == "instance terminated"


def test_a_replacement_wins_over_its_terminated_predecessor(aws: AwsWorld) -> None:
    old = _tagged(aws, "spot-engine-aws")
    aws.ec2.terminate_instances(InstanceIds=[old])
    new = _tagged(aws, "spot-engine-aws")
    provider = _provider(aws)
    health = provider.instance_health(["spot-engine-aws"])["spot-engine-aws"]
    assert health.state is InstanceState.RUNNING and health.instance == "spot-engine-aws"
    assert provider.names.get("aws-sg/ec2-name/spot-engine-aws") == new


def test_a_terminated_instance_named_by_its_id_is_fenced(aws: AwsWorld) -> None:
    instance = aws.run_instance()
    aws.ec2.terminate_instances(InstanceIds=[instance])
    provider = _provider(aws)
    provider.fence(instance, deadline=5)
    assert provider.writes == {} and _fenced(provider, instance) == "instance terminated"


def test_an_instance_still_stopping_is_not_fenced(aws: AwsWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.ec2.models.instances import Instance

    def stuck(self: Any) -> Any:  # a host in trouble: the stop is accepted and never finishes
        self._state.name, self._state.code = "stopping", 64

    monkeypatch.setattr(Instance, "stop", stuck)
    instance = aws.run_instance()
    provider = _provider(aws)

    with pytest.raises(ProviderError, match=rf"instance {instance} still stopping, not stopped or terminated"):
        provider.fence(instance, deadline=0.5)

    assert provider.writes == {"ec2.stop_instances": 1}  # asked once, then only read
    assert provider.instance_state(instance) is InstanceState.STOPPING
    assert _fenced(provider, instance) is None


def test_a_stop_that_timed_out_is_not_fenced(aws: AwsWorld) -> None:
    instance = aws.run_instance()

    def times_out(request: Any, **kwargs: Any) -> Any:
        raise botocore.exceptions.ReadTimeoutError(endpoint_url=request.url)

    aws.session.events.register_first("before-send.ec2.StopInstances", times_out)
    try:
        provider = _provider(aws)
        with pytest.raises(ProviderError, match=r"ec2\.stop_instances still failing when its .* deadline ran out"):
            provider.fence(instance, deadline=5)
        assert provider.calls["ec2.stop_instances"] >= 2  # retried within the deadline, never taken as done
        assert provider.instance_state(instance) is InstanceState.RUNNING
        assert _fenced(provider, instance) is None
    finally:
        aws.session.events.unregister("before-send.ec2.StopInstances", times_out)


def test_the_fence_is_a_forced_stop_unless_the_site_asks_for_a_graceful_one(aws: AwsWorld) -> None:
    instance = aws.run_instance()
    forced, graceful = _provider(aws), _provider(aws, fence="stop")
    for provider in (forced, graceful):
        provider.dry_run = True
        provider.fence(instance, deadline=5)
    assert [str(call) for call in forced.planned + graceful.planned] == [
        f"ec2.stop_instances(InstanceIds=['{instance}'], Force=True)",
        f"ec2.stop_instances(InstanceIds=['{instance}'], Force=False)"]
    forced.dry_run = False
    forced.fence(instance, deadline=5)
    assert _fenced(forced, instance) == "instance stopped"


def test_a_stop_that_takes_several_reads_is_fenced_once_ec2_reads_stopped(
    aws: AwsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EC2 as it really is (moto's stop is instant): `stopping` for a few reads, then `stopped`. The fence asks
    once, keeps reading, and is done at the first read of `stopped`, not before."""
    from moto.core import DEFAULT_ACCOUNT_ID  # type: ignore[attr-defined]
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import Instance

    monkeypatch.setattr(Instance, "stop", lambda self: setattr(self._state, "name", "stopping"))
    instance = aws.run_instance()
    machine = ec2_backends[DEFAULT_ACCOUNT_ID][AWS_REGION].get_instance(instance)
    states: list[str] = []

    def one_read_later(**kwargs: Any) -> None:  # each read of a stopping machine brings the stop closer
        states.append(machine._state.name)
        if states.count("stopping") == 3:
            machine._state.name, machine._state.code = "stopped", 80

    aws.session.events.register("after-call.ec2.DescribeInstanceStatus", one_read_later)
    try:
        provider = _provider(aws)
        provider.fence(instance, deadline=10)
    finally:
        aws.session.events.unregister("after-call.ec2.DescribeInstanceStatus", one_read_later)
    assert states == ["running", "stopping", "stopping", "stopping", "stopped"]  # done at the first `stopped`
    assert provider.writes == {"ec2.stop_instances": 1}
    assert _fenced(provider, instance) == "instance stopped"
