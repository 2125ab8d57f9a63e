"""How long a rejoin takes (`POST /v1/rejoin`, issue 15 item 1): a fenced replica whose journal diverged from the
primary's halfway is rebuilt as a standby of it, with real replica processes on loopback.

The primary's data directory holds `entries` orders (resting on both sides of one book, written before it starts);
the rejoining replica holds the first half of them and then `TAIL` orders of its own that the primary never had.
Timed: from the `POST /v1/rejoin` to its record saying `done` (snapshot, binary search for the common entry,
archive of the tail, journal cut, copy of the other half checked by hash chain and against the snapshot's ledger
hash, the primary's status read again). Polled every 100 ms, so a figure is up to 0.1 s late. Printed: seconds,
entries copied per second, and the CPU seconds of both replica processes (on a shared machine wall time is mostly
other people's load).

    python -m benchmarks --only rejoin_bench
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure
from orchestrator.core.model import Role
from orchestrator.engine.replica.journal import ControlState, Journal
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

ENTRIES = 20_000
TAIL = 100
GOAL_ENTRIES_PER_S = 2_000.0  # a 1-million-entry journal (a busy day) in under ten minutes


def write_journal(data_dir: Path, count: int, *, role: Role, epoch: int, journal_epoch: int | None = None,
                  prefix_of: Journal | None = None, keep: int = 0, tag: str = "o") -> Journal:
    """`count` resting orders (after the first `keep` entries of `prefix_of`), written in one batch."""
    data_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal.open(data_dir / "journal.jsonl")
    if prefix_of is not None:
        journal.append(prefix_of.entries[:keep])
    batch = []
    for n in range(count):
        side = "buy" if n % 2 else "sell"
        price = str(1000 - n % 97) if side == "buy" else str(2000 + n % 89)
        data = {"client_order_id": f"{tag}-{n}", "account": f"acct-{n % 13}", "market": "BTC-USD", "side": side,
                "type": "limit", "price": price, "qty": "1", "post_only": False, "tif": "gtc"}
        entry = journal.make("2026-12-01T05:00:00.000000Z", epoch, "order", data)
        journal.entries.append(entry)  # so that the next `make` chains onto it
        batch.append(entry)
    del journal.entries[len(journal.entries) - len(batch):]
    journal.append(batch)
    ControlState(data_dir / "control.json", epoch=epoch, role=role, journal_epoch=journal_epoch).save()
    return journal


def _cpu(cluster: ReplicaCluster) -> float:
    """User + system CPU seconds of the running replica processes (from /proc; 0 where there is none)."""
    total = 0.0
    for running in cluster.replicas.values():
        stat = Path(f"/proc/{running.process.pid}/stat") if running.process is not None else None
        if stat is not None and stat.exists():
            fields = stat.read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def one_rejoin(entries: int) -> dict[str, Any]:
    keep = entries // 2
    with tempfile.TemporaryDirectory(prefix="rejoin-bench-") as base, ReplicaCluster(
            Path(base), [ReplicaSpec("p", "aws", primary=True), ReplicaSpec("r", "gcp")],
            startup_timeout=120.0) as cluster:
        history = write_journal(cluster.data_dir("p"), entries, role=Role.PRIMARY, epoch=7)
        write_journal(cluster.data_dir("r"), TAIL, role=Role.FENCED, epoch=7, journal_epoch=3, prefix_of=history,
                      keep=keep, tag="zombie")
        cluster.start()
        with cluster.client() as client:
            cpu_before = _cpu(cluster)
            began = time.perf_counter()
            client.rejoin(cluster.url("r"), 7, cluster.url("p"))
            while (record := client.rejoin_status(cluster.url("r")))["state"] not in ("done", "failed"):
                time.sleep(0.1)
            seconds = time.perf_counter() - began
            cpu = _cpu(cluster) - cpu_before
            if record["state"] != "done":
                raise RuntimeError(f"rejoin failed: {record['error']}\n{cluster.log('p')}\n{cluster.log('r')}")
        copied = entries - keep
        return {"entries": entries, "copied": copied, "archived": record["tails"][-1]["count"],
                "seconds": seconds, "entries_per_s": copied / seconds, "cpu_s": cpu}


def run(runs: int = 1, entries: int = ENTRIES) -> dict[str, Any]:
    return {"rejoin": [one_rejoin(entries) for _ in range(runs)]}


def figures(result: dict[str, Any]) -> list[Figure]:
    rows = result["rejoin"]
    stat = f"median of {len(rows)}" if len(rows) > 1 else "one run"
    rate = statistics.median(row["entries_per_s"] for row in rows)
    seconds = statistics.median(row["seconds"] for row in rows)
    return [Figure("rejoin", f"rejoin of {rows[0]['copied']} entries (and {rows[0]['archived']} archived)", seconds,
                   "s", stat),
            Figure("rejoin", "entries copied per second", rate, "entries/s", stat, goal=GOAL_ENTRIES_PER_S,
                   op=">=")]


def render(result: dict[str, Any]) -> str:
    lines = ["== rejoin: a fenced replica diverged halfway, rebuilt from the primary (real processes)",
             f"{'journal':>8} {'copied':>8} {'archived':>8} {'seconds':>8} {'entries/s':>10} {'cpu s':>7}"]
    for row in result["rejoin"]:
        lines.append(f"{row['entries']:>8} {row['copied']:>8} {row['archived']:>8} {row['seconds']:>8.2f} "
                     f"{row['entries_per_s']:>10.0f} {row['cpu_s']:>7.2f}")
    return "\n".join(lines)
