"""`ReplicaCluster`: real replica processes on 127.0.0.1, for tests, drills and end-to-end runbook checks.

Each replica is `python -m orchestrator.engine.replica serve` in its own process, on a free port chosen once (so
its URL survives restarts), with its own data directory under `base_dir`, every other replica as `--peer`, and
the first replica marked primary as the others' `--standby-of` (`ReplicaSpec.peers` narrows a replica's peers, to
model one that cannot hear the others, and `ReplicaSpec.via` makes it reach a named peer at another address: a dead
port, a `Blackhole`, a fault proxy). The control token is random, written to a 0600 file and passed with
`--token-file`, so it never appears on a command line or in the environment.

    with ReplicaCluster(tmp_path, [ReplicaSpec("p", "aws", primary=True), ReplicaSpec("s", "gcp")]) as cluster:
        cluster.start()
        client = cluster.client()
        client.submit_order(cluster.url("p"), ...)
        cluster.kill("p")                                  # SIGKILL: no flush, no goodbye
        client.promote(cluster.replica("s"), epoch=1)

Processes are stopped with SIGTERM (then SIGKILL) by `stop`, killed by `kill`, frozen by `pause` (SIGSTOP) and
thawed by `resume`; `close` (or leaving the `with`) kills whatever is left. Logs are in `base_dir/NAME.log`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orchestrator.core.model import Replica
from orchestrator.engine.client import HttpEngineClient
from orchestrator.engine.protocol import STATUS, TOKEN_ENV
from orchestrator.testbed.ports import free_port


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    name: str
    cloud: str
    primary: bool = False
    synchronous: bool = True
    sync_timeout: float = 2.0
    extra_args: tuple[str, ...] = ()
    peers: tuple[str, ...] | None = None  # names it lists with --peer; None: every other replica
    via: Mapping[str, str] = field(default_factory=dict)  # peer name -> the URL this replica uses for it


@dataclass
class _Running:
    spec: ReplicaSpec
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log_handle: Any = field(default=None, repr=False)


class Blackhole:
    """A TCP listener that accepts every connection and never answers: a peer in a dark data centre, as seen
    from a process whose packets still leave (each request waits for its full timeout). `url` is its address;
    `accepted` counts connections; `close` drops them all."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, 0), backlog=128)
        self.url = f"http://{host}:{self._listener.getsockname()[1]}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._held.append(connection)
            self.accepted += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        for connection in self._held:
            connection.close()
        self._thread.join(5)

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReplicaCluster:
    def __init__(self, base_dir: Path, specs: Sequence[ReplicaSpec], *, engine: str = "spot",
                 host: str = "127.0.0.1", peer_interval: float = 0.1, startup_timeout: float = 20.0,
                 python: str = sys.executable) -> None:
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.engine = engine
        self.host = host
        self.peer_interval = peer_interval
        self.startup_timeout = startup_timeout
        self.python = python
        self.token = secrets.token_urlsafe(24)
        self.token_file = self.base_dir / "control-token"
        self.token_file.write_text(self.token + "\n", encoding="utf-8")
        self.token_file.chmod(0o600)
        self.replicas: dict[str, _Running] = {}
        for spec in specs:
            self.replicas[spec.name] = _Running(spec, free_port(host), self.base_dir / spec.name,
                                                self.base_dir / f"{spec.name}.log")
        self._http = httpx.Client(timeout=httpx.Timeout(2.0, connect=0.5))

    # --- addresses ---------------------------------------------------------------------------------------

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.replicas[name].port}"

    def replica(self, name: str) -> Replica:
        """The core's `Replica` for `name`: site = its cloud, control_url = where it listens."""
        running = self.replicas[name]
        return Replica(name=name, engine=self.engine, site=running.spec.cloud, instance=f"pid-of-{name}",
                       control_url=self.url(name))

    def data_dir(self, name: str) -> Path:
        return self.replicas[name].data_dir

    def client(self, **options: Any) -> HttpEngineClient:
        """An engine client holding this cluster's token; close it (or use `with`)."""
        return HttpEngineClient(token=self.token, **options)

    def command(self, name: str) -> list[str]:
        running = self.replicas[name]
        spec = running.spec
        argv = [self.python, "-m", "orchestrator.engine.replica", "serve", "--id", name, "--host", self.host,
                "--port", str(running.port), "--data", str(running.data_dir), "--cloud", spec.cloud,
                "--token-file", str(self.token_file), "--sync-timeout", str(spec.sync_timeout),
                "--peer-interval", str(self.peer_interval), "--sync" if spec.synchronous else "--async"]
        primaries = [other for other in self.replicas.values() if other.spec.primary]
        if spec.primary:
            argv.append("--primary")
        elif primaries:
            argv += ["--standby-of", spec.via.get(primaries[0].spec.name, self.url(primaries[0].spec.name))]
        for other in self.replicas if spec.peers is None else spec.peers:
            if other != name:
                argv += ["--peer", spec.via.get(other, self.url(other))]
        return argv + list(spec.extra_args)

    # --- processes ---------------------------------------------------------------------------------------

    def start(self, *names: str) -> None:
        """Start the named replicas (all if none) and wait until each answers `GET /v1/status`."""
        chosen = list(names) or list(self.replicas)
        environment = {key: value for key, value in os.environ.items() if key != TOKEN_ENV}
        environment["PYTHONUNBUFFERED"] = "1"
        for name in chosen:
            running = self.replicas[name]
            if running.process is not None and running.process.poll() is None:
                continue
            running.log_handle = running.log_path.open("ab")
            running.process = subprocess.Popen(self.command(name), stdout=running.log_handle,
                                               stderr=subprocess.STDOUT, env=environment)
        for name in chosen:
            self._wait_ready(name)

    def _wait_ready(self, name: str) -> None:
        running = self.replicas[name]
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert running.process is not None
            if running.process.poll() is not None:
                raise RuntimeError(f"replica {name} exited with {running.process.returncode}:\n{self.log(name)}")
            with contextlib.suppress(httpx.HTTPError):
                if self._http.get(self.url(name) + STATUS).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"replica {name} did not answer within {self.startup_timeout}s:\n{self.log(name)}")

    def _signal(self, name: str, signum: int, wait: float | None) -> None:
        running = self.replicas[name]
        process = running.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signum)
        if wait is not None:
            try:
                process.wait(wait)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            running.process = None
            if running.log_handle is not None:
                running.log_handle.close()
                running.log_handle = None

    def stop(self, name: str, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        self.resume(name)
        self._signal(name, signal.SIGTERM, timeout)

    def kill(self, name: str) -> None:
        """SIGKILL: the replica dies between any two instructions, as in a power cut of its process."""
        self._signal(name, signal.SIGKILL, 10.0)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process stays, its sockets accept connections, nothing answers (a hung host)."""
        self._signal(name, signal.SIGSTOP, None)

    def resume(self, name: str) -> None:
        self._signal(name, signal.SIGCONT, None)

    def restart(self, name: str, *, hard: bool = False) -> None:
        """Stop (or with `hard`, kill) and start again on the same port and data directory."""
        if hard:
            self.kill(name)
        else:
            self.stop(name)
        self.start(name)

    def running(self, name: str) -> bool:
        process = self.replicas[name].process
        return process is not None and process.poll() is None

    def close(self) -> None:
        for name in self.replicas:
            self.kill(name)
        self._http.close()

    def __enter__(self) -> ReplicaCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- observation ---------------------------------------------------------------------------------------

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.replicas[name].log_path
        return path.read_text(encoding="utf-8", errors="replace")[-tail:] if path.exists() else ""

    def status(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self._http.get(self.url(name) + STATUS).json()
        return body

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        """Poll `condition` (exceptions count as False) until it holds; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                if condition():
                    return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def wait_caught_up(self, names: Sequence[str], seq: int, timeout: float = 10.0) -> None:
        """Wait until each named replica has applied at least `seq`."""

        def caught_up() -> bool:
            return all(self.status(name)["applied_seq"] >= seq for name in names)

        self.wait_for(caught_up, timeout, f"{', '.join(names)} to apply seq {seq}")

    def wait_replicated(self, primary: str, timeout: float = 10.0) -> None:
        """Wait until a standby on another cloud holds everything `primary` has journaled."""

        def replicated() -> bool:
            status = self.status(primary)
            return bool(status["replicated_seq"] is not None and status["replicated_seq"] >= status["last_seq"])

        self.wait_for(replicated, timeout, f"{primary}'s journal to be held on another cloud")
