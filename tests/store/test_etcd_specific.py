"""What only the etcd store has to get right, beyond the shared contract: URLs, several members (one dies, two die,
they come back), answers lost on the way back, the lease as an etcd lease, and the observation layout.

Everything runs against real etcd members on loopback (EtcdCluster); nothing is mocked. A small HTTP relay stands in
front of one member to lose answers on purpose.
"""

from __future__ import annotations

import base64
import http.client
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.model import Observation, Status
from orchestrator.errors import ConfigError, LeaseLost, StoreError
from orchestrator.store import Conflict, JournalState, StateStore, open_store
from orchestrator.store.etcd import EtcdStore
from orchestrator.store.etcd_client import parse_url
from orchestrator.testbed.etcd import EtcdCluster, etcd_binary

ETCD_MISSING = "etcd binary not found: install Debian's etcd-server (CI must install it: .ci/run does)"
T0 = 1_671_332_412.0


@pytest.fixture
def url(request: pytest.FixtureRequest, etcd_url: str) -> str:
    """A fresh prefix on the session's one-member cluster (see conftest.py)."""
    return f"{etcd_url}/etcd-specific/{request.node.name}-{time.monotonic_ns()}"


# --- URLs ---------------------------------------------------------------------------------------------------------


def test_urls_name_members_and_a_prefix() -> None:
    assert parse_url("etcd://10.0.0.1:2379,10.1.0.1:2379,10.2.0.1:2379").endpoints == (
        ("10.0.0.1", 2379), ("10.1.0.1", 2379), ("10.2.0.1", 2379))
    assert parse_url("etcd://etcd-a,etcd-b:12379").endpoints == (("etcd-a", 2379), ("etcd-b", 12379))
    assert parse_url("etcd://h:1").prefix == "/failover"
    assert parse_url("etcd://h:1/exchange/prod/").prefix == "/exchange/prod"
    assert parse_url("etcd://[::1]:2379").endpoints == (("::1", 2379),)


@pytest.mark.parametrize("bad", [
    "etcd://", "etcd://h:1,,h:2", "etcd://h:port", "etcd://h:1,h:1", "etcd://h:1/a//b", "etcd://h:1?timeout=3",
    "etcd://user:pw@h:1", "etcds://h:1",
])
def test_unusable_etcd_urls_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as error:
        open_store(bad)
    assert repr(bad) in str(error.value) and "\n" not in str(error.value)


def test_unreachable_members_fail_fast_in_one_line() -> None:
    """Opening checks the cluster, so a wrong URL fails at once. The window is shortened here to keep the suite
    quick; test_losing_quorum_fails_fast_and_recovers holds the default window to its bound."""
    closed = [_closed_port() for _ in range(2)]
    started = time.monotonic()
    with pytest.raises(StoreError) as error:
        EtcdStore([("127.0.0.1", closed[0]), ("127.0.0.1", closed[1])], window=0.5)
    assert time.monotonic() - started < 1.5
    message = str(error.value)
    assert "\n" not in message and f"127.0.0.1:{closed[0]},127.0.0.1:{closed[1]}" in message
    assert "connection refused" in message


# --- on the session's one-member cluster ---------------------------------------------------------------------------


@pytest.mark.etcd
def test_a_prefix_holding_another_schema_is_refused(url: str) -> None:
    with open_store(url) as store:
        assert isinstance(store, EtcdStore)
        store._etcd.commit([], [{"request_put": {"key": _b64(store.keys.schema), "value": _b64(b"99")}}], [])
    with pytest.raises(StoreError, match="schema '99'"):
        open_store(url)


@pytest.mark.etcd
def test_names_outside_ascii_round_trip(url: str) -> None:
    with open_store(url) as store:
        lease = store.acquire_lease("指揮者", "香港-1", 30)
        assert lease is not None and store.current_lease("指揮者") == lease
        incident = store.create_incident("現物", "outage", "主站點故障", T0, detail={"說明": "停"})
        assert store.open_incident("現物") == incident
        store.put_state("引擎/現物", {"階段": "停止"}, None)
        assert store.get_state("引擎/現物") == ({"階段": "停止"}, 1)


