"""Builds the real edges from a configuration: store, engine client, provider adapters, routers, prober, notifier.

The simulator and the drill build their own edges; everything else (CLI commands, cron, the daemon) comes here,
so that "what runs in production" is decided in one place. SDKs are imported only for the providers a
configuration uses (each adapter module imports its SDK lazily through the registry).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from orchestrator.config import LoadedConfig
from orchestrator.core.model import Topology
from orchestrator.drivers.controller import Controller
from orchestrator.drivers.events import Announcer, Fanout, Notifier
from orchestrator.drivers.modes import ControllerSettings, Mode
from orchestrator.drivers.outbox import OutboxNotifier, WebhookSender, channels_from_config
from orchestrator.drivers.probe import EngineProber, Prober
from orchestrator.engine.base import EngineControl
from orchestrator.engine.client import HttpEngineClient
from orchestrator.store.base import StateStore
from providers.base import CloudProvider
from providers.registry import build_provider, build_router
from providers.traffic import TrafficRouter

FLUSH_BUDGET = 2.0  # seconds a command gives the webhook sender after its own work


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
    topology = loaded.topology
    stack = ExitStack()
    store = loaded.open_store()
    stack.callback(store.close)
    if engines is None:
        client = HttpEngineClient(token_file=loaded.config.control_token_file,
                                  read_timeout=max(0.2, topology.probes.timeout), attempts=2,
                                  control_timeout=max(5.0, topology.probes.timeout))
        stack.callback(client.close)
        engines = client
    kwargs = {"poll_interval": 1.0, **(provider_kwargs or {})}
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
    return Edges(store, engines, providers, routers, prober, Fanout(*channels), time.time, sender, stack)


def build_controller(mode: Mode, loaded: LoadedConfig, edges: Edges, *, identity: str,
                     vantage: str = "orchestrator", topology: Topology | None = None) -> Controller:
    """The controller a command runs, from its mode and its configuration (one construction for every mode
    that runs on a configuration; the simulator builds its own edges and settings)."""
    return Controller(topology or loaded.topology, edges, mode,
                      ControllerSettings.from_config(loaded, mode, identity=identity, vantage=vantage))
