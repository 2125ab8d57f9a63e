"""The operator's commands: plan, execute, halt, protect, reopen, approve (docs/design.md §8).

Each command imports the operator, the edges and the engine client when it runs, not when `failover --help` lists
it; what this module needs at import time is the commands' signatures.
"""

from __future__ import annotations

import getpass
import socket
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.args import MAX_WINDOW, duration_between, free_text, incident_id
from orchestrator.cli.common import (
    ConfigOption,
    EngineOption,
    Output,
    OutputOption,
    console,
    err_console,
    load,
    notifier_for,
    print_json,
)
from orchestrator.errors import EXIT_ACTED, EXIT_OK, EXIT_UNSAFE, ConfigError, UnsafeError

if TYPE_CHECKING:
    from rich.table import Table

    from orchestrator.config import LoadedConfig
    from orchestrator.drivers.operator import HaltOutcome, Operator, PlanReport
    from providers.permissions import Grant

class Asked(StrEnum):
    """Whose calls `failover plan --check-permissions` asks about (`--for`)."""

    FAILOVER = "failover"  # the failover's: fence, start, DNS, the signals' reads
    REPLACE = "replace"  # `failover replace`'s launch on each site with launch options
    ALL = "all"


ReasonOption = Annotated[str, typer.Option("--reason", help="Why; goes into the announcement and the audit log.")]


def actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def load_for(config: Path | None, engine: str | None, target: str | None = None) -> LoadedConfig:
    """The configuration, with --engine and --target checked against it before any store or engine is touched."""
    from orchestrator.drivers.operator import check_replica, pick_engine

    loaded = load(config)
    chosen = pick_engine(loaded.topology, engine)
    if target is not None:
        check_replica(chosen, target)
    return loaded


def _print_plan(report: PlanReport, grants: list[Grant] | None = None) -> None:
    from rich.table import Table

    console.print(f"[bold]failover plan for {report.engine}[/]: {report.source} -> {report.target or '(none)'} "
                  f"at epoch {report.epoch}")
    for position, step in enumerate(report.steps, 1):
        console.print(f"{position:2}. [bold]{step.step}[/]" + (f"  [yellow]{step.note}[/]" if step.note else ""))
        for call in step.calls:
            console.print(f"      {call}", markup=False)
    table = Table(title="candidates", title_justify="left")
    for column in ("replica", "eligible", "lag", "blocked by"):
        table.add_column(column)
    for c in report.candidates:
        table.add_row(c["replica"], "yes" if c["eligible"] else "no", str(c["lag"]), "; ".join(c["blocked_by"]))
    console.print(table)
    if grants is not None:
        refused = sum(1 for g in grants if g.allowed is False)
        unknown = sum(1 for g in grants if g.allowed is None)
        console.print(f"[bold]permissions[/]: {len(grants)} asked, {refused} refused, {unknown} unknown")
        for grant in grants:
            console.print(f"      {grant.line()}", markup=False)
    blocked = _blocked(report, grants)
    if blocked:
        from rich.markup import escape

        console.print(f"[red]blocked[/]: {escape('; '.join(blocked))}")
    else:
        console.print("[green]safe to proceed[/] (no call above was made)")


def _blocked(report: PlanReport, grants: list[Grant] | None = None) -> list[str]:
    """The rules that block the failover, every fact the plan could not read (`state_unknown: ...`): a plan that
    cannot vouch for a machine's or a record's state is not safe, whatever the rules say; and every permission a
    cloud refused or could not be asked about (`permission_refused` / `permission_unknown`)."""
    from orchestrator.drivers.preview import unknowns

    found = list(report.blocked_by) + [f"state_unknown: {line}" for line in unknowns(report.steps)]
    for grant in grants or ():
        if grant.allowed is not True:
            found.append(f"permission_{grant.verdict}: {grant.permission} on {grant.where}")
    return found


