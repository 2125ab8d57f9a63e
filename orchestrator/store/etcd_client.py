"""etcd v3 through its JSON gateway (etcd3gw), made fit for a store that must fail fast and never guess.

Three things etcd3gw leaves to its caller, done here once for the etcd store:

- **Several members.** etcd3gw talks to one endpoint. `EtcdClient` keeps one etcd3gw client per member and moves
  to the next member on a connection error, a timeout, or an answer such as "no leader"; the member that worked
  stays current.
- **Short timeouts, one bound.** A request to a member that lost its quorum, or that is waiting for an election,
  hangs (etcd's own timeout is about 7 s). Every request gets a short connect and read timeout, and one call
  (with its rotation over the members) a window after which it fails: a leader that cannot reach etcd must learn
  it well inside its lease TTL, not after it.
- **Unknown outcomes.** A write that was sent but got no answer may have been applied. Retrying it blindly could
  append a journal line twice. Such a write raises `MaybeApplied` instead, and the store settles it by reading
  back the key it wrote (`EtcdClient.commit`). A write that never reached a member (connection refused,
  connect timeout) is simply sent to the next one.

Every other etcd3gw or requests error leaves this module as a one-line `StoreError` naming the endpoints.
Keys and values are bytes here; base64, as the gateway wants it, is done at this boundary only (etcd3gw's own
helpers encode text as latin-1, which would mangle a non-ASCII name).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast
from urllib.parse import urlsplit

import etcd3gw
import requests
import urllib3
from etcd3gw import exceptions as etcd_errors

from orchestrator.errors import ConfigError, StoreError

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "KV",
    "EtcdAddress",
    "EtcdClient",
    "MaybeApplied",
    "TxnResult",
    "parse_url",
]

DEFAULT_PREFIX = "/failover"
DEFAULT_PORT = 2379
CONNECT_TIMEOUT = 0.5  # seconds to open a TCP connection to one member
READ_TIMEOUT = 1.0  # seconds one member may take to answer one request
CALL_WINDOW = 3.0  # seconds one call may spend trying members before it fails with StoreError
PAGE = 64  # keys per range request when reading many (observation documents, journals, the audit log)


@dataclass(frozen=True, slots=True)
class EtcdAddress:
    """What an `etcd://` URL names: the members (host, port) and the key prefix every key of the store lives under."""

    endpoints: tuple[tuple[str, int], ...]
    prefix: str


def parse_url(url: str) -> EtcdAddress:
    """`etcd://h1:2379,h2:2379,h3:2379[/prefix]`; the port defaults to 2379, the prefix to /failover.
    ConfigError (one line, naming the URL) for anything else: options are not accepted in store URLs."""
    scheme, sep, rest = url.partition("://")
    if scheme != "etcd" or not sep:
        raise ConfigError(f"store URL {url!r}: write etcd://host:2379,host:2379[/prefix]")
    if "?" in rest or "#" in rest or "@" in rest:
        raise ConfigError(f"store URL {url!r}: options and credentials in store URLs are not supported")
    hosts, slash, path = rest.partition("/")
    prefix = ("/" + path).rstrip("/") if slash else DEFAULT_PREFIX
    if not prefix or "//" in prefix:
        raise ConfigError(f"store URL {url!r}: the key prefix must look like /name or /name/sub")
    endpoints = tuple(_parse_endpoint(url, part.strip()) for part in hosts.split(","))
    if len(set(endpoints)) != len(endpoints):
        raise ConfigError(f"store URL {url!r} names a member twice")
    return EtcdAddress(endpoints, prefix)


def _parse_endpoint(url: str, text: str) -> tuple[str, int]:
    if not text:
        raise ConfigError(f"store URL {url!r}: an empty member between commas")
    try:
        parsed = urlsplit(f"//{text}")
        host, port = parsed.hostname, parsed.port
    except ValueError:
        raise ConfigError(f"store URL {url!r}: {text!r} is not host:port") from None
    if not host or parsed.path:
        raise ConfigError(f"store URL {url!r}: {text!r} is not host:port")
    return host, DEFAULT_PORT if port is None else port


class _Locked(Protocol):
    _lock: threading.RLock


_S = TypeVar("_S", bound=_Locked)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def serialised(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """One hook at a time per store object: the transport and the store's caches are not thread-safe."""

    @functools.wraps(method)
    def run(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    return run


# --- what etcd answers ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KV:
    """One key as etcd returns it. `create_revision` is the revision of the write that created the key (it survives
    later puts), `version` counts puts since creation, `lease` is the attached etcd lease id (0: none)."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> KV:
        """Decode the gateway's JSON: bytes are base64 and int64 fields are strings, absent when zero."""
        return cls(
            key=b64decode(item.get("key", "")),
            value=b64decode(item.get("value", "")),
            create_revision=int(item.get("create_revision", 0)),
            mod_revision=int(item.get("mod_revision", 0)),
            version=int(item.get("version", 0)),
            lease=int(item.get("lease", 0)),
        )


@dataclass(frozen=True, slots=True)
class TxnResult:
    """A transaction's outcome. `responses` is None when the outcome was settled by reading a key back after an
    unanswered write; `confirmed` is then the key as read (its mod_revision is the transaction's revision)."""

    succeeded: bool
    revision: int
    responses: list[dict[str, Any]] | None
    confirmed: KV | None = None

    @property
    def known(self) -> bool:
        """False when nothing is known about the current state (re-read it before trying again)."""
        return self.responses is not None or self.confirmed is not None

    def kvs(self, index: int) -> list[KV]:
        """The keys read by the `index`-th operation of the branch that ran (a request_range)."""
        if self.responses is None or index >= len(self.responses):
            return []
        found = self.responses[index].get("response_range", {}).get("kvs", [])
        return [KV.from_json(item) for item in found]

    def first(self, index: int) -> KV | None:
        found = self.kvs(index)
        return found[0] if found else None


class MaybeApplied(Exception):
    """A write reached a member and no answer came back: it may or may not have been applied. Internal to the
    etcd store, which reads back to find out; never escapes to callers."""


# --- requests and transactions, as the gateway spells them -------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with `prefix` (etcd's range_end for a prefix scan)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\0"
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def range_body(key: bytes, end: bytes | None = None, **options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key)}
    if end is not None:
        body["range_end"] = b64(end)
    body.update(options)
    return body


