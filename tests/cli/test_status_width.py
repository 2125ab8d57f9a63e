"""`failover status` at any width: an SRE on a phone, in a split tmux pane or on a wide monitor reads every id
whole (at 80 columns the table used to cut `spot-aws` and `spot-azure` both to `spot-a…`), loses the least
important columns first, and can watch the table refresh in place, through a store outage, until Ctrl-C."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.cli import status_cmd
from orchestrator.cli.app import main
from orchestrator.config import load_config
from orchestrator.drivers.status import ReplicaLine
from orchestrator.store import open_store

ROOT = Path(__file__).resolve().parents[2]
FAILOVER = Path(sys.executable).parent / "failover"  # the installed console script, as an SRE runs it
WIDTHS = [40, 60, 80, 120, 200]
REPLICAS = ["spot-aws", "spot-gcp", "spot-azure"]
SITES = ["aws-hk", "gcp-hk", "azure-hk"]
HEADERS = ["replica", "role", "site", "provider", "region", "instance", "replica verdict", "site verdict"]
DEADLINE_S = 60.0


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "failover.yaml"
    shutil.copy(ROOT / "configs" / "example.yaml", path)
    return path


def open_an_incident(config: Path) -> str:
    with open_store(load_config(config).store_url) as store:
        return store.create_incident("spot", "failover", "aws-hk is down (3 of 3 vantage points)", time.time(),
                                     source="spot-aws", target="spot-gcp", status="running").id


def status(config: Path, width: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(width)}
    return subprocess.run([str(FAILOVER), "status", "--config", str(config), *args], env=env, text=True,
                          capture_output=True, check=False, timeout=120)


def table_rows(out: str) -> list[list[str]]:
    """The cells of each body row of the replica tables (`│ a │ b │`)."""
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in out.splitlines()
            if line.startswith("│")]


def header_text(out: str) -> str:
    """The header rows' words, joined across the lines a wrapped header takes."""
    lines = [line.strip("┃") for line in out.splitlines() if line.startswith("┃")]
    columns = zip(*[[cell.strip() for cell in line.split("┃")] for line in lines], strict=True)
    return " | ".join(" ".join(word for word in column if word) for column in columns)


