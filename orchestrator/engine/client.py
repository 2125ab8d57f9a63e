"""`HttpEngineClient`: the engine control protocol over HTTP(S), with bounded retries and our error types.

Retries (with exponential backoff and full jitter, via tenacity) are limited to calls that are safe to repeat:
status and other reads, and the control calls, which are idempotent by design under the epoch rule (a repeated
`promote`/`fence`/`phase` with the same epoch finds its effect already there and answers the status). Order
entry is never retried here: an order whose answer was lost has an unknown outcome, and the caller decides
whether to repeat it with the same `client_order_id` (which the replica makes harmless).

Errors at the boundary: transport failures, timeouts and 5xx still failing after the last attempt → EngineError
naming the replica and URL; 401 → EngineError "unauthorized: check the control token"; 409 `stale_epoch` →
StaleEpoch; 409 `behind` → PromoteRefused; any other refusal → EngineError with the replica's reason. None of
the 4xx are retried. The token is sent as a bearer header and never appears in a message or a log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from orchestrator.core.errors import EngineError, StaleEpoch
from orchestrator.core.model import Phase, Replica, ReplicaStatus
from orchestrator.engine import protocol as wire
from orchestrator.engine.base import EngineControl, PromoteRefused
from orchestrator.engine.protocol import Reason, status_from_wire, to_wire_time


class _Retryable(Exception):
    """A failure worth another attempt: the transport failed or the replica answered 5xx."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class OrderAnswer:
    """What the replica said to an order, cancel or margin request. Refusals are answers, not errors."""

    accepted: bool
    seq: int | None = None
    reason: str | None = None
    status_code: int = 200
    detail: str | None = None


Target = Replica | str  # a configured replica, or a bare control URL (drills and tests)


