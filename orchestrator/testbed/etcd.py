"""Real etcd members on loopback, for tests, drills and local trials of the HA orchestrator.

Why real members and not a fake: what the etcd store must get right (transactions, revisions, lease expiry, a
member dying, quorum loss) is exactly what a fake would have to imitate. Debian's `etcd-server` starts in well
under a second, so the tests use the real thing and kill real processes.

No pytest in here: the daemon tests and `failover drill` use it too. Each member preallocates a 64 MB WAL, so
`cleanup()` (or leaving the `with` block) removes the data directories; a cluster that made its own temporary
base directory removes that as well.

    with EtcdCluster(size=3) as cluster:      # started, and cleaned up on exit
        store = open_store(cluster.url)       # etcd://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
        cluster.stop_member(0)                # SIGKILL
        cluster.restart_member(0)
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from orchestrator.testbed.ports import free_ports

__all__ = ["EtcdCluster", "EtcdClusterError", "etcd_binary"]

START_TIMEOUT = 15.0  # seconds for a member (or the whole cluster) to answer /health
_PORT_ATTEMPTS = 5  # a port we picked may be taken by someone else before etcd binds it: pick again


class EtcdClusterError(RuntimeError):
    """A member would not start, or the cluster never became healthy. The message names the member's log."""


def etcd_binary() -> str | None:
    """The etcd server binary: `$FAILOVER_ETCD_BIN`, else `etcd` on PATH (Debian's etcd-server: /usr/bin/etcd)."""
    explicit = os.environ.get("FAILOVER_ETCD_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("etcd")


@dataclass
class _Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


class EtcdCluster:
    """`size` etcd members on 127.0.0.1 with fast elections (heartbeat 50 ms, election timeout 500 ms), so that a
    killed leader is replaced in about a second and lease TTLs of one second are honoured."""

    def __init__(
        self,
        size: int = 1,
        base_dir: Path | str | None = None,
        *,
        binary: str | None = None,
        heartbeat_ms: int = 50,
        election_ms: int = 500,
    ) -> None:
        if size < 1:
            raise ValueError(f"an etcd cluster needs at least one member, not {size}")
        found = binary or etcd_binary()
        if found is None:
            raise EtcdClusterError("etcd binary not found: install Debian's etcd-server (or set FAILOVER_ETCD_BIN)")
        self.binary = found
        self.size = size
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self._own_base = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="failover-etcd-")) if base_dir is None else Path(base_dir)
        self._members: list[_Member] = []
        self._token = ""

    # --- what callers use -----------------------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """`127.0.0.1:PORT` of every member, in member order (running or not)."""
        return [member.endpoint for member in self._members]

    @property
    def url(self) -> str:
        """The store URL naming every member: `etcd://127.0.0.1:P1,127.0.0.1:P2,...`."""
        if not self._members:
            raise EtcdClusterError("the cluster has not been started")
        return "etcd://" + ",".join(self.endpoints)

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Start every member and wait until the cluster has a leader. Returns self."""
        if self._members:
            raise EtcdClusterError("the cluster is already started")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self._kill_all)  # no etcd outlives the interpreter, even if nobody calls cleanup()
        for attempt in range(_PORT_ATTEMPTS):
            self._members = self._plan_members()
            for index in range(self.size):
                self._launch(index)
            try:
                self.wait_healthy(timeout=timeout)
                return self
            except EtcdClusterError:
                clash = any(self._lost_its_port(m) for m in self._members)
                self._kill_all()
                self._remove_data()
                if not clash or attempt == _PORT_ATTEMPTS - 1:
                    self._members = []
                    raise
        raise AssertionError("unreachable")

    def stop_member(self, index: int) -> None:
        """SIGKILL member `index` (no clean shutdown: that is what a crashed machine looks like) and reap it."""
        member = self._members[index]
        if member.process is not None and member.process.poll() is None:
            member.process.send_signal(signal.SIGKILL)
            member.process.wait(timeout=10)
        member.process = None
        self._close_log(member)

    def restart_member(self, index: int, wait: bool = True, timeout: float = START_TIMEOUT) -> None:
        """Start member `index` again on its old data directory and ports; wait until it answers /health if there
        is a quorum to elect a leader with (`wait=False` to just launch it)."""
        self.stop_member(index)
        self._launch(index)
        if wait:
            self.wait_healthy([index], timeout=timeout)

    def pause_member(self, index: int) -> None:
        """SIGSTOP member `index`: alive to the kernel (its ports accept connections) but answering nothing, the
        way a machine in a stalled VM or a long GC pause looks to its peers."""
        process = self._members[index].process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGSTOP)

    def resume_member(self, index: int) -> None:
        """SIGCONT member `index` after `pause_member`."""
        process = self._members[index].process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)

    def is_running(self, index: int) -> bool:
        process = self._members[index].process
        return process is not None and process.poll() is None

    def leader_index(self) -> int | None:
        """Which member is the raft leader now, as seen by the first running member that answers; None if none."""
        ids: dict[str, int] = {}
        leader = None
        for index, member in enumerate(self._members):
            if not self.is_running(index):
                continue
            status = _post_json(f"http://{member.endpoint}/v3/maintenance/status", {}, timeout=1.0)
            if status is None:
                continue
            header = status.get("header")
            if isinstance(header, dict):
                ids[str(header.get("member_id"))] = index
            leader = leader or str(status.get("leader"))
        return None if leader is None else ids.get(leader)

    def wait_healthy(self, indices: list[int] | None = None, timeout: float = START_TIMEOUT) -> None:
        """Until each member in `indices` (default: every member not stopped on purpose) reports a leader on /health.
        EtcdClusterError if one has exited, with its last error line, or after `timeout`."""
        every = range(len(self._members)) if indices is None else indices
        wanted = [i for i in every if self._members[i].process is not None]  # not those stopped on purpose
        deadline = time.monotonic() + timeout
        pending = set(wanted)
        while pending:
            for index in sorted(pending):
                member = self._members[index]
                if member.process is not None and member.process.poll() is not None:
                    raise EtcdClusterError(
                        f"etcd member {member.name} exited with {member.process.returncode}: {_last_error(member)}"
                    )
                health = _get_json(f"http://{member.endpoint}/health", timeout=0.5)
                if health is not None and str(health.get("health")) == "true":
                    pending.discard(index)
            if pending and time.monotonic() > deadline:
                names = ", ".join(self._members[i].name for i in sorted(pending))
                last = _last_error(self._members[min(pending)])
                raise EtcdClusterError(f"etcd members {names} not healthy after {timeout:g}s: {last}")
            if pending:
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGKILL every member; data directories stay (see `cleanup`)."""
        self._kill_all()

    def cleanup(self) -> None:
        """Stop every member and delete the data directories (and the base directory if this object made it)."""
        self._kill_all()
        self._remove_data()
        atexit.unregister(self._kill_all)
        if self._own_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        if not self._members:
            self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        running = sum(self.is_running(i) for i in range(len(self._members)))
        return f"<EtcdCluster {running}/{self.size} running {','.join(self.endpoints)}>"

    # --- plumbing -------------------------------------------------------------------------------------------------

    def _plan_members(self) -> list[_Member]:
        ports = free_ports(2 * self.size)
        tag = f"{os.getpid()}-{time.monotonic_ns() % 1_000_000}"
        self._token = f"failover-{tag}"  # one per cluster: members of different test clusters never join up
        return [
            _Member(
                name=f"m{i}",
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                data_dir=self.base_dir / f"m{i}-{tag}.etcd",
                log_path=self.base_dir / f"m{i}-{tag}.log",
            )
            for i in range(self.size)
        ]

    def _launch(self, index: int) -> None:
        member = self._members[index]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self._members)
        client_url = f"http://{member.endpoint}"
        command = [
            self.binary, "--name", member.name, "--data-dir", str(member.data_dir),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", initial, "--initial-cluster-token", self._token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(self.heartbeat_ms), "--election-timeout", str(self.election_ms),
            "--logger", "zap", "--log-outputs", "stderr",
        ]
        member.log = open(member.log_path, "ab")  # noqa: SIM115 - closed in _close_log when the member stops
        member.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=member.log, stderr=subprocess.STDOUT
        )

    @staticmethod
    def _lost_its_port(member: _Member) -> bool:
        """Whether a member failed because another process bound its port first (then we pick new ports)."""
        log = member.log_path.read_text(errors="replace") if member.log_path.exists() else ""
        return "address already in use" in log

    def _kill_all(self) -> None:
        for index in range(len(self._members)):
            self.stop_member(index)

    def _remove_data(self) -> None:
        for member in self._members:
            shutil.rmtree(member.data_dir, ignore_errors=True)
            member.log_path.unlink(missing_ok=True)

    @staticmethod
    def _close_log(member: _Member) -> None:
        if member.log is not None:
            member.log.close()
            member.log = None


def _last_error(member: _Member) -> str:
    """What a member that failed said last: its last error-level log line (etcd logs JSON lines), else its last
    line, shortened to one line."""
    try:
        lines = member.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    if not entries:
        return lines[-1][:300] if lines else "empty log"
    errors = [e for e in entries if e.get("level") in ("error", "fatal", "panic")]
    last = (errors or entries)[-1]
    return f"{last.get('msg', '')} {last.get('error', '')}".strip()[:300]


def _get_json(url: str, timeout: float) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            loaded = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _post_json(url: str, body: object, timeout: float) -> dict[str, object] | None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            loaded = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return loaded if isinstance(loaded, dict) else None
