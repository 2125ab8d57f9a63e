"""The SREs' status page and the traders' public feed, served over real HTTP from a real SQLite store: what a
failover looks like to each of them, and what the public side must never say."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta, timezone
from pathlib import Path

import httpx
import pytest

from orchestrator.config import LoadedConfig, load_config
from orchestrator.drivers.daemon_http import StatusServer
from orchestrator.store import open_store
from orchestrator.web.feed import public_status
from orchestrator.web.routes import PageSource, page_routes, public_routes

ROOT = Path(__file__).resolve().parents[2]
HALT_AT = 1_670_036_402.0  # 2022-12-03 03:00:02 UTC: 11:00:02 in Hong Kong
DAEMON = {"identity": "daemon-a", "leader": True, "cycles": 12, "last_cycle_at": HALT_AT, "error": None,
          "healthy": True, "message": "", "verdicts": {"aws-hk": "down", "gcp-hk": "healthy", "spot-aws": "down"}}
INTERNAL = ["aws-hk", "gcp-hk", "spot-aws", "spot-gcp", "epoch", "amazonaws", "127.0.0.1", "aws", "gcp"]


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedConfig:
    path = tmp_path / "failover.yaml"
    shutil.copy(ROOT / "configs" / "example.yaml", path)
    return load_config(path)


def fail_over(loaded: LoadedConfig, *, reopened: bool) -> str:
    """The journal a failover leaves: halted, protection for 20 minutes, reopened (or not yet)."""
    with open_store(loaded.store_url) as store:
        incident = store.create_incident("spot", "failover", "aws-hk is down (3 of 3 vantage points)", HALT_AT - 2,
                                         source="spot-aws", target="spot-gcp", status="running")
        store.append_journal(incident.id, "halt", "started", HALT_AT)
        store.append_journal(incident.id, "halt", "done", HALT_AT + 0.1)
        store.append_journal(incident.id, "fence_old_primary", "done", HALT_AT + 0.2)
        store.append_journal(incident.id, "promote", "done", HALT_AT + 0.3)
        store.append_journal(incident.id, "open_protection", "done", HALT_AT + 1, {"until": HALT_AT + 1201})
        if reopened:
            store.append_journal(incident.id, "reopen", "done", HALT_AT + 1201)
            store.update_incident(incident.id, at=HALT_AT + 1202, status="closed")
    return incident.id


@pytest.fixture
def served(loaded: LoadedConfig) -> Iterator[tuple[str, str]]:
    source = PageSource(loaded, lambda: DAEMON, ttl=0.0)
    with StatusServer("127.0.0.1", 0, page_routes(source)) as page, \
            StatusServer("127.0.0.1", 0, public_routes(source, "https://status.example")) as feed:
        yield page.url, feed.url


def test_the_page_and_its_assets_are_served_from_the_package(served: tuple[str, str]) -> None:
    page, _ = served
    html = httpx.get(page + "/")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert '<script src="page.js">' in html.text and "http" not in html.text.split("<body>")[1]  # no CDN
    assert "fetch(\"api/page\"" in httpx.get(page + "/page.js").text
    assert httpx.get(page + "/page.css").headers["content-type"].startswith("text/css")
    assert httpx.post(page + "/api/page").status_code == 405  # read-only


def test_the_page_document_follows_a_failover(loaded: LoadedConfig, served: tuple[str, str]) -> None:
    page, _ = served
    assert httpx.get(page + "/api/page").json()["incidents"] == []
    incident = fail_over(loaded, reopened=False)
    document = httpx.get(page + "/api/page").json()
    [listed] = document["incidents"]
    assert (listed["id"], listed["status"], listed["source"], listed["target"]) == (
        incident, "running", "spot-aws", "spot-gcp")
    assert [(s["step"], s["state"]) for s in listed["steps"]] == [
        ("halt", "done"), ("fence_old_primary", "done"), ("promote", "done"), ("open_protection", "done")]
    assert listed["steps"][0]["started"] == HALT_AT and listed["steps"][0]["at"] == HALT_AT + 0.1
    assert [(p["phase"], p["since"]["at"]) for p in listed["phases"]] == [("halted", HALT_AT + 0.1),
                                                                          ("protection", HALT_AT + 1)]
    assert {s["name"]: s["verdict"] for s in document["sites"]}["aws-hk"] == "down"
    assert document["daemon"]["identity"] == "daemon-a" and document["daemon"]["leader"] is True
    [engine] = document["engines"]
    assert {r["name"]: r["verdict"] for r in engine["replicas"]}["spot-aws"] == "down"


def test_the_public_feed_says_what_the_exchange_would_post(loaded: LoadedConfig, served: tuple[str, str]) -> None:
    _, feed = served
    fail_over(loaded, reopened=True)
    document = httpx.get(feed + "/status.json").json()
    [incident] = document["incidents"]
    bodies = [update["body"] for update in reversed(incident["updates"])]
    assert bodies[0].startswith("Trading halted on spot.")
    assert "until 03:20 UTC (11:20 UTC+8)" in bodies[1] and "cancel orders, place post-only orders and add " \
        "margin" in bodies[1] and "no trade can happen" in bodies[1]
    assert bodies[2] == "Trading reopened on spot."
    assert incident["status"] == "resolved" and incident["resolved_at"] == "2022-12-03T03:20:03Z"
    text = json.dumps(document)
    for word in INTERNAL:
        assert word not in text, f"the public feed leaks {word!r}"
    assert document["components"] == [{"name": "spot", "status": "operational",
                                        "updated_at": document["components"][0]["updated_at"]}]


def test_the_atom_feed_is_valid_and_newest_first(loaded: LoadedConfig, served: tuple[str, str]) -> None:
    _, feed = served
    fail_over(loaded, reopened=True)
    answer = httpx.get(feed + "/feed.atom")
    assert answer.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(answer.content)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    titles = [entry.findtext("a:title", namespaces=ns) for entry in root.findall("a:entry", ns)]
    assert titles == ["Trading interrupted on spot: resolved", "Trading interrupted on spot: monitoring",
                      "Trading interrupted on spot: identified"]
    assert all(word not in answer.text for word in INTERNAL)
    assert httpx.get(feed + "/api/page").status_code == 404  # the internal page is not on the public address


def test_a_halted_engine_shows_as_a_major_outage_and_a_held_incident_says_so() -> None:
    from orchestrator.drivers.status import EngineLine
    from orchestrator.store.records import Incident, IncidentStatus

    engine = EngineLine("spot", "spot-aws", "halted", HALT_AT, None, 7, None)
    held = Incident("i-1", "spot", HALT_AT, IncidentStatus.NEEDS_HUMAN, "failover", "spot-aws", None, "x", HALT_AT,
                    None, {})
    document = public_status([engine], [held], {"i-1": []}, timezone(timedelta(hours=8)), HALT_AT)
    assert document["status"] == {"indicator": "critical", "description": "Trading is halted"}
    assert document["components"][0]["status"] == "major_outage"
    [incident] = document["incidents"]
    assert "stays halted while our engineers check it by hand" in incident["updates"][0]["body"]


def test_the_store_is_read_once_per_ttl_however_many_browsers_poll(loaded: LoadedConfig) -> None:
    calls = []
    ticks = iter([100.0, 100.2, 100.4, 101.5])
    source = PageSource(loaded, lambda: calls.append(1) or DAEMON, ttl=1.0, clock=lambda: next(ticks))
    for _ in range(4):
        source.page()
    assert len(calls) == 2  # built at 100.0 and at 101.5 only
