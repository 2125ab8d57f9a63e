"""A lease holder or taker in a process of its own (and with a skewed wall clock, see clock_skew/sitecustomize.py).

    python lease_worker.py hold URL HOLDER TTL      take the lease, print {"token": N, "wall": time.time()}, renew it
                                                   every TTL/6 until a renewal fails: print {"lost": "..."}
    python lease_worker.py grab URL HOLDER TTL FOR  try to take it every 100 ms for FOR seconds; print
                                                   {"token": N or null, "at": time.monotonic() when taken}

Every line is one JSON document. The monotonic clock is the machine's, shared by every process, so the test can
compare `at` with its own monotonic readings.
"""

from __future__ import annotations

import json
import sys
import time

from orchestrator.errors import LeaseLost, StoreError
from orchestrator.store import open_store

LEASE = "leader"


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def hold(url: str, holder: str, ttl: float) -> None:
    with open_store(url) as store:
        lease = None
        while lease is None:
            lease = store.acquire_lease(LEASE, holder, ttl)
        say(token=lease.token, wall=time.time())
        while True:
            time.sleep(ttl / 6)
            try:
                lease = store.renew_lease(lease, ttl)
            except LeaseLost as error:
                say(lost=str(error))
                return
            except StoreError as error:
                say(error=str(error))


def grab(url: str, holder: str, ttl: float, window: float) -> None:
    with open_store(url) as store:
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            lease = store.acquire_lease(LEASE, holder, ttl)
            if lease is not None:
                say(token=lease.token, at=time.monotonic())
                return
            time.sleep(0.1)
        say(token=None, at=time.monotonic())


if __name__ == "__main__":
    mode, url, name, ttl_text, *rest = sys.argv[1:]
    if mode == "hold":
        hold(url, name, float(ttl_text))
    else:
        grab(url, name, float(ttl_text), float(rest[0]))
