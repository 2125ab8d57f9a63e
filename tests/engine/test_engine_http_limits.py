"""The replica's HTTP surface has limits (issue 12, item 5), checked on a real process over raw sockets: bodies are
capped without being read into memory, half-sent requests and idle connections are dropped, connections are
capped, a JSON key given twice is refused, epochs that would block every later one are refused, and the journal
and trades need the token unless the replica was started with `--public-read`."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from orchestrator.engine.protocol import MAX_EPOCH, MAX_EPOCH_JUMP
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

pytestmark = pytest.mark.slow  # starts replica processes

CAP = 64 * 1024
MB = 1024 * 1024


@pytest.fixture(scope="module")
def cluster(make_cluster: Callable[..., ReplicaCluster]) -> ReplicaCluster:
    """p: a primary; e: a lone standby whose epochs the epoch tests raise; o: a lone standby, public reads."""
    return make_cluster([ReplicaSpec("p", "aws", primary=True, synchronous=False, peers=()),
                         ReplicaSpec("e", "gcp", peers=()),
                         ReplicaSpec("o", "azure", peers=(), extra_args=("--public-read",))])


def pid(cluster: ReplicaCluster, name: str) -> int:
    process = cluster.replicas[name].process
    assert process is not None
    return process.pid


def memory_kib(process_id: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak since start) of a process, in KiB, from /proc."""
    fields = {}
    with open(f"/proc/{process_id}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields


def open_sockets(process_id: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{process_id}/fd"):
        try:
            count += os.readlink(f"/proc/{process_id}/fd/{fd}").startswith("socket:")
        except OSError:
            continue  # closed meanwhile
    return count


@pytest.fixture
def connect(cluster: ReplicaCluster) -> Iterator[Callable[[str], socket.socket]]:
    opened: list[socket.socket] = []

    def make(name: str) -> socket.socket:
        sock = socket.create_connection((cluster.host, cluster.replicas[name].port), timeout=30)
        opened.append(sock)
        return sock

    yield make
    for sock in opened:
        sock.close()


def head(path: str, token: str, extra: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: replica\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n").encode()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """Status code and JSON body of one HTTP/1.1 answer with a Content-Length (which ours always have)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    header, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in header.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(header.split()[1]), json.loads(body[:length])


def send_until_refused(sock: socket.socket, total: int) -> int:
    """Push up to `total` bytes of body; how many the kernel took before the server's close stopped us."""
    chunk, sent = b"x" * MB, 0
    try:
        while sent < total:
            sent += sock.send(chunk)
    except OSError:  # EPIPE or ECONNRESET: the server closed without reading
        pass
    return sent


def closed_by_server(sock: socket.socket) -> bool:
    """Blocks (up to the socket's 30 s timeout) until the server closes the connection."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_200_mb_body_is_refused_from_its_length_without_being_read(
        cluster: ReplicaCluster, connect: Callable[[str], socket.socket]) -> None:
    before = memory_kib(pid(cluster, "p"))
    sock = connect("p")
    sock.sendall(head("/v1/orders", cluster.token, f"Content-Length: {200 * MB}\r\n"))
    code, body = read_answer(sock)  # answered before one byte of the body was sent
    assert (code, body["reason"]) == (413, "too_large") and "209715200" in body["detail"]
    assert send_until_refused(sock, 200 * MB) < 200 * MB
    after = memory_kib(pid(cluster, "p"))
    assert after["VmHWM"] - before["VmHWM"] < 8 * 1024, (before, after)
    assert httpx.get(cluster.url("p") + "/v1/status").status_code == 200


def test_a_200_mb_chunked_body_is_refused_as_it_streams(
        cluster: ReplicaCluster, connect: Callable[[str], socket.socket]) -> None:
    before = memory_kib(pid(cluster, "p"))
    sock = connect("p")
    sock.sendall(head("/v1/margin", cluster.token, "Transfer-Encoding: chunked\r\n"))
    piece = b"%x\r\n%s\r\n" % (16 * 1024, b"x" * 16 * 1024)
    sent = 0
    try:
        while sent < 200 * MB:
            sock.sendall(piece)
            sent += len(piece)
    except OSError:
        pass
    assert sent < 200 * MB  # the server closed long before
    after = memory_kib(pid(cluster, "p"))
    assert after["VmHWM"] - before["VmHWM"] < 8 * 1024, (before, after)
    refused = httpx.get(cluster.url("p") + "/v1/stats").json()["refused"]
    assert refused.get("too_large", 0) >= 1


def test_a_body_somewhat_over_the_cap_gets_a_clean_413_on_a_connection_that_stays_usable(
        cluster: ReplicaCluster) -> None:
    """Up to 1 MiB the rest is read and dropped, so the client always reads the answer (never a reset)."""
    with httpx.Client(headers={"Authorization": f"Bearer {cluster.token}"}, timeout=10) as client:
        for _ in range(20):
            response = client.post(cluster.url("p") + "/v1/margin", content=b"x" * (512 * 1024))
            assert (response.status_code, response.json()["reason"]) == (413, "too_large")
            assert "connection" not in response.headers
        assert client.get(cluster.url("p") + "/v1/status").status_code == 200


def test_half_sent_requests_and_idle_connections_are_dropped(
        cluster: ReplicaCluster, connect: Callable[[str], socket.socket]) -> None:
    idle = connect("p")
    half_header = connect("p")
    half_header.sendall(b"POST /v1/phase HTTP/1.1\r\nHost: replica\r\nContent-Le")
    half_body = connect("p")
    half_body.sendall(head("/v1/phase", cluster.token, "Content-Length: 100\r\n") + b'{"phase": "ha')
    started = time.monotonic()
    for sock in (idle, half_header, half_body):
        assert closed_by_server(sock)
    waited = time.monotonic() - started
    assert waited >= 4.0  # the request timeout (5 s) passed first: a patient client is not cut short
    assert httpx.get(cluster.url("p") + "/v1/status").status_code == 200


def test_connections_beyond_the_cap_are_closed_and_a_real_request_still_gets_in(
        cluster: ReplicaCluster, connect: Callable[[str], socket.socket]) -> None:
    process = pid(cluster, "p")
    baseline = open_sockets(process)
    flood = [connect("p") for _ in range(300)]
    cluster.wait_for(lambda: open_sockets(process) <= baseline + 256, timeout=30, what="the cap to hold")
    assert httpx.get(cluster.url("p") + "/v1/status", timeout=5).status_code == 200  # the oldest idle made room
    assert sum(closed_by_server(sock) for sock in flood) == 300  # evicted at the cap, the rest at the timeout
    cluster.wait_for(lambda: httpx.get(cluster.url("p") + "/v1/status").status_code == 200, timeout=30,
                     what="the replica to answer again")


def post_raw(cluster: ReplicaCluster, name: str, path: str, raw: bytes) -> httpx.Response:
    return httpx.post(cluster.url(name) + path, content=raw, timeout=10,
                      headers={"Authorization": f"Bearer {cluster.token}", "Content-Type": "application/json"})


def test_a_key_given_twice_is_refused_and_changes_nothing(cluster: ReplicaCluster) -> None:
    before = (cluster.status("e")["epoch"], cluster.status("e")["role"])
    for path, raw in (("/v1/fence", b'{"epoch": 1, "epoch": 2}'),
                      ("/v1/phase", b'{"phase": "halted", "epoch": 1, "phase": "open"}')):
        response = post_raw(cluster, "e", path, raw)
        assert response.status_code == 422
        assert response.json()["reason"] == "invalid" and "given more than once" in response.json()["detail"]
    assert "epoch" in post_raw(cluster, "e", "/v1/fence", b'{"epoch": 1, "epoch": 2}').json()["detail"]
    assert (cluster.status("e")["epoch"], cluster.status("e")["role"]) == before


def stamp(cluster: ReplicaCluster, epoch: int) -> httpx.Response:
    return post_raw(cluster, "e", "/v1/phase", json.dumps({"phase": "halted", "epoch": epoch}).encode())


def test_an_epoch_that_would_block_every_later_one_is_refused(cluster: ReplicaCluster) -> None:
    assert cluster.status("e")["epoch"] == 0
    huge = stamp(cluster, 10**30)
    assert (huge.status_code, huge.json()["reason"]) == (422, "invalid") and "epoch" in huge.json()["detail"]
    too_far = stamp(cluster, MAX_EPOCH)
    assert (too_far.status_code, too_far.json()["reason"], too_far.json()["epoch"]) == (409, "epoch_too_far", 0)
    assert "2**50" in too_far.json()["detail"]
    assert cluster.status("e")["epoch"] == 0

    first = 987_654_321 * 1_000_000 + 1  # an etcd create revision near 10**9, as on a long-lived cluster
    assert stamp(cluster, first).status_code == 200
    assert stamp(cluster, first + MAX_EPOCH_JUMP + 1).status_code == 409
    fence = post_raw(cluster, "e", "/v1/fence", json.dumps({"epoch": first + MAX_EPOCH_JUMP + 1}).encode())
    assert (fence.status_code, fence.json()["reason"]) == (409, "epoch_too_far")
    assert stamp(cluster, first + MAX_EPOCH_JUMP).status_code == 200
    assert cluster.status("e")["epoch"] == first + MAX_EPOCH_JUMP and cluster.status("e")["role"] == "standby"


def test_journal_and_trades_need_the_token_unless_public_read(cluster: ReplicaCluster) -> None:
    for path in ("/v1/journal", "/v1/trades"):
        refused = httpx.get(cluster.url("p") + path)
        assert (refused.status_code, refused.json()) == (401, {"accepted": False, "reason": "unauthorized"})
        with cluster.client() as client:  # HttpEngineClient sends the token
            listed = client.journal(cluster.url("p")) if path == "/v1/journal" else client.trades(cluster.url("p"))
            assert isinstance(listed, list)
        assert httpx.get(cluster.url("o") + path).status_code == 200  # --public-read
    acknowledging = httpx.get(cluster.url("o") + "/v1/journal", params={"after": 0, "replica": "x", "hash": ""})
    assert acknowledging.status_code == 401  # public reads never let anyone acknowledge
    for public in ("/v1/status", "/v1/stats"):
        assert httpx.get(cluster.url("p") + public).status_code == 200
