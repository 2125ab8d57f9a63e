"""`failover replace REPLICA --site S`: a lost replica rebuilt on a new machine (`orchestrator.drivers.replace`;
docs/replace.md).

Exit codes: 0 replaced (the new standby acknowledges the primary, every replica of the engine took the new peer
list, the store records where it runs); 1 not finished when `--timeout` ran out (the machine does not answer yet,
or the rejoin goes on on it): run the same command again to resume, it never makes a second machine; also 1 when
replaced and recorded but a replica did not take the new peer list (named on stderr: it still looks for the replica
at its old address): the same command again tells it; 2 bad input (unknown engine, replica or site, a site with no
launch options, a bad duration); 3 refused as unsafe (the replica is the primary or still a healthy standby, the site is
quarantined, an incident is in flight, another replacement is under way) or the rejoin failed; 4 a cloud call, the
store or an engine failed for good.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.args import duration_between
from orchestrator.cli.common import ConfigOption, EngineOption, Output, OutputOption, console, err_console, print_json
from orchestrator.errors import EXIT_ACTED, UnsafeError

if TYPE_CHECKING:
    from orchestrator.drivers.replace import ReplaceOutcome

PEERS_STAGE = "peers"  # `orchestrator.drivers.replace.PEERS_STAGE` (the driver is imported only when it runs)

MAX_TIMEOUT = 24 * 3600.0
READ_TIMEOUT = 5.0


def _plain(outcome: ReplaceOutcome) -> dict[str, Any]:
    plan, rejoin, peers = outcome.plan, outcome.rejoin, outcome.peers
    return {"engine": plan.engine, "replica": plan.replica, "site": plan.site, "key": plan.key,
            "resumed": plan.resumed, "stage": plan.stage, "state": outcome.state, "instance": outcome.instance,
            "control_url": outcome.control_url, "created": outcome.created, "seconds": round(outcome.seconds, 3),
            "previous": {"site": plan.previous.site, "instance": plan.previous.instance},
            "rejoin": None if rejoin is None else {"state": rejoin.state, "last_seq": rejoin.last_seq,
                                                   "primary": rejoin.plan.primary, "epoch": rejoin.plan.epoch,
                                                   "acknowledging": rejoin.acknowledging},
            "peers": None if peers is None else {"epoch": peers.epoch, "urls": peers.urls, "told": peers.told,
                                                 "pending": peers.pending},
            "error": outcome.error}


def _stale_peers(outcome: ReplaceOutcome) -> str | None:
    """One line naming each replica that did not take the new peer list (it still polls the old address)."""
    peers, plan = outcome.peers, outcome.plan
    if peers is None or not peers.pending:
        return None
    old = f" at its old address {plan.previous.control_url}" if plan.previous.control_url else ""
    listed = "; ".join(f"{name}: {error}" for name, error in sorted(peers.pending.items()))
    return (f"warning: {plan.replica} replaced and recorded, but {', '.join(sorted(peers.pending))} did not take the "
            f"new peer list ({listed}): it still looks for {plan.replica}{old}, so a switchover onto "
            f"{plan.replica} would not commit until it does; run the same command again to tell it "
            f"(failover replace {plan.replica} --site {plan.site})")


def replace(
    replica: Annotated[str, typer.Argument(help="The lost replica to rebuild on a new machine.")],
    site: Annotated[str, typer.Option("--site", help="Where to start it (a configured site with launch options).")],
    config: ConfigOption = None,
    engine: EngineOption = None,
    timeout: Annotated[str, typer.Option("--timeout", help="Stop following after this long (run again to resume).")]
    = "30m",
    control_url: Annotated[str | None, typer.Option(
        "--control-url", help="Where the new engine answers (default: the site's launch.control_url).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a replica that still answers as a healthy standby.")]
    = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """Start a new standby for REPLICA on SITE from the site's launch template or image, wait for its engine, rejoin it
    to the current primary and record where it runs in the store. Resumable: run it again with the same arguments.
    Refused (exit 3) for the primary, a quarantined site, or while an incident runs."""
    from orchestrator.cli.common import load
    from orchestrator.cli.operate_cmd import actor
    from orchestrator.drivers.replace import Replace
    from orchestrator.drivers.wiring import StoreNameCache
    from orchestrator.engine.client import HttpEngineClient
    from providers import build_provider

    limit = duration_between(timeout, "--timeout", low=1, high=MAX_TIMEOUT, why="follow a longer replacement by "
                             "running the command again")
    loaded = load(config)
    client = HttpEngineClient(token_file=loaded.config.control_token_file, read_timeout=READ_TIMEOUT, attempts=3,
                              control_timeout=READ_TIMEOUT)
    try:
        with loaded.open_store() as store:
            names = StoreNameCache(store, writable=True)
            driver = Replace(loaded.topology, store, client,
                             lambda chosen: build_provider(chosen, poll_interval=1.0, names=names), actor=actor())
            plan = driver.plan(engine, replica, site, force=force)
            if output is Output.TABLE:
                again = " (resuming)" if plan.resumed else ""
                console.print(f"replacing {plan.replica} of {plan.engine} (was on {plan.previous.site}, "
                              f"{plan.previous.instance}) on {plan.site}{again}", markup=False)
            outcome = driver.run(plan, timeout=limit, control_url=control_url,
                                 on_progress=lambda line: err_console.print(f"  {line}", markup=False))
    finally:
        client.close()
    raise typer.Exit(_report(outcome, output))


def _report(outcome: ReplaceOutcome, output: Output) -> int:
    plan = outcome.plan
    if output is Output.JSON:
        print_json(_plain(outcome))
    elif outcome.state == "done":
        rejoin = outcome.rejoin
        seq = f" at seq {rejoin.last_seq}" if rejoin is not None else ""
        primary = f" of {rejoin.plan.primary}" if rejoin is not None else ""
        if plan.stage == PEERS_STAGE:
            told = ", ".join(outcome.peers.told) if outcome.peers is not None and outcome.peers.told else "none"
            console.print(f"replaced {plan.replica}: {outcome.instance} on {plan.site}; peers told its place: "
                          f"{told}; recorded in the store", markup=False, soft_wrap=True)
        else:
            told = ""
            if outcome.peers is not None and outcome.peers.told:
                told = f"; peers told its place: {', '.join(outcome.peers.told)}"
            console.print(f"replaced {plan.replica} in {outcome.seconds:.1f}s: {outcome.instance} on {plan.site} "
                          f"({'made' if outcome.created else 'found by its key'}), standby{primary}{seq}, "
                          f"acknowledging{told}; recorded in the store (the configuration still says "
                          f"{plan.previous.site}: failover status lists the difference)", markup=False,
                          soft_wrap=True)
    if outcome.state == "failed":
        raise UnsafeError(f"replacement of {plan.replica} on {plan.site}: the rejoin of {outcome.instance} failed: "
                          f"{outcome.error}; it stays fenced, run the command again once the cause is fixed")
    if outcome.state != "done":
        err_console.print(f"warning: {plan.replica} not replaced yet after {outcome.seconds:.0f}s ({outcome.state}"
                          f"{': ' + outcome.error if outcome.error else ''}); run the same command again to resume "
                          f"(key {plan.key}: no second machine is made)", markup=False, soft_wrap=True)
        return EXIT_ACTED
    stale = _stale_peers(outcome)
    if stale is not None:
        err_console.print(stale, markup=False, soft_wrap=True)
        return EXIT_ACTED
    return 0


def register(app: typer.Typer) -> None:
    app.command("replace")(replace)


if __name__ == "__main__":  # until `COMMANDS` registers it: python -m orchestrator.cli.replace_cmd REPLICA --site S
    from orchestrator.cli import commands
    from orchestrator.cli.app import main

    commands.COMMANDS.setdefault("replace", "replace_cmd")
    main(["replace", *sys.argv[1:]])
