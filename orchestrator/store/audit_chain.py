"""Verifying the audit chain: pure functions over the rows exactly as a backend read them. No I/O.

Why every field is checked before it is used: a row edited by hand can hold anything (NULL, a BLOB, text where a
number was, NaN, a detail nested 100,000 deep). Verification is what an operator runs when something looks wrong,
so it must name the row and the field, never fail with a traceback.

Why anchors: the chain proves that no entry was edited, inserted or removed *relative to the stored head*. Someone
who rewrites every row and the head, or re-creates the store, leaves a chain that is perfect on its own. A head kept
outside the store (the anchor file written on every append, a head copied into a ticket or a notification) must
still be on the chain, at its seq, with its hash: that is what `verify_chain` checks for each anchor it is given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.errors import EXIT_UNSAFE, ConfigError, StoreError
from orchestrator.store.records import (
    GENESIS_HASH,
    AuditHead,
    AuditReport,
    AuditRow,
    audit_hash,
    describe,
    load_detail,
)

__all__ = [
    "HASH_DIGITS", "MIN_EXPECTED_DIGITS", "Anchor", "Tampered", "head_problem", "parse_head", "verify_chain",
]

HASH_DIGITS = 64  # sha256, hex
MIN_EXPECTED_DIGITS = 16  # 64 bits: no one forges an entry whose hash starts with 16 given hex digits
_HEAD_TEXT = re.compile(r"(\d{1,18}):([0-9a-f]+)")


class Tampered(StoreError):
    """The audit log or its anchor is damaged beyond reading: a table is gone, the stored head or the anchor file is
    garbage. Like a failed verification, a human must look (exit 3)."""

    exit_code = EXIT_UNSAFE


@dataclass(frozen=True, slots=True)
class Anchor:
    """A head kept outside the store, and how a report names it ("the anchor file /var/lib/...", "the expected
    head 57:3fa9c2d1e0b45a77"). Its hash may be a prefix of the full hash (at least MIN_EXPECTED_DIGITS)."""

    label: str
    head: AuditHead


def parse_head(text: str, option: str = "--expect-head") -> AuditHead:
    """`SEQ:HASH` as `failover audit head` prints it; HASH may be shortened to its first 16 or more hex digits.
    ConfigError (bad input, exit 2) naming the option otherwise."""
    found = _HEAD_TEXT.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if found is None or not MIN_EXPECTED_DIGITS <= len(found.group(2)) <= HASH_DIGITS:
        raise ConfigError(
            f"{option} {text!r}: expected SEQ:HASH as `failover audit head` prints it "
            f"(HASH in hex, at least its first {MIN_EXPECTED_DIGITS} digits)"
        )
    return AuditHead(int(found.group(1)), found.group(2))


def head_problem(head: AuditHead) -> str:
    """Why a stored head cannot be used (its fields are not an integer and a hash), or ""."""
    if not _is_int(head.seq) or head.seq < 0:
        return f"the stored head is corrupt: its seq is {describe(head.seq)}, not an integer"
    if not isinstance(head.hash, str):
        return f"the stored head is corrupt: its hash is {describe(head.hash)}, not text"
    return ""


def verify_chain(head: AuditHead | None, rows: Sequence[AuditRow], anchors: Sequence[Anchor] = ()) -> AuditReport:
    """Walk the chain from genesis; the first broken link names the first bad seq. Then check the stored head,
    then every anchor.

    Catches an edited row (its hash no longer matches its content), a deleted or reordered row (a seq gap, or a
    `prev_hash` that is not the previous row's hash), a row edited into garbage (a field of the wrong kind), a
    deleted tail (the separately stored head points past the last row), and, against each anchor, a store that
    was re-created, truncated or rewritten wholesale.
    """
    count = len(rows)
    prev_hash, expected = GENESIS_HASH, 1
    hashes: list[str] = []
    for row in rows:
        problem = _check_row(row, expected, prev_hash)
        if problem:
            return AuditReport(False, count, expected, problem)
        hashes.append(row.hash)
        prev_hash, expected = row.hash, expected + 1
    broken = _check_head(head, len(hashes), prev_hash)
    if broken is not None:
        return AuditReport(False, count, broken[0], broken[1])
    for anchor in anchors:
        problem, bad_seq = _check_anchor(anchor, hashes)
        if problem:
            return AuditReport(False, count, bad_seq, problem)
    return AuditReport(True, count, None, "", head, None, tuple(anchor.label for anchor in anchors))


def _check_head(head: AuditHead | None, last: int, last_hash: str) -> tuple[int, str] | None:
    """(first bad seq, problem) if the stored head disagrees with the rows, else None."""
    if head is None:
        return (1, f"the audit head is missing while {last} entries exist") if last else None
    problem = head_problem(head)
    if problem:
        return last or 1, problem
    if head.seq > last:
        return last + 1, f"entries {last + 1}..{head.seq} are missing: the tail was deleted"
    if head.seq < last:
        return head.seq + 1, f"entries after the head (seq {head.seq}) were added"
    if head.hash != last_hash:
        return last, f"entry {last}: its hash does not match the stored head"
    return None


def _check_anchor(anchor: Anchor, hashes: Sequence[str]) -> tuple[str, int | None]:
    seq, stored = anchor.head.seq, len(hashes)
    if seq == 0:
        return "", None
    if seq > stored:
        return (f"the store holds {stored} entries but {anchor.label} says the chain reached seq {seq}: "
                "the store was truncated or re-created"), stored + 1
    if not hashes[seq - 1].startswith(anchor.head.hash):
        return f"entry {seq}: its hash differs from {anchor.label}: the chain was rewritten", seq
    return "", None


def _check_row(row: AuditRow, expected: int, prev_hash: str) -> str:
    if row.problem:
        return row.problem
    if not _is_int(row.seq):
        where = "the first row" if expected == 1 else f"the row after entry {expected - 1}"
        return f"{where}: its seq is {describe(row.seq)}, not an integer: the entry was edited"
    if row.seq != expected:
        return f"entry {expected} is missing (next stored entry is {row.seq}): deleted or reordered"
    problem = _check_fields(row)
    if problem:
        return problem
    try:
        detail = load_detail(row.detail_json, f"entry {row.seq}")
    except StoreError as error:
        return str(error)
    if audit_hash(row.seq, row.at, row.actor, row.action, detail, row.prev_hash) != row.hash:
        return f"entry {row.seq}: its hash does not match its content: the entry was edited"
    if row.prev_hash != prev_hash:
        return f"entry {row.seq}: prev_hash does not match entry {row.seq - 1}: the chain was altered"
    return ""


def _check_fields(row: AuditRow) -> str:
    at: object = row.at
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        return f"entry {row.seq}: its time is {describe(at)}, not epoch seconds: the entry was edited"
    texts = (("actor", row.actor), ("action", row.action), ("detail", row.detail_json),
             ("prev_hash", row.prev_hash), ("hash", row.hash))
    for name, value in texts:
        if not isinstance(value, str):
            return f"entry {row.seq}: its {name} is {describe(value)}, not text: the entry was edited"
    return ""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