class HttpEngineClient(EngineControl):
    """One client for every replica; thread-safe (one httpx connection pool), close it when done."""

    def __init__(self, *, token: str | None = None, token_file: str | Path | None = None,
                 connect_timeout: float = 1.0, read_timeout: float = 5.0, attempts: int = 3,
                 backoff: float = 0.2, max_backoff: float = 2.0, verify: bool | str = True,
                 control_timeout: float | None = None) -> None:
        """`token` wins over `token_file`, which wins over $FAILOVER_CONTROL_TOKEN; none is needed for reads.
        `verify` is passed to httpx: False, True (system CAs) or the path of a CA bundle for https URLs."""
        if token is None and token_file is not None:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        if token is None:
            token = os.environ.get(wire.TOKEN_ENV, "").strip() or None
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._http = httpx.Client(timeout=timeout, verify=verify)
        # control calls (phase, promote, fence) may take longer than a probe: a promotion asks every peer first
        self._control_timeout = httpx.Timeout(control_timeout, connect=connect_timeout) if control_timeout else None
        self._attempts = max(1, attempts)
        self._wait = wait_random_exponential(multiplier=backoff, max=max_backoff)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HttpEngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- EngineControl -----------------------------------------------------------------------------------

    def status(self, replica: Target) -> ReplicaStatus:
        return self._status_of(replica, self._call(replica, "GET", wire.STATUS, retry=True))

    def set_phase(self, replica: Target, phase: Phase, until: float | None, epoch: int) -> ReplicaStatus:
        body = {"phase": str(phase), "until": None if until is None else to_wire_time(until), "epoch": epoch}
        return self._status_of(replica, self._call(replica, "POST", wire.PHASE, body, retry=True))

    def promote(self, replica: Target, epoch: int, *, force: bool = False) -> ReplicaStatus:
        body = {"epoch": epoch, "force": force}
        return self._status_of(replica, self._call(replica, "POST", wire.PROMOTE, body, retry=True))

    def fence(self, replica: Target, epoch: int) -> ReplicaStatus:
        return self._status_of(replica, self._call(replica, "POST", wire.FENCE, {"epoch": epoch}, retry=True))

    # --- order entry and reads, for drills and tests ------------------------------------------------------

    def submit_order(self, replica: Target, *, client_order_id: str, account: str, market: str, side: str,
                     qty: str, price: str | None = None, type: str = "limit", post_only: bool = False,
                     tif: str = "gtc") -> OrderAnswer:
        body = {"client_order_id": client_order_id, "account": account, "market": market, "side": side,
                "type": type, "price": price, "qty": qty, "post_only": post_only, "tif": tif}
        return self._entry(replica, wire.ORDERS, body)

    def cancel(self, replica: Target, *, client_order_id: str, account: str) -> OrderAnswer:
        return self._entry(replica, wire.CANCEL, {"client_order_id": client_order_id, "account": account})

    def add_margin(self, replica: Target, *, account: str, amount: str, request_id: str | None = None) \
            -> OrderAnswer:
        body: dict[str, Any] = {"account": account, "amount": amount}
        if request_id is not None:
            body["request_id"] = request_id
        return self._entry(replica, wire.MARGIN, body)

    def journal(self, replica: Target, after: int = 0, limit: int = 5000) -> list[dict[str, Any]]:
        """Journal entries with seq > `after` (as the replica sends them), for checks and drills."""
        return self._list(replica, wire.JOURNAL, {"after": after, "limit": limit})

    def trades(self, replica: Target, after: int = 0, limit: int = 5000) -> list[dict[str, Any]]:
        return self._list(replica, wire.TRADES, {"after": after, "limit": limit})

    def stats(self, replica: Target) -> dict[str, Any]:
        body = self._call(replica, "GET", wire.STATS, retry=True)
        if not isinstance(body, dict):
            raise EngineError(f"{_name(replica)} at {_url(replica)}: /v1/stats is not an object")
        return body

    # --- plumbing ----------------------------------------------------------------------------------------

    def _entry(self, replica: Target, path: str, body: Mapping[str, Any]) -> OrderAnswer:
        try:
            response = self._http.post(_url(replica) + path, json=dict(body), headers=self._headers)
        except httpx.HTTPError as error:
            raise EngineError(f"{_where(replica, path)}: outcome unknown: {_describe(error)}") from error
        if response.status_code == 401:
            raise EngineError(f"unauthorized: check the control token ({_where(replica, path)})")
        answer = _json(response)
        if not isinstance(answer, dict) or "accepted" not in answer:
            raise EngineError(f"{_where(replica, path)}: answered {response.status_code} without a verdict")
        if answer["accepted"] is True:
            return OrderAnswer(True, seq=int(answer["seq"]))
        return OrderAnswer(False, seq=answer.get("seq"), reason=str(answer.get("reason")),
                           status_code=response.status_code, detail=answer.get("detail"))

    def _list(self, replica: Target, path: str, params: Mapping[str, int]) -> list[dict[str, Any]]:
        body = self._call(replica, "GET", path, params=params, retry=True)
        if not isinstance(body, list):
            raise EngineError(f"{_where(replica, path)}: expected a list")
        return body

    def _status_of(self, replica: Target, body: Any) -> ReplicaStatus:
        try:
            return replication_fields(status_from_wire(body), body)
        except (KeyError, ValueError, TypeError) as error:
            raise EngineError(f"{_where(replica, wire.STATUS)}: malformed status ({error!r})") from error

    def _call(self, replica: Target, method: str, path: str, body: Mapping[str, Any] | None = None, *,
              params: Mapping[str, int] | None = None, retry: bool) -> Any:
        attempts = self._attempts if retry else 1
        retrying = Retrying(stop=stop_after_attempt(attempts), wait=self._wait,
                            retry=retry_if_exception_type(_Retryable), reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(replica, method, path, body, params)
        except _Retryable as error:
            raise EngineError(f"{_where(replica, path)}: {error.detail} (after {attempts} attempts)") from error
        raise AssertionError("unreachable")  # pragma: no cover - Retrying either returns or raises

    def _once(self, replica: Target, method: str, path: str, body: Mapping[str, Any] | None,
              params: Mapping[str, int] | None) -> Any:
        try:
            timeout = self._control_timeout if method == "POST" and self._control_timeout else self._http.timeout
            response = self._http.request(method, _url(replica) + path, json=body, params=params,
                                          headers=self._headers, timeout=timeout)
        except httpx.HTTPError as error:
            raise _Retryable(_describe(error)) from error
        if response.status_code >= 500:
            raise _Retryable(f"answered {response.status_code}")
        answer = _json(response)
        if response.status_code == 200:
            return answer
        raise _refusal_error(replica, path, response.status_code, answer)

    # --- rejoin (extension): rebuild a fenced or diverged replica as a standby --------------------------------

    def snapshot(self, replica: Target) -> dict[str, Any]:
        """`GET /v1/snapshot`: journal position, its hash, the ledger's hash there and the books."""
        return self._object(replica, wire.SNAPSHOT, self._call(replica, "GET", wire.SNAPSHOT, retry=True))

    def rejoin(self, replica: Target, epoch: int, primary_url: str) -> dict[str, Any]:
        """`POST /v1/rejoin`: start (or, repeated, look at) the rebuild of `replica` from the primary at
        `primary_url`; answers the rejoin's record. Idempotent under the epoch rule, so retried like a control call."""
        body = {"epoch": epoch, "primary": primary_url.rstrip("/")}
        return self._object(replica, wire.REJOIN, self._call(replica, "POST", wire.REJOIN, body, retry=True))

    def rejoin_status(self, replica: Target) -> dict[str, Any]:
        """`GET /v1/rejoin`: the last rejoin's state and progress, and every tail archived on the replica."""
        return self._object(replica, wire.REJOIN, self._call(replica, "GET", wire.REJOIN, retry=True))

    def _object(self, replica: Target, path: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise EngineError(f"{_where(replica, path)}: expected an object")
        return body


def _optional(body: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    value = body.get(key)
    return None if value is None else kind(value)


def replication_fields(status: ReplicaStatus, body: Mapping[str, Any]) -> ReplicaStatus:
    """The replication-health fields of a status body, where the replica reports them (all optional: an engine
    that implements only the three control endpoints still works, just with less to judge by)."""
    return replace(
        status,
        synchronous=_optional(body, "synchronous", bool),
        replicated_seq=_optional(body, "replicated_seq", int),
        unreplicated_age=_optional(body, "unreplicated_age_s", float),
        replication_timeouts=int(body.get("replication_timeouts") or 0),
        following=_optional(body, "following", str),
        error=_optional(body, "error", str),
        primary_contact_age=_optional(body, "primary_contact_age_s", float),
    )


def _refusal_error(replica: Target, path: str, code: int, answer: Any) -> EngineError:
    where = _where(replica, path)
    if code == 401:
        return EngineError(f"unauthorized: check the control token ({where})")
    reason = answer.get("reason") if isinstance(answer, dict) else None
    if reason == Reason.STALE_EPOCH:
        holder = f"primary {answer['peer']} holds" if answer.get("peer") else "the replica has seen"
        return StaleEpoch(f"{where}: stale epoch; {holder} epoch {answer.get('epoch')}")
    if reason == Reason.BEHIND:
        return PromoteRefused(
            f"{where}: promotion refused: at seq {answer.get('last_seq')}, behind {answer.get('peer')} at "
            f"{answer.get('peer_seq')}", last_seq=int(answer.get("last_seq", 0)),
            peer_seq=int(answer.get("peer_seq", 0)), peer=answer.get("peer"))
    detail = f" ({answer['detail']})" if isinstance(answer, dict) and answer.get("detail") else ""
    return EngineError(f"{where}: refused with {code} {reason or 'no reason'}{detail}")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _url(replica: Target) -> str:
    return (replica.control_url if isinstance(replica, Replica) else replica).rstrip("/")


def _name(replica: Target) -> str:
    return f"replica {replica.name}" if isinstance(replica, Replica) else "replica"


def _where(replica: Target, path: str) -> str:
    return f"{_name(replica)} at {_url(replica)}{path}"


def _describe(error: httpx.HTTPError) -> str:
    kind = "timed out" if isinstance(error, httpx.TimeoutException) else "unreachable"
    return f"{kind} ({type(error).__name__}: {error})" if str(error) else f"{kind} ({type(error).__name__})"
