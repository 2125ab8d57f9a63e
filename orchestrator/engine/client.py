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

import asyncio
import concurrent.futures
import json
import os
import random
import resource
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies_environment

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from orchestrator.core.errors import EngineError, StaleEpoch
from orchestrator.core.model import Phase, Replica, ReplicaStatus
from orchestrator.engine import protocol as wire
from orchestrator.engine.base import EngineControl, PromoteRefused
from orchestrator.engine.protocol import Reason, status_from_wire, to_wire_time

# `orchestrator.engine.replica.peers.PEERS`, spelled here so that the client does not import the replica's server
# (uvicorn, Starlette); tests/engine/test_engine_peers.py calls a real replica through this client
PEERS = "/v1/peers"


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
        # a CA bundle's path as an SSLContext: httpx 0.28 deprecates `verify=<str>`
        self._http = httpx.Client(timeout=timeout, verify=_ssl_context(verify) if isinstance(verify, str) else verify)
        # control calls (phase, promote, fence) may take longer than a probe: a promotion asks every peer first
        self._control_timeout = httpx.Timeout(control_timeout, connect=connect_timeout) if control_timeout else None
        self._attempts = max(1, attempts)
        self._wait = wait_random_exponential(multiplier=backoff, max=max_backoff)
        # probe rounds: kept-alive connections of their own (StatusPool), the same waits between attempts; with a
        # proxy in the environment (which httpx honours) they go through httpx, one call per replica, as before
        self._backoff = lambda attempt: random.uniform(0, min(max_backoff, backoff * 2 ** (attempt - 1)))
        self._probes = StatusPool(headers=self._headers, connect_timeout=connect_timeout, read_timeout=read_timeout,
                                  ssl_context=lambda: _ssl_context(verify))
        self._proxied = any(getproxies_environment().get(scheme) for scheme in ("http", "https", "all"))
        self.round_trips: dict[str, float] = {}  # replica -> seconds, of the last `statuses` round's answers

    def close(self) -> None:
        self._probes.close()
        self._http.close()

    def __enter__(self) -> HttpEngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- EngineControl -----------------------------------------------------------------------------------

    def status(self, replica: Target) -> ReplicaStatus:
        return self._status_of(replica, self._call(replica, "GET", wire.STATUS, retry=True))

    def statuses(self, replicas: Sequence[Replica], limit: int) -> list[ReplicaStatus | EngineError] | None:
        """Every replica's status at once, at most `limit` requests in flight (a probe round): in each replica's
        place its status, or the EngineError `status` would have raised for it. None when a proxy is configured:
        then ask `status` one replica at a time."""
        if self._proxied:
            return None
        urls = [_url(replica) + wire.STATUS for replica in replicas]
        answers = self._probes.fetch(urls, limit, self._attempts, self._backoff)
        trips = self._probes.round_trips
        self.round_trips = {replica.name: trips[url] for replica, url in zip(replicas, urls, strict=True)
                            if url in trips}
        return [self._probe_answer(replica, answer) for replica, answer in zip(replicas, answers, strict=True)]

    def _probe_answer(self, replica: Replica, answer: tuple[int, bytes] | BaseException) \
            -> ReplicaStatus | EngineError:
        """What `status` makes of the same answer: the same errors, worded the same way."""
        if isinstance(answer, BaseException):
            detail = describe_probe_failure(answer)
            return EngineError(f"{_where(replica, wire.STATUS)}: {detail} (after {self._attempts} attempts)")
        code, body = answer
        if code >= 500:
            return EngineError(f"{_where(replica, wire.STATUS)}: answered {code} (after {self._attempts} attempts)")
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if code != 200:
            return _refusal_error(replica, wire.STATUS, code, parsed)
        try:
            return self._status_of(replica, parsed)
        except EngineError as error:
            return error

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

    # --- peers (extension): where the engine's other replicas run now -----------------------------------------

    def set_peers(self, replica: Target, epoch: int, peers: Sequence[str]) -> dict[str, Any]:
        """`POST /v1/peers`: replace the replica's peer list; answers the list now. Idempotent under the epoch rule
        (the same list at the same epoch changes nothing), so retried like a control call."""
        body = {"epoch": epoch, "peers": [url.rstrip("/") for url in peers]}
        return self._object(replica, PEERS, self._call(replica, "POST", PEERS, body, retry=True))

    def peers(self, replica: Target) -> dict[str, Any]:
        """`GET /v1/peers`: the URLs the replica polls and whether its flags or `set_peers` gave them."""
        return self._object(replica, PEERS, self._call(replica, "GET", PEERS, retry=True))

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


