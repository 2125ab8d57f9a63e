"""How soon leadership and a running failover change hands between daemons, against the lease TTL.

The daemon tests check what happens (a SIGTERMed leader releases its lease and a follower leads before the lease
could have expired; a leader killed mid-failover is replaced and its successor finishes the runbook); how soon is a
speed figure that a busy machine stretches, so it is measured here, on real processes over loopback:

- `sigterm`: two daemons on one SQLite store (lease TTL 8 s); the leader gets SIGTERM; seconds until the follower
  leads, `REPEATS` times (a new follower joins each round). Goal: well under the TTL (0.75x), since the lease is
  released rather than left to expire.
- `killed mid-failover`: three daemons on a three-member etcd (lease TTL 3 s); the primary's data centre goes dark,
  the leader dies at `promote` (failpoint); seconds between its last journal entry and its successor's first.
  Goal: the TTL plus one cycle plus 2 s (what the HA issue promised). Skipped without an etcd binary. It runs
  `killed_runs` times on one etcd cluster (a fresh testbed and key prefix each), each run ending at the
  successor's first entry, and the figure is the median gap (the worst and every gap are printed, and where the
  median went: until a follower won the lease, then until its first entry; docs/handover.md). A run costs about
  20 s on 2 cores (a testbed, three daemons, the detection and the halt before the kill), so the default set runs
  one (the module about 30 s with the SIGTERM round) and the full set five.

    python -m benchmarks --only handover_bench
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.figures import Figure
from orchestrator.drill.daemons import Daemons
from orchestrator.store import StateStore, open_store
from orchestrator.store.records import JournalEntry
from orchestrator.testbed.etcd import EtcdCluster, etcd_binary
from orchestrator.testbed.world import LOADED_PROBE_INTERVAL, LOADED_PROBE_TIMEOUT, LOADED_PROTECTION, Testbed

REPEATS = 3
SIGTERM_TTL = 8.0
HA_TTL = 3.0
CYCLE = 0.4  # LOADED_PROBE_INTERVAL: a daemon's cycle
PATIENCE = 120.0


def _bed(base: Path, ttl: float, store: str | None = None) -> Testbed:
    return Testbed(base, store=store, protection=LOADED_PROTECTION, probe_interval=LOADED_PROBE_INTERVAL,
                   probe_timeout=LOADED_PROBE_TIMEOUT, lease_ttl=f"{ttl:g}s")


def sigterm_handovers(repeats: int = REPEATS) -> list[float]:
    """Seconds from SIGTERM to the leader until a follower leads, once per round."""
    samples = []
    with tempfile.TemporaryDirectory() as tmp, _bed(Path(tmp) / "bed", SIGTERM_TTL) as bed:
        daemons = Daemons(bed.env(), Path(tmp))
        try:
            leader = daemons.start("d0", "orchestrator")
            daemons.wait_for(lambda: daemons.leaders() == ["d0"], PATIENCE, "d0 to lead")
            for round_ in range(1, repeats + 1):
                name = f"d{round_}"
                follower = daemons.start(name, "gcp-hk")
                daemons.wait_for(lambda n=name: n in daemons.statuses(), PATIENCE, f"{name} to follow")
                leader.process.terminate()  # wait_for counts from here
                samples.append(daemons.wait_for(lambda n=name: daemons.leaders() == [n], PATIENCE, f"{name} to lead"))
                leader.process.wait(timeout=30)
                leader = follower
        finally:
            daemons.stop_all()
    return samples


def killed_mid_failover(runs: int = 1) -> list[dict[str, float]]:
    """Each run's gap between the killed leader's last journal entry and its successor's first, with where it
    went; an empty list without etcd. The runs share one etcd cluster (a key prefix and a testbed each)."""
    if etcd_binary() is None:
        return []
    with tempfile.TemporaryDirectory() as tmp, EtcdCluster(3, Path(tmp) / "etcd") as etcd:
        return [_killed_once(etcd, Path(tmp) / f"run{n}") for n in range(runs)]


def _killed_once(etcd: EtcdCluster, base: Path) -> dict[str, float]:
    """One run: three daemons, the primary's data centre dark, the leader killed at `promote` (failpoint); over
    once the successor has journaled its first entry (the rest of the runbook is the daemon tests' business)."""
    base.mkdir(parents=True)
    store_url = f"{etcd.url}/bench-{uuid.uuid4().hex[:8]}"
    with _bed(base / "bed", HA_TTL, store_url) as bed, open_store(store_url) as store:
        daemons = Daemons(bed.env(), base)
        env = {"FAILOVER_FAILPOINT": "promote:before", "FAILOVER_FAILPOINT_ONCE": str(base / "died")}
        try:
            for name, vantage in (("d-aws", "aws-hk"), ("d-gcp", "gcp-hk"), ("d-azure", "azure-hk")):
                daemons.start(name, vantage, env)
            daemons.wait_for(lambda: len(daemons.leaders()) == 1 and len(daemons.statuses()) == 3, PATIENCE,
                             "one leader")
            bed.lose_aws()
            daemons.wait_for(lambda: any(not d.alive for d in daemons.running), PATIENCE, "the leader to die")
            daemons.wait_for(lambda: len(_tokens(store)) > 1, PATIENCE, "a successor's first journal entry")
            journal = _journal(store)
        finally:
            for daemon in daemons.running:  # measured: no need to let them finish their cycles and release
                daemon.process.kill()
            daemons.stop_all()
        tokens = sorted({e.token for e in journal})
        last_old = max(e.at for e in journal if e.token == tokens[0])
        first_new = min(e.at for e in journal if e.token == tokens[-1])
        won = _lease_won(daemons, after=last_old)
    row = {"gap_s": first_new - last_old}
    if won is not None:  # where it went: waiting for etcd to free the lease, then resuming the runbook
        row.update(lease_s=won - last_old, resume_s=first_new - won)
    return row


def _journal(store: StateStore) -> list[JournalEntry]:
    incidents = store.incidents()
    return store.journal(incidents[0].id) if incidents else []


def _tokens(store: StateStore) -> set[int]:
    return {entry.token for entry in _journal(store)}


def _lease_won(daemons: Daemons, after: float) -> float | None:
    """When a daemon logged winning the leader lease after `after` (JSON log lines, ISO timestamps in UTC)."""
    found = []
    for daemon in daemons.running:
        for line in daemon.log.read_text(errors="replace").splitlines():
            if '"leader.won"' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError):
                at = datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00")).timestamp()
                if at > after:
                    found.append(at)
    return min(found, default=None)


