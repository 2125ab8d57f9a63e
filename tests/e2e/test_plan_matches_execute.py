"""The calls `failover plan` lists are the calls `failover execute` then makes (issue 13, item 2).

Three clouds and three real replicas (the testbed). For each scenario the plan is made first, through the same
`Operator.plan` the CLI calls (its engine calls recorded by a recording client that answers from the statuses read
then, its cloud and DNS writes by the adapters' dry run); then the switchover runs through `Operator.execute`, with
the real `HttpEngineClient` wrapped in a recording client and each provider's and router's writes logged as they go
out (and checked against the adapters' own write counters). The two lists of calls must be equal, in order, up to
the epoch: a plan cannot know the fencing token the run will lead with, so each side's own epoch is compared as
`E`. A protection window extended during the run (the new primary not healthy at the window's end) adds exactly the
call the plan lists "if needed" for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence

import pytest

from orchestrator.config import LoadedConfig, load_config
from orchestrator.core.model import Phase, Role
from orchestrator.core.runbook import Step
from orchestrator.drivers.events import EventLog
from orchestrator.drivers.operator import Operator, PlanReport
from orchestrator.drivers.preview import Call
from orchestrator.drivers.wiring import Edges, build_edges
from orchestrator.engine.client import HttpEngineClient
from orchestrator.engine.recording import EngineCall, RecordingEngine
from orchestrator.store import open_store
from orchestrator.store.records import Incident
from orchestrator.testbed.world import GCP_ZONE, Testbed
from providers.calls import ApiCaller, PlannedCall

pytestmark = pytest.mark.slow
TARGET = "spot-gcp"


def callers(edges: Edges) -> list[ApiCaller]:
    return [*edges.providers.values(), *edges.routers.values()]


def log_writes(caller: ApiCaller, log: list[Call]) -> None:
    """Each write the adapter makes, logged as it goes out (the adapter's own `_write` still makes it)."""
    real = caller._write

    def write(operation: str, fn: object, /, *, subject: str = "", **params: object) -> object:
        log.append(PlannedCall(operation, dict(params)))
        return real(operation, fn, subject=subject, **params)  # type: ignore[arg-type]

    caller._write = write  # type: ignore[method-assign]


def plan(loaded: LoadedConfig) -> PlanReport:
    with build_edges(loaded, dry_run=True, notifier=EventLog()) as edges:
        report = Operator(loaded, edges, actor="test-plan").plan(None, TARGET)
        assert sum(sum(c.writes.values()) for c in callers(edges)) == 0  # the plan wrote nothing
    assert report.safe, report.blocked_by
    return report


def execute(loaded: LoadedConfig) -> tuple[Incident, list[Call]]:
    """`failover execute --target spot-gcp` in this process, every engine call and cloud write logged in order.
    Generous timeouts: a slow answer on a busy machine must not turn into a retried step (which makes calls again)."""
    made: list[Call] = []
    client = HttpEngineClient(token_file=loaded.config.control_token_file, read_timeout=5.0, attempts=3,
                              control_timeout=10.0)
    engines = RecordingEngine(client, on_call=made.append)
    try:
        with build_edges(loaded, engines=engines, notifier=EventLog()) as edges:
            for caller in callers(edges):
                log_writes(caller, made)
            incident = Operator(loaded, edges, actor="test-execute").execute(None, TARGET, poll=0.2, timeout=300)
            counted = sum((c.writes for c in callers(edges)), Counter[str]())
    finally:
        client.close()
    assert counted == Counter(c.operation for c in made if isinstance(c, PlannedCall))  # the adapters' own log
    return incident, made


def shown(calls: Sequence[Call], epoch: int) -> list[str]:
    """Calls as `failover plan` prints them, with this run's own epoch written `E`."""
    return [str(c).replace(f"epoch: {epoch}}}", "epoch: E}") if isinstance(c, EngineCall) else str(c) for c in calls]


def expected(report: PlanReport, extensions: int) -> list[Call]:
    """The plan's calls, with the window's extension (listed "if needed") once per extension the run made."""
    calls: list[Call] = []
    for step in report.steps:
        calls += step.made
        if step.step == Step.AWAIT_WINDOW.value:
            calls += list(step.if_needed) * extensions
    return calls


def plan_then_execute(bed: Testbed) -> tuple[PlanReport, list[str], list[str]]:
    loaded = load_config(bed.config_path)
    report = plan(loaded)
    incident, made = execute(loaded)
    assert incident.status.value == "closed", incident
    with open_store(loaded.store_url) as store:
        journal = store.journal(incident.id)
    retried = [(e.step, e.detail.get("error")) for e in journal if e.state == "failed"]
    assert retried == [], f"a step failed and was retried (it then acts again): {retried}"
    extensions = sum(1 for e in journal if e.step == Step.AWAIT_WINDOW.value and e.state == "extended")
    return report, shown(expected(report, extensions), report.epoch), shown(made, int(incident.detail["epoch"]))


def step_calls(report: PlanReport) -> dict[str, list[str]]:
    return {step.step: shown(step.made, report.epoch) for step in report.steps}


def test_a_clean_switchover_makes_the_calls_its_plan_lists(bed: Testbed) -> None:
    assert bed.replicas is not None
    planned_json = subprocess.run([sys.executable, "-m", "orchestrator", "plan", "--target", TARGET, "--output",
                                   "json"], env=bed.env(), capture_output=True, text=True, timeout=120, check=False)
    assert planned_json.returncode == 0, planned_json.stderr
    report, planned, made = plan_then_execute(bed)
    # the CLI prints the plan this test compares
    assert [s["calls"] for s in json.loads(planned_json.stdout)["steps"]] == [s.calls for s in report.steps]

    assert made == planned
    aws, gcp, azure = (bed.replicas.url(n) for n in ("spot-aws", "spot-gcp", "spot-azure"))
    calls = step_calls(report)
    assert calls["halt"] == [f"POST {aws}/v1/phase {{phase: halted, epoch: E}}",  # the primary first
                             f"POST {gcp}/v1/phase {{phase: halted, epoch: E}}",
                             f"POST {azure}/v1/phase {{phase: halted, epoch: E}}"]
    assert calls["fence_old_primary"] == [f"POST {aws}/v1/fence {{epoch: E}}"]
    assert calls["ensure_target_running"] == []
    assert calls["promote"] == [f"POST {gcp}/v1/promote {{epoch: E}}"]
    [dns] = calls["switch_traffic"]
    assert dns.startswith("route53.change_resource_record_sets(") and "'UPSERT'" in dns
    assert calls["open_protection"] == [f"POST {gcp}/v1/phase {{phase: protection, until: now+12s, epoch: E}}"]
    assert calls["reopen"] == [f"POST {gcp}/v1/phase {{phase: open, epoch: E}}"]
    status = bed.replicas.client().status(bed.replicas.replica(TARGET))
    assert (status.role, status.phase) == (Role.PRIMARY, Phase.OPEN)


def test_an_unreachable_old_primary_is_planned_and_run_alike(bed: Testbed) -> None:
    """The old primary's process is gone: the halt reaches the other two, and their new epoch is the fence (no
    call; stopping the machine is only listed "if needed")."""
    assert bed.replicas is not None
    bed.replicas.kill("spot-aws")
    report, planned, made = plan_then_execute(bed)

    assert made == planned
    gcp, azure = bed.replicas.url("spot-gcp"), bed.replicas.url("spot-azure")
    calls = step_calls(report)
    assert calls["halt"] == [f"POST {gcp}/v1/phase {{phase: halted, epoch: E}}",
                             f"POST {azure}/v1/phase {{phase: halted, epoch: E}}"]
    assert calls["fence_old_primary"] == []
    [fence] = [s for s in report.steps if s.step == "fence_old_primary"]
    assert "unreachable; every other replica carries the new epoch" in fence.calls[0]
    assert [c.operation for c in fence.if_needed if isinstance(c, PlannedCall)] == ["ec2.stop_instances"]


def test_a_target_that_needs_starting_is_started_as_planned(bed: Testbed) -> None:
    """GCP reports the target's machine stopped (its replica still answers): the plan lists the start, the run
    makes it, and nothing else changes."""
    assert bed.gcp is not None and bed.replicas is not None
    bed.gcp.add_instance("spot-engine-gcp", GCP_ZONE, "TERMINATED")
    report, planned, made = plan_then_execute(bed)

    assert made == planned
    calls = step_calls(report)
    assert calls["ensure_target_running"] == [
        "compute.instances.start(zone='asia-east2-a', instance='spot-engine-gcp')"]
    assert bed.gcp.instance_status("spot-engine-gcp", GCP_ZONE) == "RUNNING"
