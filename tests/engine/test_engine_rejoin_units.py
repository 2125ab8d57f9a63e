"""The rejoin's disk steps on their own (no process): a tail is archived once however often a crashed rejoin runs
again, a journal is cut only to a prefix and survives reopening, and the ledger's hash tells two replays apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.engine.replica.book import Ledger
from orchestrator.engine.replica.journal import Journal
from orchestrator.engine.replica.rejoin import RECORD_FILE, RejoinRecord, archive_tail


def journal_of(path: Path, count: int, tag: str = "o", price: str = "100") -> Journal:
    journal = Journal.open(path)
    for n in range(count):
        data = {"client_order_id": f"{tag}-{n}", "account": f"acct-{n % 3}", "market": "M", "side": "buy",
                "type": "limit", "price": price, "qty": "1", "post_only": False, "tif": "gtc"}
        journal.append([journal.make("2026-12-01T05:00:00.000000Z", 1, "order", data)])
    return journal


def test_a_tail_is_archived_once_with_each_order_listed(tmp_path: Path) -> None:
    journal = journal_of(tmp_path / "journal.jsonl", 5)
    first = archive_tail(tmp_path, 3, journal.entries[3:], "2026-12-01T05:00:01.000000Z")
    again = archive_tail(tmp_path, 3, journal.entries[3:], "2026-12-01T05:09:00.000000Z")  # after a crash
    assert first["file"] == again["file"] and len(list((tmp_path / "archive").iterdir())) == 1
    lines = (tmp_path / first["file"]).read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [4, 5]
    assert [(e["client_order_id"], e["account"]) for e in first["entries"]] == [("o-3", "acct-0"), ("o-4", "acct-1")]
    assert (first["common_seq"], first["count"], first["orders"]) == (3, 2, 2)


def test_a_journal_is_cut_to_a_prefix_that_survives_reopening(tmp_path: Path) -> None:
    journal = journal_of(tmp_path / "journal.jsonl", 6)
    kept = [entry.hash for entry in journal.entries[:2]]
    with pytest.raises(ValueError):
        journal.truncate(7)
    journal.truncate(2)
    reopened = Journal.open(tmp_path / "journal.jsonl")
    assert [entry.hash for entry in reopened.entries] == kept and reopened.truncated_bytes == 0
    reopened.append(  # and it still chains: a new entry after seq 2
        [reopened.make("2026-12-01T05:00:02.000000Z", 1, "margin", {"account": "a", "amount": "1"})])
    assert Journal.open(tmp_path / "journal.jsonl").last_seq == 3


def test_the_ledger_hash_tells_two_books_apart(tmp_path: Path) -> None:
    one = journal_of(tmp_path / "one.jsonl", 3)
    other = journal_of(tmp_path / "other.jsonl", 3, price="101")
    ledgers = []
    for journal in (one, other, Journal.open(tmp_path / "one.jsonl")):
        ledger = Ledger()
        for entry in journal.entries:
            ledger.apply(entry)
        ledgers.append(ledger)
    assert ledgers[0].state_hash() == ledgers[2].state_hash() != ledgers[1].state_hash()
    assert ledgers[0].levels(5) == {"M": {"buy": [["100", "3"]], "sell": []}}


def test_an_unreadable_record_is_set_aside_not_trusted(tmp_path: Path) -> None:
    (tmp_path / RECORD_FILE).write_text("{not json")
    assert RejoinRecord.load(tmp_path / RECORD_FILE) is None
    assert (tmp_path / (RECORD_FILE + ".corrupt")).exists()
