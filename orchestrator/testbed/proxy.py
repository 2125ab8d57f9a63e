"""A TCP fault proxy per link, so that links can be cut one by one, and one way only.

Every link the nemesis can break (orchestrator -> replica, replica -> replica, orchestrator -> cloud API,
orchestrator -> webhook, client -> replica) goes through its own `FaultProxy`. All proxies of a run share one
asyncio loop in a background thread (`ProxyHub`); the test thread changes a link's fault with a plain call, which
takes effect on the next chunk of every connection, open or new:

    with ProxyHub() as hub:
        link = hub.proxy("gcp->aws", upstream_port)     # listens on 127.0.0.1:<free port>
        link.blackhole()                                # accept, swallow, never answer
        link.cut("up")                                  # one way: client -> server lost, answers still flow
        link.delay(3.0)                                 # each chunk waits 3 s, both ways
        link.drip(1, 0.5)                               # the answer arrives one byte every 0.5 s
        link.reset()                                    # RST on every connection (SO_LINGER 0)
        link.drop()                                     # nobody listens: connections refused
        link.heal()

Why bytes are swallowed rather than held: a request held by a partition and delivered after it heals is a real
thing, but it makes every fault's end time fuzzy; a swallowed stream is instead treated as a TCP connection that
timed out during the partition: when the link heals, a connection that lost bytes is reset, never resumed with a
hole in it. `reset` forwards what the client sent and resets the client when the answer comes back: the request
ran, the client cannot know (the unknown outcome that retries with the same `client_order_id` are for).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Flow = Literal["up", "down"]  # up: client -> server; down: server -> client
FlowChoice = Literal["up", "down", "both"]
RuleKind = Literal["pass", "swallow", "delay", "drip"]
T = TypeVar("T")

CONNECT_TIMEOUT = 5.0
CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Rule:
    """What happens to the bytes flowing one way."""

    kind: RuleKind = "pass"
    seconds: float = 0.0  # delay: added per chunk; drip: pause between slices
    nbytes: int = 0  # drip: slice size


PASS = Rule()
SWALLOW = Rule("swallow")


@dataclass(frozen=True, slots=True)
class Fault:
    """A link's whole state: a rule per direction, and connection-level faults."""

    name: str = "pass"
    up: Rule = PASS
    down: Rule = PASS
    refuse: bool = False  # drop: the listener is closed
    reset: bool = False  # reset: RST every connection

    def rule(self, flow: Flow) -> Rule:
        return self.up if flow == "up" else self.down


HEALED = Fault()


@dataclass(frozen=True, slots=True)
class LinkStats:
    accepted: int
    open: int
    bytes_up: int
    bytes_down: int
    swallowed: int
    resets: int


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    lost: bool = False  # bytes were swallowed: the stream has a hole and must never resume

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.server) if w is not None]


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a FIN: what a peer sees when a host drops the connection."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


