"""Health verdicts (docs/design.md §3): threshold, quorum, hysteresis, flapping, unknown, observer isolation."""

from __future__ import annotations

from orchestrator.core.health import HealthSettings, HealthState, assess, ingest
from orchestrator.core.model import Observation, Status, Verdict

SETTINGS = HealthSettings(failure_threshold=3, quorum=2, flap_count=3, flap_window=1800, probe_stale_after=3.5)
VANTAGES = ("probe:gcp-hk", "probe:azure-hk", "probe:orchestrator")
SUBJECTS = ("spot-aws", "spot-gcp", "spot-azure", "aws-hk", "gcp-hk", "azure-hk")


def tick(state: HealthState, now: float, down: dict[str, set[str]] | None = None,
         sources: tuple[str, ...] = VANTAGES) -> tuple[HealthState, dict[str, Verdict]]:
    """One probe round at `now`: every source sees every subject, `ok` unless listed in `down[source]`."""
    down = down or {}
    observations = [
        Observation(now, subject, source, Status.DOWN if subject in down.get(source, set()) else Status.OK)
        for source in sources
        for subject in SUBJECTS
    ]
    state = ingest(state, observations)
    state, verdicts = assess(state, now, SETTINGS)
    return state, {subject: a.verdict for subject, a in verdicts.items()}


def run(rounds: int, start: float = 0.0, state: HealthState | None = None, **kwargs: object
        ) -> tuple[HealthState, list[dict[str, Verdict]]]:
    state = state or HealthState()
    history = []
    for i in range(rounds):
        state, verdicts = tick(state, start + i, **kwargs)  # type: ignore[arg-type]
        history.append(verdicts)
    return state, history


def test_all_ok_is_healthy() -> None:
    _, history = run(3)
    assert set(history[-1].values()) == {Verdict.HEALTHY}


def test_down_after_threshold_from_a_quorum_and_not_before() -> None:
    everyone = {source: {"spot-aws", "aws-hk"} for source in VANTAGES}
    state, _ = run(5)
    state, history = run(3, start=5, state=state, down=everyone)
    assert [h["spot-aws"] for h in history] == [Verdict.SUSPECT, Verdict.SUSPECT, Verdict.DOWN]
    assert history[-1]["spot-gcp"] is Verdict.HEALTHY


def test_one_source_alone_never_makes_down() -> None:
    lonely = {"probe:gcp-hk": {"spot-aws"}}
    _, history = run(20, down=lonely)
    assert history[-1]["spot-aws"] is Verdict.SUSPECT


def test_recovery_needs_threshold_oks_from_a_quorum() -> None:
    everyone = {source: {"spot-aws"} for source in VANTAGES}
    state, history = run(4, down=everyone)
    assert history[-1]["spot-aws"] is Verdict.DOWN
    state, history = run(3, start=4, state=state)
    assert [h["spot-aws"] for h in history] == [Verdict.DOWN, Verdict.DOWN, Verdict.HEALTHY]


def test_flapping_after_flap_count_downs_in_the_window_and_it_sticks() -> None:
    everyone = {source: {"spot-aws"} for source in VANTAGES}
    state, now = HealthState(), 0.0
    for _ in range(3):
        state, _ = run(3, start=now, state=state, down=everyone)
        now += 3
        state, history = run(4, start=now, state=state)
        now += 4
    assert history[-1]["spot-aws"] is Verdict.FLAPPING
    state, history = run(60, start=now, state=state)
    assert history[-1]["spot-aws"] is Verdict.FLAPPING  # still inside the flap window
    state, history = run(2, start=now + 1900, state=state)
    assert history[-1]["spot-aws"] is Verdict.HEALTHY  # the downs aged out


def test_stale_sources_give_unknown_not_down() -> None:
    state, _ = run(3)
    state, verdicts = assess(state, 100.0, SETTINGS)
    assert {a.verdict for a in verdicts.values()} == {Verdict.UNKNOWN}


def test_only_one_fresh_source_is_unknown_even_if_it_sees_everything_down() -> None:
    """The orchestrator's host cut off from the world: it alone sees every site down."""
    state, _ = run(3)
    cut_off = {"probe:orchestrator": set(SUBJECTS)}
    state, history = run(6, start=10, state=state, down=cut_off, sources=("probe:orchestrator",))
    assert set(history[-1].values()) == {Verdict.UNKNOWN}


def test_isolated_observer_is_ignored_while_others_see_the_sites() -> None:
    cut_off = {"probe:orchestrator": set(SUBJECTS)}
    state, history = run(10, down=cut_off)
    assert state.isolated == frozenset({"probe:orchestrator"})
    assert set(history[-1].values()) == {Verdict.HEALTHY}


def test_real_outage_of_one_site_is_not_mistaken_for_isolation() -> None:
    lost = {source: {"spot-aws", "aws-hk"} for source in VANTAGES}
    state, history = run(4, down=lost)
    assert state.isolated == frozenset()
    assert history[-1]["spot-aws"] is Verdict.DOWN and history[-1]["aws-hk"] is Verdict.DOWN


def test_provider_counts_after_one_observation() -> None:
    state = ingest(HealthState(), [
        Observation(0, "spot-aws", "provider:aws", Status.DOWN),
        *(Observation(t, "spot-aws", "probe:gcp-hk", Status.DOWN) for t in range(3)),
    ])
    _, verdicts = assess(state, 2.0, SETTINGS)
    assert verdicts["spot-aws"].verdict is Verdict.DOWN
    assert verdicts["spot-aws"].failing == ("probe:gcp-hk", "provider:aws")


def test_out_of_order_observations_are_ignored() -> None:
    state = ingest(HealthState(), [Observation(5, "x", "probe:a", Status.OK)])
    state = ingest(state, [Observation(4, "x", "probe:a", Status.DOWN)])
    assert state.tracks[("x", "probe:a")].failures == 0
