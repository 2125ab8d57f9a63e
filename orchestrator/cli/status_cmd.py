"""`failover status`: engines, replicas, phase, open incident and last verdicts, as a table or JSON, once or live.

Why the table lays itself out here rather than leaving it to rich: rich shrinks every column to fit the terminal
and cuts what does not fit with an ellipsis, so at 80 columns `spot-aws` and `spot-azure` both read `spot-a…`,
during an incident. Here no value is ever cut: columns are dropped, least important first, until the rest fit
whole (as kubectl does; `-o wide` asks for every column), and where even the ids do not fit, each replica is
printed as lines of its own that wrap between words.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from orchestrator.cli.common import ConfigOption, console, load, print_json
from orchestrator.errors import EXIT_CALL_FAILED, EXIT_OK, EXIT_UNSAFE, ConfigError, FailoverError

if TYPE_CHECKING:
    from orchestrator.config import LoadedConfig
    from orchestrator.drivers.status import EngineLine, ReplicaLine, StatusReport

STYLE = {"healthy": "green", "suspect": "yellow", "down": "red", "flapping": "magenta", "unknown": "dim",
         "open": "green", "protection": "yellow", "halted": "red"}

DEFAULT_WATCH = "2s"
MIN_WATCH_S = 0.1  # a faster refresh reads the store more often than anyone can read the screen
MAX_WATCH_S = 3600.0


class StatusOutput(StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a replica table. `ident`: its values are ids, kept in every layout and never cut."""

    header: str
    value: Callable[[ReplicaLine], str]
    ident: bool = False
    styled: bool = False


# in the order they are dropped last to first: the ids, then what an SRE reads first in an incident
COLUMNS_BY_PRIORITY: tuple[Column, ...] = (
    Column("replica", lambda r: r.name, ident=True),
    Column("site", lambda r: r.site, ident=True),
    Column("replica verdict", lambda r: r.verdict, styled=True),
    Column("site verdict", lambda r: r.site_verdict, styled=True),
    Column("role", lambda r: r.role),
    Column("provider", lambda r: r.provider),
    Column("region", lambda r: r.region),
    Column("instance", lambda r: r.instance),
)
DISPLAY_ORDER = ("replica", "role", "site", "provider", "region", "instance", "replica verdict", "site verdict")
EDGES = 1  # a table's left border; each column adds its two padding cells and one border
PER_COLUMN = 3

OutputOption = Annotated[StatusOutput, typer.Option(
    "--output", "-o", help="table for people (columns dropped to fit the terminal), wide (every column), json.")]
# `--watch` or `--watch 2s`: the locked typer's click has no option with an optional value, so the interval is an
# optional argument that only --watch accepts
WatchOption = Annotated[bool, typer.Option(
    "--watch", "-w", help=f"Refresh in place until Ctrl-C, every {DEFAULT_WATCH} or as given: --watch 5s.")]
IntervalArgument = Annotated[str | None, typer.Argument(metavar="INTERVAL", show_default=False,
                                                        help="With --watch: seconds between refreshes (e.g. 5s).")]
WatchCountOption = Annotated[int | None, typer.Option("--watch-count", hidden=True, min=1)]


def exit_code(report: StatusReport) -> int:
    """3 while an incident waits for a human (a failed step, or a proposal to approve), else 0: a pager can poll
    `failover status` and alert on 3 alone, as it does for `failover check`."""
    from orchestrator.store.records import IncidentStatus

    waiting_for_a_human = {IncidentStatus.NEEDS_HUMAN.value, IncidentStatus.PROPOSED.value}
    waiting = any(e.incident is not None and e.incident["status"] in waiting_for_a_human for e in report.engines)
    return EXIT_UNSAFE if waiting else EXIT_OK