def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    """What httpx verifies against for the same `verify`: its default CAs, none, or a CA bundle's path."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else httpx.create_ssl_context(verify)


# --- status probes over kept-alive connections ---------------------------------------------------------------------
#
# Why not httpx for probes: a probe through httpx costs ~0.46 ms of CPU (its request and response models, h11's
# state machine, tenacity), ~0.8 ms from 64 threads sharing one GIL, so a round of 1,000 replicas took ~1 s on two
# cores. A probe is one fixed GET whose answer is a small JSON object: written out once per replica and read with
# asyncio's streams on one event loop, it costs a tenth of that, over connections kept open from round to round.

MAX_STATUS_BYTES = 1 << 20  # a status body is a few hundred bytes; more is refused, never buffered
KEEPALIVE_EXPIRY = 4.0  # an idle connection older than this is closed (uvicorn closes its own after 5 s)
# Connections being opened at once. The first round after a start opens one per replica: 1,002 at once on a loaded
# 2-core machine kept our own loop busy past a 0.5 s connect deadline for up to 395 of them (down for a round),
# so the deadline measured us, not the replicas. Each connect's deadline starts once it has its turn.
CONNECTING = 128


class _Refused(Exception):
    """The replica answered, but not with an HTTP/1.x response we can read (a broken or hostile peer)."""


@dataclass(frozen=True, slots=True)
class _Target:
    """One control URL, resolved once: where to connect and the request's bytes."""

    origin: tuple[str, str, int]  # scheme, host, port: connections are shared per origin
    request: bytes = field(repr=False)  # carries the bearer token when there is one


@dataclass(slots=True, eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, now: float) -> bool:
        return (not self.reader.at_eof() and not self.writer.is_closing()
                and now - self.idle_since < KEEPALIVE_EXPIRY)

    def close(self) -> None:
        self.writer.close()


