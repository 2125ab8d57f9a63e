"""Issue 11's seven holes, end to end: each one reproduced through the harness against the real processes, and the
behaviour the issue asks for asserted. Every wait is on a condition, with a deadline far above what a loaded
machine needs when the behaviour is right; none is a speed bound.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nemesis.checker import Expect, check, when
from nemesis.cluster import ProxiedCluster
from nemesis.world import NAMES, Lab, World, WorldOptions
from orchestrator.core.errors import EngineError
from orchestrator.core.model import Phase
from orchestrator.engine.client import HttpEngineClient
from orchestrator.testbed.etcd import etcd_binary
from orchestrator.testbed.proxy import ProxyHub
from orchestrator.testbed.replicas import ReplicaSpec

pytestmark = [pytest.mark.nemesis, pytest.mark.slow]
AWS, GCP, AZURE = NAMES


@pytest.fixture
def world_of(lab: Lab) -> Iterator[Any]:
    made: list[World] = []

    def make(**options: Any) -> World:
        world = lab.world(WorldOptions(**options))
        made.append(world)
        return world

    yield make
    for world in made:
        world.close()


def steps_of(world: World) -> str:
    """The runbook so far, for failure messages: `announce done, halt done, fence_old_primary started`."""
    incidents = world.incidents()
    if not incidents:
        return "no incident"
    last = incidents[-1]
    done = [f"{step} {state}" for step, state, _ in last.steps if state != "started"]
    started = [step for step, state, _ in last.steps if state == "started"]
    tail = f", {started[-1]} started" if started and (not done or not done[-1].startswith(started[-1])) else ""
    return f"{last.id} {last.status}: {', '.join(done) or 'no step done'}{tail}"


def past(world: World, step: str) -> bool:
    """Whether the last incident's runbook got past `step` (done or skipped): the failover moved on from it."""
    incidents = world.incidents()
    return bool(incidents) and any(s == step and state in ("done", "skipped") for s, state, _ in incidents[-1].steps)


def acks_after(world: World, moment: float) -> dict[str, int]:
    """Acknowledgements by replica after `moment`."""
    counts: dict[str, int] = {}
    for op in world.history.ops():
        if op.type == "ok" and op.at > moment and op.target:
            counts[op.target] = counts.get(op.target, 0) + 1
    return counts


def wait_acks(world: World, count: int, timeout: float = 60.0) -> None:
    world.wait_for(lambda: len(world.history.acknowledged()) >= count, timeout, f"{count} acknowledged orders")


