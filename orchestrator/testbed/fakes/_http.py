"""What every API-shaped fake shares: requests and responses as plain data, fault injection, and two ways to serve.

A fake is a `FakeApi`: `handle(FakeRequest) -> FakeResponse`, with its state behind a lock. It can be served

- by `FakeServer`, a stdlib `ThreadingHTTPServer` on a port (no dependency; what drills and benchmarks use), or
- inside pytest-httpserver: `httpserver.expect_request(re.compile(".*")).respond_with_handler(werkzeug_handler(api))`.

Faults are injected in-process (`fail_next`, `hang_next`) or, for a fake running in another process, over HTTP:
`POST /_fake/fault {"status": 429, "count": 2, "retry_after": 1, "path": "regex", "hang": 0}`, `POST /_fake/reset`,
`GET /_fake/requests` (the request log), and each fake's own `/_fake/...` state endpoints. A fault's body and headers
are the API's own for that status (`_error_body`, `_error_headers`: a 429 carries the cloud's real throttling body).
`received` keeps every API request whole (query included), for tests that check which call was made; `before_next`
changes the state just before a request arrives (a race: the VM deallocated between our read and our write).
"""

from __future__ import annotations

import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class FakeRequest:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    host: str = "127.0.0.1"

    def json(self) -> Any:
        return json.loads(self.body) if self.body else {}


@dataclass
class FakeResponse:
    status: int = 200
    body: Any = None  # JSON-able, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()


@dataclass
class Fault:
    """The next `count` requests whose path matches `path` fail with `status` (after `hang` seconds), or, with
    `status` 0, only hang (a request that never answers within the client's timeout)."""

    status: int = 503
    count: int = 1
    retry_after: float | None = None
    hang: float = 0.0
    path: str | None = None
    body: Any = None


class FakeApi(ABC):
    """Routing, logging and faults; subclasses implement `_dispatch` and `_error_body` in their API's shapes."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str]] = []
        self.received: list[FakeRequest] = []
        self._faults: list[Fault] = []
        self._hooks: list[tuple[str, Callable[[], None]]] = []
        self._released = threading.Event()

    # --- fault injection -----------------------------------------------------------------------------------------

    def fail_next(
        self, status: int = 503, *, count: int = 1, retry_after: float | None = None, path: str | None = None
    ) -> None:
        self.add_fault(Fault(status=status, count=count, retry_after=retry_after, path=path))

    def hang_next(self, seconds: float, *, count: int = 1, path: str | None = None) -> None:
        self.add_fault(Fault(status=0, count=count, hang=seconds, path=path))

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self._faults.append(fault)

    def before_next(self, path: str, action: Callable[[], None]) -> None:
        """Run `action` (under the lock) just before the next request whose path matches the regex `path`."""
        with self.lock:
            self._hooks.append((path, action))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def release(self) -> None:
        """End every hanging request now (on shutdown)."""
        self._released.set()

    def reset(self) -> None:
        """Back to the initial state: no faults, an empty request log. Subclasses also reset their resources."""
        with self.lock:
            self._faults.clear()
            self._hooks.clear()
            self.requests.clear()
            self.received.clear()
            self._released.clear()

    # --- handling ------------------------------------------------------------------------------------------------

    def handle(self, request: FakeRequest) -> FakeResponse:
        if request.path.startswith("/_fake/"):
            return self._control(request)
        with self.lock:
            self.requests.append((request.method, request.path))
            self.received.append(request)
            self._run_hooks(request.path)
            fault = self._take_fault(request.path)
        if fault is not None:
            if fault.hang:
                self._released.wait(fault.hang)
            if fault.status:
                headers = self._error_headers(fault.status)
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                body = fault.body if fault.body is not None else self._error_body(fault.status, "injected fault")
                return FakeResponse(fault.status, body, headers)
        with self.lock:
            return self._dispatch(request)

    def _run_hooks(self, path: str) -> None:
        for hook in list(self._hooks):
            if re.search(hook[0], path):
                self._hooks.remove(hook)
                hook[1]()

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.path is None or re.search(fault.path, path):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _control(self, request: FakeRequest) -> FakeResponse:
        if request.path == "/_fake/fault" and request.method == "POST":
            spec = request.json()
            self.add_fault(Fault(**{key: spec[key] for key in Fault.__dataclass_fields__ if key in spec}))
            return FakeResponse(200, {"ok": True})
        if request.path == "/_fake/reset" and request.method == "POST":
            self.reset()
            return FakeResponse(200, {"ok": True})
        if request.path == "/_fake/requests":
            with self.lock:
                return FakeResponse(200, [f"{method} {path}" for method, path in self.requests])
        with self.lock:
            return self._control_state(request)

    @abstractmethod
    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        """Answer one API request (called with the lock held)."""

    @abstractmethod
    def _error_body(self, status: int, message: str) -> Any:
        """An error body in the API's own shape."""

    def _error_headers(self, status: int) -> dict[str, str]:
        """The headers the API sends with an error of this status (a throttled answer's rate-limit headers)."""
        return {}

    def _control_state(self, request: FakeRequest) -> FakeResponse:
        """The fake's own `/_fake/...` endpoints (state changes for drills); default: none."""
        return FakeResponse(404, {"error": f"no control endpoint {request.method} {request.path}"})


class FakeServer:
    """A `FakeApi` on `host:port` (0: any free port), served by threads; `with FakeServer(api) as server: server.url`.

    Request threads are daemons and hanging requests are released on `stop`, so stopping never waits on a client.
    """

    def __init__(self, api: FakeApi, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = api
        handler = type("Handler", (_Handler,), {"api": api})
        self._server = _QuietServer((host, port), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-{self.url}", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the command-line entry point)."""
        try:
            self._server.serve_forever()
        finally:
            self.api.release()
            self._server.server_close()

    def stop(self) -> None:
        self.api.release()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timed out on a hanging request) is expected here; nothing to report."""


class _Handler(BaseHTTPRequestHandler):
    api: FakeApi
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment, without Nagle: otherwise a keep-alive client waits ~40 ms for a
    # delayed ACK on every call, and the fake would be slower than the cloud it stands for.
    wbufsize = -1
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = FakeRequest(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
            host=self.headers.get("Host") or "127.0.0.1",
        )
        response = self.api.handle(request)
        payload = response.encoded()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


def werkzeug_handler(api: FakeApi) -> Callable[[Any], Any]:
    """The fake as a pytest-httpserver handler (werkzeug Request → Response); werkzeug is imported only here."""
    from werkzeug.wrappers import Response

    def handler(request: Any) -> Any:
        fake_request = FakeRequest(
            method=request.method,
            path=request.path,
            query=dict(request.args.items()),
            headers={key.lower(): value for key, value in request.headers.items()},
            body=request.get_data(),
            host=request.host,
        )
        response = api.handle(fake_request)
        return Response(response.encoded(), status=response.status, headers=response.headers,
                        content_type="application/json")

    return handler
