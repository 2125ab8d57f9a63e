"""A configuration cannot hurt the process that reads it (issue 12 item 2).

Run through the installed console script, as an SRE would at 3 a.m.: a FIFO, a socket, /dev/zero, a directory or a
2 GiB file is refused before it is read; a billion laughs, an alias bomb or 5,000 nested lists is refused while it
is parsed, in the memory a valid file needs. Each child runs under a 1 GiB address-space limit, so that a regression
fails in a second with a MemoryError instead of eating the machine.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "data" / "bad_configs"
FAILOVER = Path(sys.executable).parent / "failover"  # the console script installed beside this interpreter
ADDRESS_SPACE = 1 << 30
DEADLINE = 120.0  # generous: a loaded machine; a regression that blocks fails here rather than hanging the suite


@dataclass(frozen=True)
class Run:
    code: int
    stderr: str
    max_rss_mb: float | None = None


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _start(path: Path | str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(FAILOVER), "config", "validate", str(path)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_limit_memory)


def validate(path: Path | str) -> Run:
    """`failover config validate PATH` in a child, with a deadline: a regression that blocks fails, not hangs."""
    child = _start(path)
    try:
        _, stderr = child.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        pytest.fail(f"config validate {path} still running after {DEADLINE:g}s")
    return Run(child.returncode, stderr.decode("utf-8", "replace"))


def validate_measured(path: Path | str) -> Run:
    """Like `validate`, reaped with wait4 for the child's own peak RSS (RUSAGE_CHILDREN would be the largest of
    every child this test process ever had). The memory limit keeps a regression short."""
    child = _start(path)
    assert child.stderr is not None
    stderr = child.stderr.read()  # until the child exits
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stderr.close()
    return Run(child.returncode, stderr.decode("utf-8", "replace"), usage.ru_maxrss / 1024)


def assert_refused(run: Run, path: Path | str, expected: str) -> None:
    assert "Traceback" not in run.stderr, run.stderr
    assert run.code == 2, run.stderr
    lines = run.stderr.splitlines()
    assert lines and all(line.startswith(f"error: {path}") for line in lines), run.stderr
    assert expected in lines[0], lines[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "failover.yaml"
    os.mkfifo(path)
    return path


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "failover.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        yield path


def test_a_fifo_is_refused_without_blocking(fifo: Path) -> None:
    """Nobody writes to the FIFO: opening it for reading would block for ever."""
    assert_refused(validate(fifo), fifo, "is a named pipe (FIFO), expected a regular config file")


def test_a_socket_is_refused(unix_socket: Path) -> None:
    assert_refused(validate(unix_socket), unix_socket, "is a socket, expected a regular config file")


def test_dev_zero_is_refused_without_reading_it() -> None:
    run = validate_measured("/dev/zero")
    assert_refused(run, "/dev/zero", "is a character device, expected a regular config file")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert_refused(validate(tmp_path), tmp_path, "is a directory")


def test_a_2_gib_file_is_refused_by_its_size_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "failover.yaml"
    with big.open("wb") as file:
        file.truncate(2 << 30)  # sparse: costs no disk
    run = validate_measured(big)
    assert_refused(run, big, f"{2 << 30} bytes, larger than 1048576 (1 MiB)")


def test_one_byte_over_the_cap_is_refused_and_the_cap_itself_is_read(tmp_path: Path) -> None:
    over = tmp_path / "over.yaml"
    over.write_bytes(b"#" * ((1 << 20) + 1))
    assert_refused(validate(over), over, "larger than 1048576 (1 MiB)")
    at_cap = tmp_path / "at-cap.yaml"
    at_cap.write_bytes(b"#" * (1 << 20))
    assert_refused(validate(at_cap), at_cap, "must be a mapping")  # read and parsed: only comments


# file -> the start of its one error line (after FILE:LINE:)
HOSTILE = {
    "billion_laughs.yaml": "31: more than 50000 values, each alias counted as the values it repeats",
    "alias_bomb_vantage_points.yaml": "16: more than 50000 values, each alias counted as the values it repeats",
    "too_many_aliases.yaml": "11: more than 64 YAML aliases",
    "recursive_alias.yaml": "11: YAML alias *v lies inside the collection it names",
    "deep_flow_nesting.yaml": "11: invalid YAML: exceeded maximum nesting depth",
    "deep_block_nesting.yaml": "61: YAML nested deeper than 50 levels",
    "alias_nests_too_deep.yaml": "28: YAML alias *deep nests values deeper than 50 levels",
    "huge_integer.yaml": "13: a number of 5000 characters",
    "bad_date.yaml": "3: invalid YAML: invalid value: month must be in 1..12",
    "python_tag.yaml": "15: invalid YAML: could not determine a constructor",
    "store_mongodb.yaml": "4: store: not a store URL (mongodb://)",
    "secret_slack_webhook.yaml": "28: notifications.webhooks.0.url: an inline chat webhook URL",
    "secret_asia_in_command.yaml": "28: notifications.pre_failover.0: an AWS access key id",
    "listen_nonsense.yaml": "27: daemon.listen: 'nonsense' has no port",
    "quorum_needs_cloud_api.yaml": "14: policy.quorum: 2 can only be reached with a cloud API's vote",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_config_through_the_console_script(name: str) -> None:
    path = BAD / name
    run = validate(path)
    assert_refused(run, path, f"{path}:{HOSTILE[name]}")


def test_bombs_are_refused_in_the_memory_a_valid_file_needs() -> None:
    """Before: the billion laughs took over 1.4 GB and 14 s before a MemoryError; 5,000 nested lists gave a
    RecursionError traceback. Now each costs what validating the example costs (the interpreter and its imports)."""
    baseline = validate_measured(ROOT / "configs" / "example.yaml")
    assert baseline.code == 0, baseline.stderr
    for name in ("billion_laughs.yaml", "alias_bomb_vantage_points.yaml", "deep_flow_nesting.yaml",
                 "deep_block_nesting.yaml"):
        run = validate_measured(BAD / name)
        assert_refused(run, BAD / name, f"{BAD / name}:{HOSTILE[name]}")
        assert run.max_rss_mb is not None and baseline.max_rss_mb is not None
        assert run.max_rss_mb < baseline.max_rss_mb + 20, (name, run.max_rss_mb, baseline.max_rss_mb)
