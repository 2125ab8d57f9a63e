"""Bad invocations through the installed console script, as an SRE types them at 3 a.m.

Each must answer with exactly one line on stderr that says what is wrong and what is expected, the documented exit
code (2 bad input, 4 an outside resource failed), and no traceback. They run `.venv/bin/failover` in a subprocess:
CliRunner calls the typer app in-process and hides the class of bug this file exists for (an exception type the
entry point does not catch prints a traceback only when the real script runs). None of them starts an engine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("failover")  # the console script installed beside this interpreter
HK = str(ROOT / "configs" / "scenarios" / "hk-2022.yaml")


@dataclass(frozen=True)
class Bad:
    args: tuple[str, ...]
    code: int
    says: str  # a piece of the one line: the option or value it names, or what it expects
    config: bool = True  # append --config <a fresh copy of configs/example.yaml>
    untouched: bool = True  # the store file must not even be created
    env: dict[str, str] = field(default_factory=dict)


def bad(*args: str, code: int = 2, says: str, config: bool = True, untouched: bool = True,
        env: dict[str, str] | None = None) -> Bad:
    return Bad(args, code, says, config, untouched, env or {})


CASES = {
    # the parser's own complaints (typer's bundled click): a traceback on every one of these before the fix
    "unknown command": bad("frobnicate", says="no such command 'frobnicate'", config=False),
    "unknown option": bad("status", "--bogus", says="no such option: --bogus"),
    "misspelt option": bad("status", "--outptu", "json", says="did you mean --output?"),
    "status --output yaml": bad("status", "--output", "yaml", says="'yaml' is not one of 'table', 'wide', 'json'"),
    "check --output yaml": bad("check", "-o", "yaml", says="--output"),
    "option without its value": bad("status", "-o", says="'-o' requires an argument", config=False),
    "root option after nothing": bad("--config", "x.yaml", "status", says="no such option: --config", config=False),
    "history --limit -1": bad("history", "--limit", "-1", says="--limit -1: expected a whole number from 1"),
    "history --limit 0": bad("history", "--limit", "0", says="--limit 0"),
    "history --limit many": bad("history", "--limit", "many", says="--limit: input should be a valid integer"),
    "execute without a target": bad("execute", says="missing option '--target'"),
    "config schema extra": bad("config", "schema", "extra", says="unexpected extra argument", config=False),
    "config validate two files": bad("config", "validate", "a.yaml", "b.yaml", says="unexpected extra argument",
                                     config=False),
    "audit frob": bad("audit", "frob", says="no such command 'frob'", config=False),
    "simulate without a scenario": bad("simulate", says="missing argument 'scenario'", config=False),
    "a byte that is not UTF-8": bad("\udcff", says="no such command", config=False),
    "a pasted megabyte": bad("x" * 20_000, says="no such command", config=False),
    # values the parser accepts but that mean nothing
    "drill --speed 0": bad("drill", "--speed", "0", says="--speed 0: expected a number from 1 to 1000", config=False),
    "drill --speed nan": bad("drill", "--speed", "nan", says="--speed nan", config=False),
    "drill --speed inf": bad("drill", "--speed", "inf", says="--speed inf", config=False),
    "drill --speed -3": bad("drill", "--speed", "-3", says="--speed -3", config=False),
    "drill --max-seconds 0": bad("drill", "--max-seconds", "0", says="--max-seconds 0", config=False),
    "drill --scenario unknown": bad("drill", "--scenario", "atlantis", says="no such scenario", config=False),
    "drill --out a file": bad("drill", "--out", HK, says="expected a directory", config=False),
    "simulate --seed -1": bad("simulate", HK, "--seed", "-1", says="--seed -1: expected a whole number from 0",
                              config=False),
    "simulate a missing file": bad("simulate", "no-such-scenario.yaml", says="no such scenario file", config=False),
    "simulate --policy unknown": bad("simulate", HK, "--policy", "bogus", says="unknown policy 'bogus'",
                                     config=False),
    "protect --for 99999999999h": bad("protect", "--for", "99999999999h", says="99999999999h"),
    "protect --for 25h": bad("protect", "--for", "25h", says="at most 24h"),
    "protect --for 0s": bad("protect", "--for", "0s", says="expected a duration above 0s"),
    "protect --for -5m": bad("protect", "--for", "-5m", says="'-5m' is not a duration"),
    "protect --for 20 (no unit)": bad("protect", "--for", "20", says="write it with a unit"),
    "protect without --for": bad("protect", says="missing option '--for'"),
    "execute --protection 0s": bad("execute", "--target", "spot-gcp", "--protection", "0s", says="--protection 0s"),
    "execute --timeout empty": bad("execute", "--target", "spot-gcp", "--timeout", "", says="an empty duration"),
    "execute an unknown replica": bad("execute", "--target", "spot-nowhere", "--yes", says="no such replica"),
    "plan an unknown replica": bad("plan", "--target", "spot-nowhere", says="no such replica"),
    "reopen an unknown engine": bad("reopen", "--engine", "perp", says="--engine perp: no such engine"),
    "history of an unknown engine": bad("history", "--engine", "perp", says="--engine perp: no such engine"),
    "halt with an empty reason": bad("halt", "--reason", "", says="--reason ''"),
    "halt with a two-line reason": bad("halt", "--reason", "fills\nforged: ok", says="one line of printable text"),
    "check --identity with a tab": bad("check", "--identity", "a\tb", says="--identity"),
    "approve a malformed id": bad("approve", "drop table", says="not an incident id"),
    "approve an unknown incident": bad("approve", "INC-20260101-000000-spot-0000", says="no incident",
                                       untouched=False),
    "report a malformed id": bad("report", "../../etc/passwd", says="not an incident id"),
    "report --format xml": bad("report", "INC-x", "--format", "xml", says="--format xml: expected md or json"),
    "report --out in a missing directory": bad("report", "INC-x", "--out", "/nonexistent/dir/r.md",
                                               says="expected a file in an existing directory"),
    # the daemon's HTTP endpoint
    "daemon --listen nonsense": bad("daemon", "--listen", "nonsense", says="expected HOST:PORT"),
    "daemon --listen port 99999": bad("daemon", "--listen", "127.0.0.1:99999", says="port 99999 is out of range"),
    "daemon --listen 0.0.0.0 without the flag": bad("daemon", "--listen", "0.0.0.0:9464", says="--listen-public"),
    "daemon --listen IPv6": bad("daemon", "--listen", "[::1]:9464", says="expected HOST:PORT"),
    "daemon --listen a foreign address": bad("daemon", "--listen", "192.0.2.1:9464", "--listen-public",
                                             says="not an address of this machine"),
    "daemon --interval 0s": bad("daemon", "--interval", "0s", says="--interval 0s: expected a duration above 0s"),
    "daemon --interval 2h": bad("daemon", "--interval", "2h", says="at most 1h"),
    "daemon --max-cycles 0": bad("daemon", "--max-cycles", "0", says="--max-cycles 0"),
    "daemon --vantage unknown": bad("daemon", "--vantage", "mars", says="--vantage mars: not a configured site"),
    # the configuration and the store
    "--config missing": bad("status", "--config", "/nonexistent/failover.yaml", says="no such config file",
                            config=False),
    "--config a directory": bad("status", "--config", str(ROOT / "configs"), says="is a directory", config=False),
    "--config a device": bad("status", "--config", os.devnull, says=os.devnull, config=False),
    "--config empty": bad("status", "--config", "{tmp}/empty.yaml", says="empty", config=False),
    "store URL of an unknown scheme": bad("status", says="$FAILOVER_STORE: not a store URL (mongodb://)",
                                          env={"FAILOVER_STORE": "mongodb://db:27017"}),
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """configs/example.yaml with its store in this test's directory (the example's engines are never contacted)."""
    path = tmp_path / "failover.yaml"
    shutil.copy(ROOT / "configs" / "example.yaml", path)
    return path


def failover(*args: str, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    environment.pop("FAILOVER_CONFIG", None)
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False,
                          env=environment, cwd=cwd, errors="replace")


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert says in lines[0], lines[0]
    assert len(lines[0]) < 600, lines[0]
    assert result.returncode == code, (result.returncode, lines[0])


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_bad_invocation_is_one_line(case: Bad, config: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in case.args]
    args = [*args, "--config", str(config)] if case.config else args
    result = failover(*args, env=case.env, cwd=tmp_path)
    assert_one_line(result, case.code, case.says)
    if case.untouched:
        assert not (tmp_path / "failover-state.db").exists(), "a refused command created the store"


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_port_in_use_is_an_outside_failure(config: Path, taken_port: int, tmp_path: Path) -> None:
    result = failover("daemon", "--listen", f"127.0.0.1:{taken_port}", "--config", str(config), cwd=tmp_path)
    assert_one_line(result, 4, f"127.0.0.1:{taken_port}: cannot listen: already in use")
    assert not (tmp_path / "failover-state.db").exists()  # refused before it opened the store or took the lease


def test_a_store_that_is_not_a_database_is_an_outside_failure(config: Path, tmp_path: Path) -> None:
    (tmp_path / "failover-state.db").write_bytes(b"this is not SQLite\n" * 100)
    assert_one_line(failover("status", "--config", str(config)), 4, "file is not a database")
    assert (tmp_path / "failover-state.db").read_bytes() == b"this is not SQLite\n" * 100  # nothing changed


def test_no_arguments_prints_the_help_and_exits_0() -> None:
    result = failover()
    assert (result.returncode, result.stderr) == (0, "")
    assert "Commands" in result.stdout and "halt" in result.stdout


def test_debug_shows_the_traceback_and_keeps_the_exit_code() -> None:
    result = failover("--debug", "frobnicate")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: failover: no such command 'frobnicate'")


def test_there_are_at_least_forty() -> None:
    assert len(CASES) + 2 >= 40