def get_op(key: bytes, end: bytes | None = None, **options: Any) -> dict[str, Any]:
    return {"request_range": range_body(key, end, **options)}


def put_op(key: bytes, value: bytes, lease: int = 0, ignore_lease: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        body["lease"] = str(lease)
    if ignore_lease:
        body["ignore_lease"] = True
    return {"request_put": body}


def delete_op(key: bytes, end: bytes | None = None) -> dict[str, Any]:
    return {"request_delete_range": range_body(key, end)}


def txn_op(compare: list[dict[str, Any]], success: list[dict[str, Any]]) -> dict[str, Any]:
    """A nested transaction, for a write that must happen only if a second condition also holds."""
    return {"request_txn": {"compare": compare, "success": success, "failure": []}}


def _compare(key: bytes, target: str, field: str, value: Any, result: str, end: bytes | None) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key), "target": target, "result": result, field: value}
    if end is not None:
        body["range_end"] = b64(end)
    return body


def created_at(key: bytes, revision: int) -> dict[str, Any]:
    """The key's create revision equals `revision`; 0 means the key does not exist."""
    return _compare(key, "CREATE", "create_revision", str(revision), "EQUAL", None)


def exists(key: bytes) -> dict[str, Any]:
    return _compare(key, "CREATE", "create_revision", "0", "GREATER", None)


def modified_at(key: bytes, revision: int) -> dict[str, Any]:
    """The key was last written at `revision`; 0 means it does not exist. The heart of every compare-and-set."""
    return _compare(key, "MOD", "mod_revision", str(revision), "EQUAL", None)


