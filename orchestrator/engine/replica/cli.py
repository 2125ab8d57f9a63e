"""`python -m orchestrator.engine.replica serve ...`: run one reference replica on uvicorn.

`run(argv)` parses the command line and serves, raising our errors (`failover replica serve` hands it its
arguments and lets `failover`'s one error handler print them); `main(argv)` does the same for `python -m`, printing
the error as one line and returning its exit code; `serve(...)` takes the settings as keywords. Every reason not to
start is one line naming what is wrong: a usage error, no token, a corrupt `control.json` or journal, an unreadable
data directory (ConfigError, exit 2), an address that cannot be listened on (ListenError, exit 4). The control
token comes from `--token-file` or the environment variable FAILOVER_CONTROL_TOKEN; a replica without one refuses
to start, because it could otherwise never be fenced or promoted by anyone who can prove who they are. The token
is never logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import uvicorn

from orchestrator.core.errors import ConfigError, FailoverError
from orchestrator.core.model import Role
from orchestrator.core.phases import DEFAULT_PROTECTION_ALLOW, RequestKind
from orchestrator.engine.protocol import TOKEN_ENV
from orchestrator.engine.replica.app import create_app
from orchestrator.engine.replica.journal import ControlCorrupt, JournalCorrupt
from orchestrator.engine.replica.node import Node, Settings
from orchestrator.engine.replica.serving import Limits, bind, uvicorn_config


class NoToken(ConfigError):
    pass


def read_token(token_file: Path | None) -> str:
    """The token from `token_file` if given, else from the environment; surrounding whitespace removed."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise NoToken(f"cannot read the token file {token_file}: {getattr(error, 'strerror', None) or error}") \
                from None
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise NoToken(f"no control token: set {TOKEN_ENV} or pass --token-file")
    return token


def open_node(settings: Settings) -> Node:
    """The replica's state from its data directory; ConfigError naming the file if it cannot be used."""
    try:
        return Node(settings)
    except (JournalCorrupt, ControlCorrupt) as error:
        raise ConfigError(f"refusing to start: {error}") from None
    except OSError as error:
        where = error.filename or settings.data_dir
        raise ConfigError(f"cannot use the data directory: {where}: {error.strerror or error}") from None


def serve(*, replica_id: str, port: int, data_dir: Path, primary: bool = False, standby_of: str | None = None,
          cloud: str = "local", peers: Sequence[str] = (), synchronous: bool = True, sync_timeout: float = 2.0,
          token_file: Path | None = None, host: str = "127.0.0.1",
          protection_allow: Sequence[str] = DEFAULT_PROTECTION_ALLOW, peer_interval: float = 0.2,
          peer_catch_up: bool = True, promote_poll_timeout: float = 1.0, public_read: bool = False,
          limits: Limits = Limits()) -> None:
    """Run a replica until SIGINT/SIGTERM. Raises ConfigError or ListenError (FailoverError) before serving."""
    settings = Settings(
        replica_id=replica_id, data_dir=data_dir, cloud=cloud,
        initial_role=Role.PRIMARY if primary else Role.STANDBY, standby_of=standby_of, peers=tuple(peers),
        synchronous=synchronous, sync_timeout=sync_timeout, protection_allow=tuple(protection_allow),
        peer_catch_up=peer_catch_up, promote_poll_timeout=promote_poll_timeout, public_read=public_read,
        token=read_token(token_file),
    )
    listener = bind(host, port, limits.backlog)  # before the state is opened: a second copy must not touch it
    try:
        node = open_node(settings)
    except FailoverError:
        listener.close()
        raise
    log = logging.getLogger("orchestrator.engine.replica")
    if node.journal.truncated_bytes:
        log.warning("%s: cut %d bytes of an unfinished last journal line", replica_id, node.journal.truncated_bytes)
    log.info("%s: %s on %s:%d, epoch %d, last seq %d, %s%s", replica_id, node.role, host, port, node.epoch,
             node.journal.last_seq, "synchronous" if synchronous else "asynchronous",
             ", journal and trades readable without the token" if public_read else "")
    config = uvicorn_config(create_app(node, peer_interval=peer_interval, limits=limits), limits, lifespan="on")
    uvicorn.Server(config).run(sockets=[listener])


