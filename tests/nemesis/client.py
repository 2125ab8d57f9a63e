"""Order clients that keep a history: every request, every answer, with wall-clock times (Jepsen's history).

Each worker sends every order kind (limit, post-only, market, IOC, FOK, cancel, add-margin) to whichever replica
it believes is primary, as a real client would: on `not_primary`, `fenced` or a dead connection it asks every
replica for its status and picks the primary with the highest epoch. An answer that never came (timeout, reset)
or a `503 replication_timeout` is an unknown outcome: the worker retries the same request with the same
`client_order_id` (or margin `request_id`), which the engine makes harmless, a bounded number of times.

The history is a list of `Op`s in the order they happened: an `invoke` before each attempt and one completion
after it, `ok` (acknowledged, with its seq), `fail` (refused for good: the engine said no) or `info` (unknown:
it may or may not have happened). The checker reads nothing else from the clients.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.core.errors import EngineError
from orchestrator.core.model import Replica, Role
from orchestrator.engine.client import HttpEngineClient, OrderAnswer

OpType = Literal["invoke", "ok", "fail", "info"]
KINDS = ("limit", "post_only", "market", "ioc", "fok", "cancel", "add_margin")
MARKET = "BTC-USDT"
MID = 50_000
ROUTING = frozenset({"not_primary", "fenced", "stale_epoch"})  # this replica is not the one: ask another
UNKNOWN = frozenset({"replication_timeout"})  # journaled there, maybe copied: retry with the same id


@dataclass(frozen=True, slots=True)
class Op:
    """One line of the history."""

    index: int
    worker: int
    type: OpType
    kind: str
    key: str  # client_order_id, `cancel-<id>` or the margin request id: what the journal is searched by
    at: float  # wall clock (time.time), on the harness's host
    target: str | None = None
    attempt: int = 1
    seq: int | None = None
    reason: str | None = None
    request: dict[str, Any] = field(default_factory=dict)


class History:
    """Thread-safe, append-only."""

    def __init__(self) -> None:
        self._ops: list[Op] = []
        self._lock = threading.Lock()

    def add(self, **fields: Any) -> Op:
        with self._lock:
            op = Op(index=len(self._ops), at=time.time(), **fields)
            self._ops.append(op)
            return op

    def ops(self) -> list[Op]:
        with self._lock:
            return list(self._ops)

    def acknowledged(self) -> dict[str, Op]:
        """Key -> its `ok` completion (the first; a retry of an acknowledged request answers the same seq)."""
        found: dict[str, Op] = {}
        for op in self.ops():
            if op.type == "ok":
                found.setdefault(op.key, op)
        return found

    def summary(self) -> dict[str, Any]:
        ops = self.ops()
        completions = [op for op in ops if op.type != "invoke"]
        final: dict[str, str] = {}
        for op in completions:
            final[op.key] = op.type if final.get(op.key) != "ok" else "ok"
        return {"invoked": sum(1 for op in ops if op.type == "invoke"), "requests": len(final),
                "ok": sum(1 for t in final.values() if t == "ok"),
                "fail": sum(1 for t in final.values() if t == "fail"),
                "info": sum(1 for t in final.values() if t == "info"),
                "by_kind": dict(Counter(op.kind for op in ops if op.type == "invoke")),
                "refused": dict(Counter(op.reason for op in completions if op.type == "fail"))}


class Orders:
    """The request generator: a seeded mix of every kind, prices around one mid so that orders cross."""

    def __init__(self, seed: int, worker: int, accounts: int = 6) -> None:
        self.random = random.Random(f"{seed}:{worker}")
        self.worker = worker
        self.accounts = [f"acct-{n}" for n in range(accounts)]
        self.resting: list[tuple[str, str]] = []  # acknowledged limit orders that may still rest
        self.n = 0

    def next(self) -> tuple[str, str, dict[str, Any]]:
        r = self.random
        self.n += 1
        account = r.choice(self.accounts)
        order_id = f"w{self.worker}-{self.n}-{r.randrange(1 << 24):x}"
        side = r.choice(("buy", "sell"))
        offset = r.randint(-15, 15)
        price = str(MID + offset if side == "buy" else MID - offset)
        base = {"client_order_id": order_id, "account": account, "market": MARKET, "side": side,
                "qty": str(r.randint(1, 4))}
        roll = r.random()
        if roll < 0.33:
            return "limit", order_id, {**base, "type": "limit", "price": price, "tif": "gtc", "post_only": False}
        if roll < 0.53:
            passive = str(MID - 25 - r.randint(0, 20) if side == "buy" else MID + 25 + r.randint(0, 20))
            return "post_only", order_id, {**base, "type": "limit", "price": passive, "tif": "gtc",
                                           "post_only": True}
        if roll < 0.63:
            return "market", order_id, {**base, "type": "market", "price": None, "tif": "ioc", "post_only": False}
        if roll < 0.70:
            return "ioc", order_id, {**base, "type": "limit", "price": price, "tif": "ioc", "post_only": False}
        if roll < 0.76:
            return "fok", order_id, {**base, "type": "limit", "price": price, "tif": "fok", "post_only": False}
        if roll < 0.90 and self.resting:
            coid, owner = self.resting.pop(r.randrange(len(self.resting)))
            return "cancel", f"cancel-{coid}", {"client_order_id": coid, "account": owner}
        request_id = f"m-{order_id}"
        return "add_margin", request_id, {"account": account, "amount": str(r.randint(10, 500)),
                                          "request_id": request_id}


class ClientStream:
    """`workers` threads sending orders to the primary they know, recording everything in `history`."""

    def __init__(self, replicas: Sequence[Replica], token: str, *, seed: int = 0, workers: int = 2,
                 rate: float = 15.0, attempts: int = 4, history: History | None = None) -> None:
        self.replicas = list(replicas)
        self.token = token
        self.seed = seed
        self.workers = workers
        self.rate = rate
        self.attempts = attempts
        self.history = history or History()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._primary: Replica | None = None
        self._lock = threading.Lock()
        # longer than the replicas' 2 s synchronous-replication wait, so a 503 is seen as a 503, not a timeout
        self._orders = HttpEngineClient(token=token, read_timeout=3.0, connect_timeout=0.5, attempts=1)
        self._status = HttpEngineClient(token=token, read_timeout=0.5, connect_timeout=0.3, attempts=1)

    def start(self) -> ClientStream:
        for worker in range(self.workers):
            thread = threading.Thread(target=self._run, args=(worker,), name=f"client-{worker}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> History:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._orders.close()
        self._status.close()
        return self.history

    # ---- one worker ----------------------------------------------------------------------------------------

    def _run(self, worker: int) -> None:
        orders = Orders(self.seed, worker)
        pause = self.workers / self.rate
        while not self._stop.is_set():
            began = time.monotonic()
            kind, key, request = orders.next()
            if self._request(worker, kind, key, request) and kind in ("limit", "post_only"):
                orders.resting.append((request["client_order_id"], request["account"]))
            self._stop.wait(max(0.0, pause - (time.monotonic() - began)))

    def _request(self, worker: int, kind: str, key: str, request: dict[str, Any]) -> bool:
        """Send until a definite answer or out of attempts; True when acknowledged."""
        for attempt in range(1, self.attempts + 1):
            target = self.primary()
            if target is None:
                self.history.add(worker=worker, type="info", kind=kind, key=key, attempt=attempt,
                                 reason="no primary found", request=request)
                if self._stop.wait(0.3):
                    return False
                continue
            self.history.add(worker=worker, type="invoke", kind=kind, key=key, target=target.name,
                             attempt=attempt, request=request)
            try:
                answer = self._send(target, kind, request)
            except EngineError as error:
                self.history.add(worker=worker, type="info", kind=kind, key=key, target=target.name,
                                 attempt=attempt, reason=_unknown(str(error)))
                self.forget(target)
                continue
            if answer.accepted:
                self.history.add(worker=worker, type="ok", kind=kind, key=key, target=target.name,
                                 attempt=attempt, seq=answer.seq)
                return True
            reason = answer.reason or "refused"
            definite = reason not in ROUTING | UNKNOWN
            self.history.add(worker=worker, type="fail" if definite else "info", kind=kind, key=key,
                             target=target.name, attempt=attempt, seq=answer.seq, reason=reason)
            if definite:
                return False
            if reason in ROUTING:
                self.forget(target)
        return False

    def _send(self, target: Replica, kind: str, request: dict[str, Any]) -> OrderAnswer:
        client = self._orders
        if kind == "cancel":
            return client.cancel(target, client_order_id=request["client_order_id"], account=request["account"])
        if kind == "add_margin":
            return client.add_margin(target, account=request["account"], amount=request["amount"],
                                     request_id=request["request_id"])
        fields = {k: v for k, v in request.items() if k != "client_order_id"}
        return client.submit_order(target, client_order_id=request["client_order_id"], **fields)

    # ---- finding the primary -------------------------------------------------------------------------------

    def primary(self) -> Replica | None:
        with self._lock:
            if self._primary is not None:
                return self._primary
        best: tuple[int, Replica] | None = None
        for replica in self.replicas:
            try:
                status = self._status.status(replica)
            except EngineError:
                continue
            if status.role is Role.PRIMARY and (best is None or status.epoch > best[0]):
                best = (status.epoch, replica)
        with self._lock:
            self._primary = best[1] if best else None
            return self._primary

    def forget(self, target: Replica) -> None:
        with self._lock:
            if self._primary is not None and self._primary.name == target.name:
                self._primary = None


def _unknown(error: str) -> str:
    """A short cause for an unknown outcome: `timed out`, `unreachable`, ..."""
    for word in ("timed out", "unreachable", "reset"):
        if word in error:
            return word
    return error[:80]


def run_for(stream: ClientStream, seconds: float, until: Callable[[], bool] | None = None) -> None:
    """Let the stream run `seconds` (or until `until` holds), then stop it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until and until()):
        time.sleep(0.1)
    stream.stop()
