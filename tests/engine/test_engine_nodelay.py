"""Answers are not held back by Nagle's algorithm: every server socket we bind (the replica's, the daemon's) sets
TCP_NODELAY, so on a kept-alive connection an answer's body does not wait 40 ms for the client's delayed ACK of its
headers (measured by benchmarks/status_page_bench.py: 44 ms per request before, under 1 ms after)."""

from __future__ import annotations

import socket

from orchestrator.engine.replica.serving import bind


def test_a_connection_accepted_from_a_bound_socket_sends_without_delay() -> None:
    server = bind("127.0.0.1", 0)
    try:
        assert server.proto == socket.IPPROTO_TCP  # what makes asyncio set TCP_NODELAY on each accepted socket
        client = socket.create_connection(server.getsockname()[:2])
        accepted, _ = server.accept()
        try:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            accepted.close()
            client.close()
    finally:
        server.close()
