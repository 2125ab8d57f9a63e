"""`POST /v1/peers`: the replica's peer list, set at run time by the orchestrator (an extension of the protocol).

Why: a replica finds its primary, catches up and checks a promotion against the peers it knows, and until now it
knew them only from its command line (`--peer`, `--standby-of`). After `failover replace` moved a replica to a new
machine, the others still polled its old address: once the new machine was promoted, no standby followed it and a
synchronous primary could not commit. The orchestrator, which knows where every replica runs now, sends each
replica the others' control URLs; the list replaces the command line's, is persisted with the control state (a
restart keeps it), and takes effect at once for discovery, catch-up and a promotion's peer poll (`Replicator`).

The wire form lives here until `orchestrator.engine.protocol` takes it (the path and the body are all it needs).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from orchestrator.engine.protocol import EpochBody

PEERS = "/v1/peers"
MAX_PEERS = 64  # an engine has a handful of replicas; more is a mistake, and every one is polled each interval

Url = Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")]


class PeersRequest(EpochBody):
    """`POST /v1/peers`: the control URLs of the engine's other replicas (this replica's own URL is harmless: it is
    recognised by its replica id in its answer and skipped)."""

    peers: list[Url] = Field(min_length=1, max_length=MAX_PEERS)

    @field_validator("peers")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        """Trailing slashes dropped, duplicates kept once, in the order given."""
        return list(dict.fromkeys(url.rstrip("/") for url in value))


def normalized(urls: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """URLs as the replicator keys them: no trailing slash, each once, in order."""
    return tuple(dict.fromkeys(url.rstrip("/") for url in urls if url))
