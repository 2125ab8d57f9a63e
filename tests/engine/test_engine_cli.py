"""`failover replica serve` refuses to start on bad input with one line on stderr and a documented exit code, never
a traceback (issue 12, item 1): run through the installed console script in a subprocess, as a user would."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.engine.replica.journal import Journal
from orchestrator.testbed.ports import free_port

FAILOVER = Path(sys.executable).parent / "failover"
AT = "2024-05-01T03:00:00.000000Z"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("s3cret-token\n", encoding="utf-8")
    return path


def serve(*args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "orchestrator.engine.replica", "serve"] if module \
        else [str(FAILOVER), "replica", "serve"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def one_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "s3cret-token" not in result.stderr
    return lines[0]


def base(data: Path, token_file: Path, port: int | None = None) -> list[str]:
    return ["--id", "r", "--port", str(port or free_port()), "--data", str(data), "--token-file", str(token_file)]


@pytest.mark.parametrize("content", [b"{bad", b"", b"[]", b'{"role": "primary"}', b'{"epoch": "7"}',
                                     b'{"epoch": -1}', b'{"epoch": 1, "role": "king"}', b"[" * 100_000])
def test_a_corrupt_control_state_is_named_and_nothing_starts(tmp_path: Path, token_file: Path,
                                                             content: bytes) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "control.json").write_bytes(content)
    line = one_line(serve(*base(data, token_file)), 2, str(data / "control.json"), "not a control state")
    assert line.startswith("error: ")
    assert (data / "control.json").read_bytes() == content  # untouched


def test_a_corrupt_journal_is_named_with_its_line(tmp_path: Path, token_file: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    journal = Journal.open(data / "journal.jsonl")
    for index in range(3):
        journal.append([journal.make(AT, 1, "margin", {"account": "a", "amount": "1", "request_id": str(index)})])
    lines = (data / "journal.jsonl").read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"amount":"1"', b'"amount":"9"')
    (data / "journal.jsonl").write_bytes(b"\n".join(lines))
    one_line(serve(*base(data, token_file)), 2, str(data / "journal.jsonl"), "line 2")
    one_line(serve(*base(data, token_file), module=True), 2, "journal.jsonl", "line 2")


def test_a_port_in_use_is_an_outside_failure(tmp_path: Path, token_file: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        one_line(serve(*base(tmp_path / "data", token_file, port)), 4, f"127.0.0.1:{port}", "in use")
    assert not (tmp_path / "data" / "control.json").exists()  # refused before touching the data directory


@pytest.mark.parametrize(("args", "needle"), [
    (["--port", "abc"], "--port"),
    (["--port", "99999"], "99999"),
    (["--sync-timeout", "nan"], "--sync-timeout"),
    (["--peer-interval", "0"], "--peer-interval"),
    (["--protection-allow", "cancel,frob"], "frob"),
    (["--host", "no-such-host.invalid"], "no-such-host.invalid"),
    (["--frobnicate"], "--frobnicate"),
])
def test_bad_arguments_are_one_line(tmp_path: Path, token_file: Path, args: list[str], needle: str) -> None:
    code = 4 if needle == "no-such-host.invalid" else 2
    one_line(serve(*base(tmp_path / "data", token_file), *args), code, needle)


def test_missing_arguments_token_and_unusable_directories(tmp_path: Path, token_file: Path) -> None:
    one_line(serve("--port", "1", "--data", str(tmp_path)), 2, "--id")
    one_line(serve(*base(tmp_path / "d", tmp_path / "no-token-here")), 2, "no-token-here")
    (tmp_path / "file").write_text("not a directory", encoding="utf-8")
    one_line(serve(*base(tmp_path / "file", token_file)), 2, str(tmp_path / "file"))
    empty = tmp_path / "empty-token"
    empty.write_text("\n", encoding="utf-8")
    one_line(serve(*base(tmp_path / "d", empty), module=True), 2, "no control token")  # `python -m` alike
