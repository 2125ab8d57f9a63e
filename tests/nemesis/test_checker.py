"""Each invariant of the checker on small hand-made records: it holds on a clean record and names the numbers of
a broken one. No processes: these run in milliseconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nemesis.checker import Announcement, Expect, IncidentRecord, Observed, Sample, check
from nemesis.client import Op
from nemesis.observe import archive_evidence
from orchestrator.engine.protocol import to_wire_time

pytestmark = pytest.mark.nemesis
T0 = 1_800_000_000.0


def entry(seq: int, epoch: int = 0, *, kind: str = "order", key: str | None = None, at: float | None = None,
          chain: str = "a", data: dict[str, Any] | None = None) -> dict[str, Any]:
    body = data if data is not None else ({"client_order_id": key or f"o{seq}"} if kind == "order" else {})
    return {"seq": seq, "epoch": epoch, "kind": kind, "at": to_wire_time(at if at is not None else T0 + seq),
            "data": body, "hash": f"{chain}{seq}"}


def ok(key: str, seq: int, target: str = "p", index: int = 0) -> Op:
    return Op(index, 0, "ok", "limit", key, T0 + seq, target, seq=seq)


def status(role: str = "primary", phase: str = "open", epoch: int = 1) -> dict[str, Any]:
    return {"role": role, "phase": phase, "epoch": epoch}


def world(**changes: Any) -> Observed:
    base = Observed(history=[ok("o1", 1), ok("o2", 2)],
                    journals={"p": [entry(1), entry(2)], "s": [entry(1)]}, trades={"p": [], "s": []},
                    statuses={"p": status(), "s": status("standby")}, ended=T0 + 100)
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def broken(observed: Observed, expect: Expect | None = None) -> dict[str, str]:
    verdict = check(observed, expect or Expect(failovers=(0, 0)))
    return {v.invariant: v.message for v in verdict.violations}


def test_a_clean_record_holds_everything() -> None:
    verdict = check(world(), Expect(failovers=(0, 0)))
    assert verdict.ok, verdict.text()
    assert verdict.reference == "p"


def test_an_acknowledged_order_lost_or_moved() -> None:
    lost = broken(world(journals={"p": [entry(1)], "s": [entry(1)]}))
    assert lost["acknowledged-durable"].startswith("1 of 2 acknowledged requests are not on p: acknowledged at seq 2")
    moved = broken(world(journals={"p": [entry(1), entry(2, key="x"), entry(3, key="o2")], "s": [entry(1)]}))
    assert "o2 was acknowledged at seq 2 by p and is at seq 3" in moved["acknowledged-durable"]


def test_trades_inside_the_announced_halt_by_wall_clock() -> None:
    said = [Announcement(T0 + 11, T0 + 10, "phase", "HALTED", {"phase": "halted"}),
            Announcement(T0 + 15, T0 + 14, "phase", "PROTECTION", {"phase": "protection"}),
            Announcement(T0 + 21, T0 + 20, "phase", "OPEN", {"phase": "open"})]
    inside = {"seq": 2, "at": to_wire_time(T0 + 12)}
    after = {"seq": 2, "at": to_wire_time(T0 + 20.5)}
    found = broken(world(announcements=said, trades={"p": [inside, after]}))
    assert found["no-trade-halted-wallclock"].startswith("1 trades on p inside the announced halt/protection window")
    assert "(10.0 s): seq 2" in found["no-trade-halted-wallclock"]
    # a skewed announcer: its own times are not trusted, receipt times are (the window starts at T0 + 11)
    early = {"seq": 2, "at": to_wire_time(T0 + 10.5)}
    assert "no-trade-halted-wallclock" not in broken(world(announcements=said, trades={"p": [early]}),
                                                     Expect((0, 0), announcer_clock_trusted=False))
    assert "no-trade-halted-wallclock" in broken(world(announcements=said, trades={"p": [early]}))
    # the engine reopened a moment before the reopening was announced: a trade in that moment is fine
    reopened = [entry(1), entry(2), entry(3, kind="phase", at=T0 + 19.5, data={"phase": "open"})]
    just_after = {"seq": 2, "at": to_wire_time(T0 + 19.8)}
    assert "no-trade-halted-wallclock" not in broken(world(announcements=said, trades={"p": [just_after]},
                                                           journals={"p": reopened, "s": [entry(1)]}))


def test_trades_in_halted_or_protection_by_the_journal_phase() -> None:
    journal = [entry(1, kind="phase", data={"phase": "halted"}), entry(2)]
    found = broken(world(journals={"p": journal, "s": journal[:1]}, trades={"p": [{"seq": 2, "at": to_wire_time(T0)}]},
                         history=[]))
    assert found["no-trade-halted-phase"] == "1 trades on p while its own journal says halted"


def test_two_replicas_acknowledging_under_one_epoch() -> None:
    diverged = {"p": [entry(1, 3), entry(2, 3)], "s": [entry(1, 3), entry(2, 3, key="z1", chain="z")]}
    split = broken(world(history=[ok("o1", 1, "p"), ok("o2", 2, "p"), ok("z1", 2, "s")], journals=diverged))
    assert split["one-writer-per-epoch"] == ("under epoch 3, p and s both acknowledged writes the other does not "
                                             "hold: p 1 (seq 2, first o2), s 1 (seq 2, first z1)")
    # the new primary answering a retry with the seq its predecessor wrote (it holds that very entry) is fine
    retried = world(history=[ok("o1", 1, "p"), ok("o2", 2, "s")],
                    journals={"p": [entry(1, 3), entry(2, 3)], "s": [entry(1, 3), entry(2, 3), entry(3, 4)]},
                    statuses={"p": status("fenced"), "s": status()})
    assert "one-writer-per-epoch" not in broken(retried)


def test_an_entry_written_below_an_epoch_the_replica_already_carried() -> None:
    samples = [Sample(T0 + 5, "s", "standby", 0, "open", 1), Sample(T0 + 10, "s", "standby", 2, "halted", 1)]
    zombie = [entry(1, 0, at=T0 + 1), entry(2, 0, at=T0 + 12, chain="z")]
    found = broken(world(samples=samples, journals={"p": [entry(1, 0, at=T0 + 1)], "s": zombie}, history=[],
                         archived={"s": "test"}))
    message = found["no-write-below-carried-epoch"]
    assert message.startswith("s holds 1 entries written under an epoch below one it already carried (seq 2, 0 trades)")
    assert "after s was seen carrying epoch 2 at" in message
    fine = [entry(1, 0, at=T0 + 1), entry(2, 0, at=T0 + 9)]  # written before it carried epoch 2: copied late, fine
    assert "no-write-below-carried-epoch" not in broken(world(samples=samples, journals={"p": fine, "s": fine},
                                                              history=[]))


def test_a_diverged_journal_must_be_archived() -> None:
    diverged = {"p": [entry(1), entry(2)], "s": [entry(1), entry(2, chain="z"), entry(3, chain="z")]}
    found = broken(world(journals=diverged))
    assert found["journals-prefix-or-archived"] == (
        "s's journal is not a prefix of p's: they part at seq 2 (s holds 3 entries, 2 of them not on p; p holds 2) "
        "and nothing says it was archived as diverged")
    assert "journals-prefix-or-archived" not in broken(world(journals=diverged, archived={"s": "file archived.jsonl"}))


def test_the_number_of_failovers() -> None:
    incidents = [IncidentRecord("INC-1", "failover", "closed", "p", "s"),
                 IncidentRecord("INC-2", "failover", "closed", "s", "p")]
    found = broken(world(incidents=incidents), Expect(failovers=(1, 1)))
    assert found["failover-count"] == "2 failovers, expected exactly 1: INC-1 p->s (closed), INC-2 s->p (closed)"


def test_the_end_open_or_halted_for_a_human() -> None:
    human = [IncidentRecord("INC-1", "failover", "needs_human", "p", "s", (("promote", "needs_human", T0),))]
    assert "ends-open-or-needs-human" not in broken(world(statuses={"p": status(phase="halted"),
                                                                    "s": status("standby")}, incidents=human),
                                                    Expect((1, 1)))
    running = [IncidentRecord("INC-1", "failover", "running", "p", "s", (("promote", "started", T0),))]
    found = broken(world(statuses={"p": status(phase="halted"), "s": status("standby")}, incidents=running),
                   Expect((1, 1)))
    assert found["ends-open-or-needs-human"] == ("at the end p is primary in phase halted; INC-1 running at promote "
                                                 "started: trading is neither open nor halted for a human")
    two = broken(world(statuses={"p": status(epoch=2), "s": status(epoch=1)}))
    assert two["ends-open-or-needs-human"].startswith("2 primaries not halted at the end: p (epoch 2, open)")


def test_a_replica_restored_from_a_stale_copy_carries_only_what_it_was_seen_carrying_since() -> None:
    """The stale-standby fault puts an old control.json back: the replica no longer carries the epoch it was seen
    carrying before (its own status says so), and what it takes while it does not is not written "after it
    carried" anything. Once it is seen carrying the epoch again, the rule holds again."""
    samples = [Sample(T0 + 5, "s", "standby", 2, "halted", 1), Sample(T0 + 12, "s", "standby", 0, "open", 1),
               Sample(T0 + 20, "s", "standby", 2, "halted", 2)]
    journal = [entry(1, 0, at=T0 + 1), entry(2, 0, at=T0 + 15), entry(3, 0, at=T0 + 25)]
    records = {"samples": samples, "journals": {"p": journal, "s": journal}, "history": []}
    before = broken(world(**records, restored={"s": [T0 + 11]}))["no-write-below-carried-epoch"]
    assert before.startswith("s holds 1 entries written under an epoch below one it already carried (seq 3, 0 trades)")
    assert "after s was seen carrying epoch 2 at" in before
    unrestored = broken(world(**records))["no-write-below-carried-epoch"]  # without the restore both count
    assert unrestored.startswith("s holds 2 entries") and "(seq 2, 3, 0 trades)" in unrestored