def unmodified_since(key: bytes, end: bytes, revision: int) -> dict[str, Any]:
    """No key in [key, end) was created or written after `revision`."""
    return _compare(key, "MOD", "mod_revision", str(revision + 1), "LESS", end)


def version_is(key: bytes, version: int) -> dict[str, Any]:
    return _compare(key, "VERSION", "version", str(version), "EQUAL", None)


def value_is(key: bytes, value: bytes) -> dict[str, Any]:
    return _compare(key, "VALUE", "value", b64(value), "EQUAL", None)


# --- the client ---------------------------------------------------------------------------------------------------


class EtcdClient:
    """Calls to an etcd cluster through whichever member answers. Not thread-safe: the store serialises calls."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        window: float = CALL_WINDOW,
    ) -> None:
        if not endpoints:
            raise StoreError("an etcd store needs at least one member")
        labels = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in endpoints]
        self.names = ",".join(labels)
        self._members = [
            (label, etcd3gw.client(host=h, port=p, api_path="/v3/"))
            for label, (h, p) in zip(labels, endpoints, strict=True)
        ]
        for _, client in self._members:
            client.session.trust_env = False  # no HTTP(S)_PROXY detour between the orchestrator and its etcd
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.window = window
        self._current = 0

    @property
    def current(self) -> str:
        """The member the next call goes to first."""
        return self._members[self._current][0]

    def deadline(self) -> float:
        """When a call that starts now must have given up (time.monotonic())."""
        return time.monotonic() + self.window

    def call(self, path: str, body: dict[str, Any], *, write: bool, deadline: float | None = None) -> dict[str, Any]:
        """POST `body` to `/v3/<path>` on the current member, moving on to the next member until one answers or
        `deadline` (default: now + window) passes. A write is only retried if it surely never reached a member;
        otherwise it raises MaybeApplied. A refusal by etcd itself (a bad request) is a StoreError at once."""
        deadline = self.deadline() if deadline is None else deadline
        failures: list[str] = []
        pause = 0.02
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = "; ".join(dict.fromkeys(failures)) or "no time left"
                raise StoreError(f"etcd {self.names}: no member answered in time ({seen})")
            name, client = self._members[self._current]
            # etcd3gw hands `timeout` to requests, which also takes a (connect, read) pair.
            client.timeout = cast(float, (min(self.connect_timeout, remaining), min(self.read_timeout, remaining)))
            try:
                answer = client.post(client.get_url(path), json=body)
            except (etcd_errors.Etcd3Exception, requests.RequestException, ValueError) as error:
                sent, text = _classify(error)
                if sent is None:
                    raise StoreError(f"etcd {self.names}: {name} refused {path}: {text}") from None
                failures.append(f"{name}: {text}")
                self._current = (self._current + 1) % len(self._members)
                if sent and write:
                    raise MaybeApplied(f"{name}: {text}") from None
                if self._current == 0 or len(self._members) == 1:
                    time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
                    pause = min(pause * 2, 0.2)
                continue
            if not isinstance(answer, dict):
                raise StoreError(f"etcd {self.names}: {name} answered {path} with {type(answer).__name__}")
            return answer

    def close(self) -> None:
        for _, client in self._members:
            client.session.close()

    # --- the key-value calls the store makes --------------------------------------------------------------------

    def read(self, key: bytes, revision: int = 0, deadline: float | None = None) -> tuple[KV | None, int]:
        """One key (as of `revision` if given) and the revision the read saw. Linearizable: never a stale value."""
        options: dict[str, Any] = {"revision": revision} if revision else {}
        answer = self.call("kv/range", range_body(key, None, **options), write=False, deadline=deadline)
        found = answer.get("kvs") or []
        return (KV.from_json(found[0]) if found else None), _revision(answer)

    def get(self, key: bytes, deadline: float | None = None) -> KV | None:
        return self.read(key, deadline=deadline)[0]

    def scan(self, start: bytes, end: bytes, *, revision: int = 0, descend: bool = False) -> Iterator[KV]:
        """Every key in [start, end), page by page, all pages as of one revision (one consistent snapshot)."""
        while True:
            options: dict[str, Any] = {"limit": PAGE}
            if revision:
                options["revision"] = revision
            if descend:
                options.update(sort_order="DESCEND", sort_target="KEY")
            answer = self.call("kv/range", range_body(start, end, **options), write=False)
            revision = revision or _revision(answer)
            page = [KV.from_json(item) for item in answer.get("kvs") or []]
            yield from page
            if not answer.get("more") or not page:
                return
            if descend:
                end = page[-1].key
            else:
                start = page[-1].key + b"\0"

    def commit(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]],
        marker: tuple[bytes, bytes] | None = None,
    ) -> TxnResult:
        """Run one transaction. If its answer is lost, read back `marker` (a key the success branch writes, with a
        value unique to this attempt): there means applied, anything else means not applied. Callers loop on a
        result that is not `known`, re-reading what they compare; without a marker the write must be safe to
        repeat. Reading back gets what is left of the call's window, and at least one read timeout."""
        deadline = self.deadline()
        body = {"compare": compare, "success": success, "failure": failure}
        try:
            answer = self.call("kv/txn", body, write=True, deadline=deadline)
        except MaybeApplied as unknown:
            if marker is None:
                return TxnResult(False, 0, None)
            key, value = marker
            try:
                kv = self.get(key, deadline=max(deadline, time.monotonic() + self.read_timeout))
            except StoreError as error:
                where = key.decode(errors="replace")
                raise StoreError(f"{error}; a write to {where} may or may not have been applied ({unknown})") from None
            if kv is not None and kv.value == value:
                return TxnResult(True, kv.mod_revision, None, kv)
            return TxnResult(False, 0, None)
        return TxnResult(bool(answer.get("succeeded")), _revision(answer), list(answer.get("responses") or []))

    def grant(self, ttl: int) -> int:
        """A new etcd lease of `ttl` whole seconds (etcd's unit). Repeating a grant whose answer was lost only
        leaves an unused lease behind, which expires by itself."""
        return int(self.call("lease/grant", {"TTL": ttl, "ID": 0}, write=False).get("ID", 0))

    def keepalive(self, lease_id: int) -> int:
        """Reset the etcd lease to its full TTL and return that TTL; -1 if the lease (and its keys) is gone."""
        answer = self.call("lease/keepalive", {"ID": str(lease_id)}, write=False)
        return int(answer.get("result", {}).get("TTL", -1))

    def time_to_live(self, lease_id: int) -> int:
        """Whole seconds the etcd lease has left, on etcd's clock (0: under one); -1 if it is gone. The gateway
        leaves zero fields out, so a missing TTL is 0, while a lease that is gone says -1 explicitly."""
        answer = self.call("kv/lease/timetolive", {"ID": str(lease_id)}, write=False)
        return int(answer.get("TTL", 0))

    def revoke(self, lease_id: int) -> None:
        """End an etcd lease and delete its keys. Best effort: a lease nobody revokes expires by itself."""
        with contextlib.suppress(StoreError):
            self.call("kv/lease/revoke", {"ID": str(lease_id)}, write=False)

    def wait_deleted(self, key: bytes, after: int, timeout: float) -> bool:
        """Block until `key` is deleted at a revision after `after` (its etcd lease expired on etcd's clock, or it
        was deleted), or `timeout` seconds pass: True when it was (or etcd compacted past `after`, so it may
        have been: read it again), False when nothing was seen in time or the watch broke off.

        A watch, not a poll: a follower polling the leader key once a cycle learns of an expired lease up to a
        cycle late, while a watch hears etcd's delete as it commits. Puts (the holder's renewals) are filtered
        out by etcd. Safe from any thread: the watch is a streaming request on a connection of its own, so it
        neither waits for the store's lock nor holds up the store's calls. StoreError when no member accepts it."""
        deadline = time.monotonic() + timeout
        body = {"create_request": {"key": b64(key), "start_revision": str(after + 1), "filters": ["NOPUT"]}}
        failures = []
        for offset in range(len(self._members)):
            name, member = self._members[(self._current + offset) % len(self._members)]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with requests.Session() as session:
                session.trust_env = False
                try:
                    with session.post(member.get_url("watch"), json=body, stream=True,
                                      timeout=(min(self.connect_timeout, remaining), remaining)) as answer:
                        answer.raise_for_status()
                        return _deleted_in(answer.iter_lines(), deadline)
                except requests.exceptions.ConnectTimeout:
                    failures.append(f"{name}: connect timed out")
                except requests.exceptions.ConnectionError as error:
                    if _accepted(error):
                        return False  # the watch was open and broke off (or timed out): the caller reads again
                    failures.append(f"{name}: cannot connect")
                except (requests.RequestException, ValueError) as error:
                    failures.append(f"{name}: {type(error).__name__}")
        raise StoreError(f"etcd {self.names}: no member accepted a watch ({'; '.join(failures)})")