def _seconds(text: str) -> float:
    """A duration in seconds: a positive finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 86400:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds above 0 and below 86400")
    return value


def _kinds(text: str) -> list[str]:
    """Request kinds allowed in protection, comma-separated, each one of `RequestKind`."""
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    unknown = sorted(set(kinds) - {kind.value for kind in RequestKind})
    if unknown:
        known = ", ".join(kind.value for kind in RequestKind)
        raise argparse.ArgumentTypeError(f"unknown request kind {', '.join(unknown)} (known: {known})")
    return kinds


class _Parser(argparse.ArgumentParser):
    """Usage errors as ConfigError (one line, exit 2) instead of argparse's usage text and SystemExit."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message} (see --help)")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog,
                     description="Reference engine replica (test partner of the orchestrator).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("serve", help="serve the engine control protocol and order entry")
    run.add_argument("--id", required=True, dest="replica_id", help="replica name, e.g. spot-aws")
    run.add_argument("--port", required=True, type=int)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--data", required=True, type=Path, help="directory for the journal and control state")
    role = run.add_mutually_exclusive_group()
    role.add_argument("--primary", action="store_true", help="start as primary (on a fresh data directory)")
    role.add_argument("--standby-of", metavar="URL", help="start as a standby of this primary")
    run.add_argument("--cloud", default="local", help="failure domain; sync replication needs another one")
    run.add_argument("--peer", action="append", default=[], metavar="URL",
                     help="another replica (repeat); with --standby-of, replaced by a list the orchestrator sets "
                          "(POST /v1/peers), which is kept across restarts")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--sync", dest="synchronous", action="store_true", default=True,
                      help="acknowledge orders once a standby on another cloud holds them (default)")
    mode.add_argument("--async", dest="synchronous", action="store_false", help="acknowledge once durable here")
    run.add_argument("--sync-timeout", type=_seconds, default=2.0, metavar="SECONDS")
    run.add_argument("--token-file", type=Path, help=f"file holding the control token (else ${TOKEN_ENV})")
    run.add_argument("--protection-allow", type=_kinds, default=list(DEFAULT_PROTECTION_ALLOW),
                     help="comma-separated request kinds allowed in protection (can only narrow the table)")
    run.add_argument("--no-peer-catch-up", dest="peer_catch_up", action="store_false",
                     help="copy only from a primary, never from a peer while no primary is reachable")
    run.add_argument("--peer-interval", type=_seconds, default=0.2, metavar="SECONDS",
                     help="how often peers' status is polled")
    run.add_argument("--promote-poll-timeout", type=_seconds, default=1.0, metavar="SECONDS",
                     help="how long a promotion waits for each peer's status before deciding")
    run.add_argument("--public-read", action="store_true",
                     help="serve GET /v1/journal and /v1/trades without the token (they show accounts and orders)")
    return parser


def run(argv: Sequence[str] | None = None, prog: str = "python -m orchestrator.engine.replica") -> None:
    """Parse `argv` and serve until stopped; FailoverError (one line, with its exit code) if it cannot start."""
    args = _parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per peer poll is noise
    serve(replica_id=args.replica_id, port=args.port, data_dir=args.data, primary=args.primary,
          standby_of=args.standby_of, cloud=args.cloud, peers=args.peer, synchronous=args.synchronous,
          sync_timeout=args.sync_timeout, token_file=args.token_file, host=args.host,
          protection_allow=args.protection_allow,
          peer_interval=args.peer_interval, peer_catch_up=args.peer_catch_up,
          promote_poll_timeout=args.promote_poll_timeout, public_read=args.public_read)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(argv)
    except FailoverError as error:
        print(f"replica: {error}", file=sys.stderr)
        return error.exit_code
    return 0
