"""What the harness records while a run goes on, and reads when it ends.

- `Monitor`: every replica's status, sampled directly (never through a faulty link) every 150 ms, with the time
  each answer arrived: when a replica carried which epoch, for the `no-write-below-carried-epoch` invariant.
- `WebhookReceiver`: a Slack-shaped endpoint recording every announcement with its receipt time; it can answer
  with a long body, so that a slow-drip link in front of it makes one delivery last minutes (hole 4).
- `read_replicas` / `read_incidents` / `archive_evidence`: the end-of-run reads that make an `Observed`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from nemesis.checker import Announcement, IncidentRecord, Sample
from orchestrator.config import load_config
from orchestrator.core.errors import FailoverError
from orchestrator.engine.client import HttpEngineClient
from orchestrator.store import open_store
from orchestrator.testbed.replicas import ReplicaCluster

SAMPLE_EVERY = 0.15


class Monitor:
    def __init__(self, cluster: ReplicaCluster) -> None:
        self.cluster = cluster
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=httpx.Timeout(0.4, connect=0.3))
        self._pool = ThreadPoolExecutor(max_workers=len(cluster.replicas), thread_name_prefix="monitor")

    def start(self) -> Monitor:
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()
        return self.samples

    def _one(self, name: str) -> Sample | None:
        try:
            body = self._http.get(self.cluster.url(name) + "/v1/status").json()
            return Sample(time.time(), name, str(body["role"]), int(body["epoch"]), str(body["phase"]),
                          int(body["last_seq"]))
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            for sample in self._pool.map(self._one, list(self.cluster.replicas)):
                if sample is not None:
                    self.samples.append(sample)
            self._stop.wait(SAMPLE_EVERY)

    def latest(self, name: str) -> Sample | None:
        return next((s for s in reversed(self.samples) if s.replica == name), None)


class WebhookReceiver:
    """Records `{"text", "event", "at", "detail"}` bodies; answers 200 with `answer_bytes` of body."""

    def __init__(self, answer_bytes: int = 2) -> None:
        self.bodies: list[tuple[float, dict[str, Any]]] = []
        self.answer = b"ok" + b"." * max(0, answer_bytes - 2)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with contextlib.suppress(ValueError):
                    receiver.bodies.append((time.time(), json.loads(raw)))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, args=(0.1,), name="webhook", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def announcements(self) -> list[Announcement]:
        found = []
        for received, body in list(self.bodies):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                found.append(Announcement(received, float(body["at"]), str(body.get("event", "")),
                                          str(body.get("text", "")), dict(body.get("detail") or {})))
        return found

    def pages(self) -> list[Announcement]:
        return [a for a in self.announcements() if a.event == "page"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def read_replicas(cluster: ReplicaCluster, names: Sequence[str] | None = None) -> tuple[
        dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]], dict[str, dict[str, Any] | None]]:
    """Every replica's journal, trades and status, read directly with the bearer token."""
    journals: dict[str, list[dict[str, Any]]] = {}
    trades: dict[str, list[dict[str, Any]]] = {}
    statuses: dict[str, dict[str, Any] | None] = {}
    headers = {"Authorization": f"Bearer {cluster.token}"}
    with HttpEngineClient(token=cluster.token, read_timeout=5.0, connect_timeout=1.0, attempts=3) as client:
        for name in names or list(cluster.replicas):
            target = cluster.url(name)
            try:  # the raw status: it says more than the core's ReplicaStatus keeps (error, replicated_seq, ...)
                statuses[name] = httpx.get(target + "/v1/status", headers=headers, timeout=5.0).json()
                journals[name] = _all(client, target, "journal")
                trades[name] = _all(client, target, "trades")
            except (FailoverError, httpx.HTTPError, ValueError):
                statuses.setdefault(name, None)
    return journals, trades, statuses


def _all(client: HttpEngineClient, target: str, what: str) -> list[dict[str, Any]]:
    """Every journal entry (or trade), page by page: each page starts after the last seq seen."""
    read = client.journal if what == "journal" else client.trades
    found: list[dict[str, Any]] = []
    while True:
        page = read(target, after=int(found[-1]["seq"]) if found else 0, limit=5000)
        found.extend(page)
        if len(page) < 5000:
            return found


def read_incidents(config_path: Path) -> list[IncidentRecord]:
    loaded = load_config(config_path)
    with open_store(loaded.store_url) as store:
        records = []
        for incident in sorted(store.incidents(), key=lambda i: i.opened_at):
            steps = tuple((e.step, str(e.state), e.at) for e in store.journal(incident.id))
            records.append(IncidentRecord(incident.id, incident.kind, incident.status.value, incident.source,
                                          incident.target, steps, dict(incident.detail)))
        return records


def archive_evidence(cluster: ReplicaCluster, statuses: Mapping[str, dict[str, Any] | None],
                     incidents: Sequence[IncidentRecord]) -> dict[str, str]:
    """Where each replica's diverged entries are said to be archived, if anywhere: a status field, a file in its
    data directory, or an incident's `diverged` record of that replica's tail (`drivers.reconcile`): compared
    (`checked`) and holding at least one entry. A record that only says the comparison is still to come (the old
    primary did not answer yet) has archived nothing."""
    found: dict[str, str] = {}
    for name in cluster.replicas:
        status = statuses.get(name) or {}
        field = next((k for k, v in status.items() if "archiv" in k.lower() and v), None)
        if field is not None:
            found[name] = f"status field {field}"
            continue
        files = [p.name for p in cluster.data_dir(name).glob("*") if "archiv" in p.name or "diverg" in p.name]
        if files:
            found[name] = f"file {files[0]}"
            continue
        for incident in incidents:
            tail = incident.detail.get("diverged")
            if isinstance(tail, Mapping) and tail.get("replica") == name and tail.get("checked") is True \
                    and int(tail.get("count") or 0) > 0:
                found[name] = f"incident {incident.id} ({tail['count']} entries after seq {tail.get('common_seq')})"
                break
    return found
