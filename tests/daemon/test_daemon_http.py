"""The daemon's read-only HTTP surface on its own (`StatusServer`, issue 12 item 6): idle connections cost no
threads, a flood of half-open connections leaves `/status` answering, a client that hangs up mid-answer is one
line and no traceback, and an address that cannot be had is one error with exit code 4."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from orchestrator.core.errors import EXIT_BAD_INPUT, EXIT_CALL_FAILED, ConfigError
from orchestrator.drivers.daemon_http import LIMITS, Handler, StatusServer
from orchestrator.engine.replica.serving import Limits, ListenError


def threads() -> int:
    """OS threads of this process (what the old server grew by one per connection)."""
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def json_route(body: bytes) -> Handler:
    return lambda: (200, body, "application/json")


class Reports(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
def make_server(reports: Reports) -> Iterator[Callable[..., StatusServer]]:
    started: list[StatusServer] = []

    def make(routes: dict[str, Handler] | None = None, **options: object) -> StatusServer:
        server = StatusServer("127.0.0.1", 0, routes or {"/status": json_route(b'{"ok": true}')},
                              report=reports, **options)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def status_answers(server: StatusServer) -> bool:
    response = httpx.get(server.url + "/status", timeout=5.0)
    return response.status_code == 200 and response.json() == {"ok": True}


def test_routes_and_refusals(make_server: Callable[..., StatusServer]) -> None:
    server = make_server({"/status": json_route(b'{"ok": true}'),
                          "/metrics": lambda: (200, b"x_total 1\n", "text/plain; version=0.0.4")})
    assert status_answers(server)
    assert httpx.get(server.url + "/status?verbose=1").status_code == 200  # a query string changes nothing
    metrics = httpx.get(server.url + "/metrics")
    assert (metrics.text, metrics.headers["content-type"]) == ("x_total 1\n", "text/plain; version=0.0.4")
    assert httpx.get(server.url + "/nope").status_code == 404
    assert httpx.post(server.url + "/status").status_code == 405
    assert httpx.request("GET", server.url + "/status", content=b"x" * 100).status_code == 413
    assert httpx.head(server.url + "/status").status_code == 200


def test_300_idle_connections_cost_no_threads_and_status_still_answers(
        make_server: Callable[..., StatusServer]) -> None:
    server = make_server()
    assert status_answers(server)
    before = threads()
    idle = [socket.create_connection(server.address, timeout=30) for _ in range(300)]
    try:
        assert status_answers(server)  # the oldest idle connection makes room
        assert threads() - before <= 3, (before, threads())
    finally:
        for sock in idle:
            sock.close()
    assert threads() - before <= 3


def open_half(address: tuple[str, int], count: int) -> list[socket.socket]:
    """`count` connections, each opened without waiting (most wait in the backlog) and, where the handshake is
    done, half a request line sent."""
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(address)
        assert code in (0, errno.EINPROGRESS), code
        sockets.append(sock)
    for sock in sockets:
        with contextlib.suppress(OSError):  # not connected yet, or already dropped: half-open either way
            sock.send(b"GET /stat")
    return sockets


def test_after_2000_half_open_connections_close_status_answers_at_once(
        make_server: Callable[..., StatusServer]) -> None:
    server = make_server()
    before = threads()
    flood = open_half(server.address, 2000)
    assert threads() - before <= 3
    for sock in flood:
        sock.close()
    assert status_answers(server)  # one request, a normal 5 s timeout, no retry


def test_a_half_sent_request_is_dropped(make_server: Callable[..., StatusServer]) -> None:
    server = make_server(limits=Limits(max_body=0, request_timeout=1.0, max_connections=8))
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        assert sock.recv(1) == b""  # closed by the server, not by our 30 s timeout
    assert status_answers(server)


def test_a_client_hanging_up_mid_answer_is_one_line_and_no_traceback(
        make_server: Callable[..., StatusServer], reports: Reports, capfd: pytest.CaptureFixture[str]) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow() -> tuple[int, bytes, str]:
        entered.set()
        release.wait(30)
        return 200, b'{"ok": true}', "application/json"

    server = make_server({"/status": json_route(b'{"ok": true}'), "/slow": slow})
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert entered.wait(30)
    assert status_answers(server)  # a slow handler does not stall the server
    release.set()
    assert status_answers(server)
    hangups = [line for line in reports if "hung up" in line]
    assert len(hangups) == 1 and "GET /slow" in hangups[0] and "\n" not in hangups[0]
    assert "Traceback" not in capfd.readouterr().err


def test_a_failing_handler_is_a_500_and_one_line(make_server: Callable[..., StatusServer], reports: Reports) -> None:
    def broken() -> tuple[int, bytes, str]:
        raise KeyError("engines")

    server = make_server({"/status": json_route(b'{"ok": true}'), "/broken": broken})
    assert httpx.get(server.url + "/broken").status_code == 500
    assert status_answers(server)
    assert reports == ["/broken: handler failed: KeyError: 'engines'"]


def test_an_address_that_cannot_be_had_is_one_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as in_use:
            StatusServer("127.0.0.1", port, {}).start()
    assert in_use.value.exit_code == EXIT_CALL_FAILED == 4
    assert str(in_use.value) == f"cannot listen on 127.0.0.1:{port}: Address already in use"
    with pytest.raises(ListenError, match=r"cannot listen on 127\.0\.0\.2\.invalid:80: unknown host"):
        StatusServer("127.0.0.2.invalid", 80, {}, allow_remote=True).start()
    with pytest.raises(ListenError, match=r"cannot listen on 192\.0\.2\.1:9464: Cannot assign requested address"):
        StatusServer("192.0.2.1", 9464, {}, allow_remote=True).start()  # not an address of this host
    with pytest.raises(ConfigError, match="between 0 and 65535") as bad_port:
        StatusServer("127.0.0.1", 99999, {}).start()
    assert bad_port.value.exit_code == EXIT_BAD_INPUT
    with pytest.raises(ConfigError, match="not a loopback address"):
        StatusServer("0.0.0.0", 0, {}).start()


def test_stop_frees_the_port_and_start_is_idempotent(make_server: Callable[..., StatusServer]) -> None:
    server = make_server()
    server.start()  # already serving: nothing happens
    host, port = server.address
    server.stop()
    server.stop()
    with StatusServer(host, port, {"/status": json_route(b'{"ok": true}')}) as again:
        assert status_answers(again)
    assert LIMITS.max_connections == 64