def plan(
    config: ConfigOption = None,
    engine: EngineOption = None,
    target: Annotated[str | None, typer.Option("--target", help="Replica to promote (default: the best).")] = None,
    assume_primary_lost: Annotated[bool, typer.Option(
        "--assume-primary-lost", help="Contact no engine; plan as if the primary's site were lost (CI dry run).")]
    = False,
    check_permissions: Annotated[bool, typer.Option(
        "--check-permissions", help="Ask each cloud whether the credential may make every call a failover makes "
        "(EC2 DryRun, GCP testIamPermissions, Azure permissions API, DNS zone reads); exit 3 on a refusal.")] = False,
    for_: Annotated[Asked, typer.Option(
        "--for", help="With --check-permissions: the failover's calls, `failover replace`'s launch on each site with "
        "launch options (EC2 RunInstances, Compute instances.insert, Azure VM create), or both.")] = Asked.FAILOVER,
    output: OutputOption = Output.TABLE,
) -> None:
    """The steps a failover would run, each call it would make, and which safety rule would block it.
    Makes no change (provider and DNS writes are only recorded). Exit 3 when a rule blocks, a state cannot be read,
    or (with --check-permissions) a cloud refuses a permission the failover (or, --for replace, a launch) needs."""
    from orchestrator.drivers.operator import Operator
    from orchestrator.drivers.wiring import build_edges

    if for_ is not Asked.FAILOVER and not check_permissions:
        raise ConfigError(f"--for {for_.value}: says which permissions --check-permissions asks; add "
                          "--check-permissions")
    loaded = load_for(config, engine, target)
    with build_edges(loaded, dry_run=True) as edges:
        operator = Operator(loaded, edges, actor=actor())
        report = operator.plan(engine, target, assume_primary_lost=assume_primary_lost)
        grants = _permissions(operator, report.engine, for_) if check_permissions else None
    blocked = _blocked(report, grants)
    if output is Output.JSON:
        print_json({**_plain_plan(report, grants), "safe": report.target is not None and not blocked})
    else:
        _print_plan(report, grants)
    if report.target is None or blocked:
        raise typer.Exit(EXIT_UNSAFE)


def _permissions(operator: Operator, engine_name: str, asked: Asked) -> list[Grant]:
    """The failover's permissions (each replica's instance where it runs now: a replaced one's new site is asked),
    `failover replace`'s launch permissions on each site with launch options, or both, as `--for` says."""
    from providers.permissions import check_engine, check_launch

    topology, edges = operator.topology, operator.edges
    grants = check_engine(topology.engines[engine_name], edges.providers, edges.routers) \
        if asked is not Asked.REPLACE else []
    if asked is not Asked.FAILOVER:
        launching = check_launch(topology, edges.providers)
        if not launching:
            err_console.print("note: --for replace: no site has launch options, so `failover replace` can start a "
                              "replica nowhere and nothing was asked for it", markup=False, soft_wrap=True)
        grants += launching
    return grants


def _plain_plan(report: PlanReport, grants: list[Grant] | None = None) -> dict[str, Any]:
    permissions = {} if grants is None else {"permissions": [
        {"where": g.where, "permission": g.permission, "verdict": g.verdict, "detail": g.detail} for g in grants]}
    return {"engine": report.engine, "source": report.source, "target": report.target, "epoch": report.epoch,
            "blocked_by": _blocked(report, grants), "candidates": report.candidates, **permissions,
            "steps": [{"step": s.step, "calls": s.calls, "note": s.note, **({"unknown": s.unknown} if s.unknown
                                                                             else {})} for s in report.steps]}


def _steps_table(journal: list[Any]) -> Table:
    from rich.table import Table

    from orchestrator.core.runbook import STEPS

    table = Table(title="runbook", title_justify="left")
    table.add_column("step")
    table.add_column("state")
    table.add_column("detail")
    last: dict[str, Any] = {}
    for entry in journal:
        last[entry.step] = entry
    for step in STEPS:
        entry = last.get(step.value)
        state = entry.state if entry else "pending"
        style = {"done": "green", "failed": "red", "needs_human": "red bold", "started": "yellow"}.get(state, "dim")
        detail = ""
        if entry is not None:
            detail = str(entry.detail.get("error") or entry.detail.get("how") or entry.detail.get("lag", ""))
        table.add_row(step.value, f"[{style}]{state}[/]", detail)
    return table


