"""The daemon's read-only HTTP surface (`/metrics`, `/healthz`, `/status`), served with the replica's limits.

Why not `http.server.ThreadingHTTPServer`: one thread per connection, and no timeout on a connection that sends
nothing, so 300 idle connections made 304 threads and 2,000 half-open ones left `/status` unanswered for a minute
after they closed; a client that hung up mid-answer printed a BrokenPipeError traceback. Here one event loop in one
background thread serves every connection (uvicorn with `orchestrator.engine.replica.serving`'s limits: a whole
request within a few seconds or the connection is dropped, a connection cap, bounded headers, no body), and the
route handlers, plain functions that read the daemon's state, run on a small fixed pool of worker threads so that
a slow one never stalls the loop. A hangup is one line through `report`.

    server = StatusServer("127.0.0.1", 9464, {"/status": lambda: (200, b"{}", "application/json")})
    server.start()          # listening when it returns; ListenError (exit 4) if the address cannot be had
    server.address          # ("127.0.0.1", 9464): the bound address (port 0 asks for any free port)
    server.stop()
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from orchestrator.core.errors import ConfigError
from orchestrator.engine.replica.serving import Limits, ListenError, Report, bind, log_report, uvicorn_config

Handler = Callable[[], tuple[int, bytes, str]]  # -> (HTTP status, body, content type)

LIMITS = Limits(max_body=0, request_timeout=5.0, keep_alive=5, max_connections=64, backlog=128,
                max_header_bytes=8 * 1024)
WORKERS = 2  # threads that run route handlers, whatever the number of connections
START_TIMEOUT = 10.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _App:
    """The ASGI application: GET (or HEAD) of an exact path runs its handler on the worker pool."""

    def __init__(self, routes: Mapping[str, Handler], workers: ThreadPoolExecutor, report: Report) -> None:
        self.routes = dict(routes)
        self.workers = workers
        self.report = report

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; nothing else is served
        request = Request(scope, receive)
        response = await self._answer(request)
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _json(405, b'{"error": "method not allowed: this endpoint is read-only"}', allow="GET, HEAD")
        if request.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in request.headers:
            return _json(413, b'{"error": "a request body is not accepted here"}', close=True)
        handler = self.routes.get(request.url.path)
        if handler is None:
            return _json(404, b'{"error": "not found"}')
        try:
            code, body, content_type = await asyncio.get_running_loop().run_in_executor(self.workers, handler)
        except Exception as error:  # a bug in a handler: one line, and a 500, never a dead server
            self.report(f"{request.url.path}: handler failed: {type(error).__name__}: {error}")
            return _json(500, b'{"error": "internal error"}')
        return Response(body, status_code=code, headers={"content-type": content_type})  # exactly as given


def _json(code: int, body: bytes, *, close: bool = False, allow: str | None = None) -> Response:
    headers = {"connection": "close"} if close else {}
    if allow is not None:
        headers["allow"] = allow
    return Response(body, status_code=code, media_type="application/json", headers=headers)


class StatusServer:
    """Serves `routes` (path -> handler) on `host:port` from a background thread; see the module's docstring.

    `allow_remote` must be True to listen on anything but a loopback address (the status and metrics describe the
    whole deployment); otherwise `start` raises ConfigError (exit 2). `report` receives one-line events (a client
    hangup, connections dropped at the cap or for slowness, a failing handler); by default the
    `orchestrator.http` logger. `limits` defaults to `LIMITS`."""

    def __init__(self, host: str, port: int, routes: Mapping[str, Handler], *, allow_remote: bool = False,
                 report: Report = log_report, limits: Limits = LIMITS) -> None:
        self.host = host
        self.port = port
        self.routes = routes
        self.allow_remote = allow_remote
        self.report = report
        self.limits = limits
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._workers: ThreadPoolExecutor | None = None
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually listened on; only after `start`."""
        if self._address is None:
            raise RuntimeError("StatusServer.address before start()")
        return self._address

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> None:
        """Bind, start serving in a background thread, and return once it accepts connections. ListenError (exit
        4, one line naming the address) if the port is in use or the host cannot be bound; ConfigError (exit 2)
        for a port out of range or a non-loopback host without `allow_remote`."""
        if self._thread is not None:
            return
        if not self.allow_remote and not is_loopback(self.host):
            raise ConfigError(f"refusing to listen on {self.host}:{self.port}: not a loopback address, and the "
                              "status and metrics describe the whole deployment; opt in explicitly to serve them "
                              "beyond this host")
        sock = bind(self.host, self.port, self.limits.backlog)
        self._address = (self.host, int(sock.getsockname()[1]))
        self._workers = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="failover-http-handler")
        config = uvicorn_config(_App(self.routes, self._workers, self.report), self.limits, report=self.report,
                                configure_logging=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="failover-http")
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise ListenError(f"cannot serve on {self.host}:{self.port}: the HTTP server did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (open connections are closed) and wait for the thread; harmless if not started."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._workers is not None:
            self._workers.shutdown(wait=False, cancel_futures=True)
        self._server = self._thread = self._workers = None

    def __enter__(self) -> StatusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