@pytest.mark.etcd
def test_the_leader_lock_is_an_etcd_lease_whose_token_is_the_create_revision(url: str) -> None:
    with open_store(url) as store:
        assert isinstance(store, EtcdStore)
        lease = store.acquire_lease("leader", "host-a", 4.5)
        assert lease is not None
        kv = store._etcd.get(store.keys.lease("leader"))
        assert kv is not None and kv.create_revision == lease.token and kv.lease
        assert _lease_ttl(store, kv.lease) == (5, True)  # the TTL asked for, rounded up to whole seconds
        renewed = store.renew_lease(lease, 30)  # outgrows the etcd lease: moved to a longer one, same token
        moved = store._etcd.get(store.keys.lease("leader"))
        assert moved is not None and moved.create_revision == renewed.token == lease.token
        assert moved.lease != kv.lease and _lease_ttl(store, moved.lease)[0] == 30
        assert _lease_ttl(store, kv.lease)[1] is False  # the old etcd lease was revoked
        assert store.renew_lease(lease, 30).token == lease.token  # same TTL: a keepalive, the same etcd lease
        assert store._etcd.get(store.keys.lease("leader")).lease == moved.lease  # type: ignore[union-attr]
        shorter = store.renew_lease(lease, 8)  # a shorter TTL is honoured too: nobody waits 30 s for nothing
        short_kv = store._etcd.get(store.keys.lease("leader"))
        assert short_kv is not None and _lease_ttl(store, short_kv.lease)[0] == 8 and shorter.token == lease.token
        store.release_lease(renewed)
        assert store._etcd.get(store.keys.lease("leader")) is None
        assert _lease_ttl(store, short_kv.lease)[1] is False


@pytest.mark.etcd
def test_racing_handles_open_one_incident_per_engine(url: str) -> None:
    stores = [open_store(url) for _ in range(6)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(stores))

    def race(store: StateStore, n: int) -> None:
        barrier.wait()
        try:
            outcomes.append(store.create_incident("spot", "outage", f"#{n}", T0 + n).id)
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=race, args=(store, n)) for n, store in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o != "conflict"]
    assert len(winners) == 1 and len(outcomes) == 6
    assert [i.id for i in stores[0].incidents()] == winners
    for store in stores:
        store.close()


@pytest.mark.etcd
def test_latest_observations_reads_only_the_newest_buckets(url: str) -> None:
    with open_store(url) as store:
        assert isinstance(store, EtcdStore)
        for minute in range(60):  # an hour of one-second cycles, written as one batch per minute
            store.record_observations([
                Observation(T0 + 60 * minute + s, f"site-{p}", "probe:a", Status.OK, f"{minute}/{s}")
                for s in range(60) for p in range(3)
            ])
        ranges = _count_ranges(store)
        latest = store.latest_observations(5)
        assert [o.detail for o in latest] == [f"59/{s}" for s in range(55, 60) for _ in range(3)]
        assert ranges["kv/range"] <= 2, "read the pairs document and one page of the newest buckets"


@pytest.mark.etcd
def test_observation_layout_agrees_with_sqlite(url: str, tmp_path: Path) -> None:
    """Random batches (several buckets each, ties in time, new pairs, prunes) give etcd the same answers as the
    reference backend."""
    rng = random.Random(7)
    with open_store(url) as etcd, open_store(f"sqlite:///{tmp_path / 'ref.db'}") as ref:
        clock = T0
        for round_ in range(25):
            batch = []
            for _ in range(rng.randint(1, 40)):
                at = round(clock + rng.choice([0, 0, 0.5, 3, 9.99, 10, 17]), 2)
                subject, source = rng.choice(["a", "b", "c", f"new-{round_}"]), rng.choice(["p:1", "p:2"])
                batch.append(Observation(at, subject, source, rng.choice(list(Status)), f"{round_}"))
            assert etcd.record_observations(batch) == ref.record_observations(batch)
            clock += rng.choice([1, 4, 10, 25])
            if round_ % 6 == 5:
                cutoff = clock - rng.choice([5, 13, 30])
                assert etcd.prune_observations(cutoff) == ref.prune_observations(cutoff)
            since = clock - rng.choice([0, 7, 20, 1000])
            assert etcd.observations(since) == ref.observations(since)
            assert etcd.observations(since, {"a", "new-3"}) == ref.observations(since, {"a", "new-3"})
            for limit in (1, 3):
                assert etcd.latest_observations(limit) == ref.latest_observations(limit)
                assert etcd.latest_observations(limit, since) == ref.latest_observations(limit, since)