def execute(
    target: Annotated[str, typer.Option("--target", help="Replica to promote.")],
    config: ConfigOption = None,
    engine: EngineOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan and change nothing.")] = False,
    protection: Annotated[str | None, typer.Option("--protection", "--protect", help=(
        "Protection window (default: config; with --at: none)."))] = None,
    timeout: Annotated[str | None, typer.Option("--timeout", help="Stop watching after this long.")] = None,
    at: Annotated[str | None, typer.Option("--at", help=(
        "Plan it for then (ISO 8601 with a zone, or +30m; at most 7 days ahead): announced, run by the leading "
        "daemon; `failover cancel` undoes it."))] = None,
) -> None:
    """A manual switchover to TARGET with a live view of the runbook, or, with --at, a planned one; refused
    (exit 3) when unsafe."""
    if at is not None:  # a planned switchover: checked and stored now, run by whichever daemon leads then
        from orchestrator.cli.schedule_cmd import schedule

        schedule(config, engine, target, at, protection, yes=yes, dry_run=dry_run, timeout=timeout)
        return
    from rich.live import Live

    from orchestrator.drivers.operator import Operator
    from orchestrator.drivers.wiring import build_edges
    from orchestrator.store.records import IncidentStatus

    window = _window(protection, "--protection") if protection is not None else None
    limit = _window(timeout, "--timeout") if timeout is not None else None
    loaded = load_for(config, engine, target)
    with build_edges(loaded, dry_run=dry_run) as edges:
        operator = Operator(loaded, edges, actor=actor())
        running = operator.resumable(engine, target)
        if running is not None and not dry_run:  # the command that drove it died: go on from its journal
            console.print(f"resuming incident {running} from its journal")
            with Live(_steps_table([]), console=console, refresh_per_second=8) as live:
                incident = operator.resume(running, timeout=limit, on_progress=lambda j: live.update(_steps_table(j)))
            console.print(f"incident {incident.id}: {incident.status.value}")
            if incident.status is IncidentStatus.NEEDS_HUMAN:
                raise typer.Exit(EXIT_UNSAFE)
            return
        report = operator.plan(engine, target)
        if dry_run:
            _print_plan(report)
            if not report.safe:
                raise typer.Exit(EXIT_UNSAFE)
            return
        if report.blocked_by:
            raise UnsafeError(f"refused: switchover of {report.engine} to {target}: {'; '.join(report.blocked_by)}")
        if not yes:
            if not sys.stdin.isatty():
                raise UnsafeError("refused: not a terminal; pass --yes to confirm the switchover")
            typer.confirm(f"Halt {report.engine}, fence {report.source} and promote {target}?", abort=True)
        with Live(_steps_table([]), console=console, refresh_per_second=8, transient=False) as live:
            incident = operator.execute(engine, target, protection=window, timeout=limit,
                                        on_progress=lambda journal: live.update(_steps_table(journal)))
    console.print(f"incident {incident.id}: {incident.status.value}")
    if incident.status is IncidentStatus.NEEDS_HUMAN:
        raise typer.Exit(EXIT_UNSAFE)


def _window(text: str, option: str) -> float:
    return duration_between(text, option, low=0, high=MAX_WINDOW, why="a longer stop is a halt: failover halt")


def halt(config: ConfigOption = None, engine: EngineOption = None, reason: ReasonOption = "operator halt") -> None:
    """Halt trading now: no orders accepted, no matching. Works with the store down: the engines are halted
    first, and the record is queued locally and replayed by the next command that reaches the store (exit 1)."""
    from orchestrator.config import load_config
    from orchestrator.drivers.operator import EmergencyBrake, pick_engine, placed_within
    from orchestrator.engine.client import HttpEngineClient

    free_text(reason, "--reason")
    loaded = load_config(config)  # not load(): replaying a queued record must never delay the brake
    pick_engine(loaded.topology, engine)
    # a replica `failover replace` moved is halted where it runs now, if the store says so in time (2 s at most)
    topology, unplaced = placed_within(loaded)
    client = HttpEngineClient(token_file=loaded.config.control_token_file,
                              read_timeout=max(0.2, loaded.topology.probes.timeout), attempts=2,
                              control_timeout=max(5.0, loaded.topology.probes.timeout))
    try:
        outcome = EmergencyBrake(loaded, client, notifier_for(loaded), actor=actor(), topology=topology,
                                 unplaced=unplaced).halt(engine, reason)
    finally:
        client.close()
    raise typer.Exit(_report_halt(outcome))


