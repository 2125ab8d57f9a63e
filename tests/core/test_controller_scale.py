"""What lets a controller at 10,000 engines decide only for the engines that need it (drivers/controller.py,
`_unsettled`): an engine whose every replica and every replica's site is `healthy` gets no action from `decide`,
whatever else its snapshot says (which replica the record names primary, the phase, the epoch, the statuses, an
incident, the last failover, quarantines, the approval mode, a gray objective, `now`), and whatever the other
subjects' verdicts are. If a rule is ever added to core/decide.py that acts on an engine whose replicas are all
healthy (a failback to the preferred replica, say), this fails, and `_unsettled` must learn that rule too."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.decide import EngineSnapshot, IncidentView, decide, decide_engine
from orchestrator.core.gray import GrayAction, GrayObjective
from orchestrator.core.health import Assessment
from orchestrator.core.model import Approval, Phase, ReplicaStatus, Role, Topology, Verdict
from orchestrator.core.phases import PhaseState

NOW = 1_671_332_400.0
VERDICTS = tuple(Verdict)


@st.composite
def statuses(draw: st.DrawFn, names: list[str]) -> dict[str, ReplicaStatus]:
    found = {}
    for name in draw(st.lists(st.sampled_from(names), unique=True)):
        last = draw(st.integers(0, 200))
        found[name] = ReplicaStatus(
            name, draw(st.sampled_from(tuple(Role))), draw(st.integers(0, 3_000_002)),
            draw(st.sampled_from(tuple(Phase))), draw(st.none() | st.floats(NOW - 100, NOW + 100)), last,
            draw(st.integers(0, last)),
            synchronous=draw(st.none() | st.booleans()), replicated_seq=draw(st.none() | st.integers(0, last)),
            unreplicated_age=draw(st.none() | st.floats(0, 100)), replication_timeouts=draw(st.integers(0, 5)),
            error=draw(st.none() | st.just("diverged")))
    return found


@st.composite
def cases(draw: st.DrawFn, topology: Topology) -> tuple[Topology, EngineSnapshot, dict[str, Assessment], float]:
    engine = topology.engines["spot"]
    names = [r.name for r in engine.replicas]
    gray = draw(st.none() | st.builds(GrayObjective, action=st.sampled_from(tuple(GrayAction))))
    policy = replace(topology.policy, approval=draw(st.sampled_from(tuple(Approval))), gray=gray,
                     suspect_timeout=draw(st.sampled_from([0.0, 30.0])),
                     max_lag_on_failover=draw(st.integers(0, 50)))
    incident = draw(st.none() | st.builds(IncidentView, st.just("INC-1"),
                                          st.sampled_from(["open", "proposed", "running", "needs_human"]),
                                          st.none() | st.sampled_from(names)))
    now = draw(st.floats(NOW, NOW + 10_000))
    snapshot = EngineSnapshot(
        engine=engine, primary=draw(st.sampled_from(names)),
        phase=PhaseState(draw(st.sampled_from(tuple(Phase))), NOW - 50, draw(st.none() | st.just(NOW + 50))),
        epoch=draw(st.integers(0, 3_000_002)), statuses=draw(statuses(names)), incident=incident,
        last_failover_done_at=draw(st.none() | st.floats(NOW - 10_000, NOW + 10_000)),
        override_interval=draw(st.booleans()), seq_floor=draw(st.integers(0, 300)),
        quarantined=frozenset(draw(st.lists(st.sampled_from(names), unique=True))))
    healthy = {r.name for r in engine.replicas} | {r.site for r in engine.replicas}
    verdicts = {subject: Assessment(subject, Verdict.HEALTHY, draw(st.floats(NOW - 10_000, now)),
                                    ok=tuple(draw(st.lists(st.sampled_from(["probe:a", "probe:b"]), unique=True))))
                for subject in sorted(healthy)}
    for other in ("other-aws", "other-site", "elsewhere"):  # other engines' subjects: anything at all
        verdicts[other] = Assessment(other, draw(st.sampled_from(VERDICTS)), NOW - 5, reason="elsewhere")
    return replace(topology, policy=policy), snapshot, verdicts, now


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_an_engine_whose_replicas_and_sites_are_all_healthy_gets_no_action(topology: Topology,
                                                                        data: st.DataObject) -> None:
    chosen, snapshot, verdicts, now = data.draw(cases(topology))
    assert decide_engine(snapshot, chosen, verdicts, now) is None
    assert decide([snapshot], chosen, verdicts, now) == []


def test_the_check_can_fail_one_unhealthy_subject_gets_an_action(topology: Topology) -> None:
    """The same engine with its primary down does get an action: the property above is not vacuous."""
    engine = topology.engines["spot"]
    statuses = {r.name: ReplicaStatus(r.name, Role.PRIMARY if r.name == engine.primary else Role.STANDBY, 1,
                                      Phase.OPEN, None, 10, 10) for r in engine.replicas}
    snapshot = EngineSnapshot(engine=engine, primary=engine.primary, statuses=statuses)
    subjects = {r.name for r in engine.replicas} | {r.site for r in engine.replicas}
    verdicts = {s: Assessment(s, Verdict.DOWN if s == engine.primary else Verdict.HEALTHY, NOW) for s in subjects}
    assert decide_engine(snapshot, topology, verdicts, NOW) is not None
