"""Small shared documents in the store, each changed only by compare-and-set: one place for the read-apply-write loop.

The quarantine book, the planned switchovers, the recorded topology and the automatic rejoin's book are each one
versioned document on `get_state`/`put_state`, which every backend already makes atomic (SQLite: a transaction;
etcd: a transaction on the key's mod revision; memory: a lock). So two leaders' cycles, or a cycle and an
operator's command, never lose each other's change, and no backend needs code of its own. What a document means
and how it changes are its module's (and the core's) rules; reading it, decoding it, applying a change to what is
stored *now* and retrying when someone wrote in between is this module's.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from orchestrator.errors import StoreError
from orchestrator.store.records import Conflict

__all__ = ["ATTEMPTS", "Document", "DocumentStore", "StateDocuments"]

ATTEMPTS = 20
"""Compare-and-set rounds before giving up: the writers of one document are a leader's cycle and an operator or
two, so twenty lost races in a row mean something is wrong, not busy."""

T = TypeVar("T")


class StateDocuments(Protocol):
    """The two calls of `StateStore` a document is kept with."""

    def get_state(self, key: str) -> tuple[dict[str, Any], int] | None: ...

    def put_state(self, key: str, value: Mapping[str, Any], expected_version: int | None) -> int: ...


class DocumentStore(abc.ABC):
    """What a store mixin that keeps documents needs of `StateStore` (declared once here, not in each mixin)."""

    @abc.abstractmethod
    def get_state(self, key: str) -> tuple[dict[str, Any], int] | None: ...

    @abc.abstractmethod
    def put_state(self, key: str, value: Mapping[str, Any], expected_version: int | None) -> int: ...

    @abc.abstractmethod
    def audit(self, actor: str, action: str, detail: Mapping[str, Any], at: float) -> Any: ...


@dataclass(frozen=True, slots=True)
class Document(Generic[T]):
    """One document: its key, what it is called in errors, and how it is decoded from and encoded to JSON.

    `decode` may raise KeyError, TypeError or ValueError on a body it cannot read: that is a `StoreError` naming
    the key (a store written by a newer or broken writer must stop the command, not be overwritten)."""

    key: str
    what: str
    decode: Callable[[Mapping[str, Any]], T]
    encode: Callable[[T], Mapping[str, Any]]

    def read(self, store: StateDocuments) -> tuple[T, int | None]:
        """The document as stored now (decoded from `{}` when never written) and its version (None then)."""
        found = store.get_state(self.key)
        value, version = ({}, None) if found is None else found
        if not isinstance(value, Mapping):
            raise StoreError(f"state {self.key!r}: not a document")
        try:
            return self.decode(value), version
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise StoreError(f"state {self.key!r}: unreadable {self.what} ({error!r})") from None

    def change(self, store: StateDocuments, change: Callable[[T], T]) -> T:
        """Apply `change` to the document as stored now and write the result back if it differs; on a conflict
        (someone wrote in between) read again and apply again, so `change` must be a function of what it is given
        (it may be called several times). Returns the document as written (or as found, when unchanged)."""
        for _ in range(ATTEMPTS):
            value, version = self.read(store)
            after = change(value)
            if after == value and version is not None:
                return after
            try:
                store.put_state(self.key, self.encode(after), version)
            except Conflict:
                continue
            return after
        raise StoreError(f"state {self.key!r}: still changing after {ATTEMPTS} attempts; try again")
