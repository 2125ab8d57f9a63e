"""Ports for the testbed's servers come from below the ephemeral range, where no outgoing connection competes."""

from __future__ import annotations

import socket

import pytest

from orchestrator.testbed import ports
from orchestrator.testbed.ports import free_port, free_ports


def test_ports_are_distinct_listenable_and_below_the_ephemeral_range() -> None:
    chosen = free_ports(20)
    assert len(set(chosen)) == 20
    assert all(ports.LOWEST <= port < ports._ephemeral_low() for port in chosen)
    with socket.create_server(("127.0.0.1", free_port())) as server:
        assert server.getsockname()[1] >= ports.LOWEST


def test_a_port_somebody_listens_on_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", free_port())) as taken:
        busy = taken.getsockname()[1]
        offers = iter([busy, busy, busy + 1 if busy + 1 != busy else busy - 1])
        monkeypatch.setattr(ports._pick, "randint", lambda low, high: next(offers))
        assert free_port() != busy


def test_without_room_below_the_range_the_kernel_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_ephemeral_low", lambda: ports.LOWEST + 10)
    chosen = free_ports(3)
    assert len(set(chosen)) == 3 and all(port > 0 for port in chosen)
