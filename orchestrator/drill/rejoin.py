"""`failover drill --rejoin`: after the failover, rebuild redundancy as an SRE would, and time it.

Once the faults are over and the old primary's site is back (`site_back`: a drill stops before a long scenario's
faults end, and its cloud's API must stop reporting the outage too, or the site is never judged healthy), the
drill waits for the site's quarantine to end, rejoins the old primary through the real driver
(`orchestrator.drivers.rejoin`, audited as actor `drill`) while the order stream goes on (the rejoin copies a
journal that grows as it copies, as in production), stops the stream, and waits until all three replicas hold the
same journal (same last seq, same hash at it), each standby following the new primary. The incident report then
times the reduced redundancy from the same audit entries (`drivers.report.redundancy_window`), so `failover report`
and the drill agree.

Why a shortened quarantine and not a release: a release is a human's judgement that the site is sound, and the
drill has no human; the quarantine's own clock (the site healthy without a break, a relapse restarting it) is the
behaviour to exercise. So the drill writes a short `policy.quarantine` into its generated config before any daemon
starts: the scenario's duration compressed like the other timings, at most `QUARANTINE_CAP` (2 h at 60x would be
two minutes of a drill that otherwise lasts one) and at least `QUARANTINE_FLOOR` (a healthy run shorter than a few
probe rounds proves nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config import load_config
from orchestrator.core.durations import format_duration
from orchestrator.core.errors import FailoverError
from orchestrator.core.model import Engine, Role
from orchestrator.core.quarantine import may_host
from orchestrator.drivers.rejoin import Rejoin
from orchestrator.engine.client import HttpEngineClient
from orchestrator.store.base import StateStore
from orchestrator.testbed.world import AWS_ZONE, GCP_ZONE, Testbed

QUARANTINE_CAP, QUARANTINE_FLOOR = 5.0, 2.0  # seconds of drill time
# How long the drill waits for each stage before it gives up and reports the invariant broken: a drill must end,
# and each stage takes seconds on an idle machine (the quarantine's own duration comes on top of its wait).
STAGE_PATIENCE = 180.0
POLL = 0.2
ACTOR = "drill"

Mark = Callable[[float, str], None]


def drill_quarantine(scenario_seconds: float, speed: float) -> float:
    """The drill's `policy.quarantine`: compressed like the other timings, then held between floor and cap."""
    return min(QUARANTINE_CAP, max(QUARANTINE_FLOOR, scenario_seconds / speed))


def site_back(bed: Testbed, site: str) -> list[str]:
    """Withdraw what the site's cloud still reports of an outage the drill cut short (the injector thaws the
    replica, but leaves a zone impaired or a health event open when the drill ends before the fault does)."""
    provider = bed.config()["sites"][site]["provider"]
    done: list[str] = []
    if provider == "aws":
        bed.impair_aws(False)
        closed = bed.post_aws_health(False)
        done += [f"AWS reports {AWS_ZONE} available", *([closed] if closed else [])]
    elif provider == "gcp" and bed.gcp is not None:
        bed.gcp.set_zone(GCP_ZONE, "UP")
        done.append(f"GCP reports {GCP_ZONE} UP")
    elif provider == "azure" and bed.azure is not None:
        bed.azure.set_vm("spot-engine-azure", health="Available")
        bed.azure.inject_resource_health("spot-engine-azure", "Available", "")
        done.append("Azure reports spot-engine-azure available")
    return done


def shorten_quarantine(config_path: Path, seconds: float) -> None:
    """Write `policy.quarantine` into the drill's generated config (before any daemon reads it)."""
    document: dict[str, Any] = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    document.setdefault("policy", {})["quarantine"] = f"{seconds:.3f}s"
    config_path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


@dataclass
class RejoinStage:
    """What the stage did, with wall-clock times (None: the stage did not get that far)."""

    replica: str
    primary: str = ""
    quarantine_ended_at: float | None = None
    started_at: float | None = None
    done_at: float | None = None
    in_sync_at: float | None = None
    state: str = "not started"
    seq_at_start: int | None = None  # the primary's last seq when the rejoin began
    seq_at_done: int | None = None  # the rejoined replica's when it was done
    orders_while_rejoining: int | None = None  # acknowledged by the primary between the two (`count_orders`)
    positions: dict[str, str] = field(default_factory=dict)  # replica -> "role seq hash following", last look
    notes: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return self.in_sync_at is not None

    def figures(self) -> dict[str, Any]:
        def span(start: float | None, end: float | None) -> float | None:
            return round(end - start, 3) if start is not None and end is not None else None

        return {"rejoined": self.replica if self.state == "done" else None, "rejoin_state": self.state,
                "rejoin_s": span(self.started_at, self.done_at),
                "orders_acknowledged_while_rejoining": self.orders_while_rejoining,
                "replicas_in_sync": self.in_sync}

    def count_orders(self, acknowledged_seqs: Iterable[int]) -> None:
        """How many acknowledged orders the primary journaled while the rejoin copied (seq in between)."""
        if self.seq_at_start is not None and self.seq_at_done is not None:
            low, high = self.seq_at_start, self.seq_at_done
            self.orders_while_rejoining = sum(1 for seq in acknowledged_seqs if low < seq <= high)


def _wait(condition: Callable[[], bool], patience: float) -> float | None:
    """Poll until `condition` holds; the wall time it held, or None when `patience` ran out."""
    deadline = time.monotonic() + patience
    while True:
        if condition():
            return time.time()
        if time.monotonic() > deadline:
            return None
        time.sleep(POLL)