def status(interval_text: IntervalArgument = None, config: ConfigOption = None,
           output: OutputOption = StatusOutput.TABLE, watch: WatchOption = False,
           watch_count: WatchCountOption = None) -> None:
    """Show each engine's replicas, trading phase, open incident and the last verdicts (reads the store only).
    Exit 3 while an incident needs a human; with --watch, 0 at Ctrl-C."""
    from orchestrator.drivers.status import gather_status

    if interval_text is not None and not watch:
        raise ConfigError(f"{interval_text!r}: an interval is given after --watch (failover status --watch 5s)")
    interval = watch_interval(interval_text or DEFAULT_WATCH) if watch else None
    if interval is not None and output is StatusOutput.JSON:
        raise ConfigError("--watch: refreshes a table in place; with --output json, run `failover status -o json` "
                          "on an interval instead")
    loaded = load(config)
    if interval is not None:
        raise typer.Exit(_watch(loaded, interval, watch_count, wide=output is StatusOutput.WIDE))
    report = gather_status(loaded)
    if output is StatusOutput.JSON:
        print_json(report)
    else:
        _print(status_view(loaded, report, console.width, wide=output is StatusOutput.WIDE))
    raise typer.Exit(exit_code(report))


def watch_interval(text: str) -> float:
    from orchestrator.cli.args import duration_between

    seconds = duration_between(text, "--watch", low=0.0, high=MAX_WATCH_S)
    if seconds < MIN_WATCH_S:
        raise ConfigError(f"--watch {text.strip()}: expected an interval of at least 100ms")
    return seconds


def _watch(loaded: LoadedConfig, interval: float, count: int | None, *, wide: bool) -> int:
    """Redraw in place on a terminal (appended frames elsewhere, as `kubectl get -w` does) until Ctrl-C (exit 0)
    or `count` frames (a test's bound: the last frame's exit code, 4 if the store could not be read)."""
    from rich.live import Live

    code = EXIT_OK
    try:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            for frame, (view, code) in enumerate(_frames(loaded, wide), start=1):
                if console.is_terminal:
                    live.update(Group(*view), refresh=True)
                else:
                    _print(view)
                if count is not None and frame >= count:
                    return code
                time.sleep(interval)
    except KeyboardInterrupt:
        return EXIT_OK
    return code


def _print(parts: Sequence[RenderableType]) -> None:
    """Each part as the console prints it: a line of text whole (the terminal wraps it), a table to its width."""
    for part in parts:
        console.print(part)


def _frames(loaded: LoadedConfig, wide: bool) -> Iterator[tuple[list[RenderableType], int]]:
    """Each refresh's view and exit code: a store that cannot be read is one line, and the next refresh tries
    again (an SRE watching through an etcd outage wants the table back the moment it answers)."""
    from orchestrator.drivers.status import gather_status

    while True:
        try:
            report = gather_status(loaded)
        except (FailoverError, OSError) as error:
            said = " ".join(str(error).split()) or type(error).__name__
            yield [Text(f"{time.strftime('%H:%M:%S UTC', time.gmtime())} cannot read the store: {said}; trying "
                        "again", style="red")], EXIT_CALL_FAILED
            continue
        yield status_view(loaded, report, console.width, wide=wide), exit_code(report)


def status_view(loaded: LoadedConfig, report: StatusReport, width: int, *,
                wide: bool = False) -> list[RenderableType]:
    """Everything `failover status` prints, laid out for `width` columns."""
    from orchestrator.core.phases import format_instant, parse_timezone

    display = parse_timezone(loaded.topology.display_timezone)
    when = format_instant(report.verdicts_at, display) if report.verdicts_at else "never (no cycle has run yet)"
    parts: list[RenderableType] = [_line(f"config {report.config} · store {report.store} · last cycle {when}")]
    for engine in report.engines:
        parts += _engine(engine, display, width, wide)
    parts += [_line(text) for text in _quarantines(report, display)]
    parts += [_line(f"planned switchover {p['id']}: {p['engine']} to {p['target']} at "
                    f"{format_instant(p['at'], display)} ({p['state']}; `failover cancel {p['id']}` cancels it)")
              for p in report.planned]
    parts += [_line(text) for text in _rebuilds(report, display)]
    parts += [_line(text) for text in report.replacing]
    parts += [_line(f"topology differs from the configuration: {text}") for text in report.topology_differs]
    parts += [_line(text) for text in _notifications(report, display)]
    parts += [_line(text) for text in _daemons(report, display)]
    return parts


