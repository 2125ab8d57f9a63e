"""`make venv` on a stock Debian or Ubuntu python3, in a shell without uv (README's first command).

There, pip refuses to install into the system interpreter (PEP 668) and `venv` may be missing (python3-venv is a
separate package). The bootstrap must never call the system interpreter's pip, and must say in one line which
package to install when it cannot make a virtual environment. These run offline, against copies of the Makefile
and the lock; the whole bootstrap, downloads included, is rehearsed by `.ci/run bootstrap` on a clean clone (and
here when FAILOVER_TEST_BOOTSTRAP=1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
CLEAN_PATH = "/usr/bin:/bin"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def base_python() -> Path:
    """The system interpreter (Debian's in CI): the one a new user has."""
    if SYSTEM_PYTHON.exists():
        return SYSTEM_PYTHON
    return Path(sys.base_prefix) / "bin" / "python3"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """What `make venv` reads: the Makefile, pyproject.toml and uv.lock, in a directory of their own."""
    if shutil.which("uv", path=CLEAN_PATH):
        pytest.skip("uv is in /usr/bin or /bin: a shell without uv cannot be had here")
    tree = tmp_path / "checkout"
    tree.mkdir()
    for name in ("Makefile", "pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    (tmp_path / "home").mkdir()
    return tree


def wrapper(tmp_path: Path, body: str) -> Path:
    """A `python3` that is the system interpreter with something changed, as PY= for make."""
    path = tmp_path / "bin" / "python3"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\nexec {base_python()} \"$@\"\n")
    path.chmod(0o755)
    return path


def make_venv(checkout: Path, python: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": CLEAN_PATH, "HOME": str(checkout.parent / "home"), **env}  # env -i: nothing inherited
    return subprocess.run(["make", "--no-print-directory", "venv", f"PY={python}"], cwd=checkout, env=environment,
                          capture_output=True, text=True, timeout=600, check=False)


def test_without_python3_venv_one_line_names_the_package(checkout: Path, tmp_path: Path) -> None:
    """Debian without python3-venv has `venv` but not `ensurepip`: shadow it the way the missing package does."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ensurepip.py").write_text("raise ModuleNotFoundError(\"No module named 'ensurepip'\")\n")
    python = wrapper(tmp_path, f"export PYTHONPATH={shadow}")
    result = make_venv(checkout, python)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if not line.startswith("make")]
    assert ours == [f"error: {python} cannot create a virtual environment (no ensurepip): install the python3-venv "
                    "package (Debian/Ubuntu: sudo apt-get install python3-venv)"]
    assert not (checkout / ".venv").exists()


def test_the_system_interpreter_only_makes_the_venv_never_installs(checkout: Path, tmp_path: Path) -> None:
    """Offline, installing fails; what matters is who tried: .venv's own pip, never the system interpreter's, never
    `--user` (which PEP 668 forbids as well). The fallback's pins come from uv.lock."""
    log = tmp_path / "calls.log"
    python = wrapper(tmp_path, f'echo "$*" >> {log}')
    result = make_venv(checkout, python, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_RETRIES="0")
    assert result.returncode != 0  # offline: neither uv nor the locked packages can be downloaded
    calls = log.read_text().splitlines()
    assert [call for call in calls if not call.startswith("-c ")] == ["-m venv .venv"]  # no `-m pip`, ever
    assert not [call for call in calls if "install" in call or "--user" in call], calls
    assert (checkout / ".venv" / "bin" / "python").exists()
    assert not (tmp_path / "home" / ".local").exists()  # nothing installed for the user either
    assert "note: uv could not be installed into .venv/.bootstrap; installing the locked versions with .venv's pip" \
        in result.stderr
    lock = tomllib.loads((checkout / "uv.lock").read_text())
    typer = next(p for p in lock["package"] if p["name"] == "typer")
    assert f"typer=={typer['version']}" in (checkout / ".venv" / "constraints.txt").read_text().splitlines()


def test_the_system_python_here_is_externally_managed() -> None:
    """Why the above matters: on this Debian interpreter a plain `pip install` is refused (PEP 668)."""
    stdlib = subprocess.run([str(base_python()), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    if not (Path(stdlib) / "EXTERNALLY-MANAGED").exists():
        pytest.skip(f"{base_python()} is not externally managed here (no {stdlib}/EXTERNALLY-MANAGED)")
    refused = subprocess.run([str(base_python()), "-m", "pip", "install", "--dry-run", "--no-index", "uv"],
                             capture_output=True, text=True, check=False)
    if "No module named pip" in refused.stderr:
        pytest.skip("the system interpreter has no pip at all (stock Debian): nothing to refuse")
    assert refused.returncode != 0 and "externally-managed-environment" in refused.stderr


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("FAILOVER_TEST_BOOTSTRAP") != "1",
                    reason="downloads every locked package; .ci/run bootstrap rehearses it in CI")
def test_the_whole_bootstrap_on_a_clean_clone(tmp_path: Path) -> None:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(tmp_path / "clone")], check=True)
    (tmp_path / "home").mkdir()
    built = make_venv(tmp_path / "clone", base_python())
    assert built.returncode == 0, built.stderr
    first = subprocess.run([str(tmp_path / "clone" / ".venv" / "bin" / "failover"), "config", "validate",
                            "configs/example.yaml"], cwd=tmp_path / "clone", capture_output=True, text=True,
                           env={"PATH": CLEAN_PATH, "HOME": str(tmp_path / "home")}, check=False)
    assert first.returncode == 0, first.stderr
