"""Which adapters exist: the entry points of two groups, read once, and any registered in code.

A cloud adapter is an entry point of `failover.providers`, a DNS router one of `failover.routers`, each naming an
`AdapterSpec` (providers/options.py). The built-ins are declared in this project's pyproject.toml; a third-party
adapter declares its own in its package, and installing that package is all it takes (tooz's drivers, and
pytest's plugins, are found the same way). Nothing here imports an adapter class or a cloud SDK: configuration
validation asks the catalog for names and options models only.

Two packages claiming one name is refused rather than resolved by install order: a plugin must never silently
replace the adapter that fences production machines.
"""

from __future__ import annotations

import difflib
import sys
import threading
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from orchestrator.core.errors import ConfigError
from providers.options import AdapterSpec

PROVIDER_GROUP = "failover.providers"
ROUTER_GROUP = "failover.routers"


class Catalog:
    """The adapters of one entry-point group (`noun` names them in errors: "provider", "DNS router")."""

    def __init__(self, group: str, noun: str) -> None:
        self.group = group
        self.noun = noun
        self._lock = threading.Lock()
        self._entries: dict[str, list[EntryPoint]] | None = None
        self._loaded: dict[str, AdapterSpec] = {}
        self._registered: dict[str, AdapterSpec] = {}

    def names(self) -> list[str]:
        """Every name a configuration may use, sorted."""
        return sorted(set(self._entry_points()) | set(self._registered))

    def find(self, kind: str) -> AdapterSpec:
        """The spec registered as `kind`; `ConfigError` saying what is known (and what was probably meant), or why
        the entry point cannot be used. Loading imports only the spec's light module."""
        if kind in self._registered:
            return self._registered[kind]
        with self._lock:
            if kind not in self._loaded:
                self._loaded[kind] = self._load(kind)
            return self._loaded[kind]

    def register(self, kind: str, spec: AdapterSpec) -> None:
        """Add or replace an adapter in this process only (tests, a program that embeds the orchestrator)."""
        self._registered[kind] = spec

    def unregister(self, kind: str) -> None:
        self._registered.pop(kind, None)

    def refresh(self) -> None:
        """Read the entry points again (after a package was installed, or `sys.path` changed: a test that puts a
        package on it)."""
        with self._lock:
            _forget_scan()
            self._entries = None
            self._loaded.clear()

    def _entry_points(self) -> dict[str, list[EntryPoint]]:
        if self._entries is None:
            found: dict[str, list[EntryPoint]] = {}
            for entry in _installed_entry_points(self.group):
                found.setdefault(entry.name, []).append(entry)
            self._entries = found
        return self._entries

    def _load(self, kind: str) -> AdapterSpec:
        entries = self._entry_points().get(kind)
        if not entries:
            raise ConfigError(self.unknown(kind))
        if len({entry.value for entry in entries}) > 1:
            owners = ", ".join(f"{_owner(entry)} ({entry.value})" for entry in entries)
            raise ConfigError(f"{self.noun} {kind!r} is registered by more than one package: {owners}; uninstall one")
        entry = entries[0]
        try:
            spec = entry.load()
        except Exception as exc:  # an import error, or anything the plugin's module raises
            raise ConfigError(
                f"the {kind} {self.noun} of {_owner(entry)} cannot be loaded ({type(exc).__name__}: {exc})"
            ) from exc
        if not isinstance(spec, AdapterSpec):
            raise ConfigError(f"entry point {kind} = {entry.value} of {_owner(entry)} is not an AdapterSpec")
        return spec

    def unknown(self, kind: str) -> str:
        """`unknown provider 'gpc'; known: aws, azure, gcp (did you mean 'gcp'?)`."""
        known = self.names()
        if not known:
            return (f"unknown {self.noun} {kind!r}: no {self.noun}s are registered (no {self.group} entry points); "
                    "reinstall the failover package (make venv)")
        close = difflib.get_close_matches(kind, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.noun} {kind!r}; known: {', '.join(known)}{hint}"


_SCAN_LOCK = threading.Lock()
_SCANNED: tuple[tuple[str, ...], Any] | None = None


def _installed_entry_points(group: str) -> list[EntryPoint]:
    """The entry points of `group`, from one reading of every installed distribution, shared by both catalogs:
    reading them opens a file of each distribution (a few milliseconds), and every command that loads a configuration
    pays it. The reading is kept while `sys.path` is the same (what is installed is found through it)."""
    global _SCANNED
    key = tuple(sys.path)
    with _SCAN_LOCK:
        if _SCANNED is None or _SCANNED[0] != key:
            _SCANNED = (key, entry_points())  # all groups (SelectableGroups on 3.11, EntryPoints later)
        everything = _SCANNED[1]
    return list(everything.select(group=group))


def _forget_scan() -> None:
    global _SCANNED
    with _SCAN_LOCK:
        _SCANNED = None


def _owner(entry: EntryPoint) -> str:
    dist = entry.dist
    return f"package {dist.name}" if dist is not None else "an unnamed package"


PROVIDERS = Catalog(PROVIDER_GROUP, "provider")
ROUTERS = Catalog(ROUTER_GROUP, "DNS router")


def register_provider(kind: str, spec: AdapterSpec) -> None:
    """Add or replace a cloud adapter in this process (an installed package registers through its entry points)."""
    PROVIDERS.register(kind, spec)


def register_router(kind: str, spec: AdapterSpec) -> None:
    ROUTERS.register(kind, spec)
