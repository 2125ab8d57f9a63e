"""Rebuilding a fenced or diverged replica as a standby (`POST /v1/rejoin`), with real replica processes.

The runbook these tests follow: after a failover the old primary is fenced (and, if it wrote orders nobody
acknowledged, its journal has diverged from the new primary's). `rejoin` on it archives the diverged tail on its
own disk and lists each order in it (client_order_id, account), copies the new primary's journal checked by hash
chain and against the primary's snapshot, and only then becomes a standby that acknowledges. A kill -9 of either
side in the middle does not matter: the rejoin runs again from its record when the replica starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.core.errors import FailoverError
from orchestrator.core.model import Phase, Role
from orchestrator.engine.client import HttpEngineClient
from orchestrator.engine.replica.journal import ControlState, Journal
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

pytestmark = pytest.mark.slow  # starts replica processes

GENEROUS = 120.0


def wait_until(condition: Callable[[], Any], what: str, timeout: float = GENEROUS) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = condition()
        except (httpx.HTTPError, FailoverError, KeyError, ValueError):
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def status(cluster: ReplicaCluster, name: str) -> dict[str, Any]:
    """A replica's status body, waited for as long as a loaded machine needs (a replica serving a journal page
    to a rejoining one may take seconds to answer on 2 busy cores)."""
    body: dict[str, Any] = httpx.get(cluster.url(name) + "/v1/status", timeout=30.0).json()
    return body


def order(client: HttpEngineClient, url: str, coid: str, account: str = "acct-1", price: str = "100") -> Any:
    return client.submit_order(url, client_order_id=coid, account=account, market="BTC-USD", side="buy",
                               price=price, qty="1")


def acknowledged(client: HttpEngineClient, url: str, coid: str, account: str = "acct-1") -> int:
    """Submit until acknowledged (a retry with the same client_order_id answers the original seq)."""
    def answered() -> int | None:
        answer = order(client, url, coid, account)
        return answer.seq if answer.accepted else None
    seq: int = wait_until(answered, f"{coid} to be acknowledged")
    return seq


def hashes(client: HttpEngineClient, url: str) -> list[str]:
    found: list[str] = []
    while True:
        page = client.journal(url, after=len(found), limit=5000)
        found += [entry["hash"] for entry in page]
        if len(page) < 5000:
            return found


def rejoin_done(client: HttpEngineClient, url: str) -> dict[str, Any] | None:
    record = client.rejoin_status(url)
    assert record["state"] != "failed", record
    return record if record["state"] == "done" else None


def test_a_fenced_old_primary_rejoins_as_a_standby_that_acknowledges(
        make_cluster: Callable[..., ReplicaCluster]) -> None:
    cluster = make_cluster([ReplicaSpec("p", "aws", primary=True), ReplicaSpec("s", "gcp"),
                            ReplicaSpec("t", "azure")])
    with cluster.client() as client:
        for n in range(5):
            acknowledged(client, cluster.url("p"), f"before-{n}")
        # one standby on another cloud acknowledged each order, not necessarily s: the runbook waits for its target
        # to catch up before promoting it (CI: s refused promotion, "at seq 0, behind t at 5")
        cluster.wait_caught_up(["s", "t"], client.status(cluster.url("p")).last_seq)
        # the failover: p fenced at 1, the others stamped, s promoted
        client.fence(cluster.url("p"), 1)
        client.set_phase(cluster.url("t"), Phase.HALTED, None, 1)
        client.promote(cluster.url("s"), 1)
        client.set_phase(cluster.url("s"), Phase.OPEN, None, 1)
        acknowledged(client, cluster.url("s"), "after-1")
        assert client.status(cluster.url("p")).role is Role.FENCED

        started = client.rejoin(cluster.url("p"), 1, cluster.url("s"))
        assert started["state"] in ("started", "copying", "done")
        record = wait_until(lambda: rejoin_done(client, cluster.url("p")), "p to rejoin")
        assert record["tails"] == []  # a fenced primary whose every entry was acknowledged: nothing to archive
        assert record["common_seq"] == 5  # five orders, then the fence: p had written nothing more
        assert client.status(cluster.url("p")).role is Role.STANDBY

        acknowledged(client, cluster.url("s"), "after-2")
        wait_until(lambda: hashes(client, cluster.url("p")) == hashes(client, cluster.url("s")),
                   "p's journal to equal s's")
        standbys = wait_until(lambda: "p" in (status(cluster, "s")["standbys"] or {})
                              and status(cluster, "s")["standbys"], "s to count p's acknowledgements")
        assert standbys["p"]["cloud"] == "aws"
        assert client.snapshot(cluster.url("p"))["state_hash"] == client.snapshot(cluster.url("s"))["state_hash"]
        again = client.rejoin(cluster.url("p"), 1, cluster.url("s"))  # the same call: the record, not a new rejoin
        assert again["state"] == "done" and again["started_at"] == record["started_at"]


def test_a_diverged_old_primary_archives_its_unacknowledged_tail_and_lists_its_orders(
        make_cluster: Callable[..., ReplicaCluster]) -> None:
    cluster = make_cluster([ReplicaSpec("p", "aws", primary=True, sync_timeout=0.3), ReplicaSpec("s", "gcp"),
                            ReplicaSpec("t", "azure")])
    with cluster.client() as client:
        for n in range(3):
            acknowledged(client, cluster.url("p"), f"kept-{n}")
        cluster.wait_replicated("p", timeout=GENEROUS)
        # s is promoted below: it must hold what t acknowledged (CI: "at seq 0, behind t at 3")
        cluster.wait_caught_up(["s", "t"], 3, timeout=GENEROUS)
        cluster.kill("s")
        cluster.kill("t")
        lost = [order(client, cluster.url("p"), "zombie-1", "acct-7"), order(client, cluster.url("p"), "zombie-2",
                                                                             "acct-8", price="99")]
        assert [answer.reason for answer in lost] == ["replication_timeout"] * 2  # journaled, never acknowledged
        cluster.kill("p")
        cluster.start("s", "t")
        client.set_phase(cluster.url("t"), Phase.HALTED, None, 1)
        client.promote(cluster.url("s"), 1)
        client.set_phase(cluster.url("s"), Phase.OPEN, None, 1)
        acknowledged(client, cluster.url("s"), "new-1")
        cluster.start("p")  # polls its peers before serving, sees epoch 1 and fences itself
        assert client.status(cluster.url("p")).role is Role.FENCED
        assert client.status(cluster.url("p")).last_seq == 5

        with pytest.raises(Exception, match="stale"):
            client.rejoin(cluster.url("s"), 0, cluster.url("p"))
        client.rejoin(cluster.url("p"), 1, cluster.url("s"))
        record = wait_until(lambda: rejoin_done(client, cluster.url("p")), "p to rejoin")

        [tail] = record["tails"]
        assert (tail["common_seq"], tail["count"], tail["orders"]) == (3, 2, 2)
        assert [(e["client_order_id"], e["account"], e["seq"]) for e in tail["entries"]] == [
            ("zombie-1", "acct-7", 4), ("zombie-2", "acct-8", 5)]
        archived = (cluster.data_dir("p") / tail["file"]).read_text().splitlines()
        assert [json.loads(line)["data"]["client_order_id"] for line in archived] == ["zombie-1", "zombie-2"]
        assert hashes(client, cluster.url("p")) == hashes(client, cluster.url("s"))[:client.status(
            cluster.url("p")).last_seq]
        acknowledged(client, cluster.url("s"), "new-2")
        wait_until(lambda: hashes(client, cluster.url("p")) == hashes(client, cluster.url("s")),
                   "p to follow s")
        # the archive stays listed after a restart, and a later rejoin keeps it
        cluster.restart("p")
        assert client.rejoin_status(cluster.url("p"))["tails"] == record["tails"]


def test_a_standby_diverged_by_a_forced_promotion_archives_what_it_held_beyond_the_new_primary(
        make_cluster: Callable[..., ReplicaCluster]) -> None:
    """A human forced the promotion of a standby behind another (`force`: the entries only the other held are lost
    from the new history). The other standby finds its journal is no prefix of the new primary's and stops
    (`error`: diverged); rejoined, it archives those entries, acknowledged once, which support must now reconcile."""
    cluster = make_cluster([ReplicaSpec("p", "aws", primary=True),
                            ReplicaSpec("s", "gcp", extra_args=("--no-peer-catch-up",)),  # so it stays behind t
                            ReplicaSpec("t", "azure")])
    with cluster.client() as client:
        acknowledged(client, cluster.url("p"), "both-hold")
        cluster.wait_caught_up(["s", "t"], 1, timeout=GENEROUS)
        cluster.kill("s")  # not paused: a long poll already answered would still deliver the next entry
        acknowledged(client, cluster.url("p"), "only-t-holds", "acct-3")  # t, on another cloud, acknowledged it
        cluster.kill("p")
        cluster.start("s")
        client.promote(cluster.url("s"), 1, force=True)  # behind t: only by force
        wait_until(lambda: status(cluster, "t")["error"], "t to find its journal diverged from s's")
        assert status(cluster, "t")["role"] == "standby"

        client.rejoin(cluster.url("t"), 1, cluster.url("s"))
        record = wait_until(lambda: rejoin_done(client, cluster.url("t")), "t to rejoin")
        [tail] = record["tails"]
        assert [(e["client_order_id"], e["account"]) for e in tail["entries"]] == [("only-t-holds", "acct-3")]
        found = status(cluster, "t")
        assert (found["role"], found["error"]) == ("standby", None)
        assert hashes(client, cluster.url("t")) == hashes(client, cluster.url("s"))[:found["last_seq"]]


def test_a_primary_refuses_to_rejoin_and_a_rejoining_replica_is_never_promoted(
        make_cluster: Callable[..., ReplicaCluster]) -> None:
    cluster = make_cluster([ReplicaSpec("p", "aws", primary=True), ReplicaSpec("s", "gcp")])
    with cluster.client() as client:
        with pytest.raises(Exception, match="is_primary"):
            client.rejoin(cluster.url("p"), 0, cluster.url("s"))
        assert client.status(cluster.url("p")).role is Role.PRIMARY  # nothing changed
        cluster.pause("p")  # the rejoin waits for a primary that does not answer
        try:
            client.rejoin(cluster.url("s"), 0, cluster.url("p"))
            assert status(cluster, "s")["rejoining"] is True and status(cluster, "s")["role"] == "fenced"
            with pytest.raises(Exception, match="rejoining"):
                client.promote(cluster.url("s"), 0, force=True)
        finally:
            cluster.resume("p")
        wait_until(lambda: rejoin_done(client, cluster.url("s")), "s to rejoin")
        assert status(cluster, "s")["rejoining"] is False and status(cluster, "s")["role"] == "standby"


# --- kill -9 of either side in the middle of a long rejoin ------------------------------------------------------


def write_journal(data_dir: Path, count: int, *, role: Role, epoch: int, journal_epoch: int | None = None,
                  prefix_of: Journal | None = None, keep: int = 0, tag: str = "o") -> Journal:
    """A data directory holding `count` orders (after the first `keep` entries of `prefix_of`), resting on both
    sides of one book; written in one batch, as if the replica had taken them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal.open(data_dir / "journal.jsonl")
    if prefix_of is not None:
        journal.append(prefix_of.entries[:keep])
    batch = []
    for n in range(count):
        side = "buy" if n % 2 else "sell"
        price = str(1000 - n % 97) if side == "buy" else str(2000 + n % 89)
        data = {"client_order_id": f"{tag}-{n}", "account": f"acct-{n % 13}", "market": "BTC-USD", "side": side,
                "type": "limit", "price": price, "qty": "1", "post_only": False, "tif": "gtc"}
        entry = journal.make("2026-12-01T05:00:00.000000Z", epoch, "order", data)
        journal.entries.append(entry)  # so the next `make` chains onto it
        batch.append(entry)
    del journal.entries[len(journal.entries) - len(batch):]
    journal.append(batch)
    ControlState(data_dir / "control.json", epoch=epoch, role=role, journal_epoch=journal_epoch).save()
    return journal


