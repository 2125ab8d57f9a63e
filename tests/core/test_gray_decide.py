"""decide() on a degraded primary (docs/gray-failures.md): page once, or switch over to a healthy, caught-up standby
with `policy.gray.action: switchover`, by the same rules as a failover; never when no standby is safe."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.core.decide import ActionKind, EngineSnapshot, Rule, decide
from orchestrator.core.gray import DEGRADED, GrayAction, GrayObjective
from orchestrator.core.health import Assessment
from orchestrator.core.model import Phase, Policy, ReplicaStatus, Role, Topology, Verdict
from orchestrator.core.phases import PhaseState

pytestmark = pytest.mark.skipif("gray" not in Policy.__dataclass_fields__,
                                reason="core/model.py has no Policy.gray yet (docs/gray-failures.md)")

NOW = 1_671_332_400.0
SUBJECTS = ["aws-hk", "gcp-hk", "azure-hk", "spot-aws", "spot-gcp", "spot-azure"]


def gray(topology: Topology, action: GrayAction = GrayAction.PAGE) -> Topology:
    return replace(topology, policy=replace(topology.policy, gray=GrayObjective(action=action)))


def verdicts(since: float = NOW, **overrides: str) -> dict[str, Assessment]:
    found = {s: Assessment(s, Verdict.HEALTHY, since) for s in SUBJECTS}
    for key, verdict in overrides.items():
        name = key.replace("_", "-")
        found[name] = Assessment(name, Verdict(verdict), since, reason="available 99.33% over the last 600s")
    return found


def snapshot(topology: Topology, lag: int = 0, **kwargs: object) -> EngineSnapshot:
    def status(name: str, applied: int, role: Role = Role.STANDBY) -> ReplicaStatus:
        return ReplicaStatus(name, role, 1, Phase.OPEN, None, applied, applied)

    statuses = {"spot-aws": status("spot-aws", 100, Role.PRIMARY), "spot-gcp": status("spot-gcp", 100 - lag),
                "spot-azure": status("spot-azure", 100 - lag)}
    return replace(EngineSnapshot(engine=topology.engines["spot"], primary="spot-aws", statuses=statuses),
                   **kwargs)  # type: ignore[arg-type]


def test_a_degraded_primary_is_paged_once_when_the_verdict_begins(topology: Topology) -> None:
    topology = gray(topology)
    [action] = decide([snapshot(topology)], topology, verdicts(spot_aws=DEGRADED), NOW)
    assert action.kind is ActionKind.PAGE and action.target is None
    assert "spot-aws is degraded: available 99.33%" in action.reason
    assert action.blocked_by == (Rule.GRAY_PAGE_ONLY,)
    assert decide([snapshot(topology)], topology, verdicts(NOW - 1, spot_aws=DEGRADED), NOW) == []


def test_a_degraded_site_of_the_primary_counts_as_the_primary(topology: Topology) -> None:
    topology = gray(topology)
    [action] = decide([snapshot(topology)], topology, verdicts(aws_hk=DEGRADED), NOW)
    assert action.kind is ActionKind.PAGE and "aws-hk is degraded" in action.reason


def test_switchover_picks_a_healthy_caught_up_standby_on_another_cloud(topology: Topology) -> None:
    topology = gray(topology, GrayAction.SWITCHOVER)
    [action] = decide([snapshot(topology)], topology, verdicts(NOW - 60, spot_aws=DEGRADED), NOW)
    assert action.kind is ActionKind.FAILOVER and action.source == "spot-aws" and action.target == "spot-gcp"
    assert action.reason.endswith("planned switchover")


def test_switchover_never_to_a_lagging_or_unhealthy_standby_only_a_page(topology: Topology) -> None:
    topology = gray(topology, GrayAction.SWITCHOVER)
    [action] = decide([snapshot(topology, lag=5)], topology, verdicts(spot_aws=DEGRADED), NOW)
    assert action.kind is ActionKind.PAGE and Rule.TARGET_CAUGHT_UP in action.blocked_by
    both_bad = verdicts(spot_aws=DEGRADED, spot_gcp=DEGRADED, azure_hk="suspect")
    [action] = decide([snapshot(topology)], topology, both_bad, NOW)
    assert action.kind is ActionKind.PAGE
    assert {Rule.TARGET_REPLICA_HEALTHY, Rule.TARGET_SITE_HEALTHY} <= set(action.blocked_by)


def test_switchover_waits_out_min_failover_interval(topology: Topology) -> None:
    topology = gray(topology, GrayAction.SWITCHOVER)
    recent = snapshot(topology, last_failover_done_at=NOW - 60)
    [action] = decide([recent], topology, verdicts(spot_aws=DEGRADED), NOW)
    assert action.kind is ActionKind.PAGE and action.blocked_by == (Rule.MIN_INTERVAL,)


def test_manual_approval_proposes_the_switchover(topology: Topology) -> None:
    topology = gray(topology, GrayAction.SWITCHOVER)
    topology = replace(topology, policy=replace(topology.policy, approval=type(topology.policy.approval)("manual")))
    [action] = decide([snapshot(topology)], topology, verdicts(spot_aws=DEGRADED), NOW)
    assert action.kind is ActionKind.PROPOSE and action.target == "spot-gcp"


def test_nothing_while_halted_or_without_an_objective(topology: Topology) -> None:
    halted = snapshot(gray(topology), phase=PhaseState(Phase.HALTED))
    assert decide([halted], gray(topology), verdicts(spot_aws=DEGRADED), NOW) == []
    assert decide([snapshot(topology)], topology, verdicts(spot_aws=DEGRADED), NOW) == []