class Replicas:
    """What `archive_evidence` reads of a cluster: the replicas' names and data directories."""

    def __init__(self, base: Path, names: tuple[str, ...]) -> None:
        self.base = base
        self.replicas = dict.fromkeys(names)

    def data_dir(self, name: str) -> Path:
        return self.base / name


def test_an_archive_counts_only_once_the_tail_was_compared_and_recorded(tmp_path: Path) -> None:
    """An incident that says it will compare the old primary's journal later has archived nothing yet; nor has one
    that compared and found nothing beyond the new history."""
    cluster: Any = Replicas(tmp_path, ("p", "s"))

    def evidence(diverged: dict[str, Any]) -> dict[str, str]:
        incident = IncidentRecord("INC-1", "failover", "needs_human", "s", "p", (), {"diverged": diverged})
        return archive_evidence(cluster, {"p": status(), "s": status("fenced")}, [incident])

    pending = {"replica": "s", "checked": False, "why": "the old primary did not answer; compared when it answers"}
    assert evidence(pending) == {}
    assert evidence({"replica": "s", "checked": True, "common_seq": 2, "count": 0, "entries": []}) == {}
    assert evidence({"replica": "s", "checked": True, "common_seq": 2, "count": 1,
                     "entries": [{"seq": 3}]}) == {"s": "incident INC-1 (1 entries after seq 2)"}
    assert evidence({**pending, "replica": "p", "checked": True, "count": 1}) == {"p": "incident INC-1 (1 entries "
                                                                                     "after seq None)"}