def _deleted_in(lines: Iterator[bytes], deadline: float) -> bool:
    """Read a watch's stream until a delete event (True), a compaction or cancellation (True: read again), or the
    deadline (False). etcd sends nothing between events, so the read timeout bounds each wait."""
    for line in lines:
        if not line:
            continue
        loaded = json.loads(line)
        result = loaded.get("result", {}) if isinstance(loaded, dict) else {}
        if result.get("events") or result.get("compact_revision") or result.get("canceled"):
            return True
        if time.monotonic() >= deadline:
            return False
    return False


def _accepted(error: requests.exceptions.ConnectionError) -> bool:
    """Whether a watch's connection error came after etcd had accepted it (a read timed out, the stream broke)
    rather than before (no connection at all)."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return not isinstance(reason, urllib3.exceptions.NewConnectionError) and not isinstance(
        error, requests.exceptions.ConnectTimeout)


def _revision(answer: dict[str, Any]) -> int:
    return int(answer.get("header", {}).get("revision", 0))


def _classify(error: Exception) -> tuple[bool | None, str]:
    """(sent, text): sent False when the request surely never reached etcd (safe to send elsewhere), True when it
    may have (a write's outcome is unknown), None when etcd answered with a refusal that retrying cannot fix."""
    cause = error.__context__ if isinstance(error, etcd_errors.Etcd3Exception) else error
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return False, "connect timed out"
    if isinstance(cause, requests.exceptions.Timeout):
        return True, "timed out waiting for an answer"
    if isinstance(cause, requests.exceptions.ConnectionError):
        reason = getattr(cause.args[0], "reason", None) if cause.args else None
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return False, "connection refused" if "refused" in str(reason).lower() else "cannot connect"
        return True, "connection lost"
    if isinstance(cause, requests.RequestException | ValueError):
        return True, f"unreadable answer ({type(cause).__name__})"
    message = _server_message(error)
    transient = (
        etcd_errors.ConnectionFailedError,  # 503: no leader, leader changed, request timed out, too many requests
        etcd_errors.ConnectionTimeoutError,  # 504 / 408
        etcd_errors.InternalServerError,  # 500
    )
    if isinstance(error, transient):
        return True, message
    return None, message


def _server_message(error: Exception) -> str:
    """The one-line reason etcd gave (`{"error": ..., "message": ...}` in the body), else the HTTP reason."""
    detail = getattr(error, "detail_text", None)
    if isinstance(detail, str):
        try:
            loaded = json.loads(detail)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict) and loaded.get("message"):
            return str(loaded["message"]).splitlines()[0]
    reason = " ".join(str(arg) for arg in getattr(error, "args", ()) if arg)
    return reason.splitlines()[0] if reason else type(error).__name__
