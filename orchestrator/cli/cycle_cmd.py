"""`failover check`: one controller cycle, for cron. State is carried between runs in the store."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.args import check_port_free, duration_between, free_text, int_between, listen_address
from orchestrator.cli.common import ConfigOption, Output, OutputOption, console, err_console, load, print_json
from orchestrator.errors import EXIT_ACTED, EXIT_OK, EXIT_UNSAFE, ConfigError

if TYPE_CHECKING:
    from orchestrator.config import DaemonConfig
    from orchestrator.drivers.controller import CycleResult


def exit_code_for(result: CycleResult, needs_human: bool) -> int:
    """docs/design.md §8: 0 healthy, or following another leader (the leader's run is the one that pages: two crons on
    two hosts must not both alert), 1 acted or degraded, 3 a human is needed (holding, halted, needs_human)."""
    if not result.leader:
        return EXIT_OK
    if needs_human or result.needs_human or any(a.kind.value in ("halt", "hold", "propose") for a in result.actions):
        return EXIT_UNSAFE
    if result.acted or result.degraded:
        return EXIT_ACTED
    return EXIT_OK


def check(
    config: ConfigOption = None,
    output: OutputOption = Output.TABLE,
    identity: Annotated[str | None, typer.Option("--identity", help="Name in the leader lease.")] = None,
) -> None:
    """Run one cycle: probe, evaluate, decide, act or propose. Two overlapping runs never both act."""
    from orchestrator.drivers.events import Announcer
    from orchestrator.drivers.modes import Mode
    from orchestrator.drivers.wiring import build_controller, build_edges
    from orchestrator.store.records import IncidentStatus

    if identity is not None:
        free_text(identity, "--identity", limit=200)
    loaded = load(config)
    # with --output json, stdout carries one JSON document; announcements go to stderr
    announcer = Announcer(sys.stderr) if output is Output.JSON and loaded.config.notifications.stdout else None
    with build_edges(loaded, notifier=announcer) as edges:
        controller = build_controller(Mode.CRON, loaded, edges,
                                      identity=identity or f"check@{socket.gethostname()}:{os.getpid()}")
        try:
            result = controller.run_cycle()
        finally:
            controller.release()
        unheard = [] if controller.remote_fresh_start else controller.unheard_vantage_points(result.at)
        if unheard and result.leader:
            err_console.print(f"warning: nothing read from the probe agent(s) at {', '.join(unheard)} since the "
                              "last run: decided without them (is `failover daemon --observe-only --vantage SITE` "
                              "running there?)", markup=False, soft_wrap=True)
        edges.store.prune_observations(edges.clock() - loaded.config.daemon.observation_retention)
        needs_human = any(
            (i := edges.store.open_incident(name)) is not None and i.status is IncidentStatus.NEEDS_HUMAN
            for name in loaded.topology.engines
        )
    code = exit_code_for(result, needs_human)
    if output is Output.JSON:
        print_json({"message": result.message, "leader": result.leader, "acted": result.acted,
                    "exit_code": code, "verdicts": {s: a.verdict.value for s, a in result.verdicts.items()},
                    "actions": [{"kind": a.kind.value, "engine": a.engine, "reason": a.reason, "target": a.target}
                                for a in result.actions]})
    else:
        console.print(result.message, markup=False)
    raise typer.Exit(code)


def daemon(
    config: ConfigOption = None,
    identity: Annotated[str | None, typer.Option("--identity", help="Name in the leader lease.")] = None,
    vantage: Annotated[str, typer.Option("--vantage", help="Site this daemon probes from.")] = "orchestrator",
    listen: Annotated[str | None, typer.Option("--listen", help="host:port of /metrics, /healthz, /status.")]
    = None,
    listen_public: Annotated[bool, typer.Option("--listen-public", help="Allow --listen on a non-loopback address "
                                                                        "(/status names every replica).")] = False,
    interval: Annotated[str | None, typer.Option("--interval", help="Cycle interval (default: probes.interval).")]
    = None,
    max_cycles: Annotated[int | None, typer.Option("--max-cycles", hidden=True)] = None,
    observe_only: Annotated[bool, typer.Option("--observe-only", help="Only probe and record (a vantage point "
                                                                      "for another daemon); never lead.")] = False,
    public_feed: Annotated[str | None, typer.Option("--public-feed", help="host:port of the public status feed "
                                                                          "(/status.json, /feed.atom) for users.")]
    = None,
    public_feed_url: Annotated[str | None, typer.Option("--public-feed-url", help="Where users read the feed "
                                                                                  "(its Atom id and self link).")]
    = None,
    public_feed_name: Annotated[str, typer.Option("--public-feed-name", help="The feed's title.")]
    = "Exchange status",
) -> None:
    """Run the cycle on an interval; one leader acts, followers probe. SIGTERM finishes the step and releases."""
    from orchestrator.drivers.daemon import Daemon, configure_json_logs
    from orchestrator.drivers.events import Fanout
    from orchestrator.drivers.metrics import Metrics
    from orchestrator.drivers.modes import Mode
    from orchestrator.drivers.wiring import build_controller, build_edges

    if identity is not None:
        free_text(identity, "--identity", limit=200)
    every_arg = duration_between(interval, "--interval", low=0, high=3600) if interval is not None else None
    if max_cycles is not None:
        int_between(max_cycles, "--max-cycles", low=1, high=2**31)
    free_text(public_feed_name, "--public-feed-name", limit=200)
    if public_feed_url is not None:
        _check_feed_url(public_feed_url)
    loaded = load(config)
    topology = loaded.topology
    address = _listen(listen, loaded.config.daemon, listen_public)
    feed_address = listen_address(public_feed, "--public-feed", public=True) if public_feed else None
    if vantage != "orchestrator" and vantage not in topology.sites:
        raise ConfigError(f"--vantage {vantage}: not a configured site (or 'orchestrator')")
    configure_json_logs()
    metrics = Metrics()
    every = every_arg or loaded.config.daemon.cycle_interval or topology.probes.interval
    check_port_free(*address, "--listen" if listen else "daemon.listen")
    if feed_address is not None:
        check_port_free(*feed_address, "--public-feed")
    with build_edges(loaded, vantage=vantage) as edges:
        controller = build_controller(Mode.AGENT if observe_only else Mode.DAEMON, loaded,
                                      replace(edges, notifier=Fanout(edges.notifier, metrics)),
                                      identity=identity or f"daemon@{socket.gethostname()}:{os.getpid()}",
                                      vantage=vantage)
        runner = Daemon(controller, metrics, interval=every, listen=f"{address[0]}:{address[1]}",
                        listen_public=listen_public or loaded.config.daemon.listen_public,
                        retention=loaded.config.daemon.observation_retention)
        if edges.sender is not None:
            edges.sender.start()  # webhooks are posted off the cycle's path, whatever they do
        feed = _serve_pages(runner, loaded, feed_address, public_feed_url, public_feed_name)
        runner.install_signal_handlers()
        try:
            runner.run(max_cycles=max_cycles)
        finally:
            if feed is not None:
                feed.stop()


def _check_feed_url(url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if "@" in parts.netloc:  # never echo what may be a password
        raise ConfigError("--public-feed-url: a URL with user:password@ is refused; the feed is public")
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise ConfigError(f"--public-feed-url {url[:80]!r}: expected an http(s) URL with a host and no credentials, "
                          "e.g. https://status.example.com")


def _serve_pages(runner: Any, loaded: Any, feed_address: tuple[str, int] | None, url: str | None,
                 name: str) -> Any:
    """The status page on the daemon's own address, and the public feed on its own if asked for (so the feed can
    be published while the page, which names every replica, stays internal)."""
    from orchestrator.drivers.daemon_http import StatusServer
    from orchestrator.web.routes import PageSource, page_routes, public_routes

    source = PageSource(loaded, runner.status_document, feed_name=name)
    runner.pages.update(page_routes(source))
    if feed_address is None:
        return None
    host, port = feed_address
    server = StatusServer(host, port, public_routes(source, url or f"http://{host}:{port}"), allow_remote=True)
    server.start()
    return server


def _listen(flag: str | None, settings: DaemonConfig, public_flag: bool) -> tuple[str, int]:
    """The daemon's HTTP address from --listen or daemon.listen; off loopback only when asked for explicitly."""
    public = public_flag or settings.listen_public
    if flag is not None:
        return listen_address(flag, "--listen", public=public)
    return listen_address(str(settings.listen), "daemon.listen", public=public)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("daemon")(daemon)
