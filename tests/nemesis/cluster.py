"""Real replica processes whose every link goes through its own fault proxy, and the faults of a replica's disk.

`ProxiedCluster` is a `ReplicaCluster` whose replicas reach each other through `FaultProxy` links (`gcp->aws` is
what `spot-gcp` uses to reach `spot-aws`), so a partition can be cut link by link and one way only. The links from
the outside are made here too: `orch->NAME` (what the orchestrator's configuration points at), `client->NAME`
(the order clients), and any vantage point's own (`link("vp:gcp-hk", NAME)`). `url(NAME)` stays the direct
address: the harness itself (checker, monitor) must always see the truth.

Disk faults: a full disk under one replica is a small tmpfs mounted on its data directory, filled with a ballast
file (when this process may mount, as root in a container usually can); otherwise the replica's file-size limit
is lowered to what its journal holds (`RLIMIT_FSIZE` with `prlimit` on the running process), so the next append
fails with EFBIG instead of ENOSPC. Either way the replica's journal write fails and it stops, as it must (on the
tmpfs, once the journal's last page is full: a few more entries may still fit in it; a new file fails at once).
`DISK_MODE` says which one this machine gets. A stale standby is a copy of its data directory taken earlier
(`snapshot`) put back under a restarted process (`restore`), unless it has become the primary since.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from orchestrator.core.model import Replica
from orchestrator.testbed.ports import free_port
from orchestrator.testbed.proxy import FaultProxy, ProxyHub
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

DiskMode = Literal["tmpfs", "rlimit"]
TMPFS_SIZE = "16m"


@functools.cache
def disk_mode() -> DiskMode:
    """`tmpfs` if this process may mount one (checked once, on a scratch directory), else `rlimit`."""
    probe = Path(tempfile.mkdtemp(prefix="nemesis-tmpfs-probe-"))
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                                 capture_output=True, check=False, timeout=10).returncode == 0
        if mounted:
            subprocess.run(["umount", str(probe)], capture_output=True, check=False, timeout=10)
        return "tmpfs" if mounted else "rlimit"
    except (OSError, subprocess.TimeoutExpired):
        return "rlimit"
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def short(name: str) -> str:
    """`spot-gcp` -> `gcp`: link names read like the issue's (`gcp->aws`)."""
    return name.rsplit("-", 1)[-1]


