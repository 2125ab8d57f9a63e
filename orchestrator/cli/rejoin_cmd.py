"""`failover rejoin REPLICA`: rebuild a fenced or diverged replica as a standby of the current primary
(`orchestrator.drivers.rejoin`; docs/rejoin.md).

Exit codes: 0 rejoined and acknowledging; 1 still rejoining when `--timeout` ran out (it goes on on the replica:
run the command again to follow it), or rejoined but not yet fetching as a standby; 2 bad input (unknown engine or
replica, a bad duration); 3 refused as unsafe (nothing changed) or the rejoin failed (the replica stays fenced, a
human decides); 4 an engine or the store could not be reached.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.args import duration_between
from orchestrator.cli.common import ConfigOption, EngineOption, Output, OutputOption, console, err_console, print_json
from orchestrator.errors import EXIT_ACTED, UnsafeError

if TYPE_CHECKING:
    from orchestrator.drivers.rejoin import RejoinOutcome

MAX_TIMEOUT = 24 * 3600.0
READ_TIMEOUT = 5.0
COLUMNS = ("seq", "kind", "client_order_id", "account", "market", "side", "type", "price", "qty")


def _progress(printed: dict[str, Any]) -> Any:
    """One line on stderr when the rejoin's state changes, and at most every 5 s while it copies."""
    def show(record: Any) -> None:
        state, now = record.get("state"), time.monotonic()
        if state == printed.get("state") and now - printed.get("at", 0.0) < 5.0:
            return
        printed.update(state=state, at=now)
        err_console.print(f"  {state}: seq {record.get('last_seq')} of {record.get('target_seq') or '?'}",
                          markup=False)
    return show


def _print_tails(outcome: RejoinOutcome) -> None:
    from rich.table import Table

    for tail in outcome.tails:
        console.print(f"archived on {outcome.plan.replica} ({tail.get('file')}): {tail.get('count')} entries after seq "
                      f"{tail.get('common_seq')} that the primary's history does not hold; never acknowledged to a "
                      "client, each order's outcome is \"not executed\". Reconcile with the clients:", markup=False)
        table = Table(title_justify="left")
        for column in COLUMNS:
            table.add_column(column)
        for entry in tail.get("entries") or []:
            table.add_row(*("" if entry.get(key) is None else str(entry.get(key)) for key in COLUMNS))
        console.print(table)
        listed = len(tail.get("entries") or [])
        if listed < int(tail.get("count") or 0):
            console.print(f"(first {listed} listed; all are in the archive file)", markup=False)
    if outcome.incident:
        console.print(f"recorded in incident {outcome.incident} (failover report {outcome.incident})", markup=False)


def _plain(outcome: RejoinOutcome) -> dict[str, Any]:
    plan = outcome.plan
    return {"engine": plan.engine, "replica": plan.replica, "primary": plan.primary, "epoch": plan.epoch,
            "fenced_first": plan.fence_first, "state": outcome.state, "seconds": round(outcome.seconds, 3),
            "last_seq": outcome.last_seq, "target_seq": outcome.target_seq, "acknowledging": outcome.acknowledging,
            "error": outcome.error, "incident": outcome.incident, "tails": outcome.tails}


def rejoin(
    replica: Annotated[str, typer.Argument(help="The fenced or diverged replica to rebuild as a standby.")],
    config: ConfigOption = None,
    engine: EngineOption = None,
    timeout: Annotated[str, typer.Option("--timeout", help="Stop following after this long (it goes on).")]
    = "30m",
    force: Annotated[bool, typer.Option("--force", help="Rebuild even a standby that replicates without error.")]
    = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """Rebuild REPLICA from the current primary: its diverged tail archived on its disk and listed (client_order_id,
    account), its journal copied and checked by hash chain; a standby that acknowledges once caught up. Refused
    (exit 3) with no current primary, on the primary, or with the epoch unknown."""
    from orchestrator.cli.common import load
    from orchestrator.cli.operate_cmd import actor
    from orchestrator.drivers.rejoin import Rejoin
    from orchestrator.drivers.status import current_topology
    from orchestrator.engine.client import HttpEngineClient

    limit = duration_between(timeout, "--timeout", low=1, high=MAX_TIMEOUT, why="follow a longer rejoin by running "
                             "the command again")
    loaded = load(config)
    # not a probe: a replica busy serving journal pages may answer late, and a late answer is not a refusal
    client = HttpEngineClient(token_file=loaded.config.control_token_file, read_timeout=READ_TIMEOUT, attempts=3,
                              control_timeout=READ_TIMEOUT)
    try:
        with loaded.open_store() as store:
            # the primary and the replica where they run now: a replica `failover replace` moved is at its new place
            driver = Rejoin(current_topology(loaded.topology, store), store, client, actor=actor())
            plan = driver.plan(engine, replica, force=force)
            if output is Output.TABLE:
                fenced = f"; fencing it first (it claims primary below epoch {plan.epoch})" if plan.fence_first else ""
                console.print(f"rejoining {plan.replica} to {plan.primary} (primary of {plan.engine}) at epoch "
                              f"{plan.epoch}{fenced}", markup=False)
            outcome = driver.run(plan, timeout=limit, on_progress=_progress({}))
    finally:
        client.close()
    raise typer.Exit(_report(outcome, output))


def _report(outcome: RejoinOutcome, output: Output) -> int:
    plan = outcome.plan
    if output is Output.JSON:
        print_json(_plain(outcome))
    elif outcome.state == "done":
        console.print(f"rejoined {plan.replica} in {outcome.seconds:.1f}s: standby of {plan.primary} at seq "
                      f"{outcome.last_seq}" + (", acknowledging" if outcome.acknowledging else ""), markup=False)
        _print_tails(outcome)
    if outcome.state == "failed":
        raise UnsafeError(f"rejoin of {plan.replica} to {plan.primary} failed: {outcome.error}; it stays fenced")
    if outcome.state != "done":
        err_console.print(f"warning: {plan.replica} still rejoining after {outcome.seconds:.0f}s (at seq "
                          f"{outcome.last_seq} of {outcome.target_seq or '?'}); it goes on: run the command again "
                          "to follow it", markup=False, soft_wrap=True)
        return EXIT_ACTED
    if not outcome.acknowledging:
        err_console.print(f"warning: {plan.replica} rejoined but has not fetched from {plan.primary} as a standby "
                          "yet", markup=False, soft_wrap=True)
        return EXIT_ACTED
    return 0


def register(app: typer.Typer) -> None:
    app.command("rejoin")(rejoin)

