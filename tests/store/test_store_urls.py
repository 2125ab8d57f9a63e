"""`open_store`: the URL picks the backend; every bad URL or path is one line that names it."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError, StoreError
from orchestrator.store import DEFAULT_STORE_URL, StateStore, open_store


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_relative_and_absolute_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///relative.db") as store:
        assert isinstance(store, StateStore)
    assert (tmp_path / "relative.db").is_file()
    with open_store(f"sqlite:///{tmp_path}/absolute.db") as store:
        assert store.url == f"sqlite:////{str(tmp_path).lstrip('/')}/absolute.db"
    assert (tmp_path / "absolute.db").is_file()


def test_default_url_is_a_file_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_STORE_URL == "sqlite:///failover-state.db"
    with open_store() as store:
        store.put_state("k", {}, None)
    assert (tmp_path / "failover-state.db").is_file()


@pytest.mark.parametrize("url", [
    "/var/lib/failover/state.db", "postgres://db/failover", "sqlite://:memory:", "sqlite://host/state.db",
    "sqlite:///", "sqlite:///state.db?timeout=10", "",
])
def test_unusable_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as error:
        open_store(url)
    assert repr(url) in one_line(error)


def test_backends_are_imported_only_when_asked_for() -> None:
    probe = "import sys, orchestrator.store; print(sorted(m for m in sys.modules if 'etcd' in m))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_etcd_is_recognised() -> None:
    if importlib.util.find_spec("orchestrator.store.etcd") is not None:
        pytest.skip("orchestrator.store.etcd exists: its own tests cover opening it")
    with pytest.raises(StoreError, match="etcd store not available") as error:
        open_store("etcd://10.0.0.1:2379,10.1.0.1:2379")
    one_line(error)


def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as error:
        open_store(f"sqlite:///{tmp_path}")
    assert str(tmp_path) in one_line(error) and "directory" in one_line(error)


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as error:
        open_store(f"sqlite:///{tmp_path}/nowhere/state.db")
    assert f"directory {tmp_path}/nowhere does not exist" in one_line(error)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_directory_is_named(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(StoreError) as error:
        open_store(f"sqlite:///{locked}/state.db")
    assert str(locked) in one_line(error)


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the tables you are looking for\n" * 200)
    with pytest.raises(StoreError) as error:
        open_store(f"sqlite:///{path}")
    assert str(path) in one_line(error) and "not a database" in one_line(error)


def test_a_database_of_something_else_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreError, match="something else"):
        open_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables == ["customers"]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema version 99"):
        open_store(f"sqlite:///{path}")
