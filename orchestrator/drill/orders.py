"""A stream of client orders of every kind against whichever replica is primary, with a ledger of the answers.

Like a real client, it sends to the primary it knows, and on `not_primary`, `fenced` or a dead connection looks
the primary up again (the replica that says it is primary under the highest epoch). Every acknowledgement is
kept with its sequence number, so a drill or a test can check that each acknowledged order survived a failover
at the same place in the journal; every refusal is counted by reason, for the report.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.core.errors import EngineError
from orchestrator.core.model import Replica, Role
from orchestrator.core.phases import RequestKind
from orchestrator.engine.client import HttpEngineClient, OrderAnswer
from orchestrator.sim.orders import pick_kind

MARKET = "BTC-USDT"
MID = 50_000


@dataclass
class Ledger:
    acknowledged: dict[str, int] = field(default_factory=dict)  # client_order_id (or margin request id) -> seq
    refused: Counter[str] = field(default_factory=Counter)
    unknown: int = 0  # sent, answer lost: neither acknowledged nor refused
    sent: Counter[str] = field(default_factory=Counter)  # by kind

    def summary(self) -> dict[str, Any]:
        return {"sent": sum(self.sent.values()), "acknowledged": len(self.acknowledged),
                "refused": sum(self.refused.values()), "refused_by_reason": dict(sorted(self.refused.items())),
                "unknown_outcome": self.unknown}


class OrderStream:
    def __init__(self, client: HttpEngineClient, replicas: Sequence[Replica], *, rate: float = 40.0,
                 seed: int = 0, accounts: int = 8) -> None:
        self.client = client
        self.replicas = list(replicas)
        self.rate = rate
        self.random = random.Random(seed)
        self.accounts = [f"acct-{n}" for n in range(accounts)]
        self.ledger = Ledger()
        self.lock = threading.Lock()
        self.primary: Replica | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._n = 0
        self._resting: list[tuple[str, str]] = []

    # ---- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> OrderStream:
        self._thread = threading.Thread(target=self._run, name="order-stream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Ledger:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return self.ledger

    def _run(self) -> None:
        pause = 1.0 / self.rate
        while not self._stop.is_set():
            began = time.monotonic()
            self.send_one()
            self._stop.wait(max(0.0, pause - (time.monotonic() - began)))

    # ---- the primary ----------------------------------------------------------------------------------------

    def find_primary(self) -> Replica | None:
        best: tuple[int, Replica] | None = None
        for replica in self.replicas:
            try:
                status = self.client.status(replica)
            except EngineError:
                continue
            if status.role is Role.PRIMARY and (best is None or status.epoch > best[0]):
                best = (status.epoch, replica)
        self.primary = best[1] if best else None
        return self.primary

    # ---- orders ---------------------------------------------------------------------------------------------

    def send_one(self) -> None:
        target = self.primary or self.find_primary()
        if target is None:
            with self.lock:
                self.ledger.refused["no_primary"] += 1
            return
        self._n += 1
        kind, request = self._next_request()
        try:
            answer = self._send(target, kind, request)
        except EngineError:
            with self.lock:
                self.ledger.unknown += 1
                self.ledger.sent[kind] += 1
            self.primary = None
            return
        with self.lock:
            self.ledger.sent[kind] += 1
            if answer.accepted and answer.seq is not None:
                self.ledger.acknowledged[request["id"]] = answer.seq
                if kind in ("limit", "post_only"):
                    self._resting.append((request["id"], request["account"]))
            else:
                self.ledger.refused[answer.reason or "unknown"] += 1
        if not answer.accepted and answer.reason in ("not_primary", "fenced", "replication_timeout"):
            self.primary = None

    def _next_request(self) -> tuple[str, dict[str, Any]]:
        """The next request, its kind drawn from the simulator's order mix (`sim.orders.KINDS`); a cancel needs a
        resting order of ours, so without one it becomes a margin top-up."""
        r = self.random
        kind = pick_kind(r)
        account = r.choice(self.accounts)
        order_id = f"o-{self._n}-{r.randrange(1 << 30):x}"
        side = r.choice(("buy", "sell"))
        offset = r.randint(-20, 20)
        price = str(MID + offset if side == "buy" else MID - offset)
        base = {"id": order_id, "account": account, "side": side, "qty": str(r.randint(1, 5))}
        if kind is RequestKind.LIMIT:
            return "limit", {**base, "type": "limit", "price": price, "tif": "gtc", "post_only": False}
        if kind is RequestKind.POST_ONLY:
            passive = str(MID - 30 - r.randint(0, 20) if side == "buy" else MID + 30 + r.randint(0, 20))
            crossing = r.random() < 0.2
            return "post_only", {**base, "type": "limit", "price": price if crossing else passive, "tif": "gtc",
                                 "post_only": True}
        if kind is RequestKind.MARKET:
            return "market", {**base, "type": "market", "price": None, "tif": "ioc", "post_only": False}
        if kind in (RequestKind.IOC, RequestKind.FOK):
            return kind.value, {**base, "type": "limit", "price": price, "tif": kind.value, "post_only": False}
        if kind is RequestKind.CANCEL and self._resting:
            coid, owner = self._resting.pop(r.randrange(len(self._resting)))
            return "cancel", {"id": f"cancel-{coid}", "cancel_of": coid, "account": owner}
        return "add_margin", {"id": f"margin-{order_id}", "account": account, "amount": str(r.randint(10, 1000))}

    def _send(self, target: Replica, kind: str, request: dict[str, Any]) -> OrderAnswer:
        if kind == "cancel":
            return self.client.cancel(target, client_order_id=request["cancel_of"], account=request["account"])
        if kind == "add_margin":
            return self.client.add_margin(target, account=request["account"], amount=request["amount"],
                                          request_id=request["id"])
        return self.client.submit_order(target, client_order_id=request["id"], account=request["account"],
                                        market=MARKET, side=request["side"], qty=request["qty"],
                                        price=request["price"], type=request["type"],
                                        post_only=request["post_only"], tif=request["tif"])


def journal_keys(entries: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Journal entries → the ledger's keys (order id, `cancel-<id>`, margin request id) with their seq."""
    keys: dict[str, int] = {}
    for entry in entries:
        data = entry.get("data") or {}
        kind = entry.get("kind")
        if kind == "order":
            keys[str(data.get("client_order_id"))] = int(entry["seq"])
        elif kind == "cancel":
            keys[f"cancel-{data.get('client_order_id')}"] = int(entry["seq"])
        elif kind == "margin" and data.get("request_id"):
            keys[str(data["request_id"])] = int(entry["seq"])
    return keys


def missing_or_moved(ledger: Ledger, entries: Sequence[dict[str, Any]]) -> dict[str, tuple[int, int | None]]:
    """Acknowledged requests absent from `entries`, or present under another seq: `{key: (acked, found)}`."""
    found = journal_keys(entries)
    return {key: (seq, found.get(key)) for key, seq in ledger.acknowledged.items() if found.get(key) != seq}


def trades_by_phase(entries: Sequence[dict[str, Any]], trades: Sequence[dict[str, Any]]) -> Counter[str]:
    """How many trades happened in each trading phase, judged by the journal's own order (a trade carries the
    seq of the order that caused it; the phase in force is the last `phase` entry before that seq). Exact, with
    no clock involved: the invariant "no trade in halted or protection" is checked on the record itself."""
    changes = sorted((int(e["seq"]), str((e.get("data") or {}).get("phase"))) for e in entries
                     if e.get("kind") == "phase")
    counts: Counter[str] = Counter()
    for trade in trades:
        seq = int(trade["seq"])
        phase = "open"  # a replica starts open
        for change_seq, changed_to in changes:
            if change_seq > seq:
                break
            phase = changed_to
        counts[phase] += 1
    return counts