class StatusPool:
    """`GET /v1/status` for many replicas at once: one event loop in a thread of its own, at most `limit` requests
    in flight, connections kept open per origin between rounds; in all at most `max_open` connections and half this
    process's file descriptor limit, half of them idle and half in flight. Each request has its own connect and
    answer deadlines, so a slow or broken replica costs its own slot and nothing else. Thread-safe; `close()`."""

    def __init__(self, *, headers: Mapping[str, str], connect_timeout: float, read_timeout: float,
                 ssl_context: Callable[[], ssl.SSLContext], max_open: int = 8192) -> None:
        self._headers = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ssl_factory = ssl_context
        self._ssl: ssl.SSLContext | None = None
        # at most half the process's descriptors, half of them idle and half in flight: running out would make
        # healthy replicas look unreachable (EMFILE), so a low limit costs reconnects and waves instead
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        budget = max_open if soft == resource.RLIM_INFINITY else max(2, min(max_open, soft // 2))
        self._max_idle = self._max_in_flight = budget // 2
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._idle_count = 0
        self._targets: dict[str, _Target] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.in_flight = 0  # requests on the wire now (read by tests and the benchmark)
        self.most_in_flight = 0
        # per URL, the round trip of its last answered attempt in the last round (a gray failure's evidence)
        self.round_trips: dict[str, float] = {}
        self._connecting = asyncio.Semaphore(CONNECTING)

    def fetch(self, urls: Sequence[str], limit: int, attempts: int,
              backoff: Callable[[int], float]) -> list[tuple[int, bytes] | BaseException]:
        """Per URL, `(status code, body)` or the transport failure that ended its last attempt. Attempts after a
        failure or a 5xx answer wait `backoff(attempt)` seconds first, without holding a slot."""
        loop = self._running_loop()
        limit, attempts = max(1, min(limit, self._max_in_flight)), max(1, attempts)
        future = asyncio.run_coroutine_threadsafe(self._batch(urls, limit, attempts, backoff), loop)
        # every request is bounded, so the round is: waiting twice that long only guards against a loop that died
        # (or a close() from another thread) leaving the cycle waiting for ever
        waves = -(-len(urls) // limit)
        bound = 2 * waves * attempts * (self._connect_timeout + self._read_timeout) + 30  # + the backoffs
        try:
            return future.result(timeout=bound)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return [TimeoutError(f"the probe round did not finish within {bound:.0f}s")] * len(urls)

    def close(self) -> None:
        with self._start_lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close_idle(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()

    # ---- on the loop ------------------------------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._connecting = asyncio.Semaphore(CONNECTING)  # bound to the loop that first waits on it
                self._thread = threading.Thread(target=self._loop.run_forever, name="status-probes", daemon=True)
                self._thread.start()
            return self._loop

    async def _close_idle(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        self._idle_count = 0

    async def _batch(self, urls: Sequence[str], limit: int, attempts: int,
                     backoff: Callable[[int], float]) -> list[tuple[int, bytes] | BaseException]:
        self._expire(time.monotonic())
        slots = asyncio.Semaphore(limit)
        return list(await asyncio.gather(*(self._one(url, slots, attempts, backoff) for url in urls)))

    async def _one(self, url: str, slots: asyncio.Semaphore, attempts: int,
                   backoff: Callable[[int], float]) -> tuple[int, bytes] | BaseException:
        target = self._target(url)
        outcome: tuple[int, bytes] | BaseException = _Refused("never attempted")
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await asyncio.sleep(backoff(attempt - 1))
            async with slots:
                started = time.monotonic()
                outcome = await self._attempt(target)
                elapsed = time.monotonic() - started
            if not isinstance(outcome, BaseException) and outcome[0] < 500:
                self.round_trips[url] = elapsed
                return outcome
        self.round_trips.pop(url, None)
        return outcome

    async def _attempt(self, target: _Target) -> tuple[int, bytes] | BaseException:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            connection = self._checkout(target.origin)
            if connection is not None:
                try:
                    return await self._exchange(target, connection)
                except (OSError, asyncio.IncompleteReadError) as error:
                    if not _nothing_read(error):
                        return error
                    # the peer closed a kept-alive connection as we reused it: a fresh one is not a second attempt
            return await self._exchange(target, await self._connect(target.origin))
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, _Refused) as error:
            return error
        finally:
            self.in_flight -= 1

    async def _connect(self, origin: tuple[str, str, int]) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            context = self._ssl = self._ssl or self._ssl_factory()
        try:
            async with self._connecting, asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(host, port, ssl=context, limit=MAX_STATUS_BYTES)
        except TimeoutError:
            raise TimeoutError(f"no connection within {self._connect_timeout:g}s") from None
        return _Connection(reader, writer)

    async def _exchange(self, target: _Target, connection: _Connection) -> tuple[int, bytes]:
        """One request and its answer on `connection`; the connection goes back to the pool only when the answer
        was read whole and the server keeps it open."""
        kept = False
        try:
            connection.writer.write(target.request)
            try:
                async with asyncio.timeout(self._read_timeout):
                    code, body, kept = await _read_response(connection.reader)
            except TimeoutError:
                raise TimeoutError(f"no answer within {self._read_timeout:g}s") from None
            return code, body
        finally:
            if kept:
                self._checkin(target.origin, connection)
            else:
                connection.close()

    def _checkout(self, origin: tuple[str, str, int]) -> _Connection | None:
        connections = self._idle.get(origin)
        now = time.monotonic()
        while connections:
            connection = connections.pop()
            self._idle_count -= 1
            if connection.usable(now):
                return connection
            connection.close()
        return None

    def _checkin(self, origin: tuple[str, str, int], connection: _Connection) -> None:
        if self._idle_count >= self._max_idle:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.setdefault(origin, []).append(connection)
        self._idle_count += 1

    def _expire(self, now: float) -> None:
        """Close the idle connections a server will soon drop, or has: between rounds, not during one."""
        for origin, connections in list(self._idle.items()):
            kept = []
            for connection in connections:
                if connection.usable(now):
                    kept.append(connection)
                else:
                    connection.close()
            self._idle_count -= len(connections) - len(kept)
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) > 65536:  # bare URLs from a long drill: a cache, not a history
                self._targets.clear()
            target = self._targets[url] = _resolve(url, self._headers)
        return target


def _resolve(url: str, headers: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EngineError(f"{url}: not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path + ("?" + parts.query if parts.query else "")
    request = (f"GET {path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: application/json\r\n"
               f"User-Agent: failover-probe\r\n{headers}\r\n").encode("latin-1")
    return _Target((parts.scheme, parts.hostname, port), request)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status code, body, and whether the connection may carry another request (RFC 9112: a length-delimited or
    chunked body on HTTP/1.1 without `Connection: close`)."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
            raise _Refused(f"not an HTTP/1.x answer ({lines[0][:40]!r})")
        code = int(rest[:3])
        if code >= 200:
            break  # 1xx: an interim answer, the real one follows
    length = None
    chunked = False
    keep = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            keep = token != b"close" and (keep or token == b"keep-alive")
    if code in (204, 304):
        return code, b"", keep
    if chunked:
        return code, await _read_chunked(reader), keep
    if length is not None:
        if length > MAX_STATUS_BYTES:
            raise _Refused(f"an answer of {length} bytes (at most {MAX_STATUS_BYTES})")
        return code, await reader.readexactly(length), keep
    return code, await _read_to_close(reader), False


async def _read_to_close(reader: asyncio.StreamReader) -> bytes:
    """A body delimited by the connection's close (no length, not chunked: HTTP/1.0 style)."""
    body = bytearray()
    while chunk := await reader.read(65536):
        body += chunk
        if len(body) > MAX_STATUS_BYTES:
            raise _Refused(f"an answer over {MAX_STATUS_BYTES} bytes")
    return bytes(body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return bytes(body)
        if len(body) + size > MAX_STATUS_BYTES:
            raise _Refused(f"a chunked answer over {MAX_STATUS_BYTES} bytes")
        body += (await reader.readexactly(size + 2))[:-2]


def _nothing_read(error: BaseException) -> bool:
    """A reused connection that failed before a byte of the answer came back: the server had closed it."""
    if isinstance(error, asyncio.IncompleteReadError):
        return not error.partial
    return isinstance(error, ConnectionResetError | BrokenPipeError)


def describe_probe_failure(error: BaseException) -> str:
    """The same words as `_describe` for httpx's errors: "timed out (...)" or "unreachable (...)"."""
    kind = "timed out" if isinstance(error, TimeoutError) else "unreachable"
    if isinstance(error, asyncio.IncompleteReadError):
        return f"{kind} (connection closed after {len(error.partial)} bytes of the answer)"
    return f"{kind} ({type(error).__name__}: {error})" if str(error) else f"{kind} ({type(error).__name__})"
