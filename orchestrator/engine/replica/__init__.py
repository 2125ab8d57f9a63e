"""The reference engine replica: a small, correct exchange engine that speaks the control protocol.

It is the orchestrator's test partner (a real exchange puts the protocol in front of its own engine), so it keeps
to what the tests and drills need, and does that exactly: a durable, hash-chained order journal; price-time books
whose state is a pure function of the journal; synchronous replication to another cloud; the epoch rule, fencing
and promotion. Modules: `journal` (disk), `book` (state machine), `node` (roles and rules), `replication`
(discovery and copying), `app` (HTTP), `serving` (uvicorn with limits, shared with the daemon's status server),
`cli` (command line). Running replicas as processes for tests and drills is `orchestrator.testbed.replicas`.
"""

from orchestrator.engine.replica.cli import main, serve

__all__ = ["main", "serve"]