@pytest.mark.etcd
def test_lost_answers_are_settled_by_reading_back(url: str) -> None:
    """A write that reaches etcd but whose answer never comes back is neither lost nor applied twice."""
    address = parse_url(url)
    host, port = address.endpoints[0]
    with AnswerEater(host, port) as relay:
        relayed = f"etcd://127.0.0.1:{relay.port},{host}:{port}{address.prefix}"

        def fresh() -> StateStore:
            store = open_store(relayed)  # starts on the relay
            relay.eat("/v3/kv/txn")
            return store

        with fresh() as store:
            assert store.audit("alice", "halt", {"n": 1}, T0).seq == 1
        with fresh() as store:
            incident = store.create_incident("spot", "outage", "down", T0)
        with fresh() as store:
            assert store.append_journal(incident.id, "halt", JournalState.STARTED, T0, token=3).seq == 1
        with fresh() as store:
            lease = store.acquire_lease("leader", "host-a", 30)
            assert lease is not None
        with fresh() as store:
            assert store.put_state("engine/spot", {"phase": "halted"}, None) == 1
        assert relay.eaten == 5
        with open_store(url) as store:
            assert [e.seq for e in store.audit_entries()] == [1] and store.verify_audit().ok
            assert store.incidents() == [incident]
            assert [e.seq for e in store.journal(incident.id)] == [1]
            assert store.current_lease("leader") == lease
            assert store.get_state("engine/spot") == ({"phase": "halted"}, 1)


# --- three members --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    if etcd_binary() is None:
        pytest.skip(ETCD_MISSING)
    base = tmp_path_factory.mktemp("etcd-trio")
    cluster = EtcdCluster(size=3, base_dir=base).start()
    try:
        yield cluster
    finally:
        cluster.cleanup()
    assert not list(base.iterdir()), "member data directories must be removed"


@pytest.fixture
def cluster(trio: EtcdCluster) -> EtcdCluster:
    """The module's three members, all running and with a leader before each test."""
    for index in range(trio.size):
        if not trio.is_running(index):
            trio.restart_member(index, wait=False)
    trio.wait_healthy()
    return trio


@pytest.mark.etcd
@pytest.mark.parametrize("victim", ["leader", "follower"])
def test_killing_the_member_in_use_moves_to_another(cluster: EtcdCluster, victim: str) -> None:
    leader = cluster.leader_index()
    assert leader is not None
    first = leader if victim == "leader" else (leader + 1) % 3
    order = [first] + [i for i in range(3) if i != first]
    with open_store("etcd://" + ",".join(cluster.endpoints[i] for i in order) + f"/kill-{victim}") as store:
        assert isinstance(store, EtcdStore) and store.current_member == cluster.endpoints[first]
        lease = store.acquire_lease("leader", "host-a", 10)
        incident = store.create_incident("spot", "outage", "down", T0)
        assert lease is not None
        cluster.stop_member(first)
        started = time.monotonic()
        lease = store.renew_lease(lease, 10)
        store.append_journal(incident.id, "halt", JournalState.STARTED, T0, token=lease.token)
        store.audit("host-a", "halt", {"engine": "spot"}, T0)
        assert time.monotonic() - started < 3, "an election on loopback takes about a second"
        assert store.current_member != cluster.endpoints[first]
        assert [e.seq for e in store.journal(incident.id)] == [1] and store.verify_audit().entries == 1