@pytest.mark.parametrize("width", WIDTHS)
def test_every_id_is_whole_at_every_width(config: Path, width: int) -> None:
    incident = open_an_incident(config)
    done = status(config, width)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout, done.stdout  # nothing is ever cut
    rows = table_rows(done.stdout)
    assert [row[0] for row in rows] == REPLICAS, done.stdout
    for site in SITES:
        assert re.search(rf"(^|[\s│]){site}($|[\s│])", done.stdout, re.M), f"{site} not whole at {width}"
    assert "engine spot — phase open" in done.stdout
    assert f"open incident {incident} (failover, running)" in done.stdout
    table = [line for line in done.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert max(len(line) for line in table) <= width, done.stdout


def test_at_200_columns_every_column_is_shown(config: Path) -> None:
    done = status(config, 200)
    assert header_text(done.stdout).split(" | ") == [
        "replica", "role", "site", "provider", "region", "instance", "replica verdict", "site verdict"]
    assert table_rows(done.stdout)[0] == ["spot-aws", "primary", "aws-hk", "aws", "ap-east-1", "i-0123456789abcdef0",
                                          "unknown", "unknown"]
    assert "not shown" not in done.stdout


def test_narrower_terminals_drop_the_least_important_columns_first(config: Path) -> None:
    shown = {width: header_text(status(config, width).stdout).split(" | ") for width in (40, 60, 80)}
    assert shown[80] == ["replica", "role", "site", "provider", "region", "replica verdict", "site verdict"]
    assert shown[60] == ["replica", "role", "site", "replica verdict", "site verdict"]
    assert shown[40] == ["replica", "site", "replica verdict"]
    narrow = status(config, 40).stdout
    assert "not shown at 40 columns: site verdict, role, provider, region, instance (`-o wide`" in narrow
    assert "primary spot-aws" in narrow  # the primary is named in the engine's heading when `role` is dropped


def test_output_wide_shows_every_column_whatever_the_width(config: Path) -> None:
    for width in (40, 80):
        out = status(config, width, "-o", "wide").stdout
        assert "not shown" not in out and "…" not in out
        for value in ("spot-azure standby", "azure-hk", "eastasia", "instance spot-engine-1", "i-0123456789abcdef0",
                      "ap-east-1"):
            assert value in out, f"{value!r} missing at {width} -o wide:\n{out}"
    wide = status(config, 120, "-o", "wide").stdout
    assert header_text(wide).split(" | ") == HEADERS


def render(replicas: list[ReplicaLine], width: int, *, wide: bool = False) -> str:
    """The replica layout as `failover status` prints it (its console soft-wraps: a line is printed whole)."""
    console = Console(width=width, file=io.StringIO(), highlight=False, color_system=None, soft_wrap=True)
    for part in status_cmd.replica_layout(replicas, width, wide=wide):
        console.print(part)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


LONG = [ReplicaLine(f"perp-usdt-{cloud}-hongkong-replica-{n}", f"{cloud}-ap-east-hongkong-zone-{n}", cloud,
                    "ap-east-1", f"i-{n}0123456789abcdef0", "primary" if n == 1 else "standby", "down", "suspect")
        for n, cloud in enumerate(("aws", "gcp", "azure"), start=1)]


@pytest.mark.parametrize("width", [*WIDTHS, 20])
def test_long_ids_stay_whole_in_rich_at_any_width(width: int) -> None:
    """Ids longer than a narrow terminal leaves room for: the table gives way to a block per replica."""
    for wide in (False, True):
        out = render(LONG, width, wide=wide)
        assert "…" not in out
        for replica in LONG:
            assert replica.name in out and replica.site in out, f"cut at {width} (wide={wide}):\n{out}"
        if width >= 120 or not wide:
            assert all(len(line) <= width for line in out.splitlines() if line[:1] in "┏┃┡│└")


def test_a_very_narrow_terminal_gets_one_block_per_replica() -> None:
    out = render(LONG[:1], 40)
    assert out.splitlines()[0] == "perp-usdt-aws-hongkong-replica-1 primary, verdict down"
    assert "site aws-ap-east-hongkong-zone-1 (verdict suspect), aws ap-east-1, instance i-10123456789abcdef0" in out


def test_watch_redraws_in_place_on_a_terminal(config: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, width=80, force_terminal=True, color_system=None, highlight=False)
    monkeypatch.setattr(status_cmd, "console", terminal)
    with pytest.raises(SystemExit) as exited:
        main(["status", "--config", str(config), "--watch", "0.1s", "--watch-count", "3"])
    assert exited.value.code == 0
    out = screen.getvalue()
    frames = [line for line in out.splitlines() if "│ spot-aws" in line]
    assert len(frames) >= 3, out  # three refreshes (rich keeps the last one on screen at exit)
    height = out[:out.index("\r\x1b[2K")].count("\n") + 1  # the first frame's lines
    # each later frame first erases the one before it, line by line (rich's Live: cursor up one, erase the line)
    assert out.count("\x1b[1A\x1b[2K") >= 2 * (height - 1) >= 2 * 12, out


class Watched:
    """`failover status --watch` as a process, its output read line by line as it comes."""

    def __init__(self, config: Path, *args: str) -> None:
        env = {**os.environ, "COLUMNS": "100"}
        self.process = subprocess.Popen([str(FAILOVER), "status", "--config", str(config), "--watch", *args],
                                        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, after: int = 0) -> int:
        """The index of the first line at or after `after` holding `text`."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            for n in range(after, len(self.lines)):
                if text in self.lines[n]:
                    return n
            assert self.process.poll() is None, "".join(self.lines)
            time.sleep(0.1)
        raise AssertionError(f"never printed {text!r}:\n{''.join(self.lines)}")

    def interrupt(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=DEADLINE_S)
        self.reader.join(timeout=DEADLINE_S)
        assert self.process.stderr is not None
        return code, self.process.stderr.read()


@pytest.fixture
def watched() -> Iterator[list[Watched]]:
    started: list[Watched] = []
    yield started
    for one in started:
        if one.process.poll() is None:
            one.process.kill()
            one.process.wait()


def test_watch_shows_an_incident_as_it_opens_and_ctrl_c_exits_0(config: Path, watched: list[Watched]) -> None:
    watch = Watched(config, "0.2s")
    watched.append(watch)
    first = watch.wait_for("no open incident")
    incident = open_an_incident(config)
    watch.wait_for(f"open incident {incident} (failover, running)", after=first)
    code, stderr = watch.interrupt()
    assert (code, stderr) == (0, "")


def test_watch_through_an_unreadable_store_says_one_line_and_keeps_trying(tmp_path: Path,
                                                                          watched: list[Watched]) -> None:
    text = (ROOT / "configs" / "example.yaml").read_text()
    missing = tmp_path / "not-yet"
    path = tmp_path / "failover.yaml"
    path.write_text(re.sub(r"^store: .*$", f"store: sqlite:///{missing}/state.db", text, flags=re.M))
    watch = Watched(path, "0.2s")
    watched.append(watch)
    first = watch.wait_for("cannot read the store")
    second = watch.wait_for("cannot read the store", after=first + 1)
    assert second == first + 1  # one line per attempt, and nothing else (no traceback on stdout either)
    assert re.fullmatch(r"\d\d:\d\d:\d\d UTC cannot read the store: state store \S+/not-yet/state.db: cannot open: "
                        r"directory \S+/not-yet does not exist; trying again\n", watch.lines[first])
    missing.mkdir()
    watch.wait_for("engine spot — phase open", after=second)
    code, stderr = watch.interrupt()
    assert (code, stderr) == (0, "")


def test_watch_through_an_etcd_outage_shows_the_table_again_when_etcd_answers(tmp_path: Path,
                                                                            watched: list[Watched]) -> None:
    from orchestrator.testbed.etcd import EtcdCluster, etcd_binary

    if etcd_binary() is None:
        pytest.skip("etcd binary not found: CI must install Debian's etcd-server (.ci/run does)")
    with EtcdCluster(1, tmp_path / "etcd") as etcd:
        path = tmp_path / "failover.yaml"
        text = (ROOT / "configs" / "example.yaml").read_text()
        path.write_text(re.sub(r"^store: .*$", f"store: {etcd.url}", text, flags=re.M))
        watch = Watched(path, "0.2s")
        watched.append(watch)
        first = watch.wait_for("engine spot — phase open")
        etcd.stop_member(0)
        down = watch.wait_for("cannot read the store", after=first)
        assert "Traceback" not in "".join(watch.lines)
        etcd.restart_member(0)
        watch.wait_for("engine spot — phase open", after=down)
        code, stderr = watch.interrupt()
    assert (code, stderr) == (0, "")


@pytest.mark.parametrize(("args", "says"), [
    (["--watch", "10ms"], "error: --watch 10ms: expected an interval of at least 100ms"),
    (["--watch", "soon"], "error: --watch: 'soon' is not a duration"),
    (["5s"], "error: '5s': an interval is given after --watch (failover status --watch 5s)"),
    (["--watch", "-o", "json"], "error: --watch: refreshes a table in place; with --output json"),
])
def test_bad_watch_invocations_are_one_line_and_exit_2(config: Path, args: list[str], says: str) -> None:
    done = status(config, 80, *args)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(says), line
