"""The replica's pure parts, without processes: journal recovery, the book, the schema validator, wire times."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.model import Phase, Role
from orchestrator.engine.protocol import OrderRequest, from_wire_time, load_openapi, to_wire_time
from orchestrator.engine.replica.book import Duplicate, Ledger, Refusal
from orchestrator.engine.replica.journal import ControlState, Journal, JournalCorrupt
from orchestrator.engine.schema import UnsupportedKeyword, validate

AT = "2024-05-01T03:00:00.000000Z"


def order(coid: str, side: str, price: str | None, qty: str, **fields: Any) -> dict[str, Any]:
    body = {"client_order_id": coid, "account": fields.pop("account", "acct"), "market": "BTC-USD",
            "side": side, "type": "limit" if price is not None else "market", "price": price, "qty": qty}
    return OrderRequest.model_validate({**body, **fields}).model_dump(mode="json")


def write(journal: Journal, ledger: Ledger, kind: str, data: dict[str, Any]) -> None:
    entry = journal.make(AT, 1, kind, data)
    journal.append([entry])
    ledger.apply(entry)


def test_journal_survives_a_torn_last_line_and_keeps_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal, ledger = Journal.open(path), Ledger()
    for index in range(3):
        write(journal, ledger, "order", order(f"o{index}", "buy", "10", "1"))
    with path.open("ab") as handle:
        handle.write(b'{"seq": 4, "at": "2024-')  # a crash between write and fsync
    recovered = Journal.open(path)
    assert recovered.last_seq == 3 and recovered.last_hash == journal.last_hash
    assert recovered.truncated_bytes > 0 and path.read_bytes().endswith(b"}\n")
    recovered.append([recovered.make(AT, 1, "margin", {"account": "a", "amount": "1", "request_id": None})])
    assert Journal.open(path).last_seq == 4


def test_journal_refuses_damage_before_the_last_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal, ledger = Journal.open(path), Ledger()
    for index in range(3):
        write(journal, ledger, "order", order(f"o{index}", "buy", "10", "1"))
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"qty":"1"', b'"qty":"9"')  # edited history no longer hashes to its chain
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalCorrupt, match="line 2"):
        Journal.open(path)


def test_journal_append_refuses_an_entry_that_does_not_chain(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.jsonl")
    other = Journal.open(tmp_path / "other.jsonl")
    first = journal.make(AT, 1, "phase", {"phase": "halted", "until": None})
    journal.append([first])
    foreign = other.make(AT, 2, "phase", {"phase": "open", "until": None})  # also seq 1
    with pytest.raises(ValueError, match="does not follow"):
        journal.append([foreign])
    assert journal.last_seq == 1 and Journal.open(tmp_path / "journal.jsonl").last_seq == 1


def test_control_state_persists_epoch_and_role(tmp_path: Path) -> None:
    state = ControlState.load(tmp_path / "control.json")
    assert (state.epoch, state.role) == (0, None)
    state.epoch, state.role = 7, Role.FENCED
    state.save()
    again = ControlState.load(tmp_path / "control.json")
    assert (again.epoch, again.role) == (7, Role.FENCED)


def test_book_matches_by_price_then_time(tmp_path: Path) -> None:
    journal, ledger = Journal.open(tmp_path / "j"), Ledger()
    write(journal, ledger, "order", order("s1", "sell", "101", "1", account="first"))
    write(journal, ledger, "order", order("s2", "sell", "100", "1", account="second"))
    write(journal, ledger, "order", order("s3", "sell", "100", "1", account="third"))
    write(journal, ledger, "order", order("b1", "buy", "101", "2.5"))
    trades = [(trade.maker.client_order_id, str(trade.price), str(trade.qty), trade.seq) for trade in ledger.trades]
    assert trades == [("s2", "100", "1", 4), ("s3", "100", "1", 4), ("s1", "101", "0.5", 4)]
    assert ledger.orders[("acct", "b1")].state == "filled"
    assert ledger.orders[("first", "s1")].remaining == Decimal("0.5")


def test_ioc_fok_and_market_never_rest(tmp_path: Path) -> None:
    journal, ledger = Journal.open(tmp_path / "j"), Ledger()
    write(journal, ledger, "order", order("s1", "sell", "100", "1", account="maker"))
    write(journal, ledger, "order", order("fok", "buy", "100", "2", tif="fok"))
    assert ledger.orders[("acct", "fok")].state == "killed" and not ledger.trades  # cannot fill all: nothing
    write(journal, ledger, "order", order("ioc", "buy", "100", "2", tif="ioc"))
    assert ledger.orders[("acct", "ioc")].state == "killed" and len(ledger.trades) == 1
    write(journal, ledger, "order", order("mkt", "buy", None, "1"))
    assert ledger.orders[("acct", "mkt")].state == "killed"
    assert not any(ledger.book("BTC-USD").sides[side].prices for side in ("buy", "sell"))


def test_checks_use_the_phase_table_and_the_book(tmp_path: Path) -> None:
    journal, ledger = Journal.open(tmp_path / "j"), Ledger()
    write(journal, ledger, "order", order("s1", "sell", "100", "1", account="maker"))
    write(journal, ledger, "phase", {"phase": "protection", "until": AT})
    assert ledger.phase is Phase.PROTECTION
    assert ledger.check_order(order("x", "buy", "99", "1")) == Refusal("protection: post_only required")
    assert ledger.check_order(order("x", "buy", "100", "1", post_only=True)) == Refusal("would_cross")
    assert ledger.check_order(order("x", "buy", "99", "1", post_only=True)) is None
    assert ledger.check_order(order("s1", "sell", "100", "1", account="maker")) == Duplicate(1)
    assert ledger.check_cancel({"client_order_id": "nope", "account": "maker"}) == Refusal("unknown_order", 422)


def test_replay_gives_the_same_state(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal, ledger = Journal.open(path), Ledger()
    write(journal, ledger, "order", order("s1", "sell", "100", "3", account="maker"))
    write(journal, ledger, "order", order("b1", "buy", "100", "1"))
    write(journal, ledger, "cancel", {"client_order_id": "s1", "account": "maker"})
    replayed = Ledger()
    for entry in Journal.open(path).entries:
        replayed.apply(entry)
    assert [trade.to_wire() for trade in replayed.trades] == [trade.to_wire() for trade in ledger.trades]
    assert replayed.orders[("maker", "s1")].cancel_seq == 3


def test_wire_times_round_trip_in_utc() -> None:
    assert to_wire_time(0.25) == "1970-01-01T00:00:00.250000Z"
    assert from_wire_time("1970-01-01T08:00:00+08:00") == 0.0
    with pytest.raises(ValueError, match="time zone"):
        from_wire_time("1970-01-01T00:00:00")


def test_schema_validator_reports_each_problem() -> None:
    document = load_openapi()
    status = {"$ref": "#/components/schemas/Status"}
    good = {"replica": "a", "role": "primary", "epoch": 1, "phase": "open", "phase_until": None,
            "last_seq": 0, "applied_seq": 0}
    assert validate(good, status, document) == []
    bad = {**good, "role": "leader", "epoch": -1, "phase_until": "yesterday", "surprise": 1}
    del bad["last_seq"]
    problems = "\n".join(validate(bad, status, document))
    for expected in ("missing 'last_seq'", "'leader' is not one of", "below 0", "date-time", "'surprise'"):
        assert expected in problems
    with pytest.raises(UnsupportedKeyword):
        validate(1, {"oneOf": []}, document)