class ProxiedCluster(ReplicaCluster):
    def __init__(self, base_dir: Path, specs: Sequence[ReplicaSpec], hub: ProxyHub, *,
                 small_disk: Sequence[str] = (), prefix: str | None = None, **options: Any) -> None:
        super().__init__(base_dir, specs, **options)
        self.hub = hub
        self.prefix = prefix or self.base_dir.name  # link names: `<prefix>:gcp->aws`
        self.links: dict[tuple[str, str], FaultProxy] = {}
        with self._ports_held():  # no link may take a port chosen for a replica that has not started yet
            for name in self.replicas:
                for other in self.replicas:
                    if other != name:
                        self.link(name, other)
                self.link("orch", name)
                self.link("client", name)
        self.small_disk = [name for name in small_disk if disk_mode() == "tmpfs"]
        self._mounted: list[Path] = []
        self._snapshots: dict[str, Path] = {}
        self.restored: dict[str, list[float]] = {}  # replica -> when a snapshot was put back (wall clock)

    @contextlib.contextmanager
    def _ports_held(self) -> Iterator[None]:
        """Hold each replica's port with a listening socket meanwhile; a port someone else took is replaced."""
        held = []
        try:
            for running in self.replicas.values():
                while True:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        sock.bind((self.host, running.port))
                        sock.listen(1)
                        held.append(sock)
                        break
                    except OSError:
                        sock.close()
                        running.port = free_port(self.host)
            yield
        finally:
            for sock in held:
                sock.close()

    # ---- links ----------------------------------------------------------------------------------------------

    def link(self, source: str, target: str) -> FaultProxy:
        """The link `source` uses to reach replica `target` (made on first use)."""
        key = (source, target)
        if key not in self.links:
            label = f"{short(source) if source in self.replicas else source}->{short(target)}"
            self.links[key] = self.hub.proxy(f"{self.prefix}:{label}", self.replicas[target].port)
        return self.links[key]

    def via(self, source: str, target: str) -> Replica:
        """`target` as `source` reaches it: a core `Replica` whose control URL is the link's."""
        direct = self.replica(target)
        return Replica(name=direct.name, engine=direct.engine, site=direct.site, instance=direct.instance,
                       control_url=self.link(source, target).url)

    def command(self, name: str) -> list[str]:
        """The replica's command line with each peer's address replaced by this replica's link to it."""
        direct = {self.url(other): self.link(name, other).url for other in self.replicas if other != name}
        return [direct.get(argument, argument) for argument in super().command(name)]

    # ---- disks ----------------------------------------------------------------------------------------------

    def start(self, *names: str) -> None:
        for name in names or tuple(self.replicas):
            self._mount(name)
        super().start(*names)
        for name in names or tuple(self.replicas):  # the one answering on its port is this replica, not a squatter
            answered = self.status(name).get("replica")
            if answered != name:
                raise RuntimeError(f"replica {name}'s port {self.replicas[name].port} is answered by {answered!r}")

    def _mount(self, name: str) -> None:
        path = self.data_dir(name)
        if name not in self.small_disk or path in self._mounted:
            return
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(path)], check=True,
                       capture_output=True, timeout=10)
        self._mounted.append(path)

    def fill_disk(self, name: str) -> str:
        """The replica's next journal write fails; returns how (`tmpfs full` or `file-size limit`)."""
        if name in self.small_disk:
            ballast = self.data_dir(name) / "ballast"
            with contextlib.suppress(OSError), ballast.open("ab") as handle:
                stats = os.statvfs(self.data_dir(name))
                handle.write(b"\0" * (stats.f_bavail * stats.f_frsize))
            return "tmpfs full"
        process = self.replicas[name].process
        if process is not None and process.poll() is None:
            journal = self.data_dir(name) / "journal.jsonl"
            size = journal.stat().st_size if journal.exists() else 0
            resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (size, size))
        return "file-size limit"

    def free_disk(self, name: str) -> None:
        (self.data_dir(name) / "ballast").unlink(missing_ok=True)
        process = self.replicas[name].process
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                unlimited = resource.RLIM_INFINITY
                resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (unlimited, unlimited))

    # ---- stale copies ---------------------------------------------------------------------------------------

    def snapshot(self, name: str) -> Path:
        """A copy of the replica's data directory as it is now (the backup an operator might restore)."""
        copy = self.base_dir / f"{name}.snapshot"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(self.data_dir(name), copy, ignore=shutil.ignore_patterns("ballast", "*.tmp"))
        self._snapshots[name] = copy
        return copy

    def restore(self, name: str) -> bool:
        """Kill the replica, put its last snapshot back in place of its data directory, start it again; False (and
        the replica left as it was) if there is no snapshot or the replica is primary now.

        A stale *standby* is the fault. A primary restored from an older copy loses what it acknowledged and
        forgets its promotion, which no replica can be asked to survive. Whether it is primary is read from its own
        control state while it is frozen, so a promotion cannot land between the look and the kill (the monitor's
        last sample may be a second old on a loaded machine: soak seed 2014 restored a replica promoted 0.9 s
        before)."""
        copy = self._snapshots.get(name)
        if copy is None:
            return False
        self.pause(name)
        self._wait_stopped(name)
        if self._role_on_disk(name) == "primary":
            self.resume(name)
            return False
        self.kill(name)
        self.restored.setdefault(name, []).append(time.time())  # what it carried is gone from here on
        data = self.data_dir(name)
        for item in data.iterdir():
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()
        shutil.copytree(copy, data, dirs_exist_ok=True)
        self.start(name)
        return True

    def _wait_stopped(self, name: str, timeout: float = 5.0) -> None:
        """Until the kernel says the process is stopped (SIGSTOP is delivered asynchronously)."""
        process = self.replicas[name].process
        if process is None:
            return
        stat = Path(f"/proc/{process.pid}/stat")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if stat.read_text().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                    return
            except (OSError, IndexError):
                return  # no /proc here: SIGSTOP is in practice delivered before the next read anyway
            time.sleep(0.01)

    def _role_on_disk(self, name: str) -> str | None:
        try:
            body = json.loads((self.data_dir(name) / "control.json").read_bytes())
        except (OSError, ValueError):
            return None
        return body.get("role") if isinstance(body, dict) else None

    def __enter__(self) -> ProxiedCluster:
        return self

    def close(self) -> None:
        super().close()
        for path in self._mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=10)
        self._mounted.clear()