def _positions(client: HttpEngineClient, engine: Engine) -> dict[str, tuple[Role, int, str, str]] | None:
    """Each replica's role, last seq, hash of its last entry and whom it follows; None if one does not answer."""
    found = {}
    for replica in engine.replicas:
        try:
            status = client.status(replica)
            page = client.journal(replica, status.last_seq - 1, 1) if status.last_seq else []
        except FailoverError:
            return None
        last_hash = str(page[0].get("hash")) if page else ""
        found[replica.name] = (status.role, status.last_seq, last_hash, (status.following or "").rstrip("/"))
    return found


def in_sync(positions: dict[str, tuple[Role, int, str, str]], primary: str, primary_url: str) -> bool:
    """Three replicas in sync: one primary, every other a standby following it, all at the same seq and hash."""
    if positions.get(primary, (None,))[0] is not Role.PRIMARY:
        return False
    heads = {(seq, digest) for _, seq, digest, _ in positions.values()}
    standbys_follow = all(role is Role.STANDBY and following == primary_url.rstrip("/")
                          for name, (role, _, _, following) in positions.items() if name != primary)
    return len(heads) == 1 and standbys_follow


def rejoin_old_primary(config_path: Path, token_file: Path, replica: str, mark: Mark,
                       progress: Callable[[str], None] = lambda _: None,
                       before_sync: Callable[[], object] = lambda: None) -> RejoinStage:
    """Wait out the quarantine of `replica`'s site, rejoin it through the driver, call `before_sync` (the drill
    stops its order stream there: a journal still growing is never seen at one seq everywhere), and wait for three
    replicas in sync."""
    loaded = load_config(config_path)
    topology = loaded.topology
    engine = next(e for e in topology.engines.values() if replica in {r.name for r in e.replicas})
    stage = RejoinStage(replica)
    site = engine.replica(replica).site
    client = HttpEngineClient(token_file=token_file, read_timeout=5.0, attempts=3, control_timeout=5.0)
    try:
        with loaded.open_store() as store:
            progress(f"waiting for {site}'s quarantine ({format_duration(topology.policy.quarantine)} healthy)")
            stage.quarantine_ended_at = _wait(lambda: may_host(site, store.quarantines(), time.time(),
                                                               topology.policy.quarantine),
                                              STAGE_PATIENCE + topology.policy.quarantine)
            if stage.quarantine_ended_at is None:
                stage.notes.append(f"rejoin: {site} still in quarantine after {STAGE_PATIENCE:g}s; not rejoined")
            else:
                mark(stage.quarantine_ended_at, f"quarantine {site} ended")
                _rejoin(Rejoin(topology, store, client, actor=ACTOR), store, engine, stage, progress)
        before_sync()
        if stage.state == "done":
            _wait_in_sync(client, engine, stage, mark, progress)
    finally:
        client.close()
    return stage


def _rejoin(driver: Rejoin, store: StateStore, engine: Engine, stage: RejoinStage,
            progress: Callable[[str], None]) -> None:
    try:
        plan = driver.plan(engine.name, stage.replica)
    except FailoverError as error:
        stage.state, stage.notes = "refused", [*stage.notes, f"rejoin of {stage.replica} refused: {error}"]
        return
    stage.primary = plan.primary
    progress(f"rejoining {stage.replica} to {plan.primary} at epoch {plan.epoch}")
    stage.started_at = time.time()
    try:
        stage.seq_at_start = driver.engines.status(engine.replica(plan.primary)).last_seq
    except FailoverError:
        stage.seq_at_start = None
    outcome = driver.run(plan, timeout=STAGE_PATIENCE)
    stage.state, stage.seq_at_done = outcome.state, outcome.last_seq
    # the driver audits rejoin.done only once the replica acknowledges: its time is when redundancy came back
    done = [e.at for e in store.audit_entries() if e.action == "rejoin.done" and e.detail.get("replica") ==
            stage.replica and e.at >= stage.started_at]
    stage.done_at = done[-1] if done else time.time()
    if outcome.state != "done" or not outcome.acknowledging:
        stage.notes.append(f"rejoin of {stage.replica}: {outcome.state}"
                           + ("" if outcome.acknowledging else ", not acknowledging")
                           + (f" ({outcome.error})" if outcome.error else ""))
        stage.state = outcome.state if outcome.state != "done" else "not acknowledging"


def _wait_in_sync(client: HttpEngineClient, engine: Engine, stage: RejoinStage, mark: Mark,
                  progress: Callable[[str], None]) -> None:
    assert stage.done_at is not None
    mark(stage.done_at, f"rejoin {stage.replica}")
    progress(f"waiting for {len(engine.replicas)} replicas in sync")
    primary_url = engine.replica(stage.primary).control_url

    def check() -> bool:
        positions = _positions(client, engine)
        if positions is None:
            return False
        stage.positions = {name: f"{role.value} seq {seq} hash {digest[:12]} following {following or '-'}"
                           for name, (role, seq, digest, following) in positions.items()}
        return in_sync(positions, stage.primary, primary_url)

    stage.in_sync_at = _wait(check, STAGE_PATIENCE)
    if stage.in_sync_at is None:
        stage.notes.append(f"replicas not in sync after {STAGE_PATIENCE:g}s: " + "; ".join(
            f"{name} {where}" for name, where in sorted(stage.positions.items())))
        return
    mark(stage.in_sync_at, f"{len(engine.replicas)} replicas in sync")


__all__ = ["RejoinStage", "drill_quarantine", "in_sync", "rejoin_old_primary", "shorten_quarantine", "site_back"]
