"""The operator's phase commands and approvals against real replicas: one clear line and exit 3 on a refusal,
nothing changed; the protection window holds unless forced; a proposed failover runs once approved."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from orchestrator.config import load_config
from orchestrator.core.model import Phase, Role
from orchestrator.drill.testbed import Testbed
from orchestrator.store import open_store


def failover(bed: Testbed, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=bed.env(), capture_output=True,
                          text=True, timeout=120, check=False)


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
