"""Talking to engine replicas: the control interface, the HTTP protocol and its client, the reference replica.

`EngineControl` (base) is what drivers use; `HttpEngineClient` (client) implements it over the protocol described
in `openapi.yaml` (protocol); `orchestrator.engine.replica` is a reference replica that serves that protocol.
"""

from orchestrator.engine.base import EngineControl, PromoteRefused
from orchestrator.engine.client import HttpEngineClient, OrderAnswer

__all__ = ["EngineControl", "HttpEngineClient", "OrderAnswer", "PromoteRefused"]