def quietly(condition: Any, timeout: float) -> bool:
    """Wait up to `timeout` for `condition`; False (no failure) if it never held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.1)
    return False


def status_of(world: World, name: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(world.cluster.url(name) + "/v1/status", timeout=2.0).json()
    return body


# ---- hole 1 ------------------------------------------------------------------------------------------------------


def race_promote_against_newer_epoch(cluster: ProxiedCluster, epoch: int, newer: str) -> dict[str, Any]:
    """POST /v1/promote {epoch} to spot-gcp while it polls a peer in a dark data centre, and, once the replica has
    recorded that epoch (the promotion is in flight), `newer` (fence or phase) at epoch + 1."""
    promoted: dict[str, Any] = {}
    target = cluster.replica(GCP)
    control = HttpEngineClient(token=cluster.token, attempts=1, read_timeout=30.0, control_timeout=30.0)

    def promote() -> None:
        try:
            promoted["status"] = control.promote(target, epoch)
        except EngineError as error:
            promoted["refused"] = str(error)
        promoted["answered"] = time.monotonic()

    thread = threading.Thread(target=promote)
    thread.start()
    in_flight = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "answered" not in promoted:
        body = httpx.get(cluster.url(GCP) + "/v1/status", timeout=2.0).json()
        if body["epoch"] >= epoch:
            in_flight = body["role"] == "standby" and "answered" not in promoted
            break
        time.sleep(0.02)
    try:
        if newer == "fence":
            control.fence(target, epoch + 1)
        else:
            control.set_phase(target, Phase.HALTED, None, epoch + 1)
        newer_answered = time.monotonic()
    finally:
        thread.join(30)
        control.close()
    return {**promoted, "in_flight": in_flight, "newer_answered": newer_answered}


def test_hole1_a_stale_promote_never_outlives_a_newer_fence(tmp_path: Path) -> None:
    """promote(E) racing fence(E+1) (or a new leader's phase at E+1) on a standby whose poll of a dark peer takes
    a second: the replica must never end up primary at E+1 after it answered the newer epoch, nor persist it."""
    trials: list[str] = []
    with ProxyHub() as hub:
        for attempt, newer in enumerate(("fence", "phase", "fence", "fence", "phase", "fence")):
            if len([t for t in trials if "in flight" in t]) == 3:
                break
            specs = [ReplicaSpec(AWS, "aws", primary=True), ReplicaSpec(GCP, "gcp"), ReplicaSpec(AZURE, "azure")]
            with ProxiedCluster(tmp_path / f"trial-{attempt}", specs, hub) as cluster:
                cluster.start()
                cluster.link(GCP, AWS).blackhole()  # spot-aws is in a dark data centre, as spot-gcp sees it
                epoch = 100 + 10 * attempt
                outcome = race_promote_against_newer_epoch(cluster, epoch, newer)
                after = cluster.status(GCP)
                cluster.restart(GCP)  # what control.json persisted
                restarted = cluster.status(GCP)
            answer = "refused" if "refused" in outcome else "200"
            trial = (f"trial {attempt + 1} ({newer} {epoch + 1}, promote {epoch} "
                     f"{'in flight' if outcome['in_flight'] else 'not in flight'}): promote answered {answer}; "
                     f"then {after['role']} at epoch {after['epoch']}, after a restart {restarted['role']} at "
                     f"epoch {restarted['epoch']}")
            trials.append(trial)
            assert not (after["role"] == "primary" and after["epoch"] > epoch), trial
            assert not (restarted["role"] == "primary" and restarted["epoch"] > epoch), trial
            if newer == "fence":
                assert after["role"] == restarted["role"] == "fenced", trial
    assert len([t for t in trials if "in flight" in t]) == 3, "the race could not be set up:\n" + "\n".join(trials)


# ---- hole 2 ------------------------------------------------------------------------------------------------------


def cross_on(world: World, name: str, pairs: int) -> None:
    """Crossing orders sent straight to `name` (a thawed zombie): each pair rests a sell, then lifts it."""
    replica = world.cluster.via("client", name)

    def pair(n: int) -> None:
        with HttpEngineClient(token=world.cluster.token, attempts=1, read_timeout=5.0) as client:
            for side in ("sell", "buy"):
                with contextlib.suppress(EngineError):  # 503: journaled there, never acknowledged
                    client.submit_order(replica, client_order_id=f"zombie-{n}-{side}", account=f"z-{side}",
                                        market="BTC-USDT", side=side, qty="1", price="49900", type="limit")

    threads = [threading.Thread(target=pair, args=(n,)) for n in range(pairs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)


def test_hole2_a_thawed_zombie_primary_never_writes_into_the_new_history(world_of: Any, tmp_path: Path) -> None:
    """The primary frozen until the standbys carry the new epoch and the halt is announced, thawed before the
    promotion (the leader dies at ensure_target_running and comes back), and sent crossing orders: none of what
    it writes then may enter the new primary's history, and no trade falls inside the announced halt."""
    once = tmp_path / "leader-died"
    failpoint = {"FAILOVER_FAILPOINT": "ensure_target_running:before", "FAILOVER_FAILPOINT_ONCE": str(once)}
    world: World = world_of(env={"daemon": failpoint})
    world.start()
    wait_acks(world, 20)
    for source in ("orch", "vp:gcp-hk", "vp:azure-hk"):
        world.cluster.link(source, AWS).blackhole()  # its data centre is dark to the orchestrator and the probes
    for peer in (GCP, AZURE):  # and it cannot hear its peers, while they still reach it: a zombie that hears them
        world.cluster.link(AWS, peer).blackhole()  # fences itself on seeing their epoch; the standbys' rule is tested
    world.cluster.pause(AWS)
    world.wait_for(lambda: once.exists() and not world.process("daemon").alive, 90,  # type: ignore[union-attr]
                   "the leader to fence the old primary and die before the promotion")
    fenced = [at for step, state, at in world.incidents()[-1].steps if (step, state) == ("fence_old_primary", "done")]
    assert fenced, f"the leader died before the fence was done: {steps_of(world)}"  # the halt is announced then
    carried = {n: status_of(world, n)["epoch"] for n in (GCP, AZURE)}
    world.cluster.resume(AWS)  # the zombie thaws, still primary at its old epoch, trading open
    before = status_of(world, AWS)["last_seq"]
    cross_on(world, AWS, 6)
    zombie_seq = status_of(world, AWS)["last_seq"]
    assert zombie_seq > before, "the thawed zombie took no order: the fault did not happen"
    # give the standbys' catch-up its chance to copy the zombie's entries (it must not, but it may try)
    quietly(lambda: all(status_of(world, n)["last_seq"] >= zombie_seq for n in (GCP, AZURE)), 5)
    world.supervise()  # the leader comes back and finishes the failover
    world.wait_for(lambda: past(world, "promote") or any(i.status == "needs_human" for i in world.incidents()), 120,
                   "the new primary to be promoted")
    world.wait_for(lambda: any(a.phase == "halted" for a in world.lab.webhook.announcements()), 60,
                   "the halt announcement to reach the webhook")  # the wall-clock window starts there
    world.heal()
    verdict = check(world.observe(settle=0), Expect(failovers=(1, 1)))
    hole = [v for v in verdict.violations if v.invariant in ("no-write-below-carried-epoch",
                                                              "no-trade-halted-wallclock")]
    assert not hole, (f"the zombie wrote seq {before + 1}-{zombie_seq} after the standbys carried epochs {carried} "
                      f"and the halt was announced (fence done at {when(fenced[0])}):\n" + "\n".join(map(str, hole))
                      + f"\n(all: {verdict.text()})")


# ---- hole 3 ------------------------------------------------------------------------------------------------------


def test_hole3_a_slow_cloud_api_never_stalls_the_runbook(world_of: Any) -> None:
    """Cron mode: `failover check` again and again, its EC2 answering each call in about 6 s (3 s per chunk, each
    way); the primary dies and EC2 reports it impaired. The failover must fence, promote and move on, or end in
    needs_human with a page and a check exiting 3 - never stay in `wait ... leadership not certain`, exiting 1,
    run after run."""
    world: World = world_of(mode="cron", policy={"step_deadline": "20s", "failure_threshold": 2})
    world.start()
    world.wait_for(lambda: bool(world.cron and any(r.code == 0 for r in world.cron.runs)), 60, "a healthy check")
    wait_acks(world, 10)
    world.bed.cloud_link("orch", "moto").delay(3.0)
    lost = time.time()
    world.bed.lose_aws(kill=True)  # dead, and EC2 (slowly) says so

    def ended() -> bool:
        cron = world.cron
        assert cron is not None
        incidents = world.incidents()
        if past(world, "switch_traffic"):  # fenced, promoted, and moved on
            return True
        paged = any(p.at >= lost for p in world.lab.webhook.pages())
        exit3 = any(r.code == 3 and r.started > lost for r in cron.runs)
        return any(i.status == "needs_human" for i in incidents) and paged and exit3

    try:
        world.wait_for(ended, 150, "the failover to finish, or a page and a check exiting 3")
    except AssertionError:
        runs = [r for r in world.cron.runs if r.started > lost]  # type: ignore[union-attr]
        raise AssertionError(f"150 s after the primary died: {steps_of(world)}; {len(runs)} check runs exited "
                             f"{sorted({r.code for r in runs})}, the last said {runs[-1].message if runs else ''!r}"
                             ) from None
    incident = world.incidents()[-1]
    if incident.status != "needs_human":
        assert status_of(world, incident.target or "")["role"] == "primary"


# ---- hole 4 ------------------------------------------------------------------------------------------------------

DRIP_ANSWER = 400  # bytes of webhook answer: one delivery through the drip takes minutes


def undelivered(document: Any, inside: bool = False) -> int:
    """Notifications `failover status --output json` says are not delivered (pending or abandoned), wherever it
    puts them under a notification/outbox/webhook key."""
    total = 0
    if isinstance(document, dict):
        for key, value in document.items():
            here = inside or any(word in key.lower() for word in ("notif", "outbox", "webhook"))
            if here and key.lower() in ("pending", "abandoned", "undelivered") and isinstance(value, int):
                total += value
            else:
                total += undelivered(value, here)
    elif isinstance(document, list):
        total += sum(undelivered(item, inside) for item in document)
    return total


def test_hole4_a_slow_webhook_never_stalls_the_runbook_nor_the_operator(world_of: Any) -> None:
    """The webhook answers one byte every 0.5 s (a delivery takes minutes and never trips a per-read timeout):
    the failover's steps take what they take without it, `failover halt` returns with the engine halted, and
    `failover status` shows the notifications not yet delivered."""
    world: World = world_of(webhook_answer_bytes=DRIP_ANSWER)
    world.start()
    wait_acks(world, 10)
    world.bed.cloud_link("orch", "webhook").drip(1, 0.5)
    world.bed.lose_aws(kill=True)
    try:
        world.wait_for(lambda: past(world, "open_protection"), 120, "the failover to open protection")
    except AssertionError:
        raise AssertionError(f"120 s after the primary was lost the failover has not finished while one webhook "
                             f"delivery takes minutes: {steps_of(world)}") from None
    incident = world.incidents()[-1]
    started = {step: at for step, state, at in incident.steps if state == "started"}
    slowest = max(((at - started.get(step, at), step) for step, state, at in incident.steps
                   if state in ("done", "skipped")), default=(0.0, ""))
    assert slowest[0] < DRIP_ANSWER * 0.5 / 4, f"step {slowest[1]} took {slowest[0]:.1f} s: it waited on a webhook"
    try:
        halted = world.operator("halt", timeout=DRIP_ANSWER * 0.5 / 2)
    except Exception as error:  # subprocess.TimeoutExpired
        phase = status_of(world, incident.target or "")["phase"]
        raise AssertionError(f"`failover halt` had not returned after {DRIP_ANSWER * 0.5 / 2:g} s (the engine is "
                             f"{phase}): it waits on the webhook") from error
    assert halted.returncode == 0, halted.stdout + halted.stderr
    assert status_of(world, incident.target or "")["phase"] == "halted"
    status = world.operator("status", "--output", "json")
    assert status.returncode == 0, status.stderr
    assert undelivered(json.loads(status.stdout)) > 0, f"no undelivered notification in: {status.stdout[:2000]}"


# ---- hole 5 ------------------------------------------------------------------------------------------------------


def test_hole5_cron_reads_the_probe_agents_and_never_waits_forever(world_of: Any) -> None:
    """The primary's data plane dark, EC2 still saying `running`, probe agents at two vantage points writing
    `down` to the shared store, `failover check` run every 0.4 s: it halts and fails over, or pages with exit 3
    within policy.suspect_timeout."""
    suspect = 10.0
    world: World = world_of(mode="cron", cron_every=0.4,
                            policy={"step_deadline": "30s", "failure_threshold": 2, "suspect_timeout": f"{suspect:g}s"})
    world.start()
    world.wait_for(lambda: bool(world.cron and any(r.code == 0 for r in world.cron.runs)), 60, "a healthy check")
    wait_acks(world, 10)
    world.cluster.pause(AWS)
    dark = time.time()

    def acted() -> bool:
        cron = world.cron
        assert cron is not None
        return bool(world.incidents()) or any(r.code == 3 and r.started > dark for r in cron.runs)

    try:
        world.wait_for(acted, suspect + 50, "a halt, a failover or exit 3")
    except AssertionError:
        runs = [r for r in world.cron.runs if r.started > dark]  # type: ignore[union-attr]
        codes = sorted({r.code for r in runs})
        raise AssertionError(f"{len(runs)} check runs in {suspect + 50:g} s after the primary went dark: exit codes "
                             f"{codes}, no incident; last said {runs[-1].message if runs else ''!r}") from None


# ---- hole 6 ------------------------------------------------------------------------------------------------------


def test_hole6_a_primary_that_cannot_replicate_is_failed_over(world_of: Any) -> None:
    """Both standbys cut from the primary (the orchestrator and the probes still reach it): every write times out
    on replication. A page within seconds, then a failover to a standby that replicates from the other one."""
    world: World = world_of()
    world.start()
    wait_acks(world, 20)
    cut = time.time()
    for standby in (GCP, AZURE):
        world.cluster.link(standby, AWS).drop()
    try:
        world.wait_for(lambda: any(p.at >= cut for p in world.lab.webhook.pages()) or bool(world.incidents()), 30,
                       "a page")
    except AssertionError:
        primary = status_of(world, AWS)
        verdicts = (world.process("daemon").status() or {}).get("verdicts")  # type: ignore[union-attr]
        raise AssertionError(f"no page and no incident 30 s after the cut: spot-aws is {primary['role']}/"
                             f"{primary['phase']}, last_seq {primary['last_seq']}, replicated_seq "
                             f"{primary.get('replicated_seq')}; the daemon's verdicts: {verdicts}") from None
    world.wait_for(lambda: past(world, "promote"), 90, "the failover to promote a standby")
    incident = world.incidents()[-1]
    assert incident.target in (GCP, AZURE)
    promoted = time.time()
    world.wait_for(lambda: acks_after(world, promoted).get(incident.target or "", 0) >= 5, 60,
                   f"writes acknowledged by {incident.target} (it replicates to the other standby)")


# ---- hole 7 ------------------------------------------------------------------------------------------------------


def clock_offsets(document: Any, inside: bool = False) -> list[float]:
    """Numbers reported under a key mentioning a clock or an offset (status JSON)."""
    found: list[float] = []
    if isinstance(document, dict):
        for key, value in document.items():
            here = inside or "clock" in key.lower() or "offset" in key.lower()
            if here and isinstance(value, int | float) and not isinstance(value, bool):
                found.append(float(value))
            else:
                found.extend(clock_offsets(value, here))
    elif isinstance(document, list):
        for item in document:
            found.extend(clock_offsets(item, inside))
    return found


@pytest.mark.etcd
def test_hole7_a_leader_whose_clock_runs_fast_neither_blocks_failover_nor_keeps_leading(world_of: Any) -> None:
    """Three daemons on etcd; the leading one's wall clock 30 s fast. Killing the primary still leads to a
    failover, and the fast daemon reports its clock offset and refuses to lead."""
    if etcd_binary() is None:
        pytest.skip("etcd binary not found: CI must install Debian's etcd-server")
    world: World = world_of(mode="ha", skew={"d-aws": 30.0}, first="d-aws", lease_ttl="3s")
    world.start()
    wait_acks(world, 10)
    world.cluster.kill(AWS)
    try:
        world.wait_for(lambda: past(world, "promote"), 60, "a failover")
    except AssertionError:
        raise AssertionError(f"no failover 60 s after the primary was killed: {steps_of(world)}; leader "
                             f"{world.leader()} (d-aws runs 30 s fast)") from None
    fast = world.process("d-aws")
    assert fast is not None
    seen: dict[str, Any] = {}

    def reports_and_follows() -> bool:
        """d-aws hears the others' heartbeats within a few cycles of theirs: wait for it, don't race it."""
        status = fast.status() or {}
        metrics = fast.get("/metrics").text
        seen["offsets"] = clock_offsets(status) + [
            float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
            if not line.startswith("#") and ("clock" in line or "offset" in line)
            and line.rsplit(" ", 1)[-1].replace(".", "", 1).lstrip("-").isdigit()]
        seen["status"] = status
        return any(20 <= abs(offset) <= 40 for offset in seen["offsets"]) and status.get("leader") is False

    try:
        world.wait_for(reports_and_follows, 30, "d-aws to report its clock offset and stop leading")
    except AssertionError:
        status = seen.get("status") or {}
        raise AssertionError(f"d-aws reported clock offsets {seen.get('offsets')} and leader="
                             f"{status.get('leader')} ({status.get('message')!r})") from None
