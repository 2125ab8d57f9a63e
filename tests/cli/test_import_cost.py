"""What the everyday commands load: an SRE runs `failover --help`, `status`, `config validate`, `history` and
`report` at the worst moment, and they answer from the configuration and the store alone. So none of them may pay
for a cloud SDK, matplotlib, moto, the drill, the simulator or the testbed (issue 17: `failover status` took a
second because every command imported all of them).

Each command runs in a fresh interpreter, as a shell runs it, and the test reads that interpreter's `sys.modules`
when the command is done. How long the commands take is measured by `benchmarks/cli_start_bench.py`, not here.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import typer.main

from orchestrator.cli.commands import COMMANDS
from orchestrator.config import load_config

ROOT = Path(__file__).resolve().parents[2]

# the cloud adapters and their SDKs (validation asks the catalog for each adapter's options model, which lives in
# providers/options.py; an adapter and its SDK are imported only when a site of it is built), plotting, the AWS
# fake, and the packages that stand up or simulate a whole world
NOT_FOR_EVERYDAY = ("providers.aws", "providers.gcp", "providers.azure", "boto3", "botocore", "google", "azure",
                    "matplotlib", "moto", "orchestrator.drill", "orchestrator.sim", "orchestrator.testbed")

# Runs one command as `failover` would, then writes its exit code and every module it left loaded.
PROBE = """
import json, sys
from orchestrator.cli.app import main
try:
    main(sys.argv[2:])
    code = 0
except SystemExit as exited:
    code = exited.code
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump({"exit": code, "modules": sorted(sys.modules)}, out)
"""


def not_for_everyday(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in NOT_FOR_EVERYDAY))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The example configuration (three clouds: every built-in adapter's options are checked) beside its SQLite
    store, which holds one incident for `report` to render."""
    where = tmp_path_factory.mktemp("import-cost")
    config = where / "failover.yaml"
    shutil.copy(ROOT / "configs" / "example.yaml", config)
    with load_config(config).open_store() as store:
        incident = store.create_incident("spot", "failover", "aws-hk is down", 1_700_000_000.0,
                                         source="spot-aws", target="spot-gcp", status="running")
    return config, incident.id


def run(args: list[str], where: Path) -> tuple[int, set[str], str]:
    """The command's exit code, the modules loaded when it ended, and its stderr."""
    result_file = where / "loaded.json"
    env = {**os.environ, "FAILOVER_SPOOL": str(where / "spool.jsonl")}
    env.pop("FAILOVER_STORE", None)
    env.pop("FAILOVER_CONFIG", None)
    done = subprocess.run([sys.executable, "-c", PROBE, str(result_file), *args], cwd=where, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert result_file.exists(), done.stderr
    found = json.loads(result_file.read_text(encoding="utf-8"))
    result_file.unlink()
    return found["exit"], set(found["modules"]), done.stderr


EVERYDAY = {
    "help": ["--help"],
    "status --help": ["status", "--help"],
    "status": ["status", "--config", "{config}"],
    "status json": ["status", "--config", "{config}", "--output", "json"],
    "config validate": ["config", "validate", "{config}"],
    "config schema": ["config", "schema"],
    "history": ["history", "--config", "{config}"],
    "history of one engine": ["history", "--config", "{config}", "--engine", "spot"],
    "report": ["report", "{incident}", "--config", "{config}"],
    "report json": ["report", "{incident}", "--config", "{config}", "--format", "json"],
}


@pytest.mark.parametrize("name", list(EVERYDAY))
def test_an_everyday_command_loads_no_sdk_no_plotting_no_drill(name: str, world: tuple[Path, str]) -> None:
    config, incident = world
    args = [arg.format(config=config, incident=incident) for arg in EVERYDAY[name]]
    code, modules, stderr = run(args, config.parent)
    assert code == 0, stderr
    assert not_for_everyday(modules) == []


def test_help_loads_no_configuration_no_store_no_driver(world: tuple[Path, str]) -> None:
    """Listing the commands is the commands' signatures: what each runs is imported when it runs."""
    config, _ = world
    code, modules, _ = run(["--help"], config.parent)
    assert code == 0
    ours = sorted(m for m in modules if m.startswith(("orchestrator.", "providers")))
    assert [m for m in ours if not m.startswith(("orchestrator.cli", "orchestrator.core", "orchestrator.errors"))] == []


def test_status_reads_the_store_and_contacts_nothing(world: tuple[Path, str]) -> None:
    """`status` reads the store only: no engine client, no controller, no provider adapter is even loaded."""
    config, _ = world
    code, modules, stderr = run(["status", "--config", str(config)], config.parent)
    assert code == 0, stderr
    assert "orchestrator.store.sqlite" in modules  # it did read the store
    assert {"orchestrator.engine.client", "orchestrator.drivers.controller", "providers.base", "httpx"} & modules \
        == set()
    assert {"orchestrator.cli.operate_cmd", "orchestrator.cli.drill_cmd"} & modules == set()  # nor other commands


def test_the_command_table_names_every_command_each_module_registers() -> None:
    """The root group builds a command from the module `COMMANDS` names for it: a command a module registers but
    the table leaves out would be missing from `failover --help` and could not be run."""
    modules = sorted(p.stem for p in (ROOT / "orchestrator" / "cli").glob("*_cmd.py"))
    assert sorted(set(COMMANDS.values())) == modules
    for module in modules:
        holder = typer.Typer()
        importlib.import_module(f"orchestrator.cli.{module}").register(holder)
        registered = set(typer.main.get_group(holder).commands)
        assert registered == {name for name, owner in COMMANDS.items() if owner == module}, module


def test_the_check_sees_what_a_command_loads_inside_its_body(world: tuple[Path, str]) -> None:
    """The probe can fail: `simulate` imports the simulator inside the command, before it finds the file missing."""
    config, _ = world
    code, modules, stderr = run(["simulate", str(config.parent / "no-such-scenario.yaml")], config.parent)
    assert code == 2, stderr
    assert "orchestrator.sim" in not_for_everyday(modules)