def paused_mid_copy(cluster: ReplicaCluster, client: HttpEngineClient, rejoiner: str, primary: str,
                    beyond: int) -> None:
    """Wait until the rejoiner has copied past `beyond`, freeze the primary, and check the copy is not over."""
    wait_until(lambda: client.rejoin_status(cluster.url(rejoiner))["last_seq"] > beyond,
               f"{rejoiner} to copy past {beyond}")
    cluster.pause(primary)
    record = client.rejoin_status(cluster.url(rejoiner))
    assert record["state"] == "copying", f"over before the primary froze (make the journal longer): {record}"


def test_kill_9_of_either_side_mid_rejoin_restarts_cleanly(tmp_path_factory: pytest.TempPathFactory) -> None:
    total, common, zombie = 30_000, 1_000, 40
    cluster = ReplicaCluster(tmp_path_factory.mktemp("long"), [
        ReplicaSpec("p", "aws", primary=True, sync_timeout=0.3), ReplicaSpec("r", "gcp")], startup_timeout=GENEROUS)
    with cluster:
        history = write_journal(cluster.data_dir("p"), total, role=Role.PRIMARY, epoch=7)
        write_journal(cluster.data_dir("r"), zombie, role=Role.FENCED, epoch=7, journal_epoch=3,
                      prefix_of=history, keep=common, tag="zombie")
        cluster.start()
        with cluster.client() as client:
            refused = order(client, cluster.url("p"), "unreplicated")  # r is fenced: nobody acknowledges
            assert refused.reason == "replication_timeout"

            began = time.monotonic()
            client.rejoin(cluster.url("r"), 7, cluster.url("p"))
            paused_mid_copy(cluster, client, "r", "p", common + 1000)
            cluster.kill("r")  # kill -9 of the rejoining replica mid-copy
            cluster.start("r")
            assert status(cluster, "r")["rejoining"] is True and status(cluster, "r")["role"] == "fenced"
            cluster.resume("p")
            seen = status(cluster, "p")["standbys"] or {}
            assert "r" not in seen or client.rejoin_status(cluster.url("r"))["state"] == "done"

            paused_mid_copy(cluster, client, "r", "p", client.rejoin_status(cluster.url("r"))["last_seq"] + 1000)
            cluster.kill("p")  # kill -9 of the primary mid-copy
            cluster.start("p")
            record = wait_until(lambda: rejoin_done(client, cluster.url("r")), "r to rejoin", timeout=300)
            elapsed = time.monotonic() - began

            [tail] = record["tails"]
            assert (tail["common_seq"], tail["count"]) == (common, zombie)
            assert tail["entries"][0]["client_order_id"] == "zombie-0"
            assert len((cluster.data_dir("r") / tail["file"]).read_text().splitlines()) == zombie
            assert hashes(client, cluster.url("r")) == hashes(client, cluster.url("p"))
            assert client.snapshot(cluster.url("r"))["state_hash"] == client.snapshot(cluster.url("p"))["state_hash"]
            assert order(client, cluster.url("p"), "unreplicated").accepted  # now r acknowledges: 200 on retry
            copied = total + 1 - common
            print(f"\nrejoin of {copied} entries ({zombie} archived) with two kill -9: {elapsed:.1f}s")