def _line(text: str, style: str = "") -> Text:
    """One fact per line, whole: printed, the terminal wraps it (and `grep` finds it on one line); in --watch's
    live view rich wraps it between words (a word is split only when it is longer than the whole line)."""
    return Text(text, style=style)


def _engine(engine: EngineLine, display: tzinfo, width: int, wide: bool) -> list[RenderableType]:
    from orchestrator.core.phases import format_instant

    heading = Text(f"engine {engine.name} — phase ")
    heading.append(engine.phase, style=STYLE.get(engine.phase, ""))
    if engine.phase_until:
        heading.append(f" until {format_instant(engine.phase_until, display)}")
    elif engine.phase_since:
        heading.append(f" since {format_instant(engine.phase_since, display)}")
    heading.append(f" — epoch {engine.epoch} — primary {engine.primary}")
    parts: list[RenderableType] = [heading, *replica_layout(engine.replicas, width, wide=wide)]
    if engine.incident:
        i = engine.incident
        parts.append(_line(f"  open incident {i['id']} ({i['kind']}, {i['status']}): {i['reason']}"))
    else:
        parts.append(_line("  no open incident"))
    return parts


def replica_layout(replicas: Sequence[ReplicaLine], width: int, *, wide: bool) -> list[RenderableType]:
    """The replicas as a table of the columns that fit whole in `width` (every column with `wide`, or none), or,
    where even the ids do not fit, as a block of lines per replica."""
    chosen = _fitting(replicas, width, wide)
    if chosen is None:
        return [_records(r) for r in replicas]
    table = _table(replicas, chosen, width)
    hidden = [c.header for c in COLUMNS_BY_PRIORITY if c not in chosen]
    if not hidden:
        return [table]
    return [table, _line(f"  not shown at {width} columns: {', '.join(hidden)} (`-o wide` shows every column)",
                         style="dim")]


def _minimum(column: Column, replicas: Sequence[ReplicaLine]) -> int:
    """The narrowest the column can be with every value whole (its header may wrap between words)."""
    from rich.cells import cell_len

    words = [cell_len(word) for word in column.header.split()]
    return max([*words, *(cell_len(column.value(r)) for r in replicas)])


def _natural(column: Column, replicas: Sequence[ReplicaLine]) -> int:
    from rich.cells import cell_len

    return max(cell_len(column.header), _minimum(column, replicas))


def _table_width(widths: Sequence[int]) -> int:
    return sum(widths) + PER_COLUMN * len(widths) + EDGES


def _fitting(replicas: Sequence[ReplicaLine], width: int, wide: bool) -> list[Column] | None:
    """The most important columns that fit whole: all of them or nothing with `wide`; at least the ids."""
    minimums = [_minimum(c, replicas) for c in COLUMNS_BY_PRIORITY]
    idents = sum(1 for c in COLUMNS_BY_PRIORITY if c.ident)
    counts = [len(COLUMNS_BY_PRIORITY)] if wide else range(len(COLUMNS_BY_PRIORITY), idents - 1, -1)
    for count in counts:
        if _table_width(minimums[:count]) <= width:
            return list(COLUMNS_BY_PRIORITY[:count])
    return None


def _table(replicas: Sequence[ReplicaLine], chosen: Sequence[Column], width: int) -> RenderableType:
    """Columns given fixed widths (rich then never shrinks one below its longest value): each its minimum, and
    what is left putting headers on one line, in display order."""
    from rich.table import Table

    shown = sorted(chosen, key=lambda c: DISPLAY_ORDER.index(c.header))
    widths = [_minimum(c, replicas) for c in shown]
    spare = width - _table_width(widths)
    for n, column in enumerate(shown):
        grow = _natural(column, replicas) - widths[n]
        if grow <= spare:  # only where the header then fits on one line: a wider column alone helps nobody
            widths[n] += grow
            spare -= grow
    table = Table()
    for column, fixed in zip(shown, widths, strict=True):
        table.add_column(column.header, width=fixed, no_wrap=column.ident)
    for r in replicas:
        table.add_row(*(_cell(c, r) for c in shown))
    return table