class FaultProxy:
    """One link: listens on `127.0.0.1:port`, forwards to `upstream`, applies `fault`. Thread-safe controls."""

    def __init__(self, hub: ProxyHub, name: str, upstream: tuple[str, int], port: int = 0) -> None:
        self.hub = hub
        self.name = name
        self.upstream = upstream
        self.host = "127.0.0.1"
        self.port = port
        self.fault = HEALED
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._accepted = self._bytes_up = self._bytes_down = self._swallowed = self._resets = 0

    # ---- what tests use ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def heal(self) -> None:
        self.set(HEALED)

    def drop(self) -> None:
        """Connections refused (no listener) and open ones closed: a host that is down."""
        self.set(Fault("drop", SWALLOW, SWALLOW, refuse=True))

    def blackhole(self) -> None:
        """Accept, swallow, never answer, both ways: a host in a dark data centre."""
        self.set(Fault("blackhole", SWALLOW, SWALLOW))

    def cut(self, flow: Flow) -> None:
        """One way only: `up` loses what the client sends, `down` loses the answers (the request still runs)."""
        self.set(Fault(f"cut-{flow}", SWALLOW if flow == "up" else PASS, SWALLOW if flow == "down" else PASS))

    def delay(self, seconds: float, flow: FlowChoice = "both") -> None:
        """Each chunk waits `seconds` before it is forwarded (per chunk: a request and its answer add twice)."""
        rule = Rule("delay", seconds=seconds)
        self.set(Fault(f"delay-{seconds:g}s", rule if flow != "down" else PASS, rule if flow != "up" else PASS))

    def drip(self, nbytes: int, every: float, flow: FlowChoice = "down") -> None:
        """Forward `nbytes` every `every` seconds: never idle long enough for a per-read timeout to fire."""
        rule = Rule("drip", seconds=every, nbytes=max(1, nbytes))
        self.set(Fault(f"drip-{nbytes}B/{every:g}s", rule if flow != "down" else PASS,
                       rule if flow != "up" else PASS))

    def reset(self) -> None:
        """RST every open connection; a new one has its request forwarded and is reset when the answer comes."""
        self.set(Fault("reset", reset=True))

    def set(self, fault: Fault) -> None:
        self.hub.call(self._apply(fault))

    def stats(self) -> LinkStats:
        return LinkStats(self._accepted, len(self._connections), self._bytes_up, self._bytes_down,
                         self._swallowed, self._resets)

    # ---- on the hub's loop ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self._close_listener()
        for connection in list(self._connections):
            for writer in connection.writers():
                _rst(writer)
        self._connections.clear()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _apply(self, fault: Fault) -> None:
        before, self.fault = self.fault, fault
        if fault.refuse:
            await self._close_listener()
            for connection in list(self._connections):
                for writer in connection.writers():
                    _close(writer)
        elif self._server is None:
            await self.start()
        if fault.reset:
            for connection in list(self._connections):
                self._reset(connection)
        if before.up.kind == "swallow" or before.down.kind == "swallow":
            for connection in list(self._connections):
                if connection.lost:  # a stream with a hole: as if it timed out during the partition
                    self._reset(connection)

    def _reset(self, connection: _Connection) -> None:
        self._resets += 1
        for writer in connection.writers():
            _rst(writer)
        self._connections.discard(connection)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        connection = _Connection(client_writer)
        self._connections.add(connection)
        try:
            server_reader, server_writer = await asyncio.wait_for(asyncio.open_connection(*self.upstream),
                                                                  CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            self._reset(connection)
            return
        connection.server = server_writer
        try:
            await asyncio.gather(self._pump(connection, client_reader, server_writer, "up"),
                                 self._pump(connection, server_reader, client_writer, "down"))
        finally:
            for writer in connection.writers():
                _close(writer)
            self._connections.discard(connection)

    async def _pump(self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    flow: Flow) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if connection not in self._connections:
                    return
                rule = self.fault.rule(flow)
                if rule.kind == "swallow":
                    connection.lost = True  # an end of stream is swallowed too: the peer hears nothing
                    self._swallowed += len(data)
                    if not data:
                        return
                    continue
                if connection.lost:
                    self._reset(connection)
                    return
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                if self.fault.reset and flow == "down":
                    self._reset(connection)  # the request ran; its answer is lost with the connection
                    return
                await self._forward(data, writer, flow)
        except (ConnectionError, OSError):
            if connection in self._connections:
                self._reset(connection)

    async def _forward(self, data: bytes, writer: asyncio.StreamWriter, flow: Flow) -> None:
        rule = self.fault.rule(flow)
        if rule.kind == "delay":
            await asyncio.sleep(rule.seconds)
        if rule.kind == "drip":
            position = 0
            while position < len(data):
                rule = self.fault.rule(flow)
                size = rule.nbytes if rule.kind == "drip" else len(data)
                writer.write(data[position:position + size])
                await writer.drain()
                self._count(flow, min(size, len(data) - position))
                position += size
                if rule.kind == "drip" and position < len(data):
                    await asyncio.sleep(rule.seconds)
            return
        writer.write(data)
        await writer.drain()
        self._count(flow, len(data))

    def _count(self, flow: Flow, size: int) -> None:
        if flow == "up":
            self._bytes_up += size
        else:
            self._bytes_down += size


@dataclass
class ProxyHub:
    """The event loop that carries every proxy of a run, in a daemon thread; `close()` stops them all."""

    proxies: dict[str, FaultProxy] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._loop.run_forever, name="nemesis-proxies", daemon=True)
        self._thread.start()

    def call(self, work: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `work` on the hub's loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    def proxy(self, name: str, upstream: int | tuple[str, int], port: int = 0) -> FaultProxy:
        """A new link named `name` to `upstream` (a port on 127.0.0.1, or host and port), listening now."""
        if name in self.proxies:
            raise ValueError(f"link {name!r} exists already")
        target = ("127.0.0.1", upstream) if isinstance(upstream, int) else upstream
        link = FaultProxy(self, name, target, port)
        self.call(link.start())
        self.proxies[name] = link
        return link

    def discard(self, prefix: str) -> None:
        """Stop and forget every link whose name starts with `prefix` (a finished run's)."""
        for name in [n for n in self.proxies if n.startswith(prefix)]:
            with contextlib.suppress(Exception):
                self.call(self.proxies.pop(name).stop(), timeout=5)

    def heal_all(self) -> None:
        for link in self.proxies.values():
            if link.fault != HEALED:
                link.heal()

    def faulty(self) -> dict[str, str]:
        return {name: link.fault.name for name, link in self.proxies.items() if link.fault != HEALED}

    def close(self) -> None:
        if self._thread is None:
            return
        for link in self.proxies.values():
            with contextlib.suppress(Exception):
                self.call(link.stop(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = None
        self._loop.close()

    def __enter__(self) -> ProxyHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
