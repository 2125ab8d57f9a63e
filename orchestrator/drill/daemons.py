"""Orchestrator daemons as child processes, for drills and HA tests: start, ask /status, wait, stop."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orchestrator.testbed.ports import free_port


@dataclass
class DaemonProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def status(self) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/status", timeout=0.5).json()
            return body
        except (httpx.HTTPError, json.JSONDecodeError):
            return None

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2.0)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Daemons:
    env: dict[str, str]
    base: Path
    running: list[DaemonProcess] = field(default_factory=list)

    def start(self, name: str, vantage: str, env: dict[str, str] | None = None, *,
              observe_only: bool = False) -> DaemonProcess:
        port = free_port()
        log = self.base / f"{name}.log"
        handle = log.open("wb")
        command = [sys.executable, "-m", "orchestrator", "daemon", "--identity", name, "--vantage", vantage,
                   "--listen", f"127.0.0.1:{port}"]
        if observe_only:
            command.append("--observe-only")
        process = subprocess.Popen(command, env={**self.env, **(env or {})}, stdout=handle,
                                   stderr=subprocess.STDOUT)
        handle.close()
        daemon = DaemonProcess(name, port, process, log)
        self.running.append(daemon)
        return daemon

    def statuses(self) -> dict[str, dict[str, Any]]:
        return {d.name: s for d in self.running if d.alive and (s := d.status()) is not None}

    def leaders(self) -> list[str]:
        return [name for name, status in self.statuses().items() if status["leader"]]

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if predicate():
                return time.monotonic() - began
            if self.running and not any(d.alive for d in self.running):
                break  # every daemon exited: waiting longer cannot help
            time.sleep(0.1)
        logs = "\n".join(f"--- {d.name}\n{d.log.read_text()[-2000:]}" for d in self.running)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")

    def stop_all(self) -> None:
        for daemon in self.running:
            if daemon.alive:
                daemon.process.terminate()
        for daemon in self.running:
            try:
                daemon.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.process.kill()
                daemon.process.wait(timeout=5)
