"""`python -m orchestrator.engine.replica serve ...`: run one reference replica on uvicorn.

`main(argv)` parses the command line and returns an exit code (the `failover replica serve` command can hand it
its arguments); `serve(...)` takes the same settings as keywords. The control token comes from `--token-file` or
the environment variable FAILOVER_CONTROL_TOKEN; a replica without one refuses to start, because it could
otherwise never be fenced or promoted by anyone who can prove who they are. The token is never logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from orchestrator.core.model import Role
from orchestrator.core.phases import DEFAULT_PROTECTION_ALLOW
from orchestrator.engine.protocol import TOKEN_ENV
from orchestrator.engine.replica.app import create_app
from orchestrator.engine.replica.journal import JournalCorrupt
from orchestrator.engine.replica.node import Node, Settings

EXIT_BAD_INPUT = 2
EXIT_CORRUPT = 1


class NoToken(ValueError):
    pass


def read_token(token_file: Path | None) -> str:
    """The token from `token_file` if given, else from the environment; surrounding whitespace removed."""
    if token_file is not None:
        token = token_file.read_text(encoding="utf-8").strip()
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise NoToken(f"no control token: set {TOKEN_ENV} or pass --token-file")
    return token


def serve(*, replica_id: str, port: int, data_dir: Path, primary: bool = False, standby_of: str | None = None,
          cloud: str = "local", peers: Sequence[str] = (), synchronous: bool = True, sync_timeout: float = 2.0,
          token_file: Path | None = None, host: str = "127.0.0.1",
          protection_allow: Sequence[str] = DEFAULT_PROTECTION_ALLOW, peer_interval: float = 0.2,
          peer_catch_up: bool = True, promote_poll_timeout: float = 1.0) -> None:
    """Run a replica until SIGINT/SIGTERM. Raises NoToken, JournalCorrupt or OSError before serving."""
    settings = Settings(
        replica_id=replica_id, data_dir=data_dir, cloud=cloud,
        initial_role=Role.PRIMARY if primary else Role.STANDBY, standby_of=standby_of, peers=tuple(peers),
        synchronous=synchronous, sync_timeout=sync_timeout, protection_allow=tuple(protection_allow),
        peer_catch_up=peer_catch_up, promote_poll_timeout=promote_poll_timeout, token=read_token(token_file),
    )
    node = Node(settings)
    log = logging.getLogger("orchestrator.engine.replica")
    if node.journal.truncated_bytes:
        log.warning("%s: cut %d bytes of an unfinished last journal line", replica_id, node.journal.truncated_bytes)
    log.info("%s: %s on %s:%d, epoch %d, last seq %d, %s", replica_id, node.role, host, port, node.epoch,
             node.journal.last_seq, "synchronous" if synchronous else "asynchronous")
    config = uvicorn.Config(create_app(node, peer_interval=peer_interval), host=host, port=port,
                            log_level="warning", access_log=False, timeout_graceful_shutdown=1, lifespan="on")
    uvicorn.Server(config).run()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.engine.replica",
                                     description="Reference engine replica (test partner of the orchestrator).")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve the engine control protocol and order entry")
    run.add_argument("--id", required=True, dest="replica_id", help="replica name, e.g. spot-aws")
    run.add_argument("--port", required=True, type=int)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--data", required=True, type=Path, help="directory for the journal and control state")
    role = run.add_mutually_exclusive_group()
    role.add_argument("--primary", action="store_true", help="start as primary (on a fresh data directory)")
    role.add_argument("--standby-of", metavar="URL", help="start as a standby of this primary")
    run.add_argument("--cloud", default="local", help="failure domain; sync replication needs another one")
    run.add_argument("--peer", action="append", default=[], metavar="URL", help="another replica (repeat)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--sync", dest="synchronous", action="store_true", default=True,
                      help="acknowledge orders once a standby on another cloud holds them (default)")
    mode.add_argument("--async", dest="synchronous", action="store_false", help="acknowledge once durable here")
    run.add_argument("--sync-timeout", type=float, default=2.0, metavar="SECONDS")
    run.add_argument("--token-file", type=Path, help=f"file holding the control token (else ${TOKEN_ENV})")
    run.add_argument("--protection-allow", default=",".join(DEFAULT_PROTECTION_ALLOW),
                     help="comma-separated request kinds allowed in protection (can only narrow the table)")
    run.add_argument("--no-peer-catch-up", dest="peer_catch_up", action="store_false",
                     help="copy only from a primary, never from a peer while no primary is reachable")
    run.add_argument("--peer-interval", type=float, default=0.2, metavar="SECONDS",
                     help="how often peers' status is polled")
    run.add_argument("--promote-poll-timeout", type=float, default=1.0, metavar="SECONDS",
                     help="how long a promotion waits for each peer's status before deciding")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per peer poll is noise
    try:
        serve(replica_id=args.replica_id, port=args.port, data_dir=args.data, primary=args.primary,
              standby_of=args.standby_of, cloud=args.cloud, peers=args.peer, synchronous=args.synchronous,
              sync_timeout=args.sync_timeout, token_file=args.token_file, host=args.host,
              protection_allow=[kind for kind in args.protection_allow.split(",") if kind],
              peer_interval=args.peer_interval, peer_catch_up=args.peer_catch_up,
              promote_poll_timeout=args.promote_poll_timeout)
    except (NoToken, OSError) as error:
        print(f"replica: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except JournalCorrupt as error:
        print(f"replica: journal corrupt, refusing to start: {error}", file=sys.stderr)
        return EXIT_CORRUPT
    return 0
