"""Free TCP ports for the processes a testbed starts, chosen where only other listeners compete for them.

Why not `bind(port 0)`: the kernel hands out a port from its ephemeral range, the same range every outgoing
connection on the machine draws its source port from. Between our probe and the server's own bind, a connection
(ours, or another test worker's: the suites run on every core) can take that port, and the server exits with
"Address already in use". Below the ephemeral range no connection ever gets a port by chance, and a random pick
makes two workers unlikely to choose the same one; the probe bind rules out a port somebody listens on.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_LOW = 32768  # Linux's default start of the range (IANA's dynamic range starts at 49152)
LOWEST = 20000  # below: well-known services and what administrators usually configure
_pick = random.SystemRandom()


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_LOW


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def _kernel_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` different ports nobody listens on now, below the ephemeral range when it leaves room (else the
    kernel's choice, as before)."""
    high = _ephemeral_low() - 1
    chosen: list[int] = []
    for _ in range(count * 200):
        if len(chosen) == count or high - LOWEST < 1000:
            break
        port = _pick.randint(LOWEST, high)
        if port not in chosen and _bindable(host, port):
            chosen.append(port)
    while len(chosen) < count:
        port = _kernel_port(host)
        if port not in chosen:
            chosen.append(port)
    return chosen


def free_port(host: str = "127.0.0.1") -> int:
    """One port nobody listens on now (see `free_ports`)."""
    return free_ports(1, host)[0]
