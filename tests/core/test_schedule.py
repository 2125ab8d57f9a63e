"""The schedule's rules, driven like the runbook they check: an SRE plans a failback for 02:00 Hong Kong time,
support is warned at once, 15 minutes and 1 minute before, the leader starts it at 02:00, and a switchover that
could not start within its grace period is missed, never run late."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.core import schedule as sch
from orchestrator.core.errors import ConfigError, UnsafeError
from orchestrator.core.phases import parse_timezone
from orchestrator.core.schedule import Due, Scheduled, State

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC).timestamp()  # 20:00 in Hong Kong
HK = parse_timezone("Asia/Hong_Kong")


def entry(at: float = NOW + 6 * 3600, made: float = NOW, **options: object) -> Scheduled:
    return sch.new_entry("SCH-1", "spot", "spot-aws", at, made, "alice@ops", source="spot-gcp", **options)  # type: ignore[arg-type]


# ---- TIME --------------------------------------------------------------------------------------------------------


def test_an_iso_time_with_a_zone_or_a_delay_is_read_as_one_instant() -> None:
    assert sch.parse_when("2026-12-05T02:00:00+08:00", NOW) == NOW + 6 * 3600
    assert sch.parse_when("2026-12-04T18:00:00Z", NOW) == NOW + 6 * 3600
    assert sch.parse_when("+30m", NOW) == NOW + 1800
    assert sch.parse_when("+1h30m", NOW) == NOW + 5400


@pytest.mark.parametrize(("text", "said"), [
    ("2026-12-05T02:00:00", "--at 2026-12-05T02:00:00: no time zone; add one"),
    ("tomorrow at two", "--at tomorrow at two: expected an ISO 8601 time with a zone"),
    ("+30", "--at +30: '30' is not a duration"),
    ("2026-12-04T11:59:59Z", "--at 2026-12-04T11:59:59Z: in the past (now is 2026-12-04T12:00:00Z)"),
    ("+0s", "--at +0s: in the past"),
    ("+7d1s", "--at +7d1s: more than 168h ahead (latest 2026-12-11T12:00:00Z)"),
    ("2027-01-01T00:00:00Z", "--at 2027-01-01T00:00:00Z: more than 168h ahead"),
])
def test_a_bad_time_is_refused_in_one_line(text: str, said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        sch.parse_when(text, NOW)
    assert str(refused.value).startswith(said) and "\n" not in str(refused.value)
    assert refused.value.exit_code == 2


def test_seven_days_ahead_is_still_accepted() -> None:
    assert sch.parse_when("+7d", NOW) == NOW + 7 * 86400


# ---- the book ----------------------------------------------------------------------------------------------------


def test_an_engine_has_at_most_one_open_planned_switchover() -> None:
    book = sch.add([], entry())
    with pytest.raises(UnsafeError, match="spot already has a planned switchover, SCH-1 to spot-aws at "
                                          "2026-12-04T18:00:00Z; cancel it first"):
        sch.add(book, Scheduled("SCH-2", "spot", "spot-azure", NOW + 60, NOW, "bob"))
    assert sch.add(book, Scheduled("SCH-3", "perp", "perp-aws", NOW + 60, NOW, "bob"))[-1].id == "SCH-3"


def test_cancel_by_id_or_the_only_open_one() -> None:
    book = sch.add([], entry())
    after, cancelled = sch.cancel(book, None, NOW + 10, "market event tonight")
    assert (cancelled.state, cancelled.ended_at, cancelled.why) == (State.CANCELLED, NOW + 10, "market event tonight")
    assert after == [cancelled]
    with pytest.raises(ConfigError, match="SCH-1: already cancelled; nothing to cancel"):
        sch.cancel(after, "SCH-1", NOW + 20, "")
    with pytest.raises(ConfigError, match="no planned switchover to cancel"):
        sch.cancel(after, None, NOW + 20, "")
    with pytest.raises(ConfigError, match="schedule SCH-9: no such planned switchover"):
        sch.cancel(book, "SCH-9", NOW, "")


def test_cancel_without_an_id_among_several_names_them() -> None:
    book = sch.add(sch.add([], entry()), Scheduled("SCH-2", "perp", "perp-aws", NOW + 60, NOW, "bob"))
    with pytest.raises(ConfigError, match=r"several planned switchovers \(SCH-1, SCH-2\); name one"):
        sch.cancel(book, None, NOW, "")
    assert sch.cancel(book, None, NOW, "", engine="perp")[1].id == "SCH-2"


def test_a_claimed_switchover_cannot_be_cancelled() -> None:
    book = [sch.claimed(entry(), "d-gcp")]
    with pytest.raises(UnsafeError, match="SCH-1 is starting \\(claimed by d-gcp\\)") as refused:
        sch.cancel(book, "SCH-1", NOW, "")
    assert refused.value.exit_code == 3


def test_only_the_last_ended_entries_are_kept() -> None:
    book: list[Scheduled] = []
    for n in range(sch.KEEP_ENDED + 5):
        book = sch.add(book, Scheduled(f"SCH-{n}", "spot", "spot-aws", NOW + n, NOW, "bob"))
        book = sch.cancel(book, f"SCH-{n}", NOW + n, "")[0]
    book = sch.add(book, entry())
    assert len(book) == sch.KEEP_ENDED + 1 and book[0].id == "SCH-5" and book[-1].is_open


def test_an_entry_survives_the_store_as_json() -> None:
    made = sch.started(sch.announced(entry(protection=300.0, reason="back to AWS"), NOW + 6 * 3600 - 60), "INC-1",
                       NOW + 6 * 3600)
    assert Scheduled.from_json(made.to_json()) == made


# ---- what is due, on a virtual clock ----------------------------------------------------------------------------


Told = list[tuple[float, Due, float | None]]


def run_clock(book: list[Scheduled], start: float, end: float, step: float = 1.0) -> Told:
    """A leader reviewing the book every `step` seconds, applying what it announces; what it was told, when."""
    told: Told = []
    at = start
    while at <= end:
        for decision in sch.review(book, at):
            told.append((at - decision.entry.at, decision.kind, decision.lead))
            if decision.kind is Due.ANNOUNCE:
                book = [sch.announced(e, at) if e.id == decision.entry.id else e for e in book]
            elif decision.kind is Due.START:
                book = [sch.started(e, "INC-1", at) if e.id == decision.entry.id else e for e in book]
        at += step
    return told


def test_announced_15_and_1_minutes_before_and_started_at_the_time() -> None:
    planned = entry()  # six hours ahead: the scheduling announcement, then both reminders
    assert planned.announced == ()
    told = run_clock([planned], planned.at - 3600, planned.at + 600)
    assert told == [(-900.0, Due.ANNOUNCE, 900.0), (-60.0, Due.ANNOUNCE, 60.0), (0.0, Due.START, None)]


def test_a_switchover_planned_ten_minutes_ahead_skips_the_15_minute_reminder() -> None:
    planned = entry(at=NOW + 600)
    assert planned.announced == (900.0,)  # the announcement when it was scheduled said as much
    told = run_clock([planned], NOW, NOW + 700)
    assert told == [(-60.0, Due.ANNOUNCE, 60.0), (0.0, Due.START, None)]


def test_after_a_gap_without_a_leader_only_the_nearest_reminder_goes_out() -> None:
    planned = entry()
    [decision] = sch.review([planned], planned.at - 30)  # nobody led from T-20min to T-30s
    assert (decision.kind, decision.lead) == (Due.ANNOUNCE, 60.0)
    assert sch.announced(planned, planned.at - 30).announced == (900.0, 60.0)
    assert sch.review([sch.announced(planned, planned.at - 30)], planned.at - 29) == []


def test_blocked_at_the_time_it_waits_and_is_missed_after_the_grace_period() -> None:
    planned = sch.waiting(entry(grace=300.0), "target lag must not exceed max_lag_on_failover")
    assert [d.kind for d in sch.review([planned], planned.at + 299.9)] == [Due.START]  # retried every cycle
    [decision] = sch.review([planned], planned.at + 300)
    assert decision.kind is Due.MISS
    assert sch.miss_reason(planned) == ("blocked until the grace period ended: target lag must not exceed "
                                        "max_lag_on_failover")
    assert sch.miss_reason(entry()) == "no leader started it within the grace period"


def test_a_leader_back_after_the_grace_period_misses_it_rather_than_running_it_late() -> None:
    planned = entry()
    assert [d.kind for d in sch.review([planned], planned.at + 3600)] == [Due.MISS]


def test_a_claim_whose_leader_died_is_due_again_at_once_and_ended_entries_never() -> None:
    claimed = sch.claimed(entry(at=NOW + 10), "d-aws")  # claimed early by a clock ahead, say
    assert [d.kind for d in sch.review([claimed], NOW)] == [Due.START]
    for done in (sch.started(entry(), "INC-1", NOW), sch.cancel([entry()], "SCH-1", NOW, "")[1],
                 sch.ended(entry(), State.MISSED, NOW, "late")):
        assert sch.review([done], done.at + 1) == []


# ---- what people read ----------------------------------------------------------------------------------------------


def test_announcements_give_utc_and_the_display_zone() -> None:
    planned = entry(reason="aws-hk repaired")
    assert sch.scheduled_message(planned, HK) == (
        "[spot] planned switchover of spot from spot-gcp to spot-aws: trading halts briefly, no protection window, "
        "at 2026-12-04 18:00:00 UTC (2026-12-05 02:00:00 UTC+08:00) (aws-hk repaired); SCH-1, cancel with "
        "`failover cancel SCH-1`")
    assert sch.reminder_message(planned, planned.at - 900, HK).startswith(
        "[spot] in 15m: planned switchover of spot from spot-gcp to spot-aws")
    assert "then a 5m protection window" in sch.reminder_message(entry(protection=300.0), NOW, HK)
    missed = sch.ended(planned, State.MISSED, planned.at + 300, sch.miss_reason(planned))
    assert sch.page_message(missed, HK) == (
        "[spot] planned switchover to spot-aws at 2026-12-04 18:00:00 UTC (2026-12-05 02:00:00 UTC+08:00) missed "
        "(SCH-1): no leader started it within the grace period; trading continues on the current primary")


def test_no_window_asked_is_the_runbooks_short_check_and_an_asked_window_is_kept() -> None:
    assert entry().window == sch.PLANNED_WINDOW
    assert entry(protection=300.0).window == 300.0


def test_a_schedule_id_names_the_time_and_the_engine() -> None:
    assert sch.schedule_id("spot", NOW + 6 * 3600, "ab12") == "SCH-20261204-180000-spot-ab12"
