"""Addresses in a configuration: the daemon's listener (`host:port`, `[v6]:port`) and the store URL.

The same parsers serve `daemon.listen`, `failover daemon --listen`, `store:` and `$FAILOVER_STORE`, so that each is
refused with the same sentence wherever it comes from.
"""

from __future__ import annotations

import ipaddress
import re


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` of an HTTP listener; port 0 lets the system choose (the tests' way). ValueError
    saying what is wrong and what is expected, for `daemon.listen` and `failover daemon --listen` alike."""
    return _host_port(text.strip(), min_port=0, default_port=None, example="127.0.0.1:9464")


def is_loopback(host: str) -> bool:
    """Only a loopback address keeps a listener off the network; any other name may resolve to anything."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_PORT = re.compile(r"^[0-9]{1,5}$")


def _host_port(text: str, *, min_port: int, default_port: int | None, example: str) -> tuple[str, int]:
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or not _is_ip(host, 6) or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not [IPv6 address]:port, e.g. [::1]:9464")
        port, has_port = rest[1:], bool(rest)
    elif text.count(":") > 1:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    else:
        host, colon, port = text.partition(":")
        has_port = bool(colon)
        numeric = bool(re.fullmatch(r"[0-9.]+", host))
        if not _HOSTNAME.match(host) or (numeric and not _is_ip(host, 4)):
            raise ValueError(f"{text!r} is not host:port, e.g. {example}")
    if not has_port:
        if default_port is None:
            raise ValueError(f"{text!r} has no port; write host:port, e.g. {example}")
        return host, default_port
    if not _PORT.match(port) or not min_port <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from {min_port} to 65535")
    return host, int(port)


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def store_url_problem(url: str) -> str | None:
    """What is wrong with a `store:` URL, or None: `sqlite:///path` or `etcd://host:port[,host:port...][/prefix]`,
    the two backends that exist; `mongodb://db:27017` and its like were "valid" until they were opened."""
    scheme, sep, rest = url.partition("://")
    usage = "write sqlite:///path/to/state.db or etcd://host:2379[,host:2379...][/prefix]"
    if not sep or scheme not in ("sqlite", "etcd"):
        return f"not a store URL ({scheme + '://' if sep else 'no scheme'}); {usage}"
    if "?" in rest or "#" in rest:
        return "options are not supported in store URLs"
    if "@" in rest:
        return "credentials are not supported in store URLs"
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else ""
        return None if path and not path.endswith("/") else f"names no database file; {usage}"
    members, slash, prefix = rest.partition("/")
    if slash and (not ("/" + prefix).rstrip("/") or "//" in "/" + prefix.rstrip("/")):
        return "the etcd key prefix must look like /name or /name/sub"
    seen: set[tuple[str, int]] = set()
    for member in members.split(","):
        try:
            endpoint = _host_port(member.strip(), min_port=1, default_port=2379, example="10.0.0.1:2379")
        except ValueError as error:
            return f"etcd member {error}" if member.strip() else "an empty etcd member between commas"
        if endpoint in seen:
            return f"etcd member {member.strip()!r} is named twice"
        seen.add(endpoint)
    return None
