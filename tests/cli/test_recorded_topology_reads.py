"""Every operator command reads where replicas run through one function (`drivers.status.current_topology`).

After `failover replace`, the configuration file still places the replaced replica where it was; the store records
where it runs now. A command that read a replica's site, instance or address from the file would act on a machine
that is gone. These tests hold the commands to it:

- the source: in the operator's command modules, the file's topology (`loaded.topology`) is read only for what
  `failover replace` never changes (engine and site names, the display zone, probe timeouts) or handed to the one
  function that applies the record (or the spool, which replays an engine record by name);
- the brake: `failover halt` asks the store where replicas run, halts a replaced primary where it runs now, and when
  the store does not answer within its budget goes without it (the file's places, and why).
"""

from __future__ import annotations

import ast
import shutil
import threading
from pathlib import Path

from orchestrator.config import load_config
from orchestrator.core.errors import StoreError
from orchestrator.drivers.operator import Operator, placed_within
from orchestrator.drivers.status import current_topology, gather_status
from orchestrator.drivers.wiring import build_edges
from orchestrator.store import open_store
from orchestrator.store.topology_record import RecordedReplica

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_COMMANDS = ("operate_cmd", "rejoin_cmd", "quarantine_cmd", "incident_cmd", "status_cmd", "common")
# what `failover replace` never changes: names, the display zone, probe timing
HARMLESS_ATTRIBUTES = {"display_timezone", "sites", "probes"}
# calls that take the file's topology for names only, or apply the record to it
HARMLESS_CALLS = {"pick_engine", "current_topology", "replay"}


def _uses_of_the_file(module: str) -> list[str]:
    """Each read of `loaded.topology` in `module` that is not one of the harmless kinds, as `line: source`."""
    path = ROOT / "orchestrator" / "cli" / f"{module}.py"
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr == "topology" and isinstance(node.value, ast.Name)
                and node.value.id == "loaded"):
            continue
        parent = parents[node]
        if isinstance(parent, ast.Attribute) and parent.attr in HARMLESS_ATTRIBUTES:
            continue
        if isinstance(parent, ast.Call) and node in parent.args:
            called = parent.func
            name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
            if name in HARMLESS_CALLS:
                continue
        found.append(f"{module}.py:{node.lineno}: {ast.get_source_segment(source, parent)}")
    return found


def test_no_operator_command_reads_a_replica_from_the_file() -> None:
    offending = [use for module in OPERATOR_COMMANDS for use in _uses_of_the_file(module)]
    assert offending == [], "read where replicas run through drivers.status.current_topology:\n" + "\n".join(offending)


def test_the_check_can_fail(tmp_path: Path) -> None:
    """The check sees a command handing the file's topology to a driver (what `rejoin` did before)."""
    module = ROOT / "orchestrator" / "cli" / "rejoin_cmd.py"
    before = module.read_text(encoding="utf-8")
    assert "Rejoin(current_topology(loaded.topology, store)," in before
    source = before.replace("Rejoin(current_topology(loaded.topology, store),", "Rejoin(loaded.topology,")
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    calls = [parents[n] for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "topology"
             and isinstance(n.value, ast.Name) and n.value.id == "loaded"]
    assert any(isinstance(c, ast.Call) and getattr(c.func, "id", "") == "Rejoin" for c in calls)


def _moved(tmp_path: Path) -> Path:
    """The example configuration, with spot-azure recorded on aws-hk (as `failover replace` records it)."""
    path = tmp_path / "failover.yaml"
    shutil.copy(ROOT / "configs" / "example.yaml", path)
    loaded = load_config(path)
    with open_store(loaded.store_url) as store:
        store.record_replacement(RecordedReplica("spot", "spot-azure", "aws-hk", "i-0new", "http://10.9.9.9:8080",
                                                 1_700_000_000.0, 1, {"site": "azure-hk"}))
    return path


def test_the_operator_status_and_the_brake_see_the_recorded_place(tmp_path: Path) -> None:
    loaded = load_config(_moved(tmp_path))
    configured = loaded.topology.engines["spot"].replica("spot-azure")
    with build_edges(loaded, dry_run=True) as edges:
        operator = Operator(loaded, edges, actor="test")
        moved = operator.topology.engines["spot"].replica("spot-azure")
        assert (moved.site, moved.instance, moved.control_url) == ("aws-hk", "i-0new", "http://10.9.9.9:8080")
        assert current_topology(loaded.topology, edges.store) == operator.topology
    braked, why = placed_within(loaded)
    assert (braked, why) == (operator.topology, "")
    shown = gather_status(loaded)
    [line] = [r for e in shown.engines for r in e.replicas if r.name == "spot-azure"]
    assert (line.site, line.provider, line.instance) == ("aws-hk", "aws", "i-0new")
    assert shown.topology_differs == ["spot/spot-azure: replaced, the configuration still says site azure-hk -> "
                                      f"aws-hk; instance {configured.instance} -> i-0new; control_url "
                                      f"{configured.control_url} -> http://10.9.9.9:8080 (update the file)"]
    assert loaded.topology.engines["spot"].replica("spot-azure") == configured  # the file's view is untouched


def test_the_brake_goes_without_a_store_that_does_not_answer_in_time(tmp_path: Path) -> None:
    loaded = load_config(_moved(tmp_path))
    released = threading.Event()

    def hanging() -> object:
        released.wait(60)
        raise StoreError("store never answered")

    try:
        topology, why = placed_within(loaded, 0.3, open_store=hanging)  # type: ignore[arg-type]
        assert not released.is_set()  # it returned while the store was still hanging
        assert (topology, why) == (loaded.topology, "no answer within 0.3s")
    finally:
        released.set()

    def broken() -> object:
        raise StoreError("state store x: cannot open")

    assert placed_within(loaded, 5.0, open_store=broken) == (  # type: ignore[arg-type]
        loaded.topology, "state store x: cannot open")
