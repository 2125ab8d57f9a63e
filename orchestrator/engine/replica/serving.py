"""HTTP served with limits: uvicorn's h11 protocol with a deadline per request, a connection cap and one line per
client that hangs up mid-answer, on a socket bound before serving so that a port in use is a clear error. Used by
the replica (`cli.serve`) and by the daemon's status server (`orchestrator.drivers.daemon_http`).

Why a protocol subclass: uvicorn's `timeout_keep_alive` runs only between requests, so a client that connects and
sends nothing, half a request line or half a body holds its connection, and a slot, forever (issue 12: 2,000
half-open connections left a server unresponsive). Here every request must arrive whole within
`Limits.request_timeout` of the connection opening (or of its first byte after an idle keep-alive): headers and
body alike, since the bodies we accept are small. Past `Limits.max_connections` open connections, the oldest one
that is not being answered (idle, or its request still arriving) is closed to make room, or the new one if every
connection is busy being answered: idle and slow connections evict each other, and a client that sends its
request at once still gets in (a bounded `backlog` holds the queue before that; uvicorn's `limit_concurrency`, at
twice the cap, only guards against a bug here). Headers are capped by h11 (`max_header_bytes`: 400 above it);
bodies by the application (`read_body`: 413 from the Content-Length alone, or as soon as the streamed bytes pass
the cap, never buffering more; the rest of a refused body is dropped unread by closing the connection, unless it
is small enough to read and discard, so that the client sees the 413 rather than a reset). The subclass relies on
`H11Protocol`'s attributes `conn`, `cycle`, `connections`, `transport`, `loop` (uvicorn 0.29 to 0.54 at least).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import h11
import uvicorn
from starlette.requests import Request
from uvicorn.protocols.http.h11_impl import H11Protocol

from orchestrator.core.errors import EXIT_CALL_FAILED, ConfigError, FailoverError

log = logging.getLogger("orchestrator.http")

DEFAULT_BACKLOG = 128


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 64 * 1024  # bytes of a request body
    request_timeout: float = 5.0  # seconds for a whole request to arrive
    keep_alive: int = 5  # seconds an idle connection stays open between requests
    max_connections: int = 256  # open at once; more are closed on arrival
    backlog: int = DEFAULT_BACKLOG  # connections the kernel queues before we accept them
    max_header_bytes: int = 16 * 1024  # request line and headers


class ListenError(FailoverError):
    """The address cannot be listened on (port in use, host unknown or not ours). Exit code 4."""

    exit_code = EXIT_CALL_FAILED


DRAIN_LIMIT = 1024 * 1024  # a refused body up to this size is read and dropped, so the client sees the answer


class BodyTooLarge(Exception):
    """A request body over `Limits.max_body`; answered 413. `close`: the connection must be closed without reading
    the rest (it is large or of unknown size). A smaller rest is read and dropped by the server instead (within the
    request deadline), because closing with unread bytes resets the connection and the client may then never read
    the 413."""

    def __init__(self, message: str, *, close: bool) -> None:
        super().__init__(message)
        self.close = close


def bind(host: str, port: int, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
    """A listening TCP socket on `host:port` (port 0: any free one). ConfigError for a port out of range, ListenError
    (one line naming the address) when it cannot be had."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"cannot listen on {host}:{port}: the port must be between 0 and 65535")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError) as error:
        raise ListenError(f"cannot listen on {host}:{port}: unknown host ({error})") from None
    # IPPROTO_TCP, so that asyncio sets TCP_NODELAY on each connection it accepts; and on the listening socket, which
    # Linux passes on: without it an answer's body waits for the client's delayed ACK of its headers, 40 ms on every
    # request of a kept-alive connection (a probe's, a browser's)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


Report = Callable[[str], None]  # where the server's one-line events go


def log_report(message: str) -> None:
    log.warning("%s", message)


class _Throttled:
    """At most one line per `every` seconds for a repeated event (an attack must not flood the log), with how many
    happened since the last line."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.last = float("-inf")
        self.count = 0

    def __call__(self, message: str, report: Report) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            report(f"{message} ({self.count} since the last report)")
            self.last, self.count = now, 0


@dataclass(slots=True)
class _Events:
    """Where one server's events go, with a throttle for each kind that an attack can repeat."""

    report: Report = log_report
    over_cap: _Throttled = field(default_factory=_Throttled)
    too_slow: _Throttled = field(default_factory=_Throttled)


class GuardedH11Protocol(H11Protocol):
    """`H11Protocol` with the limits of the module's docstring. `uvicorn_config` makes a subclass per server with
    its `limits`, its `report` and its own throttles."""

    limits: ClassVar[Limits] = Limits()
    events: ClassVar[_Events] = _Events()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._dropped = False
        self._opened = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._opened = self.loop.time()
        if len(self.connections) > self.limits.max_connections:
            victim = self._oldest_waiting() or self
            self.events.over_cap(f"closed {'an idle' if victim is not self else 'a new'} connection at the cap of "
                                 f"{self.limits.max_connections}", self.events.report)
            victim._drop()
            if victim is self:
                return
        self._arm()

    def _waiting(self) -> bool:
        """Whether nothing is being answered on this connection (idle, or a request still arriving)."""
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def _oldest_waiting(self) -> GuardedH11Protocol | None:
        """At the cap, the connection to give up for a new one: the oldest that is not being answered. So idle or
        slow connections cannot lock a client that sends its request at once out (they evict each other)."""
        waiting = [other for other in self.connections if isinstance(other, GuardedH11Protocol)
                   and other is not self and not other._dropped and other._waiting()]
        return min(waiting, key=lambda other: other._opened, default=None)

    def _drop(self) -> None:
        self._dropped = True
        self._disarm()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first byte of a request after an idle keep-alive
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # the whole request is in (or the connection is over)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not self._dropped:
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            where = f"{cycle.scope['method']} {cycle.scope['path']}"
            self.events.report(f"{client} hung up before the answer to {where} was complete")
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.limits.request_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.events.too_slow(f"closed a connection whose request did not arrive within "
                                 f"{self.limits.request_timeout}s", self.events.report)
            self._drop()


def uvicorn_config(app: Any, limits: Limits, *, lifespan: Literal["on", "off"] = "off", report: Report = log_report,
                   configure_logging: bool = True) -> uvicorn.Config:
    """A uvicorn configuration serving `app` with `limits` (run it with `uvicorn.Server(config).run(sockets=[...])`
    on a socket from `bind`). `report` receives the server's one-line events (a hangup, a connection dropped);
    `configure_logging=False` leaves the process's logging alone (uvicorn otherwise installs its own handlers)."""
    protocol = type("LimitedH11Protocol", (GuardedH11Protocol,),
                    {"limits": limits, "events": _Events(report)})
    extra: dict[str, Any] = {} if configure_logging else {"log_config": None}
    return uvicorn.Config(app, http=protocol, lifespan=lifespan, log_level="warning", access_log=False,
                          timeout_keep_alive=limits.keep_alive, limit_concurrency=2 * limits.max_connections,
                          backlog=limits.backlog, h11_max_incomplete_event_size=limits.max_header_bytes,
                          timeout_graceful_shutdown=1, **extra)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (BodyTooLarge) from its Content-Length alone when that is over `limit`, else as
    soon as the bytes streamed in pass it: never more than `limit` plus one chunk in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {int(declared)} bytes is over the limit of {limit}",
                           close=int(declared) > DRAIN_LIMIT)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes", close=True)
        chunks.append(chunk)
    return b"".join(chunks)
