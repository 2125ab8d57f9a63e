"""Builds the real edges from a configuration: store, engine client, provider adapters, routers, prober, notifier.

The simulator and the drill build their own edges; everything else (CLI commands, cron, the daemon) comes here,
so that "what runs in production" is decided in one place. SDKs are imported only for the providers a
configuration uses (each adapter module imports its SDK lazily through the registry).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from orchestrator.config import LoadedConfig
from orchestrator.core.errors import StoreError
from orchestrator.core.model import Topology
from orchestrator.drivers.controller import Controller
from orchestrator.drivers.events import Announcer, Fanout, Notifier
from orchestrator.drivers.modes import ControllerSettings, Mode
from orchestrator.drivers.outbox import OutboxNotifier, WebhookSender, channels_from_config
from orchestrator.drivers.probe import EngineProber, Prober
from orchestrator.drivers.status import current_topology
from orchestrator.engine.base import EngineControl
from orchestrator.engine.client import HttpEngineClient
from orchestrator.store.base import Conflict, StateStore
from providers.base import CloudProvider
from providers.registry import build_provider, build_router
from providers.traffic import TrafficRouter

log = logging.getLogger(__name__)

FLUSH_BUDGET = 2.0  # seconds a command gives the webhook sender after its own work
NAMES_KEY = "provider_names"  # the state document holding the providers' name look-ups
NAMES_WRITE_ATTEMPTS = 5


class StoreNameCache:
    """The providers' name look-ups (`providers.base.NameCache`) kept in the store's state documents.

    `failover check` is a new process every minute: an AWS `Name` tag resolved in one run must not cost the next
    run a `DescribeInstances` (nor a GCP bare name a zone search). The document is read once, on the first look-up
    a provider asks for (a deployment that names every machine by id never reads it), and written through on
    each change with a compare-and-set; a conflict (another run wrote first) re-reads and applies the change again.
    A store that cannot be read or written is logged and costs only a look-up: the cache never fails a poll.
    `writable=False` (a dry run: `failover plan` changes nothing) keeps changes in this process only.
    """

    def __init__(self, store: StateStore, *, writable: bool = True) -> None:
        self._store = store
        self._writable = writable
        self._lock = threading.Lock()
        self._entries: dict[str, str] | None = None
        self._version: int | None = None

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._loaded().get(key)

    def put(self, key: str, value: str) -> None:
        self._change(key, value)

    def drop(self, key: str) -> None:
        self._change(key, None)

    def _loaded(self) -> dict[str, str]:
        if self._entries is None:
            self._read()
        assert self._entries is not None
        return self._entries

    def _read(self) -> None:
        try:
            found = self._store.get_state(NAMES_KEY)
        except StoreError as exc:
            log.warning("provider name cache unreadable, looking names up instead: %s", exc)
            self._entries, self._version = self._entries or {}, None
            return
        document, self._version = found if found is not None else ({}, None)
        names = document.get("names")
        self._entries = {k: v for k, v in names.items() if isinstance(v, str)} if isinstance(names, dict) else {}

    def _change(self, key: str, value: str | None) -> None:
        with self._lock:
            for _ in range(NAMES_WRITE_ATTEMPTS):
                entries = dict(self._loaded())
                if entries.get(key) == value:
                    return
                if value is None:
                    entries.pop(key)
                else:
                    entries[key] = value
                if not self._writable:
                    self._entries = entries
                    return
                try:
                    self._version = self._store.put_state(NAMES_KEY, {"names": entries}, self._version)
                except Conflict:
                    self._read()
                    continue
                except StoreError as exc:
                    log.warning("provider name cache not saved (the next run looks %s up again): %s", key, exc)
                self._entries = entries
                return


@dataclass
class Edges:
    """The I/O edges one process uses; `close()` releases them all."""

    store: StateStore
    engines: EngineControl
    providers: dict[str, CloudProvider]
    routers: dict[str, TrafficRouter]
    prober: Prober
    notifier: Notifier
    clock: Callable[[], float] = time.time
    sender: WebhookSender | None = None  # delivers the outbox; the daemon runs it on a thread of its own
    _stack: ExitStack = field(default_factory=ExitStack)
    # the configured topology with each replica `failover replace` moved at its recorded place (None: as configured)
    topology: Topology | None = None

    def flush_notifications(self, budget: float = FLUSH_BUDGET) -> None:
        """Give the sender one bounded pass (cron runs and operator commands, after their own work): at most
        `budget` seconds, whatever the webhooks do; what is left is delivered by the next run or the daemon."""
        if self.sender is not None:
            self.sender.deliver_due(budget)

    def close(self) -> None:
        try:
            self.flush_notifications()
        finally:
            self._stack.close()

    def __enter__(self) -> Edges:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_edges(
    loaded: LoadedConfig,
    *,
    notifier: Notifier | None = None,
    dry_run: bool = False,
    vantage: str = "orchestrator",
    provider_kwargs: dict[str, Any] | None = None,
    engines: EngineControl | None = None,
) -> Edges:
    """Everything a command needs. With `dry_run`, provider writes are recorded instead of made."""
    stack = ExitStack()
    store = loaded.open_store()
    stack.callback(store.close)
    try:  # a replica `failover replace` moved is probed and acted on where it is now, not where the file says
        topology = current_topology(loaded.topology, store)
    except BaseException:
        stack.close()
        raise
    if engines is None:
        client = HttpEngineClient(token_file=loaded.config.control_token_file,
                                  read_timeout=max(0.2, topology.probes.timeout), attempts=2,
                                  control_timeout=max(5.0, topology.probes.timeout))
        stack.callback(client.close)
        engines = client
    kwargs = {"poll_interval": 1.0, "names": StoreNameCache(store, writable=not dry_run), **(provider_kwargs or {})}
    providers = {name: build_provider(site, dry_run=dry_run, **kwargs) for name, site in topology.sites.items()}
    routers = {
        name: build_router(engine.dns, dry_run=dry_run)
        for name, engine in topology.engines.items()
        if engine.dns is not None
    }
    prober = EngineProber(topology, engines, vantage=vantage)
    stack.callback(prober.close)
    channels: list[Notifier] = [notifier] if notifier else []
    if loaded.config.notifications.stdout and notifier is None:
        channels.append(Announcer())
    sender = None
    webhooks = channels_from_config(loaded.config.notifications.webhooks)
    if webhooks:
        outbox = OutboxNotifier(store, webhooks)
        channels.append(outbox)
        sender = WebhookSender(store, webhooks, notifier=outbox, identity=f"{socket.gethostname()}:{os.getpid()}")
        stack.callback(sender.stop)
    return Edges(store, engines, providers, routers, prober, Fanout(*channels), time.time, sender, stack, topology)


def build_controller(mode: Mode, loaded: LoadedConfig, edges: Edges, *, identity: str,
                     vantage: str = "orchestrator", topology: Topology | None = None) -> Controller:
    """The controller a command runs, from its mode and its configuration (one construction for every mode
    that runs on a configuration; the simulator builds its own edges and settings)."""
    return Controller(topology or edges.topology or loaded.topology, edges, mode,
                      ControllerSettings.from_config(loaded, mode, identity=identity, vantage=vantage))
