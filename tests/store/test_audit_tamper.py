"""The audit log cannot be rewritten quietly: each way someone with a shell on the host could rewrite, cut or corrupt
it ends in `failover audit verify` exiting 3 with one line that says what is wrong, never a traceback.

Every case runs the installed console script in a subprocess, as an SRE or a cron job would (an in-process runner
hides tracebacks that escape the CLI's error handling). The store is SQLite beside the config; its head is anchored
in `failover-state.db.audit-head` on every append. What the anchor cannot catch, a rewrite that also rewrites the
anchor, is caught by `--expect-head` with a head kept elsewhere (a ticket, a notification).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.store import open_store
from orchestrator.store.records import GENESIS_HASH, audit_hash

ROOT = Path(__file__).resolve().parents[2]
FAILOVER = ROOT / ".venv" / "bin" / "failover"
T0 = 1_671_332_412.0
ENTRIES = 8

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Site:
    """A config directory with its SQLite store and the store's anchor file."""

    config: Path

    @property
    def db(self) -> Path:
        return self.config.parent / "failover-state.db"

    @property
    def anchor(self) -> Path:
        return self.config.parent / "failover-state.db.audit-head"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in (self.out + self.err).splitlines() if line.strip()]


def failover(site: Site, *args: str) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAILOVER_")}
    done = subprocess.run([str(FAILOVER), *args, "--config", str(site.config)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    config = tmp_path / "failover.yaml"
    shutil.copy(ROOT / "configs" / "example.yaml", config)
    made = Site(config)
    with open_store(f"sqlite:///{made.db}") as store:
        for n in range(1, ENTRIES + 1):
            store.audit("sre:alice", "phase.halt", {"engine": "spot", "n": n}, T0 + n)
    return made


def sql(site: Site, *statements: str) -> None:
    """Edit the file as a determined editor would: the append-only triggers go first."""
    conn = sqlite3.connect(site.db)
    with conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        for statement in statements:
            conn.execute(statement)
    conn.close()


def loosen(site: Site) -> None:
    """Re-create the audit tables without their types and NOT NULL constraints, so any value fits."""
    sql(site,
        "CREATE TABLE loose (seq, at, actor, action, detail, prev_hash, hash)",
        "INSERT INTO loose SELECT * FROM audit", "DROP TABLE audit", "ALTER TABLE loose RENAME TO audit",
        "CREATE TABLE loose_head (one, seq, hash)",
        "INSERT INTO loose_head SELECT * FROM audit_head", "DROP TABLE audit_head",
        "ALTER TABLE loose_head RENAME TO audit_head")


def forge_chain(site: Site, count: int) -> list[tuple[int, str]]:
    """Replace the whole chain and its stored head by a consistent forgery of `count` entries."""
    prev, rows = GENESIS_HASH, []
    for seq in range(1, count + 1):
        digest = audit_hash(seq, T0 + seq, "sre:mallory", "phase.reopen", {}, prev)
        rows.append((seq, T0 + seq, "sre:mallory", "phase.reopen", "{}", prev, digest))
        prev = digest
    conn = sqlite3.connect(site.db)
    with conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DELETE FROM audit")
        conn.executemany("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("UPDATE audit_head SET seq = ?, hash = ?", (count, prev))
    conn.close()
    return [(row[0], row[6]) for row in rows]


def truncate(site: Site) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{site.db}{suffix}").unlink(missing_ok=True)
    site.db.write_bytes(b"")


def remove(site: Site) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{site.db}{suffix}").unlink(missing_ok=True)


TAMPERING: list[tuple[str, Callable[[Site], object], str]] = [
    ("whole-chain-rewritten", lambda s: forge_chain(s, ENTRIES),
     f"entry {ENTRIES}: its hash differs from the anchor file"),
    ("chain-rewritten-longer", lambda s: forge_chain(s, ENTRIES + 3),
     f"entry {ENTRIES}: its hash differs from the anchor file"),
    ("chain-rewritten-shorter", lambda s: forge_chain(s, 3),
     f"the store holds 3 entries but the anchor file {{anchor}} says the chain reached seq {ENTRIES}"),
    ("every-row-and-head-deleted", lambda s: sql(s, "DELETE FROM audit", "DELETE FROM audit_head"),
     f"the store holds 0 entries but the anchor file {{anchor}} says the chain reached seq {ENTRIES}"),
    ("tail-and-head-cut-back", lambda s: sql(
        s, "DELETE FROM audit WHERE seq > 5", "UPDATE audit_head SET seq = 5, hash = (SELECT hash FROM audit "
        "WHERE seq = 5)"),
     f"the store holds 5 entries but the anchor file {{anchor}} says the chain reached seq {ENTRIES}"),
    ("file-truncated-to-0-bytes", truncate,
     f"the store holds 0 entries but the anchor file {{anchor}} says the chain reached seq {ENTRIES}"),
    ("file-deleted", remove,
     f"the store holds 0 entries but the anchor file {{anchor}} says the chain reached seq {ENTRIES}"),
    ("audit-table-dropped", lambda s: sql(s, "DROP TABLE audit"), "the audit table is missing"),
    ("anchor-deleted", lambda s: s.anchor.unlink(),
     f"the anchor file {{anchor}} is missing while the store holds {ENTRIES} entries"),
    ("anchor-garbage", lambda s: s.anchor.write_text("57:not a head\n"), "the anchor file {anchor} is unreadable"),
    ("detail-nan", lambda s: sql(s, "UPDATE audit SET detail = '{\"n\":NaN}' WHERE seq = 2"),
     "entry 2: stored detail is not JSON: NaN is not a number JSON allows"),
    ("detail-1e999", lambda s: sql(s, "UPDATE audit SET detail = '{\"n\":1e999}' WHERE seq = 2"),
     "entry 2: stored detail is not JSON: 1e999 is not a finite number"),
    ("detail-array", lambda s: sql(s, "UPDATE audit SET detail = '[1]' WHERE seq = 2"),
     "entry 2: stored detail is not a JSON object"),
    ("detail-nested-100k", lambda s: sql(s, f"UPDATE audit SET detail = '{'[' * 100_000}' WHERE seq = 2"),
     "entry 2: stored detail is not JSON: nested too deeply"),
    ("time-1e999", lambda s: sql(s, "UPDATE audit SET at = 1e999 WHERE seq = 3"),
     "entry 3: its time is infinite, not epoch seconds"),
    ("time-text", lambda s: sql(s, "UPDATE audit SET at = 'yesterday' WHERE seq = 3"),
     "entry 3: its time is text, not epoch seconds"),
    ("actor-blob", lambda s: sql(s, "UPDATE audit SET actor = x'00ff' WHERE seq = 4"),
     "entry 4: its actor is a BLOB, not text"),
    ("action-integer", lambda s: sql(s, "UPDATE audit SET action = 7 WHERE seq = 4"),
     "entry 4: its hash does not match its content"),
    ("detail-null", lambda s: (loosen(s), sql(s, "UPDATE audit SET detail = NULL WHERE seq = 5")),
     "entry 5: its detail is NULL, not text"),
    ("time-null", lambda s: (loosen(s), sql(s, "UPDATE audit SET at = NULL WHERE seq = 5")),
     "entry 5: its time is NULL, not epoch seconds"),
    ("prev-hash-null", lambda s: (loosen(s), sql(s, "UPDATE audit SET prev_hash = NULL WHERE seq = 6")),
     "entry 6: its prev_hash is NULL, not text"),
    ("hash-blob", lambda s: (loosen(s), sql(s, "UPDATE audit SET hash = x'abcd' WHERE seq = 6")),
     "entry 6: its hash is a BLOB, not text"),
    ("seq-text", lambda s: (loosen(s), sql(s, f"UPDATE audit SET seq = 'last' WHERE seq = {ENTRIES}")),
     f"the row after entry {ENTRIES - 1}: its seq is text, not an integer"),
    ("seq-float", lambda s: (loosen(s), sql(s, "UPDATE audit SET seq = 2.5 WHERE seq = 2")),
     "the row after entry 1: its seq is a number with a fraction, not an integer"),
    ("head-seq-text", lambda s: (loosen(s), sql(s, "UPDATE audit_head SET seq = 'abc'")),
     "the stored head is corrupt: its seq is text, not an integer"),
    ("head-hash-blob", lambda s: (loosen(s), sql(s, "UPDATE audit_head SET hash = x'00'")),
     "the stored head is corrupt: its hash is a BLOB, not text"),
]


@pytest.mark.parametrize(("tamper", "expected"), [pytest.param(t, e, id=i) for i, t, e in TAMPERING])
def test_tampering_is_reported_in_one_line_with_exit_3(
    site: Site, tamper: Callable[[Site], object], expected: str
) -> None:
    assert failover(site, "audit", "verify").code == 0
    tamper(site)
    run = failover(site, "audit", "verify")
    assert "Traceback" not in run.out + run.err
    assert run.code == 3, run
    assert len(run.lines) == 1, run
    assert run.lines[0].startswith("audit log TAMPERED: "), run
    assert expected.format(anchor=site.anchor) in run.lines[0]


def test_a_clean_log_verifies_and_reports_its_anchor(site: Site) -> None:
    run = failover(site, "audit", "verify")
    assert (run.code, run.lines) == (
        0, [f"audit log intact: {ENTRIES} entries verified, consistent with the anchor file {site.anchor}"])


def test_audit_head_prints_the_anchor_text(site: Site) -> None:
    with open_store(f"sqlite:///{site.db}") as store:
        head = store.audit_head()
    assert head is not None
    run = failover(site, "audit", "head")
    assert (run.code, run.lines) == (0, [f"{ENTRIES}:{head.hash}"])
    as_json = json.loads(failover(site, "audit", "head", "--output", "json").out)
    assert as_json == {"seq": ENTRIES, "hash": head.hash, "head": f"{ENTRIES}:{head.hash}",
                       "anchor_file": str(site.anchor)}
    assert json.loads(site.anchor.read_text())["seq"] == ENTRIES


def test_expect_head_accepts_any_head_the_chain_passed_through(site: Site) -> None:
    with open_store(f"sqlite:///{site.db}") as store:
        entries = store.audit_entries()
    for entry in (entries[-1], entries[2], entries[0]):
        for spelled in (f"{entry.seq}:{entry.hash}", f"{entry.seq}:{entry.hash[:16]}"):
            run = failover(site, "audit", "verify", "--expect-head", spelled)
            assert run.code == 0, run
            assert f"the expected head {entry.seq}:{entry.hash[:16]}" in run.lines[0]


def test_a_rewrite_that_also_rewrites_the_anchor_is_caught_by_the_head_kept_elsewhere(site: Site) -> None:
    kept = failover(site, "audit", "head").lines[0]  # e.g. in an incident ticket or a notification
    forged = forge_chain(site, ENTRIES + 2)
    seq, digest = forged[-1]
    site.anchor.write_text(json.dumps({"seq": seq, "hash": digest}))
    assert failover(site, "audit", "verify").code == 0  # the host alone can no longer tell
    run = failover(site, "audit", "verify", "--expect-head", kept)
    assert run.code == 3, run
    assert len(run.lines) == 1
    assert f"entry {ENTRIES}: its hash differs from the expected head {kept[:len(str(ENTRIES)) + 17]}" in run.lines[0]


def test_an_expected_head_beyond_the_store_means_it_was_cut_short(site: Site) -> None:
    run = failover(site, "audit", "verify", "--expect-head", f"57:{'ab' * 32}")
    assert run.code == 3 and len(run.lines) == 1
    assert (f"the store holds {ENTRIES} entries but the expected head 57:{'ab' * 8} says the chain reached seq 57"
            in run.lines[0])


@pytest.mark.parametrize("bad", ["", "57", "57:", ":abcd", "x:" + "a" * 64, "-1:" + "a" * 64, "5:abc",
                                 "5:" + "g" * 64, "5:" + "a" * 65, "5:" + "a" * 15])
def test_a_malformed_expected_head_is_bad_input(site: Site, bad: str) -> None:
    run = failover(site, "audit", "verify", "--expect-head", bad)
    assert run.code == 2, run
    assert len(run.lines) == 1 and "Traceback" not in run.err
    assert "--expect-head" in run.lines[0] and "SEQ:HASH" in run.lines[0]


def test_tampering_in_json_output(site: Site) -> None:
    sql(site, "UPDATE audit SET actor = x'00ff' WHERE seq = 4")
    run = failover(site, "audit", "verify", "--output", "json")
    assert run.code == 3
    report = json.loads(run.out)
    assert (report["ok"], report["first_bad_seq"]) == (False, 4)
    assert report["problem"].startswith("entry 4: its actor is a BLOB")
    assert report["anchor_file"] == str(site.anchor)


def test_a_store_older_than_anchoring_is_anchored_on_request(site: Site) -> None:
    site.anchor.unlink()
    assert failover(site, "audit", "verify").code == 3
    run = failover(site, "audit", "head", "--write-anchor")
    assert run.code == 0, run
    assert json.loads(site.anchor.read_text())["seq"] == ENTRIES
    assert failover(site, "audit", "verify").code == 0


def test_writing_the_anchor_never_overwrites_a_different_chain(site: Site) -> None:
    forge_chain(site, ENTRIES + 2)
    run = failover(site, "audit", "head", "--write-anchor")
    assert run.code == 3 and len(run.lines) == 1, run
    assert "differs from the anchor file" in run.lines[0]
    assert json.loads(site.anchor.read_text())["seq"] == ENTRIES
