"""The layering docs/design.md §1 promises, checked on every import statement in the shipped packages.

Why: the decision logic stays sans-IO and reusable (the daemon, cron, the simulator and the drill all run it) only
while no lower layer reaches up. Reading the source with `ast` sees imports inside functions too, which a runtime
check of `sys.modules` would miss until the one code path that needs them runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# lowest first: a module may import its own layer or any layer below it, never one above
LAYERS: tuple[tuple[str, ...], ...] = (
    ("orchestrator.core", "orchestrator.errors"),
    ("orchestrator.store", "orchestrator.engine", "providers"),
    ("orchestrator.config",),
    ("orchestrator.drivers",),
    ("orchestrator.sim", "orchestrator.testbed", "orchestrator.drill", "orchestrator.web"),
    ("orchestrator.cli", "orchestrator.__main__"),
)
# within one layer: the drill builds on the testbed and the simulator, never the other way round
FORBIDDEN_SIDEWAYS = {
    "orchestrator.testbed": ("orchestrator.drill", "orchestrator.sim"),
    "orchestrator.sim": ("orchestrator.drill", "orchestrator.testbed"),
}


def _owner(module: str) -> str | None:
    """The longest layer prefix that owns `module` (None for anything outside our packages)."""
    owners = [p for layer in LAYERS for p in layer if module == p or module.startswith(p + ".")]
    return max(owners, key=len) if owners else None


def _rank(prefix: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if prefix in layer)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _violations_in(path: Path, module: str) -> list[str]:
    importer = _owner(module)
    if importer is None:
        return []
    found: list[str] = []
    for line, target in _imports(path):
        imported = _owner(target)
        if imported is None or imported == importer:
            continue
        above = _rank(imported) > _rank(importer)
        sideways = imported in FORBIDDEN_SIDEWAYS.get(importer, ())
        if above or sideways:
            found.append(f"{path.name}:{line}: {importer} imports {target}")
    return found


def test_no_package_imports_one_that_stands_above_it() -> None:
    sources = sorted([*ROOT.joinpath("orchestrator").rglob("*.py"), *ROOT.joinpath("providers").rglob("*.py")])
    assert len(sources) > 100
    assert [v for path in sources for v in _violations_in(path, _module_name(path))] == []


def test_the_check_sees_an_import_inside_a_function_and_a_sideways_one(tmp_path: Path) -> None:
    """The checker itself must be able to fail: core reaching for the CLI, the testbed reaching for the drill."""
    bad = tmp_path / "bad.py"
    bad.write_text("import yaml\n\ndef f():\n    from orchestrator.cli import app\n    import orchestrator.drill.run\n")
    assert _violations_in(bad, "orchestrator.core.bad") == [
        "bad.py:4: orchestrator.core imports orchestrator.cli",
        "bad.py:4: orchestrator.core imports orchestrator.cli.app",
        "bad.py:5: orchestrator.core imports orchestrator.drill.run",
    ]
    sideways = _violations_in(bad, "orchestrator.testbed.bad")
    assert sideways[-1] == "bad.py:5: orchestrator.testbed imports orchestrator.drill.run"
    assert _violations_in(bad, "orchestrator.cli.bad") == []
