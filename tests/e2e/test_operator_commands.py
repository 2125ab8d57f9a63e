"""The operator's phase commands and approvals against real replicas: one clear line and exit 3 on a refusal,
nothing changed; the protection window holds unless forced; a proposed failover runs once approved."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.core.model import Phase, Role
from orchestrator.drivers.state import load_engine
from orchestrator.store import open_store
from orchestrator.testbed.ports import free_port
from orchestrator.testbed.world import Testbed


def failover(bed: Testbed, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env={**bed.env(), **(env or {})},
                          capture_output=True, text=True, timeout=120, check=False)


def primary_phase(bed: Testbed) -> Phase:
    assert bed.replicas is not None
    return bed.replicas.client().status(bed.replicas.replica("spot-aws")).phase


def test_halt_protect_reopen_by_hand(bed: Testbed) -> None:
    assert failover(bed, "halt", "--reason", "suspicious fills").returncode == 0
    assert primary_phase(bed) is Phase.HALTED

    refused = failover(bed, "reopen")
    assert refused.returncode == 3
    assert refused.stderr.count("\n") == 1 and "refused" in refused.stderr and "halted" in refused.stderr
    assert primary_phase(bed) is Phase.HALTED  # nothing changed

    assert failover(bed, "protect", "--for", "1h").returncode == 0
    assert primary_phase(bed) is Phase.PROTECTION
    early = failover(bed, "reopen")
    assert early.returncode == 3 and "left; reopen refused" in early.stderr
    assert primary_phase(bed) is Phase.PROTECTION

    assert failover(bed, "reopen", "--force", "--reason", "window cut short by the incident commander").returncode == 0
    assert primary_phase(bed) is Phase.OPEN
    with open_store(load_config(bed.config_path).store_url) as store:
        actions = [e.action for e in store.audit_entries()]
        assert actions == ["phase.halt", "phase.protect", "phase.force_open"]
        assert store.verify_audit().ok


def test_bad_arguments_are_one_line_exit_2(bed: Testbed) -> None:
    for args in (["protect", "--for", "20 minutes"], ["execute", "--target", "spot-nowhere", "--yes"],
                 ["report", "INC-does-not-exist"], ["history", "--engine", "perp"]):
        result = failover(bed, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_switchover_refused_onto_the_primary_itself(bed: Testbed) -> None:
    result = failover(bed, "execute", "--target", "spot-aws", "--yes")
    assert result.returncode == 3 and "target must not be the current primary" in result.stderr


def test_manual_approval_proposes_then_runs_once_approved(bed: Testbed) -> None:
    bed.approval = "manual"
    bed.write_config()
    bed.lose_aws()
    for _ in range(8):
        checked = failover(bed, "check", "--output", "json")
        if json.loads(checked.stdout)["actions"]:
            break
    assert checked.returncode == 3  # a proposal waits for a human
    history = json.loads(failover(bed, "history", "--output", "json").stdout)
    [proposal] = history
    assert (proposal["status"], proposal["target"]) == ("proposed", "spot-gcp")
    assert bed.replicas is not None
    assert bed.replicas.client().status(bed.replicas.replica("spot-gcp")).role is Role.STANDBY  # nothing done yet

    approved = failover(bed, "approve", proposal["id"])
    assert approved.returncode == 0, approved.stdout + approved.stderr
    status = bed.replicas.client().status(bed.replicas.replica("spot-gcp"))
    assert (status.role, status.phase) == (Role.PRIMARY, Phase.OPEN)


def test_check_on_a_follower_exits_0_while_the_leader_pages(bed: Testbed) -> None:
    """Two cron hosts: the one that follows must not alert too. Exit 3 is for the leader's run (and `status`)."""
    with open_store(load_config(bed.config_path).store_url) as store:
        assert store.acquire_lease("leader", "daemon@gcp-hk", 600) is not None
        store.create_incident("spot", "failover", "fence failed", time.time(), source="spot-aws", target="spot-gcp",
                              status="needs_human")
    checked = failover(bed, "check", "--output", "json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["message"] == "following; the leader is daemon@gcp-hk"
    assert failover(bed, "status").returncode == 3  # the store still says a human is needed


# ---- the emergency brake without the store ----------------------------------------------------------------------


def phases_and_epochs(bed: Testbed) -> dict[str, tuple[Phase, int]]:
    assert bed.replicas is not None
    client = bed.replicas.client()
    return {name: (s.phase, s.epoch) for name in ("spot-aws", "spot-gcp", "spot-azure")
            for s in [client.status(bed.replicas.replica(name))]}


def all_halted(bed: Testbed) -> dict[str, tuple[Phase, int]]:
    """The primary answers halted at once; a standby reports its primary's phase once it has copied that journal
    entry, so it is waited for (generously: the machine may be busy)."""
    assert bed.replicas is not None
    assert phases_and_epochs(bed)["spot-aws"][0] is Phase.HALTED
    bed.replicas.wait_for(lambda: {p for p, _ in phases_and_epochs(bed).values()} == {Phase.HALTED}, timeout=60,
                          what="every replica to report halted")
    return phases_and_epochs(bed)


def test_halt_reaches_the_engines_with_the_store_unreachable(bed: Testbed, tmp_path: Path) -> None:
    spool = tmp_path / "state" / "spool.jsonl"
    before = max(epoch for _, epoch in phases_and_epochs(bed).values())
    store = f"etcd://127.0.0.1:{free_port()}/failover"  # nobody answers there
    result = failover(bed, "halt", "--reason", "suspicious fills",
                      env={"FAILOVER_STORE": store, "FAILOVER_SPOOL": str(spool)})

    assert result.returncode == 1, result.stderr  # acted, degraded: the record is not in the store yet
    after = all_halted(bed)
    epoch = after["spot-aws"][1]
    assert epoch == before + 1 and {e for _, e in after.values()} == {epoch}
    assert f"halted spot on spot-aws (epoch {epoch}); also halted spot-gcp, spot-azure" in result.stdout
    [warning] = result.stderr.splitlines()
    assert warning.startswith("warning: store unreachable (etcd 127.0.0.1:")
    assert warning.endswith(f"record queued in {spool}, replayed on the next run")
    assert stat.S_IMODE(spool.stat().st_mode) == 0o600
    [queued] = [json.loads(line) for line in spool.read_text().splitlines()]
    assert (queued["store"], queued["action"], queued["epoch"]) == (store, "phase.halt", epoch)
    assert queued["detail"]["reason"] == "suspicious fills"


def test_a_queued_halt_is_replayed_by_the_next_command_that_reaches_the_store(bed: Testbed, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    later = tmp_path / "not-yet"  # the store's directory is missing: SQLite cannot open the file
    env = {"FAILOVER_STORE": f"sqlite:///{later}/state.db", "FAILOVER_SPOOL": str(spool)}
    halted = failover(bed, "halt", env=env)
    assert halted.returncode == 1 and "record queued in" in halted.stderr
    epoch = phases_and_epochs(bed)["spot-aws"][1]

    later.mkdir()  # the store is back
    listed = failover(bed, "history", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.splitlines() == [f"note: 1 record(s) queued in {spool} while the store was unreachable "
                                          "were written to it"]
    assert not spool.exists()
    with open_store(env["FAILOVER_STORE"]) as store:
        [entry] = store.audit_entries()
        assert (entry.action, entry.detail["epoch"], entry.detail["engine_record"]) == ("phase.halt", epoch, "halted")
        record = load_engine(store, load_config(bed.config_path).topology, "spot")
        assert (record.phase.phase, record.epoch) == (Phase.HALTED, epoch)
    again = failover(bed, "status", env=env)
    assert again.returncode == 0 and again.stderr == ""  # replayed once, not twice


def test_halt_with_the_store_disk_full(bed: Testbed, tmp_path: Path) -> None:
    """SQLite on a full filesystem (a 1 MiB tmpfs, filled up, in a private mount namespace)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], check=False,
                                                         capture_output=True).returncode != 0:
        pytest.skip("needs unshare -rm (user and mount namespaces) to mount a small tmpfs")
    full, spool = tmp_path / "full", tmp_path / "spool.jsonl"
    full.mkdir()
    python = f"{sys.executable} -m orchestrator"
    script = (f"mount -t tmpfs -o size=1m tmpfs {full} && {python} status >/dev/null && "
              f"(dd if=/dev/zero of={full}/filler bs=4k >/dev/null 2>&1; true) && exec {python} halt")
    env = {**bed.env(), "FAILOVER_STORE": f"sqlite:///{full}/state.db", "FAILOVER_SPOOL": str(spool)}
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    all_halted(bed)
    [warning] = result.stderr.splitlines()
    assert "store unreachable (" in warning and "full" in warning and f"record queued in {spool}" in warning
    assert len(spool.read_text().splitlines()) == 1


def test_halt_with_the_store_up_records_at_once(bed: Testbed, tmp_path: Path) -> None:
    result = failover(bed, "halt", env={"FAILOVER_SPOOL": str(tmp_path / "spool.jsonl")})
    assert result.returncode == 0 and result.stderr == ""
    epoch = phases_and_epochs(bed)["spot-aws"][1]
    assert f"halted spot on spot-aws (epoch {epoch})" in result.stdout
    assert not (tmp_path / "spool.jsonl").exists()
    with open_store(load_config(bed.config_path).store_url) as store:
        assert [(e.action, e.detail["epoch"]) for e in store.audit_entries()] == [("phase.halt", epoch)]
