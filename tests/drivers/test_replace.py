"""The replace driver's own rules, on a memory store, the GCP fake (served on loopback) and replicas as plain
statuses (`AssumedEngine`: the lost replica and a machine whose engine has not booted both do not answer).

Runbook lines checked: a run killed right after the machine was made is resumed by the same command, which finds
that machine by its key and never makes a second; a replacement under way onto one site blocks one onto another; a
create that fails for good is exit 4 and audited; the recorded topology is what `failover status` compares with
the configuration file.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.core.errors import ConfigError, EngineError, ProviderError, UnsafeError
from orchestrator.core.model import Engine, Phase, Replica, ReplicaStatus, Role, Site, Topology
from orchestrator.drivers.replace import Replace, idempotency_key
from orchestrator.engine.recording import AssumedEngine
from orchestrator.store import open_store
from orchestrator.store.base import StateStore
from orchestrator.store.topology_record import RecordedReplica, differences, topology_book, with_recorded
from orchestrator.testbed.fakes import FakeServer, GcpComputeFake
from providers import build_provider
from providers.base import CloudProvider

FAST = {"backoff": (0.01, 0.05), "call_deadline": 2.0, "poll_interval": 0.01}
LAUNCH = {"control_url": "http://{private_ip}:8443", "source_image": "global/images/engine",
          "machine_type": "c3-standard-8"}


class Crash(BaseException):
    """kill -9 of the command, at the moment it first asks the new machine for its status."""


class CrashingEngine(AssumedEngine):
    def status(self, replica: Replica) -> ReplicaStatus:
        if replica.site in ("gcp-b", "gcp-c"):
            raise Crash
        return super().status(replica)


@pytest.fixture
def gcp() -> Iterator[tuple[GcpComputeFake, str]]:
    fake = GcpComputeFake(zones=("asia-east2-a",))
    with FakeServer(fake) as server:
        yield fake, server.url


def topology(gcp_url: str) -> Topology:
    sites = {
        "aws-a": Site("aws-a", "local", "r1"),
        "gcp-a": Site("gcp-a", "local", "r2"),
        "gcp-b": Site("gcp-b", "gcp", "asia-east2", ("asia-east2-a",), gcp_url,
                      {"project": "exchange-prod", "launch": LAUNCH}),
        "gcp-c": Site("gcp-c", "gcp", "asia-east2", ("asia-east2-a",), gcp_url,
                      {"project": "exchange-prod", "launch": LAUNCH}),
        "azure-a": Site("azure-a", "local", "r3"),
    }
    replicas = (Replica("spot-aws", "spot", "aws-a", "i-1", "http://10.0.0.1:8443"),
                Replica("spot-gcp", "spot", "gcp-a", "g-1", "http://10.1.0.1:8443"),
                Replica("spot-azure", "spot", "azure-a", "vm-1", "http://10.2.0.1:8443"))
    return Topology(sites, {"spot": Engine("spot", "spot-aws", replicas)})


def primary_only() -> AssumedEngine:
    return AssumedEngine({"spot-aws": ReplicaStatus("spot-aws", Role.PRIMARY, 7, Phase.OPEN, None, 40, 40)})


def driver(store: StateStore, gcp_url: str, engines: AssumedEngine) -> Replace:
    def provider_for(site: Site) -> CloudProvider:
        return build_provider(site, **FAST)
    return Replace(topology(gcp_url), store, engines, provider_for, actor="sre@test", sleep=lambda _: None)


def inserts(fake: GcpComputeFake) -> int:
    return sum(1 for r in fake.received if r.method == "POST" and r.path.endswith("/instances"))


def test_a_run_killed_after_the_machine_was_made_resumes_on_it_and_never_makes_a_second(
        gcp: tuple[GcpComputeFake, str]) -> None:
    fake, url = gcp
    with open_store("memory://") as store:
        first = driver(store, url, CrashingEngine(primary_only().replicas))
        plan = first.plan(None, "spot-azure", "gcp-b")
        key = idempotency_key("spot", "spot-azure", "gcp-b", 1)
        assert (plan.generation, plan.resumed, plan.key) == (1, False, key)
        with pytest.raises(Crash):
            first.run(plan, timeout=5, poll=0.01, control_url="http://10.140.9.9:8443")
        progress = topology_book(store).replace_progress("spot", "spot-azure")
        assert progress is not None and progress["state"] == "created" and progress["key"] == plan.key
        assert inserts(fake) == 1

        second = driver(store, url, primary_only())  # the machine's engine never answers in this test
        again = second.plan(None, "spot-azure", "gcp-b")
        assert (again.key, again.resumed) == (plan.key, True)
        outcome = second.run(again, timeout=0.3, poll=0.01)
        assert (outcome.state, outcome.created, outcome.instance) == ("waiting", False, progress["instance"])
        assert inserts(fake) == 1 and len(fake.created) == 1
        assert outcome.control_url == "http://10.140.9.9:8443"  # the address the first run was given

        with pytest.raises(UnsafeError, match="onto gcp-b is under way"):
            second.plan(None, "spot-azure", "gcp-c")
        actions = [entry.action for entry in store.audit_entries()]
        assert actions == ["replace.start", "replace.created", "replace.start", "replace.created",
                           "replace.unfinished"]


def test_refusals_before_anything_is_made(gcp: tuple[GcpComputeFake, str]) -> None:
    fake, url = gcp
    with open_store("memory://") as store:
        replace = driver(store, url, primary_only())
        with pytest.raises(ConfigError, match="provider local cannot launch"):
            replace.plan(None, "spot-azure", "aws-a")
        with pytest.raises(ConfigError, match="--site nowhere: no such site"):
            replace.plan(None, "spot-azure", "nowhere")
        with pytest.raises(UnsafeError, match="spot-aws is the primary"):
            replace.plan(None, "spot-aws", "gcp-b")
        store.observe_quarantines({"gcp-b": ("down", "zone down")}, 1_000.0, 7200.0)
        with pytest.raises(UnsafeError, match=r"site gcp-b is quarantined"):
            replace.plan(None, "spot-azure", "gcp-b")
        healthy = AssumedEngine({**primary_only().replicas,
                                 "spot-azure": ReplicaStatus("spot-azure", Role.STANDBY, 7, Phase.OPEN, None, 40, 40)})
        store.release_quarantine("gcp-b", "sre@test", 2_000.0)
        with pytest.raises(UnsafeError, match="--force"):
            driver(store, url, healthy).plan(None, "spot-azure", "gcp-b")
        assert driver(store, url, healthy).plan(None, "spot-azure", "gcp-b", force=True).generation == 1
    assert inserts(fake) == 0


def test_a_create_that_fails_for_good_is_exit_4_and_audited(gcp: tuple[GcpComputeFake, str]) -> None:
    fake, url = gcp
    fake.fail_operations(1)
    with open_store("memory://") as store:
        replace = driver(store, url, primary_only())
        with pytest.raises(ProviderError, match="ZONE_RESOURCE_POOL_EXHAUSTED") as raised:
            replace.run(replace.plan(None, "spot-azure", "gcp-b"), timeout=5, poll=0.01)
        assert raised.value.exit_code == 4
        assert [e.action for e in store.audit_entries()] == ["replace.start", "replace.failed"]
        assert topology_book(store).replace_progress("spot", "spot-azure") is not None  # same key next time


def test_the_recorded_topology_and_where_the_configuration_differs() -> None:
    configured = topology("http://127.0.0.1:1")
    moved = RecordedReplica("spot", "spot-azure", "gcp-b", "asia-east2-a/spot-azure-1a2b3c4d", "http://10.9.0.2:8443",
                            1_000.0, 1, {"site": "azure-a", "instance": "vm-1"})
    with open_store("memory://") as store:
        book = topology_book(store)
        book.record_replacement(moved)
        assert book.recorded_replicas() == {("spot", "spot-azure"): moved}
    now = with_recorded(configured, {("spot", "spot-azure"): moved})
    assert now.engines["spot"].replica("spot-azure").site == "gcp-b"
    assert now.engines["spot"].replica("spot-gcp") == configured.engines["spot"].replica("spot-gcp")
    assert differences(configured, {("spot", "spot-azure"): moved}) == [
        "spot/spot-azure: replaced, the configuration still says site azure-a -> gcp-b; instance vm-1 -> "
        "asia-east2-a/spot-azure-1a2b3c4d; control_url http://10.2.0.1:8443 -> http://10.9.0.2:8443 (update the file)"]
    assert differences(now, {("spot", "spot-azure"): moved}) == []  # the file updated: nothing to say
    with pytest.raises(EngineError):
        primary_only().status(configured.engines["spot"].replica("spot-azure"))


def rejoined(store: StateStore, pending: dict[str, str]) -> None:
    """What a run leaves when it was killed after the rejoin, before every replica took the new peer list."""
    topology_book(store).put_replace_progress("spot", "spot-azure", {
        "site": "gcp-b", "key": idempotency_key("spot", "spot-azure", "gcp-b", 1), "generation": 1,
        "state": "peers", "at": 1.0, "actor": "sre@test", "instance": "asia-east2-a/spot-azure-1",
        "control_url": "http://10.9.0.2:8443", "pending": pending})


def with_standbys(*names: str) -> AssumedEngine:
    statuses = {name: ReplicaStatus(name, Role.STANDBY, 7, Phase.OPEN, None, 40, 40) for name in names}
    return AssumedEngine({**primary_only().replicas, **statuses})


EVERYONE = {"spot-aws": "http://10.0.0.1:8443", "spot-gcp": "http://10.1.0.1:8443",
            "spot-azure": "http://10.9.0.2:8443"}


def test_a_run_killed_before_the_peers_were_told_tells_them_on_the_rerun_and_makes_nothing(
        gcp: tuple[GcpComputeFake, str]) -> None:
    fake, url = gcp
    with open_store("memory://") as store:
        rejoined(store, dict.fromkeys(EVERYONE, "not told yet"))
        engines = with_standbys("spot-gcp", "spot-azure")
        replace = driver(store, url, engines)
        plan = replace.plan(None, "spot-azure", "gcp-b")
        assert (plan.resumed, plan.stage, plan.instance) == (True, "peers", "asia-east2-a/spot-azure-1")
        outcome = replace.run(plan, timeout=5, poll=0.01)
        assert (outcome.state, outcome.instance, outcome.control_url) == \
            ("done", "asia-east2-a/spot-azure-1", "http://10.9.0.2:8443")
        assert outcome.peers is not None and (outcome.peers.epoch, outcome.peers.pending) == (7, {})
        for name in EVERYONE:  # each one the others, where they run now; nobody the old http://10.2.0.1:8443
            assert engines.peers[name] == tuple(u for other, u in EVERYONE.items() if other != name)
            assert engines.peers_epoch[name] == 7
        book = topology_book(store)
        assert book.replace_progress("spot", "spot-azure") is None
        recorded = book.recorded_replicas()[("spot", "spot-azure")]
        assert (recorded.site, recorded.instance, recorded.previous["site"]) == ("gcp-b", plan.instance, "azure-a")
        assert [e.action for e in store.audit_entries()] == ["replace.start", "replace.peers", "replace.done"]
    assert inserts(fake) == 0  # the machine was made by the run that was killed


def test_a_replica_that_does_not_answer_is_listed_and_told_by_the_next_run(gcp: tuple[GcpComputeFake, str]) -> None:
    _, url = gcp
    with open_store("memory://") as store:
        rejoined(store, dict.fromkeys(EVERYONE, "not told yet"))
        engines = with_standbys("spot-azure")  # spot-gcp does not answer
        first = driver(store, url, engines).run(driver(store, url, engines).plan(None, "spot-azure", "gcp-b"),
                                                timeout=5, poll=0.01)
        assert first.state == "done" and first.peers is not None
        assert sorted(first.peers.told) == ["spot-aws", "spot-azure"]
        assert list(first.peers.pending) == ["spot-gcp"] and "did not answer" in first.peers.pending["spot-gcp"]
        book = topology_book(store)
        assert book.recorded_replicas()[("spot", "spot-azure")].site == "gcp-b"  # replaced, and recorded
        progress = book.replace_progress("spot", "spot-azure")  # kept in the same write: spot-gcp is left to tell
        assert progress is not None and (progress["state"], list(progress["pending"])) == ("peers", ["spot-gcp"])

        engines.replicas["spot-gcp"] = ReplicaStatus("spot-gcp", Role.STANDBY, 7, Phase.OPEN, None, 40, 40)
        again = driver(store, url, engines)
        plan = again.plan(None, "spot-azure", "gcp-b")  # no --force needed: the replacement is not finished
        assert (plan.stage, dict(plan.pending), plan.previous.site) == ("peers", {"spot-gcp": progress["pending"]
                                                                                  ["spot-gcp"]}, "azure-a")
        second = again.run(plan, timeout=5, poll=0.01)
        assert second.peers is not None and second.peers.pending == {}
        assert engines.peers["spot-gcp"] == ("http://10.0.0.1:8443", "http://10.9.0.2:8443")
        assert book.replace_progress("spot", "spot-azure") is None
        with pytest.raises(UnsafeError, match="--force"):  # a healthy standby now: done
            driver(store, url, with_standbys("spot-gcp", "spot-azure")).plan(None, "spot-azure", "gcp-b")


def test_a_stale_epoch_is_listed_not_stamped(gcp: tuple[GcpComputeFake, str]) -> None:
    """A replica that carries an epoch above the primary's (a control call half done) refuses the list: listed."""
    _, url = gcp
    with open_store("memory://") as store:
        rejoined(store, {"spot-gcp": "not told yet"})
        engines = with_standbys("spot-gcp", "spot-azure")
        engines.replicas["spot-gcp"] = ReplicaStatus("spot-gcp", Role.STANDBY, 9, Phase.OPEN, None, 40, 40)
        replace = driver(store, url, engines)
        outcome = replace.run(replace.plan(None, "spot-azure", "gcp-b"), timeout=5, poll=0.01)
        assert outcome.peers is not None and list(outcome.peers.pending) == ["spot-gcp"]
        assert "stale epoch 7" in outcome.peers.pending["spot-gcp"]
        assert engines.replicas["spot-gcp"].epoch == 9 and "spot-gcp" not in engines.peers
