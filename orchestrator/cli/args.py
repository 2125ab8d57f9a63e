"""Checks on command-line values that the parser's types cannot express.

Each runs before the command opens a store or contacts an engine, and fails as one line that names the option, the
value and what is expected: a refusal changes nothing.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import re
import socket

from orchestrator.core.durations import format_duration, parse_duration
from orchestrator.core.errors import ConfigError, FailoverError

MAX_WINDOW = 24 * 3600.0
"""The longest protection window or watch a command accepts by hand: past a day, trading is not "protected", it is
halted, and `failover halt` says so honestly."""

_INCIDENT_ID = re.compile(r"INC-[A-Za-z0-9_-]{1,120}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def duration_between(text: str, option: str, *, low: float, high: float, why: str = "") -> float:
    """A duration with a unit, `low < value <= high` (`low` itself is refused: a zero window is no window)."""
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        raise ConfigError(f"{option}: {error}") from None
    if seconds <= low or seconds > high:
        shown = text.strip() if len(text) <= 40 else text[:20] + "..."
        if seconds <= low:
            raise ConfigError(f"{option} {shown}: expected a duration above {format_duration(low)}")
        raise ConfigError(f"{option} {shown}: expected a duration of at most {format_duration(high)}"
                          + (f" ({why})" if why else ""))
    return seconds


def number_between(value: float, option: str, *, low: float, high: float) -> float:
    """A finite number in [low, high]; `nan` and `inf` parse as floats but mean nothing here."""
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{option} {value:g}: expected a number from {low:g} to {high:g}")
    return value


def int_between(value: int, option: str, *, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ConfigError(f"{option} {value}: expected a whole number from {low} to {high}")
    return value


def incident_id(text: str) -> str:
    """`INC-20221218-030012-spot-ab12`, as `failover history` lists them."""
    if not _INCIDENT_ID.fullmatch(text):
        raise ConfigError(f"incident {_shown(text)}: not an incident id (expected INC-YYYYMMDD-HHMMSS-ENGINE-XXXX, "
                          "as `failover history` lists them)")
    return text


def free_text(text: str, option: str, *, limit: int = 500) -> str:
    """A reason or a name that goes into announcements and the audit log: one printable line, not empty."""
    if not text.strip() or _CONTROL.search(text) or len(text) > limit:
        raise ConfigError(f"{option} {_shown(text)}: expected one line of printable text, 1 to {limit} characters")
    return text


def listen_address(text: str, source: str, *, public: bool) -> tuple[str, int]:
    """`host:port` for the daemon's HTTP endpoint. Loopback unless `public`: /status names every replica and
    incident, and nothing in front of it asks who is reading."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit() or len(port_text) > 5 or ":" in host or "[" in host:
        raise ConfigError(f"{source} {_shown(text)}: expected HOST:PORT with an IPv4 address or a host name, "
                          "e.g. 127.0.0.1:9464")
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"{source} {_shown(text)}: port {port} is out of range (expected 0 to 65535)")
    if not public and not _loopback(host):
        raise ConfigError(f"{source} {_shown(text)}: not a loopback address; /status and /metrics would be open to "
                          "the network (pass --listen-public, or set daemon.listen_public: true, to mean it)")
    return host or "127.0.0.1", port


def check_port_free(host: str, port: int, source: str) -> None:
    """Bind and release at once, as the daemon's HTTP server will (SO_REUSEADDR): a taken port fails here, before
    the daemon joins the leader election, not after."""
    if port == 0:
        return
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except socket.gaierror:
        raise ConfigError(f"{source} {host}:{port}: cannot resolve host {host!r}") from None
    except OSError as error:
        if error.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"{source} {host}:{port}: {host} is not an address of this machine") from None
        why = "already in use (another daemon?)" if error.errno == errno.EADDRINUSE else error.strerror
        raise FailoverError(f"{source} {host}:{port}: cannot listen: {why}; choose another port") from None
    finally:
        probe.close()


def _loopback(host: str) -> bool:
    if host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:20] + "..." + text[-8:])
