"""`openapi.yaml` against the code: the replica serves exactly the documented operations, every documented
response (path, method, status) is produced by a running replica, and each real answer (and each request we
send) validates against the document's schemas."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from orchestrator.engine.protocol import load_openapi
from orchestrator.engine.replica.app import create_app
from orchestrator.engine.replica.node import Node, Settings
from orchestrator.engine.schema import validate
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

DOCUMENT = load_openapi()
METHODS = {"get", "post", "put", "patch", "delete"}

pytestmark = pytest.mark.slow  # starts replica processes


def documented_operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item
            if method in METHODS}


def documented_responses() -> set[tuple[str, str, int]]:
    return {(method.upper(), path, int(code)) for path, item in DOCUMENT["paths"].items()
            for method, operation in item.items() if method in METHODS for code in operation["responses"]}


def test_served_routes_are_the_documented_operations(tmp_path: Path) -> None:
    app = create_app(Node(Settings(replica_id="r", data_dir=tmp_path, token="t")))
    served = {(method, route.path) for route in app.routes if isinstance(route, Route)
              for method in route.methods or () if method != "HEAD"}
    assert served == documented_operations()


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


class Recorder:
    """Calls a replica, checks the answer against the document, and remembers which responses it saw."""

    def __init__(self, cluster: ReplicaCluster) -> None:
        self.cluster = cluster
        self.seen: set[tuple[str, str, int]] = set()

    def __call__(self, method: str, path: str, expect: int, *, body: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None, auth: bool = True, replica: str = "p") -> Any:
        headers = {"Authorization": f"Bearer {self.cluster.token}"} if auth else {}
        deadline = time.monotonic() + 60
        while True:
            response = httpx.request(method, self.cluster.url(replica) + path, json=body, params=params,
                                     headers=headers, timeout=30.0)
            # An entry waits 0.3 s for the standby's copy (so the 503s below come quickly); on a loaded machine
            # a copy can take longer, and the client does what the protocol says: the same request again, which
            # answers the original seq once the copy exists.
            unknown = response.status_code == 503 and response.json().get("reason") == "replication_timeout"
            if not (expect == 200 and unknown and time.monotonic() < deadline):
                break
        assert response.status_code == expect, response.text
        operation = DOCUMENT["paths"][path][method.lower()]
        if body is not None and expect not in (413, 422):
            request_schema = operation["requestBody"]["content"]["application/json"]["schema"]
            assert validate(body, request_schema, DOCUMENT) == [], body
        documented = _resolve(operation["responses"][str(expect)])
        schema = documented["content"]["application/json"]["schema"]
        assert validate(response.json(), schema, DOCUMENT) == [], response.text
        self.seen.add((method, path, expect))
        return response.json()


@pytest.fixture(scope="module")
def cluster(make_cluster: Callable[..., ReplicaCluster]) -> ReplicaCluster:
    return make_cluster([ReplicaSpec("p", "aws", primary=True, sync_timeout=0.3), ReplicaSpec("s", "gcp")])


def order(coid: str, side: str, price: str | None, **fields: Any) -> dict[str, Any]:
    return {"client_order_id": coid, "account": "acct", "market": "M", "side": side,
            "type": "limit" if price else "market", "price": price, "qty": "1", **fields}


def test_every_documented_response_is_real_and_matches_its_schema(cluster: ReplicaCluster) -> None:
    call = Recorder(cluster)
    call("GET", "/v1/status", 200)
    call("GET", "/v1/status", 200, replica="s")
    call("POST", "/v1/phase", 401, body={"phase": "open", "epoch": 1}, auth=False)
    call("POST", "/v1/phase", 422, body={"phase": "closed", "epoch": 1})
    call("POST", "/v1/phase", 200, body={"phase": "protection", "until": "2999-01-01T00:00:00Z", "epoch": 1})
    call("POST", "/v1/phase", 200, body={"phase": "open", "until": None, "epoch": 1})
    call("POST", "/v1/phase", 409, body={"phase": "open", "epoch": 0})
    cluster.wait_replicated("p", timeout=60)  # the standby mirrors the primary's phase once it holds the phase entry
    stamped = call("POST", "/v1/phase", 200, body={"phase": "halted", "epoch": 1}, replica="s")  # stamps only
    assert (stamped["role"], stamped["epoch"], stamped["phase"]) == ("standby", 1, "open")
    call("POST", "/v1/phase", 409, body={"phase": "halted", "epoch": 0}, replica="s")

    call("POST", "/v1/orders", 401, body=order("ask1", "sell", "100"), auth=False)
    call("POST", "/v1/orders", 422, body=order("bad", "sell", None, post_only=True))
    call("POST", "/v1/orders", 200, body=order("ask1", "sell", "100"))
    call("POST", "/v1/orders", 200, body=order("ask2", "sell", "101"))
    call("POST", "/v1/orders", 409, body=order("cross", "buy", "100", post_only=True))
    call("POST", "/v1/orders", 200, body=order("take", "buy", "100", tif="ioc"))
    call("POST", "/v1/cancel", 401, body={"client_order_id": "ask2", "account": "acct"}, auth=False)
    call("POST", "/v1/cancel", 409, body={"client_order_id": "ask1", "account": "acct"})  # filled
    call("POST", "/v1/cancel", 422, body={"client_order_id": "never", "account": "acct"})
    call("POST", "/v1/margin", 200, body={"account": "acct", "amount": "5.25", "request_id": "m1"})
    call("POST", "/v1/margin", 401, body={"account": "acct", "amount": "1"}, auth=False)
    call("POST", "/v1/margin", 422, body={"account": "acct", "amount": "-1"})

    entries = call("GET", "/v1/journal", 200, params={"after": 0})
    assert [entry["seq"] for entry in entries] == list(range(1, len(entries) + 1))
    call("GET", "/v1/journal", 200, params={"after": 1, "limit": 1, "wait": 0.1}, replica="s")
    call("GET", "/v1/journal", 401, params={"after": 0, "replica": "x", "cloud": "c", "hash": ""}, auth=False)
    call("GET", "/v1/journal", 409, params={"after": 1, "replica": "x", "cloud": "c", "hash": "0" * 64})
    call("GET", "/v1/journal", 422, params={"after": -1})
    assert call("GET", "/v1/trades", 200, params={"after": 0})[0]["taker"] == "take"
    call("GET", "/v1/trades", 422, params={"limit": 0})
    call("GET", "/v1/trades", 401, params={"after": 0}, auth=False)
    call("GET", "/v1/journal", 401, params={"after": 0}, auth=False)
    oversized = {"epoch": 1, "padding": "x" * (64 * 1024)}
    for path in ("/v1/phase", "/v1/promote", "/v1/fence", "/v1/orders", "/v1/cancel", "/v1/margin", "/v1/rejoin",
                 "/v1/peers"):
        assert call("POST", path, 413, body=oversized)["reason"] == "too_large"

    cluster.stop("s")
    try:
        call("POST", "/v1/orders", 503, body=order("lonely", "buy", "1"))
        call("POST", "/v1/cancel", 503, body={"client_order_id": "ask2", "account": "acct"})
        call("POST", "/v1/margin", 503, body={"account": "acct", "amount": "1"})
    finally:
        cluster.start("s")
    cluster.wait_replicated("p", timeout=60)
    retried = call("POST", "/v1/cancel", 200, body={"client_order_id": "ask2", "account": "acct"})
    assert retried["seq"] == len(call("GET", "/v1/journal", 200)) - 1  # the cancel journaled before the margin

    call("POST", "/v1/phase", 200, body={"phase": "halted", "epoch": 1})
    call("POST", "/v1/margin", 409, body={"account": "acct", "amount": "1"})
    call("POST", "/v1/promote", 401, body={"epoch": 2}, auth=False)
    call("POST", "/v1/promote", 422, body={"epoch": "2"})
    call("POST", "/v1/promote", 409, body={"epoch": 0})
    call("POST", "/v1/promote", 200, body={"epoch": 1})  # the primary again: idempotent
    call("POST", "/v1/fence", 401, body={"epoch": 2}, auth=False)
    call("POST", "/v1/fence", 422, body={"epoch": 2, "why": "extra fields are refused"})
    call("POST", "/v1/fence", 409, body={"epoch": 0})
    call("GET", "/v1/snapshot", 200)
    call("GET", "/v1/snapshot", 401, auth=False)
    call("POST", "/v1/fence", 200, body={"epoch": 2})
    call("POST", "/v1/rejoin", 401, body={"epoch": 2, "primary": cluster.url("s")}, auth=False)
    call("POST", "/v1/rejoin", 422, body={"epoch": 2, "primary": "ftp://elsewhere"})
    call("POST", "/v1/rejoin", 409, body={"epoch": 1, "primary": cluster.url("s")})
    call("POST", "/v1/rejoin", 200, body={"epoch": 2, "primary": cluster.url("s")})  # s is no primary: it fails
    call("GET", "/v1/rejoin", 200)
    call("GET", "/v1/rejoin", 401, auth=False)
    call("POST", "/v1/peers", 401, body={"epoch": 2, "peers": [cluster.url("s")]}, auth=False)
    call("POST", "/v1/peers", 422, body={"epoch": 2, "peers": []})
    call("POST", "/v1/peers", 409, body={"epoch": 1, "peers": [cluster.url("s")]})
    assert call("POST", "/v1/peers", 200, body={"epoch": 2, "peers": [cluster.url("s")]})["source"] == "control"
    call("GET", "/v1/peers", 200)
    call("GET", "/v1/peers", 401, auth=False)
    call("GET", "/v1/stats", 200)
    assert call.seen == documented_responses()