def _cell(column: Column, r: ReplicaLine) -> Text:
    """A value as text, never as markup (a name is printed as written); verdicts in their colour, the primary bold."""
    value = column.value(r)
    if column.styled:
        return Text(value, style=STYLE.get(value, ""))
    return Text(value, style="bold" if column.header == "role" and value == "primary" else "")


def _records(r: ReplicaLine) -> RenderableType:
    """One replica as lines that wrap between words: for a terminal too narrow for even the ids' columns."""
    head = Text(r.name, style="bold" if r.role == "primary" else "")
    head.append(f" {r.role}, verdict ")
    head.append(r.verdict, style=STYLE.get(r.verdict, ""))
    return Group(head, _line(f"  site {r.site} (verdict {r.site_verdict}), {r.provider} {r.region}, "
                             f"instance {r.instance}"))


def _quarantines(report: StatusReport, display: tzinfo) -> list[str]:
    """Each site that is neither a failover target nor a rejoin host, and when it may be again."""
    from orchestrator.core.durations import format_duration
    from orchestrator.core.phases import format_instant

    hold = format_duration(report.quarantine_s)
    lines = []
    for q in report.quarantines:
        relapses = f", {q.relapses} relapse{'s' if q.relapses != 1 else ''}" if q.relapses else ""
        if q.ends_at is None:
            ends = f"not healthy now: ends {hold} after it is healthy again"
        else:
            healthy = format_instant(q.healthy_since or 0.0, display)
            ends = f"healthy since {healthy}: ends {format_instant(q.ends_at, display)}"
        lines.append(f"quarantine {q.site}: down since {format_instant(q.down_at, display)}{relapses}; {ends} "
                     f"(`failover release {q.site}` ends it now)")
    return lines


def _rebuilds(report: StatusReport, display: tzinfo) -> list[str]:
    """Each replica the automatic rejoin (policy.auto_rejoin) is rebuilding or waiting to, and what holds it."""
    from orchestrator.core.phases import format_instant

    lines = []
    for entry in report.rebuilds:
        head = f"rebuild {entry.engine}/{entry.replica} ({entry.need} since {format_instant(entry.since, display)})"
        if entry.state == "rejoining":
            started = format_instant(entry.started_at or entry.since, display)
            lines.append(f"{head}: rejoining to {entry.primary} at epoch {entry.epoch} since {started}")
            continue
        held = f"; held: {entry.blocked}" if entry.blocked else ""
        failed = f"; last attempt: {entry.error}" if entry.error else ""
        lines.append(f"{head}: next attempt {format_instant(entry.due, display)} (attempt {entry.attempts + 1})"
                     f"{held}{failed}")
    return lines


def _notifications(report: StatusReport, display: tzinfo) -> list[str]:
    """Notifications not delivered yet: a webhook that is down or slow must be seen, not silently swallowed."""
    from orchestrator.core.phases import format_instant

    pending, abandoned = report.notifications.get("pending", 0), report.notifications.get("abandoned", 0)
    if not pending and not abandoned:
        return []
    oldest = report.notifications.get("oldest_pending_at")
    since = f", oldest from {format_instant(oldest, display)}" if oldest else ""
    return [f"notifications: {pending} not yet delivered{since}; {abandoned} abandoned after every attempt"]


def _daemons(report: StatusReport, display: tzinfo) -> list[str]:
    from orchestrator.core.phases import format_instant

    lines = []
    for daemon in report.daemons:
        role = "leader" if daemon.leader else "follower"
        clock = "clock not yet compared" if daemon.clock_offset is None else f"clock {daemon.clock_offset:+.1f}s"
        refusing = f" — NOT LEADING: {daemon.reason}" if not daemon.may_lead else ""
        lines.append(f"daemon {daemon.identity}: {role}, {clock} (last beat {format_instant(daemon.wall, display)})"
                     f"{refusing}")
    return lines


def register(app: typer.Typer) -> None:
    app.command("status")(status)


