"""What a deposed primary wrote that the new primary's history does not hold: archived, never replayed.

A primary that was frozen, partitioned or simply slow to hear of its deposition may take orders after the standbys
moved on to a new epoch. No standby acknowledges them (synchronous replication refuses an older epoch), so no
client was told they were accepted; the new primary's history must not contain them, or trades nobody saw would
become official (and be timed inside the announced halt). They are not dropped either: support must be able to
tell each client what happened to an order whose outcome it never learned. So once the old primary answers again,
its journal is compared with the new primary's (journals are hash-chained: entry k equal means 1..k equal), and
the tail after the last common entry is recorded in the incident, with each order's `client_order_id` and
account, for the incident report. The old replica keeps the entries on its own disk until it is rebuilt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from orchestrator.core.model import Replica

WINDOW = 2000  # entries compared back from the shorter journal's end; a divergence is a tail, not a history
MAX_LISTED = 1000  # entries listed in the incident (all are counted)
PAGE = 5000  # the most entries one `GET /v1/journal` returns


class JournalReader(Protocol):
    def journal(self, replica: Replica, after: int = 0, limit: int = PAGE) -> list[dict[str, Any]]: ...


def _read(engines: JournalReader, replica: Replica, after: int, until: int | None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    while True:
        page = engines.journal(replica, after, PAGE)
        entries.extend(entry for entry in page if until is None or int(entry["seq"]) <= until)
        if len(page) < PAGE or (until is not None and after + len(page) >= until):
            return entries
        after = int(page[-1]["seq"])


def summarize(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The fields support needs to find the client and the order."""
    data = entry.get("data") or {}
    keep = ("client_order_id", "account", "market", "side", "type", "price", "qty", "post_only", "tif", "amount",
            "request_id", "phase")
    return {"seq": entry.get("seq"), "at": entry.get("at"), "epoch": entry.get("epoch"), "kind": entry.get("kind"),
            **{key: data[key] for key in keep if key in data}}


def common_prefix(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], start: int) -> int | None:
    """The last seq both journals hold with the same hash (`start` if none in the window and it is 0), or None
    when they differ over the whole window (the divergence is older than the window)."""
    new_hashes = {int(entry["seq"]): entry["hash"] for entry in new}
    common = None
    for entry in old:
        seq = int(entry["seq"])
        if new_hashes.get(seq) != entry["hash"]:
            break
        common = seq
    if common is None and start == 0:
        return 0
    return common


def diverged_tail(engines: JournalReader, old: Replica, new: Replica, old_last: int, new_last: int) \
        -> dict[str, Any]:
    """Compare `old`'s journal with `new`'s and describe what `old` holds beyond their common history."""
    shorter = min(old_last, new_last)
    start = max(0, shorter - WINDOW)
    old_entries = _read(engines, old, start, None)
    new_entries = _read(engines, new, start, shorter)
    common = common_prefix(old_entries, new_entries, start)
    if common is None:
        return {"replica": old.name, "checked": True, "common_seq": None, "count": len(old_entries),
                "note": f"journals differ over the last {WINDOW} entries compared: rebuild and reconcile by hand",
                "entries": [summarize(e) for e in old_entries[:MAX_LISTED]]}
    tail = [entry for entry in old_entries if int(entry["seq"]) > common]
    orders = [entry for entry in tail if entry.get("kind") != "phase"]
    return {"replica": old.name, "checked": True, "common_seq": common, "count": len(tail),
            "orders": len(orders), "entries": [summarize(e) for e in tail[:MAX_LISTED]]}


def from_rejoin(replica: str, tail: Mapping[str, Any]) -> dict[str, Any]:
    """The incident's `diverged` record (the shape `diverged_tail` gives, which the report lists) from a tail the
    replica archived itself when it was rejoined (`POST /v1/rejoin`, `drivers.rejoin`): compared there against the
    primary by hash chain, written to `file` on its disk before its journal was cut."""
    entries = [dict(entry) for entry in tail.get("entries") or []]
    return {"replica": replica, "checked": True, "common_seq": tail.get("common_seq"),
            "count": int(tail.get("count") or 0), "orders": int(tail.get("orders") or 0),
            "entries": entries[:MAX_LISTED], "archive": f"{replica}:{tail.get('file')}", "by": "rejoin"}
