"""`failover audit verify` and `failover audit head`: prove the audit log has not been edited, reordered, cut short
or replaced, and print the head to keep elsewhere.

Why a head kept elsewhere: the hash chain only proves the log agrees with itself; a log rewritten whole agrees
with itself too. The store keeps a copy of its head outside the database (the anchor file), and `audit head`
prints it for tickets and notifications; `audit verify --expect-head SEQ:HASH` checks that the chain still passes
through a head copied earlier. Every damage, however odd, is one line and exit 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.common import ConfigOption, Output, OutputOption, console, load, print_json
from orchestrator.errors import EXIT_UNSAFE

if TYPE_CHECKING:
    from orchestrator.store import AuditReport, StateStore

app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)

ExpectHeadOption = Annotated[
    str | None,
    typer.Option("--expect-head", metavar="SEQ:HASH",
                 help="A head printed earlier by `failover audit head`: the chain must still pass through it."),
]


@app.command("verify")
def verify(config: ConfigOption = None, output: OutputOption = Output.TABLE, expect_head: ExpectHeadOption = None
           ) -> None:
    """Check every link of the audit chain, and that it passes through the anchored head (and --expect-head);
    exit 3 if an entry was edited, deleted or reordered, or the store was rewritten, truncated or re-created."""
    from orchestrator.store import parse_head

    expected = None if expect_head is None else parse_head(expect_head)
    with _open(config) as store:
        report = store.verify_audit(expect=expected)
    if output is Output.JSON:
        print_json(report)
    else:
        console.print(_sentence(report), markup=False)
    if not report.ok:
        raise typer.Exit(EXIT_UNSAFE)


@app.command("head")
def head(
    config: ConfigOption = None,
    output: OutputOption = Output.TABLE,
    write_anchor: Annotated[bool, typer.Option(
        "--write-anchor", help="Verify the chain and write its head to the anchor file (a store older than "
        "anchoring); never overwrites an anchor of another chain.")] = False,
) -> None:
    """Print the audit head as SEQ:HASH: keep it elsewhere (a ticket, a runbook note) and check it later with
    `failover audit verify --expect-head SEQ:HASH`."""
    from orchestrator.store import GENESIS_HASH

    with _open(config) as store:
        current = store.anchor_audit_head() if write_anchor else store.audit_head()
        anchor_file = store.audit_anchor_path
    seq, digest = (0, GENESIS_HASH) if current is None else (current.seq, current.hash)
    if output is Output.JSON:
        print_json({"seq": seq, "hash": digest, "head": f"{seq}:{digest}",
                    "anchor_file": None if anchor_file is None else str(anchor_file)})
    else:
        console.print(f"{seq}:{digest}", markup=False)


def _open(config: Path | None) -> StateStore:
    """The configured store, anchored where the configuration says (`audit.head_file`), else where the store's
    default puts it."""
    loaded = load(config)
    return loaded.open_store()


def _sentence(report: AuditReport) -> str:
    """The verdict in one line: what was checked, or what is wrong."""
    if not report.ok:
        return f"audit log TAMPERED: {report.problem}"
    checked = f", consistent with {' and '.join(report.checked)}" if report.checked else ""
    return f"audit log intact: {report.entries} entries verified{checked}"


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="audit")
