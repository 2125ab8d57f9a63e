"""A replica whose disk refuses a control change never acts on it: found by the nemesis soak (seed 4), where a
standby on a full disk was promoted, the promotion's save failed, and the replica took orders as a primary anyway,
in the phase its lost primary had left (open), so trades were made inside the announced halt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.model import Phase, Role
from orchestrator.engine.protocol import OrderRequest
from orchestrator.engine.replica.journal import ControlState, Journal
from orchestrator.engine.replica.node import Node, Settings

AT = "2024-05-01T03:00:00.000000Z"


class DiskDied(Exception):
    """What the replica's `on_disk_failure` does in production is exit the process; here it raises this."""


def die(message: str) -> None:
    raise DiskDied(message)


def order(coid: str, side: str, price: str) -> dict[str, Any]:
    body = {"client_order_id": coid, "account": "acct", "market": "BTC-USD", "side": side, "type": "limit",
            "price": price, "qty": "1"}
    return OrderRequest.model_validate(body).model_dump(mode="json")


def standby_with_an_open_book(data: Path) -> None:
    """A standby's disk as replication leaves it: its old primary's entries (phase open) and a resting order."""
    journal = Journal.open(data / "journal.jsonl")
    journal.append([journal.make(AT, 1, "phase", {"phase": "open", "until": None})])
    journal.append([journal.make(AT, 1, "order", order("s1", "sell", "100"))])
    ControlState(data / "control.json", epoch=5, role=Role.STANDBY).save()


def test_a_promotion_the_disk_refuses_leaves_a_standby_that_takes_no_order(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    standby_with_an_open_book(tmp_path)
    node = Node(Settings("spot-gcp", tmp_path, cloud="gcp", synchronous=False), on_disk_failure=die)

    def full(self: ControlState) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ControlState, "save", full)
    with pytest.raises(DiskDied, match="control state write failed"):
        node.promote()
    assert node.role is Role.STANDBY
    refused = node.submit("order", order("b1", "buy", "100"))
    assert getattr(refused, "reason", None) == "not_primary", refused
    assert node.ledger.trades == []


def test_a_promotion_cut_short_before_its_halt_is_finished_at_the_next_start(tmp_path: Path) -> None:
    """The role was saved (with `must_halt`), then the process died before the halt entry was journaled: the next
    start journals the halt before serving anything, so the new primary never trades in its old primary's phase."""
    standby_with_an_open_book(tmp_path)
    ControlState(tmp_path / "control.json", epoch=7, role=Role.PRIMARY, must_halt=True).save()
    node = Node(Settings("spot-gcp", tmp_path, cloud="gcp", synchronous=False), on_disk_failure=die)
    assert node.role is Role.PRIMARY and node.ledger.phase is Phase.HALTED
    assert node.journal.entries[-1].kind == "phase" and node.journal.entries[-1].epoch == 7
    assert not ControlState.load(tmp_path / "control.json").must_halt
    refused = node.submit("order", order("b1", "buy", "100"))
    assert getattr(refused, "reason", None) == "halted", refused
    assert node.ledger.trades == []
