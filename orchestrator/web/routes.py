"""The page's and the feed's routes for the daemon's HTTP server (`drivers.daemon_http.StatusServer`).

Documents are built at most once per `ttl` seconds, whatever the number of browsers polling: a page open on every
SRE's phone during an incident must not become load on the store (an etcd cluster that is itself in trouble,
perhaps). Building one takes a store read; answering from the cache takes a dictionary lookup: each document is
encoded once per build, not once per request (a 50-engine page is about 50 KB of JSON).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from orchestrator.config import LoadedConfig
from orchestrator.core.phases import parse_timezone
from orchestrator.drivers.daemon_http import Handler
from orchestrator.drivers.status import gather_status
from orchestrator.web.document import page_document
from orchestrator.web.feed import atom, public_status

LISTED_INCIDENTS = 10
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"), "/page.js": ("page.js", "text/javascript; charset=utf-8"),
          "/page.css": ("page.css", "text/css; charset=utf-8")}


class PageSource:
    """The store's and the daemon's state as the page and the feed show it, rebuilt at most every `ttl` s."""

    def __init__(self, loaded: LoadedConfig, daemon_status: Callable[[], Mapping[str, Any]], *, ttl: float = 1.0,
                 clock: Callable[[], float] = time.time, feed_name: str = "Exchange status") -> None:
        self.loaded = loaded
        self.daemon_status = daemon_status
        self.ttl = ttl
        self.clock = clock
        self.feed_name = feed_name
        self.display = parse_timezone(loaded.topology.display_timezone)
        self._lock = threading.Lock()
        self._built_at = float("-inf")
        self._page: dict[str, Any] = {}
        self._feed: dict[str, Any] = {}
        self._bodies: dict[str, tuple[Mapping[str, Any], bytes]] = {}  # key -> (the document, its encoding)

    def _refresh(self) -> None:
        with self._lock:
            now = self.clock()
            if now - self._built_at < self.ttl:
                return
            report = gather_status(self.loaded, now)
            with self.loaded.open_store() as store:
                incidents = store.incidents(limit=LISTED_INCIDENTS)
                journals = {incident.id: store.journal(incident.id) for incident in incidents}
            topology = self.loaded.topology
            sites = {name: {"provider": site.provider, "region": site.region} for name, site in topology.sites.items()}
            self._page = page_document(report, self.daemon_status(), incidents, journals, self.display, now, sites)
            self._feed = public_status(report.engines, incidents, journals, self.display, now, self.feed_name)
            self._built_at = now

    def page(self) -> dict[str, Any]:
        self._refresh()
        return self._page

    def feed(self) -> dict[str, Any]:
        self._refresh()
        return self._feed

    def encoded(self, key: str, document: Mapping[str, Any], encode: Callable[[Mapping[str, Any]], bytes]) -> bytes:
        """`encode(document)`, remembered until the document is rebuilt (the cache is keyed by the document
        itself, so a body never outlives the build it was made from)."""
        with self._lock:
            found = self._bodies.get(key)
            if found is not None and found[0] is document:
                return found[1]
            body = encode(document)
            self._bodies[key] = (document, body)
            return body


def _asset(name: str) -> bytes:
    return resources.files("orchestrator.web").joinpath("assets", name).read_bytes()


def _dumps(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, default=str).encode()


def _json(body: bytes) -> tuple[int, bytes, str]:
    return 200, body, "application/json"


def page_routes(source: PageSource) -> dict[str, Handler]:
    """The SREs' page: its HTML, script and style (read once), and the JSON it polls."""
    routes: dict[str, Handler] = {}
    for path, (name, content_type) in ASSETS.items():
        body = _asset(name)
        routes[path] = lambda body=body, content_type=content_type: (200, body, content_type)  # type: ignore[misc]
    routes["/api/page"] = lambda: _json(source.encoded("page", source.page(), _dumps))
    return routes


def public_routes(source: PageSource, url: str) -> dict[str, Handler]:
    """The traders' feed, for an address of its own: JSON for status widgets, Atom for readers."""
    address = url.rstrip("/") + "/feed.atom"
    return {
        "/status.json": lambda: _json(source.encoded("status.json", source.feed(), _dumps)),
        "/feed.atom": lambda: (200, source.encoded("feed.atom", source.feed(), lambda feed: atom(feed, address)),
                               "application/atom+xml; charset=utf-8"),
    }