@pytest.mark.etcd
def test_losing_quorum_fails_fast_and_recovers(cluster: EtcdCluster) -> None:
    with open_store(cluster.url + "/quorum") as store:
        lease = store.acquire_lease("leader", "host-a", 10)
        incident = store.create_incident("spot", "outage", "down", T0)
        assert lease is not None
        cluster.stop_member(0)
        cluster.stop_member(1)
        calls: list[Callable[[], object]] = [
            lambda: store.renew_lease(lease, 10),
            lambda: store.current_lease("leader"),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(StoreError) as error:  # LeaseLost is a StoreError too
                call()
            assert time.monotonic() - started < 5, "must not hang: a leader has to learn it in time to stop"
            assert "\n" not in str(error.value) and cluster.endpoints[2] in str(error.value)
        cluster.restart_member(0, wait=False)
        cluster.restart_member(1, wait=False)
        cluster.wait_healthy()
        assert store.renew_lease(lease, 10).token == lease.token
        store.append_journal(incident.id, "halt", JournalState.STARTED, T0, token=lease.token)
        store.audit("host-a", "halt", {}, T0)
        assert [e.seq for e in store.journal(incident.id)] == [1] and store.verify_audit().entries == 1


@pytest.mark.etcd
def test_an_abandoned_lease_expires_and_goes_to_the_next_holder(cluster: EtcdCluster) -> None:
    with open_store(cluster.url + "/expiry") as one, open_store(cluster.url + "/expiry") as two:
        assert isinstance(one, EtcdStore)
        lease = one.acquire_lease("leader", "host-a", 2)
        nobody = one.acquire_lease("unused", "host-a", 1)
        assert lease is not None and nobody is not None
        incident = one.create_incident("spot", "outage", "down", T0)
        one.append_journal(incident.id, "halt", JournalState.STARTED, T0, token=lease.token)
        started = time.monotonic()
        taken = None
        while taken is None and time.monotonic() - started < 15:  # host-a stopped renewing: host-b polls
            taken = two.acquire_lease("leader", "host-b", 2)
            time.sleep(0.05)
        waited = time.monotonic() - started
        assert taken is not None and taken.token > lease.token
        assert waited > 1.8, "taken before its etcd lease's TTL ran out"
        two.append_journal(incident.id, "fence_old_primary", JournalState.STARTED, T0, token=taken.token)
        with pytest.raises(LeaseLost):
            one.renew_lease(lease, 2)
        with pytest.raises(LeaseLost):
            one.append_journal(incident.id, "promote", JournalState.STARTED, T0, token=lease.token)
        while one._etcd.get(one.keys.lease("unused")) is not None and time.monotonic() - started < 15:
            time.sleep(0.1)
        assert one._etcd.get(one.keys.lease("unused")) is None, "etcd removes the key of a holder that went away"


def test_cluster_cleanup_removes_the_data_directories(tmp_path: Path) -> None:
    if etcd_binary() is None:
        pytest.skip(ETCD_MISSING)
    with EtcdCluster(size=1, base_dir=tmp_path) as cluster, open_store(cluster.url) as store:
        store.audit("alice", "halt", {}, T0)
        assert any(path.suffix == ".etcd" for path in tmp_path.iterdir())
    assert list(tmp_path.iterdir()) == []


# --- helpers -------------------------------------------------------------------------------------------------------


class AnswerEater:
    """An HTTP relay in front of one etcd member. Armed with a path, it forwards the next request for that path,
    waits for etcd's answer (so the write is applied) and then hangs up instead of relaying it."""

    def __init__(self, host: str, port: int) -> None:
        self._armed: str | None = None
        self.eaten = 0
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                upstream = http.client.HTTPConnection(host, port, timeout=5)
                upstream.request("POST", self.path, body, {"Content-Type": "application/json"})
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                if relay._armed is not None and self.path == relay._armed:
                    relay._armed, relay.eaten = None, relay.eaten + 1
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def eat(self, path: str) -> None:
        self._armed = path

    def __enter__(self) -> AnswerEater:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _closed_port() -> int:
    """A loopback port nobody listens on (the kernel just handed it out and we closed it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _lease_ttl(store: EtcdStore, lease_id: int) -> tuple[int, bool]:
    """(granted TTL, alive) of an etcd lease."""
    answer = store._etcd.call("kv/lease/timetolive", {"ID": str(lease_id)}, write=False)
    return int(answer.get("grantedTTL", 0)), int(answer.get("TTL", -1)) > 0


def _count_ranges(store: EtcdStore) -> dict[str, int]:
    """Count the store's calls by path from now on."""
    counts: dict[str, int] = {}
    call = store._etcd.call

    def counted(path: str, body: dict[str, Any], **options: Any) -> dict[str, Any]:
        counts[path] = counts.get(path, 0) + 1
        return call(path, body, **options)

    store._etcd.call = counted  # type: ignore[method-assign]
    return counts



@pytest.mark.etcd
def test_pruning_removes_the_arrival_entries_of_pruned_batches(url: str) -> None:
    with open_store(url) as store:
        assert isinstance(store, EtcdStore)
        for minute in range(6):
            store.record_observations([Observation(T0 + 60 * minute + s, "site", "probe:a", Status.OK, f"{minute}")
                                       for s in range(0, 60, 5)])
        keys = store.keys
        assert len(list(store._etcd.scan(keys.obs_arrivals, keys.obs_arrivals_end))) == 6
        store.prune_observations(T0 + 180)  # the first three minutes go
        left = list(store._etcd.scan(keys.obs_arrivals, keys.obs_arrivals_end))
        assert [int(kv.key[len(keys.obs_arrivals):]) for kv in left] == [4, 5, 6]
        seen, _ = store.observations_after(None, 1000)
        assert {o.detail for o in seen} == {"3", "4", "5"}