def test_a_rejoin_never_copies_from_a_primary_below_its_epoch(make_cluster: Callable[..., ReplicaCluster]) -> None:
    """The epoch floor: a replica told of epoch 1 while it waits for a primary at epoch 0 ends its rejoin `failed`
    and copies nothing from it (that primary was deposed: whatever it writes now nobody acknowledged)."""
    cluster = make_cluster([ReplicaSpec("p", "aws", primary=True, peers=()),  # p cannot hear it was deposed
                            ReplicaSpec("s", "gcp")])
    with cluster.client() as client:
        acknowledged(client, cluster.url("p"), "before")
        cluster.wait_caught_up(["s"], 1, timeout=GENEROUS)
        cluster.pause("p")
        try:
            client.rejoin(cluster.url("s"), 0, cluster.url("p"))
            with pytest.raises(Exception, match="fenced"):  # the stamp is recorded, then refused: it is fenced
                client.set_phase(cluster.url("s"), Phase.HALTED, None, 1)
        finally:
            cluster.resume("p")
        record = wait_until(lambda: (found := client.rejoin_status(cluster.url("s")))["state"] == "failed" and found,
                            "the rejoin to end failed")
        assert "deposed" in record["error"], record
        assert status(cluster, "p")["role"] == "primary"  # alive and unaware: only the floor kept s from copying
        found = status(cluster, "s")
        assert (found["role"], found["rejoining"], found["epoch"], found["last_seq"]) == ("fenced", False, 1, 1)
