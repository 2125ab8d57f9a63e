"""A second (and third) process for the concurrency tests: `python store_worker.py MODE URL NAME [ARGS...]`.

It prints `ready`, waits for a line on stdin so that all workers start together, opens the store only then (so
several processes also race to create a fresh file), does its work, and prints one JSON summary line.
"""

from __future__ import annotations

import json
import sys
import time

from orchestrator.core.model import Observation, Status
from orchestrator.store import JournalState, StateStore, open_store


def append(store: StateStore, name: str, incident_id: str) -> dict[str, int]:
    """Interleave 300 audit entries, 300 journal entries and 1000 observations (10 batches of 100)."""
    for i in range(300):
        store.audit(name, "append", {"i": i}, time.time())
        store.append_journal(incident_id, f"step-{name}", JournalState.DONE, time.time(), {"writer": name, "i": i})
        if i % 30 == 0:
            batch = [Observation(time.time(), f"site-{name}", f"probe:{j % 5}", Status.OK, f"{i}/{j}")
                     for j in range(100)]
            store.record_observations(batch)
        time.sleep(0.0005)  # real writers pause between transactions; a tight loop would starve the other one
    return {"appended": 300}


def race(store: StateStore, name: str, incident_id: str, wins_wanted: int) -> dict[str, int]:
    """Grab the lease, record enter/exit in the audit log and a fenced journal entry while holding it, let go."""
    wins = tries = 0
    deadline = time.monotonic() + 20
    while wins < wins_wanted and time.monotonic() < deadline:
        tries += 1
        lease = store.acquire_lease("race", name, 10)
        if lease is None:
            time.sleep(0.0005)
            continue
        store.audit(name, "enter", {"fencing_token": lease.token}, time.time())
        store.append_journal(incident_id, "hold", JournalState.STARTED, time.time(), token=lease.token)
        time.sleep(0.002)  # hold it for a while, so that the other process finds it taken
        store.audit(name, "exit", {"fencing_token": lease.token}, time.time())
        store.release_lease(lease)
        wins += 1
        time.sleep(0.002)  # give the other process a chance: fairness is not the store's job
    return {"wins": wins, "tries": tries}


def send(store: StateStore, name: str) -> dict[str, list[int]]:
    """A notification sender: claim due items, "deliver" them (record the id), mark them. Every fifth item fails
    its first attempt and is retried at once, so retries race the other sender too. Stops when nothing is pending."""
    delivered: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        claimed = store.claim_notifications(time.time(), 7, name, 30)
        if not claimed:
            if store.outbox_summary().pending == 0:
                break
            time.sleep(0.02)
            continue
        for item in claimed:
            if item.id % 5 == 0 and item.attempts == 0:
                store.mark_notification(item.id, delivered=False, at=time.time(), error="HTTP 503",
                                        next_attempt_at=time.time(), holder=name)
                continue
            time.sleep(0.003)  # the POST
            delivered.append(item.id)
            store.mark_notification(item.id, delivered=True, at=time.time(), holder=name)
    return {"delivered": delivered}


def main(argv: list[str]) -> int:
    mode, url, name, incident_id = argv[:4]
    print("ready", flush=True)
    sys.stdin.readline()
    with open_store(url) as store:
        if mode == "append":
            summary = append(store, name, incident_id)
        elif mode == "open":
            summary = {"seq": store.audit(name, "opened", {}, time.time()).seq}
        elif mode == "race":
            summary = race(store, name, incident_id, int(argv[4]))
        elif mode == "send":
            summary = send(store, name)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