def run(repeats: int = REPEATS, killed_runs: int = 1) -> dict[str, Any]:
    sigterm = sigterm_handovers(repeats)
    sigterm_goal = 0.75 * SIGTERM_TTL
    rows: dict[str, Any] = {"sigterm": {
        "runs": len(sigterm), "median_s": statistics.median(sigterm), "worst_s": max(sigterm),
        "lease_ttl_s": SIGTERM_TTL, "worst_ratio_to_ttl": max(sigterm) / SIGTERM_TTL, "goal_s": sigterm_goal,
        "met": max(sigterm) <= sigterm_goal}}
    samples = killed_mid_failover(killed_runs)
    ha_goal = HA_TTL + CYCLE + 2.0
    if not samples:
        rows["killed mid-failover"] = {"skipped": "no etcd binary"}
    else:
        gaps = [sample["gap_s"] for sample in samples]
        gap = statistics.median(gaps)
        rows["killed mid-failover"] = {
            "runs": len(gaps), "gap_s": gap, "worst_gap_s": max(gaps), "gaps_s": gaps, "lease_ttl_s": HA_TTL,
            "ratio_to_ttl_plus_cycle": gap / (HA_TTL + CYCLE), "goal_s": ha_goal, "met": gap <= ha_goal,
            **{f"median_{part}": statistics.median(s[part] for s in samples)
               for part in ("lease_s", "resume_s") if all(part in s for s in samples)}}
    return {"daemon.handover": rows}


def figures(result: dict[str, Any]) -> list[Figure]:
    """The worst SIGTERM handover and the mid-failover gap, each beside its goal (seconds, wall clock)."""
    rows = result["daemon.handover"]
    sigterm, killed = rows["sigterm"], rows["killed mid-failover"]
    found = [Figure("handover", f"SIGTERM to the leader -> a follower leads ({SIGTERM_TTL:g} s lease)",
                    round(sigterm["worst_s"], 3), "s wall", f"worst of {sigterm['runs']}", goal=sigterm["goal_s"])]
    if "skipped" not in killed:
        runs = killed.get("runs", 1)
        found.append(Figure("handover", f"leader killed mid-failover -> successor acts ({HA_TTL:g} s lease, etcd)",
                            round(killed["gap_s"], 3), "s wall", "one run" if runs == 1 else f"median of {runs}",
                            goal=killed["goal_s"]))
    return found


def render(result: dict[str, Any]) -> str:
    rows = result["daemon.handover"]
    sigterm, killed = rows["sigterm"], rows["killed mid-failover"]
    lines = ["== handover: how soon another daemon leads (real daemons and replicas on loopback)",
             f"   SIGTERM to the leader -> a follower leads: median {sigterm['median_s']:.2f} s, worst "
             f"{sigterm['worst_s']:.2f} s over {sigterm['runs']} = {sigterm['worst_ratio_to_ttl']:.2f}x the "
             f"{sigterm['lease_ttl_s']:g} s lease TTL (goal <= {sigterm['goal_s']:g} s: "
             f"{'met' if sigterm['met'] else 'MISSED'})"]
    if "skipped" in killed:
        lines.append(f"   leader killed mid-failover: skipped ({killed['skipped']})")
    else:
        lines.append(f"   leader killed mid-failover -> successor's first runbook entry: {killed['gap_s']:.2f} s "
                     f"(median of {killed.get('runs', 1)}, worst {killed.get('worst_gap_s', killed['gap_s']):.2f} s) = "
                     f"{killed['ratio_to_ttl_plus_cycle']:.2f}x (TTL {killed['lease_ttl_s']:g} s + a cycle) "
                     f"(goal <= {killed['goal_s']:g} s: {'met' if killed['met'] else 'MISSED'})")
        if "median_lease_s" in killed:
            lines.append(f"     where it went (medians): {killed['median_lease_s']:.2f} s until etcd freed the lease "
                         f"and a follower won it, {killed['median_resume_s']:.2f} s from then to the resumed "
                         f"runbook's first entry (the rest of its cycle, the new epoch stamped, the step itself)")
        lines.append("     gaps: " + ", ".join(f"{gap:.2f}" for gap in killed.get("gaps_s", [killed["gap_s"]])))
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(run()))
