"""The state store: one interface (`StateStore`), backends chosen by URL (tooz style).

    sqlite:///relative/path.db       a file relative to the working directory
    sqlite:////absolute/path.db      an absolute path
    etcd://host1:2379,host2:2379     etcd (orchestrator.store.etcd, imported only when asked for)

Each backend module exposes `open_url(url) -> StateStore`; importing it lazily keeps a heavy client library out of
every command that does not use that backend.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, cast

from orchestrator.errors import ConfigError, StoreError
from orchestrator.store.audit_anchor import ENV as AUDIT_HEAD_FILE_ENV
from orchestrator.store.audit_chain import Tampered, parse_head
from orchestrator.store.base import Conflict, NotFound, StateStore
from orchestrator.store.outbox import OutboxItem, OutboxStatus, OutboxSummary
from orchestrator.store.records import (
    GENESIS_HASH,
    AuditEntry,
    AuditHead,
    AuditReport,
    Heartbeat,
    Incident,
    IncidentStatus,
    JournalEntry,
    JournalState,
    Lease,
)

__all__ = [
    "AUDIT_HEAD_FILE_ENV",
    "DEFAULT_STORE_URL",
    "GENESIS_HASH",
    "AuditEntry",
    "AuditHead",
    "AuditReport",
    "Conflict",
    "Heartbeat",
    "Incident",
    "IncidentStatus",
    "JournalEntry",
    "JournalState",
    "Lease",
    "NotFound",
    "OutboxItem",
    "OutboxStatus",
    "OutboxSummary",
    "StateStore",
    "Tampered",
    "open_store",
    "parse_head",
    "shared_between_hosts",
]

DEFAULT_STORE_URL = "sqlite:///failover-state.db"
"""Used when the configuration names no store: `./failover-state.db`, relative to the working directory."""

_BACKENDS = {
    "sqlite": "orchestrator.store.sqlite",
    "etcd": "orchestrator.store.etcd",
    "memory": "orchestrator.store.memory",  # the simulator's: one process, virtual clock, nothing on disk
}


SHARED_BETWEEN_HOSTS = frozenset({"etcd"})
"""Backends that several hosts use at once: orchestrators in several clouds, each writing what it sees. (SQLite is
shared only by processes on one host; memory by one process.)"""


def shared_between_hosts(url: str) -> bool:
    """Whether the store the URL names is one that several hosts share (a capability of its backend)."""
    scheme, _, _ = url.partition("://")
    return scheme in SHARED_BETWEEN_HOSTS


class _Backend(Protocol):
    def open_url(self, url: str) -> StateStore: ...


def open_store(url: str = DEFAULT_STORE_URL, *, audit_anchor: Path | str | None = None) -> StateStore:
    """Open (creating if need be) the store the URL names. ConfigError for a URL we cannot read, StoreError for
    a store we cannot open; both one line.

    `audit_anchor` is where to keep the copy of the audit head outside the store (see `StateStore.audit_anchor_path`
    for the default: `$FAILOVER_AUDIT_HEAD_FILE`, else beside an SQLite file)."""
    scheme, sep, _ = url.partition("://")
    module_name = _BACKENDS.get(scheme) if sep else None
    if module_name is None:
        known = ", ".join(f"{name}://" for name in _BACKENDS)
        raise ConfigError(f"store URL {url!r}: unknown scheme (use one of {known})")
    store = _load_backend(scheme, module_name).open_url(url)
    if audit_anchor is not None:
        store.set_audit_anchor(audit_anchor)
    return store


def _load_backend(scheme: str, module_name: str) -> _Backend:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            raise StoreError(f"{scheme} store not available: {module_name} is not installed") from None
        raise StoreError(f"{scheme} store not available: {error}") from None
    if not callable(getattr(module, "open_url", None)):
        raise StoreError(f"{scheme} store not available: {module_name} has no open_url()")
    return cast(_Backend, module)
