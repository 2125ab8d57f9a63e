"""What the status page's speed work must not change, with the benchmark's 50 engines (benchmarks/status_page_bench.py
measures the time): the document says what it said before, every browser within a `ttl` gets the same bytes from
one encoding, and a rebuild is seen at once."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
import pytest

from benchmarks.status_page_bench import ENGINES, build_world
from orchestrator.config import LoadedConfig
from orchestrator.drivers.daemon_http import StatusServer
from orchestrator.drivers.status import DaemonLine, QuarantineLine, gather_status
from orchestrator.web import routes
from orchestrator.web.document import _when, page_document
from orchestrator.web.routes import PageSource, page_routes, public_routes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedConfig, dict[str, Any]]:
    return build_world(tmp_path_factory.mktemp("fifty"))


def test_fifty_engines_are_all_on_the_page_and_in_the_feed(world: tuple[LoadedConfig, dict[str, Any]]) -> None:
    loaded, daemon = world
    source = PageSource(loaded, lambda: daemon, ttl=0.0)
    with StatusServer("127.0.0.1", 0, page_routes(source)) as page, \
            StatusServer("127.0.0.1", 0, public_routes(source, "https://status.example")) as feed:
        document = httpx.get(page.url + "/api/page").json()
        public = httpx.get(feed.url + "/status.json").json()
    assert len(document["engines"]) == ENGINES and sum(len(e["replicas"]) for e in document["engines"]) == 150
    statuses = [i["status"] for i in document["incidents"]]
    assert statuses[:2] == ["needs_human", "running"] and statuses[2:] == ["closed"] * 5  # open ones, 5 recent
    assert len(public["components"]) == ENGINES
    assert {c["status"] for c in public["components"]} == {"operational"}


def _as_before(report: Any, daemon: dict[str, Any], display: Any) -> list[dict[str, Any]]:
    """The engines' rows as the page built them before (dataclasses.asdict, then the same edits)."""
    verdicts = daemon["verdicts"]
    rows = []
    for engine in report.engines:
        row = dataclasses.asdict(engine)
        row["phase_since"] = _when(engine.phase_since, display)
        row["phase_until"] = _when(engine.phase_until, display)
        for replica in row["replicas"]:
            replica["verdict"] = str(verdicts.get(replica["name"], replica["verdict"]))
        rows.append(row)
    return rows


def test_the_faster_document_says_what_the_deep_copy_said(world: tuple[LoadedConfig, dict[str, Any]]) -> None:
    loaded, daemon = world
    source = PageSource(loaded, lambda: daemon, ttl=0.0)
    report = gather_status(loaded, 1_670_036_500.0)
    report.daemons.append(DaemonLine("daemon-b", 1_670_036_499.0, False, False, 2.5, "its clock is the odd one"))
    report.quarantines.append(QuarantineLine("aws-hk", 1_670_036_000.0, None, None, 2, "down"))
    with loaded.open_store() as store:
        incidents = store.incidents(limit=routes.LISTED_INCIDENTS)
        journals = {i.id: store.journal(i.id) for i in incidents}
    engines = [e for e in report.engines if e.incident is not None]
    assert engines, "the benchmark's world has engines with an open incident"
    document = page_document(report, daemon, incidents, journals, source.display, 1_670_036_500.0, {})
    assert json.dumps(document["engines"], sort_keys=True) == json.dumps(
        _as_before(report, daemon, source.display), sort_keys=True)
    assert document["daemons"][0] == dataclasses.asdict(report.daemons[0]) | {
        "wall_text": document["daemons"][0]["wall_text"]}
    assert document["quarantines"][0] == dataclasses.asdict(report.quarantines[0]) | {"ends": None}
    row = next(r for r in document["engines"] if r["incident"] is not None)
    row["incident"]["status"] = "edited"  # the document's copy, not the report's
    assert all(e.incident is None or e.incident["status"] != "edited" for e in report.engines)


def test_browsers_within_a_ttl_share_one_encoding_and_a_rebuild_is_seen(
        world: tuple[LoadedConfig, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, daemon = world
    encodings: list[int] = []
    dumps = routes._dumps
    monkeypatch.setattr(routes, "_dumps", lambda document: encodings.append(1) or dumps(document))
    now = [100.0]
    source = PageSource(loaded, lambda: {**daemon, "cycles": int(now[0])}, ttl=1.0, clock=lambda: now[0])
    handler = page_routes(source)["/api/page"]
    bodies = [handler()[1] for _ in range(5)]
    assert len(set(bodies)) == 1 and len(encodings) == 1
    now[0] = 101.5  # past the ttl: rebuilt, and encoded again
    fresh = handler()[1]
    assert json.loads(fresh)["daemon"]["cycles"] == 101 and json.loads(bodies[0])["daemon"]["cycles"] == 100
    assert len(encodings) == 2


def test_the_feed_encodings_follow_their_own_document(world: tuple[LoadedConfig, dict[str, Any]]) -> None:
    loaded, daemon = world
    now = [100.0]
    source = PageSource(loaded, lambda: daemon, ttl=1.0, clock=lambda: now[0])
    feed = public_routes(source, "https://status.example/")
    status_json, atom = feed["/status.json"]()[1], feed["/feed.atom"]()[1]
    assert json.loads(status_json)["page"]["updated_at"] == "1970-01-01T00:01:40Z"
    assert b"<id>https://status.example/feed.atom</id>" in atom
    now[0] = 200.0
    assert json.loads(feed["/status.json"]()[1])["page"]["updated_at"] == "1970-01-01T00:03:20Z"
    assert b"<updated>1970-01-01T00:03:20Z</updated>" in feed["/feed.atom"]()[1]
