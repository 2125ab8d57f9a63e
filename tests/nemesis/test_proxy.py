"""The fault proxy against a trivial echo server and a trivial HTTP server: each fault does what it says."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from orchestrator.testbed.proxy import FaultProxy, ProxyHub

pytestmark = pytest.mark.nemesis


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: Any = self.server
        while True:
            try:
                data = self.request.recv(4096)
            except OSError:
                return
            if not data:
                return
            server.received.append(data)
            self.request.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.received: list[bytes] = []


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def hub() -> Iterator[ProxyHub]:
    with ProxyHub() as proxies:
        yield proxies


def link_to(hub: ProxyHub, server: socketserver.TCPServer | ThreadingHTTPServer) -> FaultProxy:
    return hub.proxy(f"test->{server.server_address[1]}", int(server.server_address[1]))


def connect(link: FaultProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection((link.host, link.port), timeout=timeout)


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_pass_forwards_both_ways(hub: ProxyHub, echo: EchoServer) -> None:
    link = link_to(hub, echo)
    with connect(link) as conn:
        conn.sendall(b"hello")
        assert conn.recv(100) == b"hello"
    wait_until(lambda: link.stats().bytes_up == link.stats().bytes_down == 5)


def test_drop_refuses_new_connections_and_closes_open_ones(hub: ProxyHub, echo: EchoServer) -> None:
    link = link_to(hub, echo)
    conn = connect(link)
    conn.sendall(b"a")
    assert conn.recv(10) == b"a"
    link.drop()
    assert conn.recv(10) == b""  # closed under it
    with pytest.raises(ConnectionRefusedError):
        connect(link)
    link.heal()
    with connect(link) as again:  # same port, listening again
        again.sendall(b"b")
        assert again.recv(10) == b"b"


def test_blackhole_accepts_and_never_answers_then_resets_the_holed_stream(hub: ProxyHub, echo: EchoServer) -> None:
    link = link_to(hub, echo)
    link.blackhole()
    conn = connect(link, timeout=0.5)
    conn.sendall(b"lost")
    with pytest.raises(TimeoutError):
        conn.recv(10)
    assert echo.received == []
    link.heal()
    conn.settimeout(5)
    with pytest.raises(ConnectionResetError):  # bytes were lost: never resumed with a hole in the stream
        conn.recv(10)
    with connect(link) as fresh:
        fresh.sendall(b"ok")
        assert fresh.recv(10) == b"ok"


def test_one_way_cuts(hub: ProxyHub, echo: EchoServer) -> None:
    link = link_to(hub, echo)
    link.cut("down")  # the request arrives and runs; the answer is lost
    with connect(link, timeout=0.5) as conn:
        conn.sendall(b"ran")
        with pytest.raises(TimeoutError):
            conn.recv(10)
    wait_until(lambda: echo.received == [b"ran"])
    link.cut("up")  # nothing arrives
    with connect(link, timeout=0.5) as conn:
        conn.sendall(b"never")
        with pytest.raises(TimeoutError):
            conn.recv(10)
    assert echo.received == [b"ran"]


def test_reset_resets_open_connections_and_loses_new_answers(hub: ProxyHub, echo: EchoServer) -> None:
    link = link_to(hub, echo)
    conn = connect(link)
    conn.sendall(b"x")
    assert conn.recv(10) == b"x"
    link.reset()
    with pytest.raises(ConnectionResetError):
        conn.recv(10)
    with connect(link) as fresh:
        fresh.sendall(b"ran-but-unknown")
        with pytest.raises(ConnectionResetError):
            fresh.recv(100)
    wait_until(lambda: b"ran-but-unknown" in echo.received)  # the request did reach the server
    assert link.stats().resets >= 2


def test_delay_adds_latency_per_chunk(hub: ProxyHub, echo: EchoServer) -> None:
    link = link_to(hub, echo)
    link.delay(0.3)
    with connect(link, timeout=10) as conn:
        began = time.monotonic()
        conn.sendall(b"slow")
        assert conn.recv(10) == b"slow"
        assert time.monotonic() - began >= 0.6  # once each way


class _Slow(BaseHTTPRequestHandler):
    BODY = b"0123456789" * 2

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        self.wfile.write(self.BODY)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_drip_never_trips_a_per_read_timeout(hub: ProxyHub) -> None:
    """What hole 4 is made of: an answer a few bytes at a time outlives any per-read timeout."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        link = link_to(hub, server)
        direct = httpx.get(f"http://127.0.0.1:{server.server_address[1]}/", timeout=2.0)
        size = len(direct.content) + sum(len(k) + len(v) + 4 for k, v in direct.headers.items())
        link.drip(16, 0.05)
        began = time.monotonic()
        answer = httpx.get(link.url + "/", timeout=httpx.Timeout(1.0))  # each read waits 0.05 s at most
        took = time.monotonic() - began
        assert answer.content == _Slow.BODY
        assert took >= (size // 16) * 0.05  # the whole answer, one slice per pause
    finally:
        server.shutdown()
        server.server_close()


def test_faults_are_per_link(hub: ProxyHub, echo: EchoServer) -> None:
    cut, fine = hub.proxy("a->echo", int(echo.server_address[1])), hub.proxy("b->echo", int(echo.server_address[1]))
    cut.drop()
    assert hub.faulty() == {"a->echo": "drop"}
    with connect(fine) as conn:
        conn.sendall(b"b")
        assert conn.recv(10) == b"b"
    hub.heal_all()
    assert hub.faulty() == {}