def _report_halt(outcome: HaltOutcome) -> int:
    """One line on stdout for what the engines did, one on stderr when the store did not hear of it."""
    line = f"halted {outcome.engine} on {outcome.primary} (epoch {outcome.epoch})"
    others = [name for name in outcome.halted if name != outcome.primary]
    if others:
        line += f"; also halted {', '.join(others)}"
    if outcome.silent:
        line += f"; no answer from {', '.join(outcome.silent)}"
    console.print(line, markup=False)
    if outcome.replayed:
        err_console.print(f"note: {outcome.replayed} record(s) queued while the store was unreachable were "
                          "written to it", markup=False, soft_wrap=True)
    placed = (f"; replicas halted where the configuration file places them, as the store did not say where "
              f"replaced ones run ({outcome.unplaced})") if outcome.unplaced else ""
    if outcome.recorded:
        if placed:
            err_console.print(f"warning: {placed[2:]}", markup=False, soft_wrap=True)
        return EXIT_OK
    if outcome.spool is not None:
        err_console.print(f"warning: store unreachable ({outcome.store_problem}{placed}): record queued in "
                          f"{outcome.spool}, replayed on the next run", markup=False, soft_wrap=True)
    else:
        err_console.print(f"warning: store unreachable ({outcome.store_problem}{placed}) and the record could not be "
                          f"queued ({outcome.spool_problem}): trading IS halted; only this message records it",
                          markup=False, soft_wrap=True)
    return EXIT_ACTED


def protect(
    for_: Annotated[str, typer.Option("--for", help="Length of the window, e.g. 20m; at most 24h.")],
    config: ConfigOption = None,
    engine: EngineOption = None,
    reason: ReasonOption = "operator protection window",
) -> None:
    """Open (or extend) the recovery-protection window: cancel, post-only and add-margin only; no matching.
    At most 24h: a longer stop is a halt (`failover halt`)."""
    from orchestrator.drivers.operator import Operator
    from orchestrator.drivers.wiring import build_edges

    duration = _window(for_, "--for")
    free_text(reason, "--reason")
    loaded = load_for(config, engine)
    with build_edges(loaded) as edges:
        Operator(loaded, edges, actor=actor()).protect(engine, duration, reason)


def reopen(
    config: ConfigOption = None,
    engine: EngineOption = None,
    force: Annotated[bool, typer.Option("--force", help="Reopen before the window ends, or from halted.")] = False,
    reason: ReasonOption = "operator reopen",
) -> None:
    """Reopen normal trading; refused before the protection window has elapsed unless --force."""
    from orchestrator.drivers.operator import Operator
    from orchestrator.drivers.wiring import build_edges

    free_text(reason, "--reason")
    loaded = load_for(config, engine)
    with build_edges(loaded) as edges:
        Operator(loaded, edges, actor=actor()).reopen(engine, force=force, reason=reason)


def approve(
    incident: Annotated[str, typer.Argument(help="The proposed incident's id (see `failover history`).")],
    config: ConfigOption = None,
    timeout: Annotated[str | None, typer.Option("--timeout", help="Stop watching after this long.")] = None,
) -> None:
    """Approve a proposed failover (approval: manual) and watch it run."""
    from rich.live import Live

    from orchestrator.drivers.operator import Operator
    from orchestrator.drivers.wiring import build_edges
    from orchestrator.store.records import IncidentStatus

    incident_id(incident)
    limit = _window(timeout, "--timeout") if timeout is not None else None
    loaded = load(config)
    with build_edges(loaded) as edges, Live(_steps_table([]), console=console, refresh_per_second=8) as live:
        done = Operator(loaded, edges, actor=actor()).approve(incident, timeout=limit,
                                                              on_progress=lambda j: live.update(_steps_table(j)))
    console.print(f"incident {done.id}: {done.status.value}")
    if done.status is IncidentStatus.NEEDS_HUMAN:
        raise typer.Exit(EXIT_UNSAFE)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("execute")(execute)
    app.command("halt")(halt)
    app.command("protect")(protect)
    app.command("reopen")(reopen)
    app.command("approve")(approve)
