"""decide(): target choice and the safety rules of docs/design.md §4, data in and actions out."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.core.decide import (
    ActionKind,
    EngineSnapshot,
    IncidentView,
    Rule,
    check_target,
    commit_stall_after,
    commit_verdict,
    decide,
)
from orchestrator.core.health import Assessment
from orchestrator.core.model import Approval, Phase, ReplicaStatus, Role, Topology, Verdict
from orchestrator.core.phases import PhaseState

NOW = 1_671_332_400.0


def verdicts(since: float = NOW, **overrides: Verdict) -> dict[str, Assessment]:
    """Every subject healthy but the overrides, each verdict reached at `since` (by default: just now)."""
    subjects = ["aws-hk", "gcp-hk", "azure-hk", "spot-aws", "spot-gcp", "spot-azure"]
    found = {s: Assessment(s, Verdict.HEALTHY, since) for s in subjects}
    for key, verdict in overrides.items():
        name = key.replace("_", "-")
        found[name] = Assessment(name, verdict, since, reason="test")
    return found


def status(name: str, applied: int, role: Role = Role.STANDBY) -> ReplicaStatus:
    return ReplicaStatus(name, role, 1, Phase.OPEN, None, applied, applied)


def snapshot(topology: Topology, **kwargs: object) -> EngineSnapshot:
    engine = topology.engines["spot"]
    statuses = {"spot-aws": status("spot-aws", 100, Role.PRIMARY), "spot-gcp": status("spot-gcp", 100),
                "spot-azure": status("spot-azure", 100)}
    base = EngineSnapshot(engine=engine, primary="spot-aws", statuses=statuses)
    return replace(base, **kwargs)  # type: ignore[arg-type]


def test_healthy_primary_means_no_action(topology: Topology) -> None:
    assert decide([snapshot(topology)], topology, verdicts(), NOW) == []


def test_suspect_primary_means_no_action(topology: Topology) -> None:
    assert decide([snapshot(topology)], topology, verdicts(spot_aws=Verdict.SUSPECT), NOW) == []


def test_a_primary_suspect_past_suspect_timeout_holds_and_asks_a_human(topology: Topology) -> None:
    """A dark primary whose cloud API still says "running" stays suspect (one vantage point, quorum 2): after
    suspect_timeout the controller must stop waiting in silence."""
    limit = topology.policy.suspect_timeout
    assert decide([snapshot(topology)], topology, verdicts(NOW - limit + 1, spot_aws=Verdict.SUSPECT), NOW) == []
    [action] = decide([snapshot(topology)], topology, verdicts(NOW - limit - 1, spot_aws=Verdict.SUSPECT), NOW)
    assert action.kind is ActionKind.HOLD
    assert action.blocked_by == (Rule.SUSPECT_UNDECIDED,)
    assert "spot-aws has been suspect" in action.reason
    halted = snapshot(topology, phase=PhaseState(Phase.HALTED, NOW - 100))
    assert decide([halted], topology, verdicts(NOW - limit - 1, spot_aws=Verdict.SUSPECT), NOW) == []


def test_a_primary_that_cannot_commit_is_failed_over_like_a_lost_one(topology: Topology) -> None:
    """The primary answers every probe but no standby takes its writes: its unacknowledged entries must not make
    the standbys look behind, and it is failed over to a standby on another cloud."""
    stuck = replace(status("spot-aws", 54, Role.PRIMARY), synchronous=True, replicated_seq=48,
                    unreplicated_age=30.0, replication_timeouts=6)
    stalled = commit_verdict(stuck, NOW, commit_stall_after(topology))
    assert stalled is not None and stalled.verdict is Verdict.CANNOT_COMMIT
    assert "48" in stalled.reason and "54" in stalled.reason
    assert commit_verdict(replace(stuck, unreplicated_age=0.5), NOW, commit_stall_after(topology)) is None
    statuses = {"spot-aws": stuck, "spot-gcp": status("spot-gcp", 48), "spot-azure": status("spot-azure", 48)}
    [action] = decide([snapshot(topology, statuses=statuses)], topology,
                      {**verdicts(), "spot-aws": stalled}, NOW)
    assert action.kind is ActionKind.FAILOVER and action.target == "spot-gcp"
    assert [c.lag for c in action.candidates] == [0, 0]


def test_lost_site_fails_over_to_the_first_healthy_caught_up_replica_on_another_cloud(topology: Topology) -> None:
    [action] = decide([snapshot(topology)], topology, verdicts(aws_hk=Verdict.DOWN, spot_aws=Verdict.DOWN), NOW)
    assert action.kind is ActionKind.FAILOVER
    assert (action.source, action.target) == ("spot-aws", "spot-gcp")
    assert "aws-hk is down" in action.reason


def test_flapping_primary_fails_over_too(topology: Topology) -> None:
    [action] = decide([snapshot(topology)], topology, verdicts(aws_hk=Verdict.FLAPPING), NOW)
    assert action.kind is ActionKind.FAILOVER


def test_lagging_replica_is_skipped_for_a_caught_up_one(topology: Topology) -> None:
    snap = snapshot(topology)
    snap = replace(snap, statuses={**snap.statuses, "spot-gcp": status("spot-gcp", 90)})
    [action] = decide([snap], topology, verdicts(spot_aws=Verdict.DOWN), NOW)
    assert action.target == "spot-azure"
    gcp = next(c for c in action.candidates if c.replica == "spot-gcp")
    assert gcp.lag == 10 and Rule.TARGET_CAUGHT_UP in gcp.blocked_by


def test_unhealthy_target_site_is_never_chosen(topology: Topology) -> None:
    [action] = decide([snapshot(topology)], topology,
                      verdicts(spot_aws=Verdict.DOWN, gcp_hk=Verdict.SUSPECT), NOW)
    assert action.target == "spot-azure"


def test_no_safe_target_halts_and_names_the_rules(topology: Topology) -> None:
    [action] = decide([snapshot(topology)], topology,
                      verdicts(spot_aws=Verdict.DOWN, gcp_hk=Verdict.DOWN, spot_azure=Verdict.UNKNOWN), NOW)
    assert action.kind is ActionKind.HALT
    assert Rule.TARGET_SITE_HEALTHY in action.blocked_by and Rule.TARGET_REPLICA_HEALTHY in action.blocked_by


def test_unknown_status_is_not_promotable(topology: Topology) -> None:
    snap = snapshot(topology)
    snap = replace(snap, statuses={"spot-aws": snap.statuses["spot-aws"]})
    [action] = decide([snap], topology, verdicts(spot_aws=Verdict.DOWN), NOW)
    assert action.kind is ActionKind.HALT and Rule.TARGET_STATUS_KNOWN in action.blocked_by


def test_no_second_automatic_failover_within_the_interval(topology: Topology) -> None:
    snap = snapshot(topology, last_failover_done_at=NOW - 600)
    [action] = decide([snap], topology, verdicts(spot_aws=Verdict.DOWN), NOW)
    assert action.kind is ActionKind.HALT and action.blocked_by == (Rule.MIN_INTERVAL,)
    later = snapshot(topology, last_failover_done_at=NOW - 3700)
    [action] = decide([later], topology, verdicts(spot_aws=Verdict.DOWN), NOW)
    assert action.kind is ActionKind.FAILOVER


def test_operator_override_lifts_the_interval(topology: Topology) -> None:
    snap = snapshot(topology, last_failover_done_at=NOW - 600, override_interval=True)
    [action] = decide([snap], topology, verdicts(spot_aws=Verdict.DOWN), NOW)
    assert action.kind is ActionKind.FAILOVER


def test_nothing_new_while_a_failover_is_in_flight(topology: Topology) -> None:
    for status_name in ("running", "proposed", "needs_human"):
        snap = snapshot(topology, incident=IncidentView("INC-1", status_name, "spot-gcp"))
        assert decide([snap], topology, verdicts(spot_aws=Verdict.DOWN), NOW) == []


def test_manual_approval_turns_a_failover_into_a_proposal(topology: Topology) -> None:
    manual = replace(topology, policy=replace(topology.policy, approval=Approval.MANUAL))
    [action] = decide([snapshot(manual)], manual, verdicts(spot_aws=Verdict.DOWN), NOW)
    assert action.kind is ActionKind.PROPOSE and action.target == "spot-gcp"


def test_cannot_see_the_primary_holds_instead_of_failing_over(topology: Topology) -> None:
    [action] = decide([snapshot(topology)], topology,
                      verdicts(spot_aws=Verdict.UNKNOWN, aws_hk=Verdict.UNKNOWN), NOW)
    assert action.kind is ActionKind.HOLD and action.blocked_by == (Rule.OBSERVER_ISOLATED,)


def test_same_provider_is_a_last_resort(topology: Topology) -> None:
    """With prefer_other_provider, a replica on the failed provider ranks after the other clouds."""
    sites = dict(topology.sites)
    sites["gcp-hk"] = replace(sites["gcp-hk"], provider="aws")
    same = replace(topology, sites=sites)
    [action] = decide([snapshot(same)], same, verdicts(spot_aws=Verdict.DOWN), NOW)
    assert action.target == "spot-azure"


def test_check_target_lists_every_broken_rule(topology: Topology) -> None:
    snap = snapshot(topology, incident=IncidentView("INC-1", "running"))
    broken = check_target(snap, topology, verdicts(gcp_hk=Verdict.DOWN), "spot-gcp", NOW)
    assert Rule.ONE_IN_FLIGHT in broken and Rule.TARGET_SITE_HEALTHY in broken
    assert check_target(snapshot(topology), topology, verdicts(), "spot-aws", NOW) == (Rule.NOT_PRIMARY,)
    assert check_target(snapshot(topology), topology, verdicts(), "spot-azure", NOW) == ()


def test_engines_fail_over_independently(topology: Topology) -> None:
    other = replace(topology.engines["spot"], name="perp")
    both = replace(topology, engines={"spot": topology.engines["spot"], "perp": other})
    snaps = [snapshot(both), replace(snapshot(both), engine=other)]
    actions = decide(snaps, both, verdicts(spot_aws=Verdict.DOWN), NOW)
    assert sorted(a.engine for a in actions) == ["perp", "spot"]


def test_operator_switchover_is_not_refused_for_lag_the_runbook_will_wait_out(topology: Topology) -> None:
    snap = snapshot(topology)
    snap = replace(snap, statuses={**snap.statuses, "spot-gcp": status("spot-gcp", 97)})
    assert check_target(snap, topology, verdicts(), "spot-gcp", NOW) == (Rule.TARGET_CAUGHT_UP,)
    assert check_target(snap, topology, verdicts(), "spot-gcp", NOW, manual=True) == ()
