"""The whole system on one machine with every link and process under the nemesis's hand.

`Lab` is what lives across runs: the proxy hub, moto (AWS) and the GCP/Azure fakes (one `NemesisBed`), an etcd
cluster when a run asks for one. `Lab.world(options, tag)` gives a fresh `World`: new replica processes and a new
store, the clouds reset, and the orchestrator in one of three modes:

- `daemon`: one daemon (vantage `orchestrator`) on SQLite, and probe agents at `gcp-hk` and `azure-hk`
  (observe-only daemons writing what they see to the shared store), as `failover drill` runs it;
- `ha`: three daemons on a three-member etcd, one per cloud;
- `cron`: the same probe agents, and `failover check` run again and again (`CronRunner`).

Every orchestrator process has a configuration of its own (`failover-<source>.yaml`), naming its own links:
`orch->aws` is how the main daemon (and cron, and operator commands) reaches `spot-aws`, `vp:gcp-hk->aws` how the
agent at `gcp-hk` does, `orch->moto` its EC2 and Route 53, `orch->webhook` its webhook. So a fault can blind one
vantage point, slow one process's cloud API, or drip one process's webhook, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from nemesis.checker import Observed
from nemesis.client import ClientStream, History
from nemesis.cluster import ProxiedCluster, short
from nemesis.observe import Monitor, WebhookReceiver, archive_evidence, read_incidents, read_replicas
from orchestrator.config import FailoverConfig
from orchestrator.drill.daemons import DaemonProcess, Daemons
from orchestrator.testbed.proxy import FaultProxy, ProxyHub
from orchestrator.testbed.replicas import ReplicaSpec
from orchestrator.testbed.world import AWS_REGION, GCP_ZONE, Testbed

Mode = Literal["daemon", "ha", "cron"]
SKEW_DIR = Path(__file__).resolve().parent / "skew"
SKEW_ENV = "NEMESIS_CLOCK_SKEW"
NAMES = ("spot-aws", "spot-gcp", "spot-azure")
AGENTS = {"agent-gcp": "gcp-hk", "agent-azure": "azure-hk"}
HA_DAEMONS = {"d-aws": "aws-hk", "d-gcp": "gcp-hk", "d-azure": "azure-hk"}


def known_keys(section: str) -> set[str]:
    """The keys a configuration section accepts in the code under test (a fix may add some)."""
    model = FailoverConfig.model_fields[section].annotation
    return set(getattr(model, "model_fields", {}))


def skew_env(seconds: float) -> dict[str, str]:
    """Environment that shifts a child's wall clock by `seconds` (see skew/sitecustomize.py)."""
    path = os.pathsep.join(p for p in (str(SKEW_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, SKEW_ENV: f"{seconds:g}"}


@dataclass
class NemesisBed(Testbed):
    """The drill's testbed with fault proxies on every link, and one configuration per orchestrator process."""

    hub: ProxyHub = field(default_factory=ProxyHub)
    webhook: WebhookReceiver | None = None
    small_disk: tuple[str, ...] = ()
    policy: dict[str, Any] = field(default_factory=dict)
    webhook_timeout: str = "5s"
    tag: str = "r0"

    def _start_replicas(self, tag: str = "") -> None:
        self.tag = tag or self.tag
        cluster = ProxiedCluster(self.base / f"replicas-{self.tag}", [
            ReplicaSpec(NAMES[0], "aws", primary=True), ReplicaSpec(NAMES[1], "gcp"),
            ReplicaSpec(NAMES[2], "azure")], self.hub, engine=self.engine, small_disk=self.small_disk,
            prefix=self.tag)
        self._stack.callback(cluster.close)
        cluster.start()
        self.replicas = cluster

    @property
    def cluster(self) -> ProxiedCluster:
        assert isinstance(self.replicas, ProxiedCluster)
        return self.replicas

    def cloud_link(self, source: str, cloud: Literal["moto", "gcp", "azure", "webhook"]) -> FaultProxy:
        """The link `source` uses to reach a cloud API or the webhook (made on first use)."""
        name = f"{self.tag}:{source}->{cloud if cloud == 'webhook' else cloud + '-api'}"
        if name not in self.hub.proxies:
            url = {"moto": self.moto_url, "gcp": self.gcp_url, "azure": self.azure_url,
                   "webhook": self.webhook.url if self.webhook else ""}[cloud]
            self.hub.proxy(name, int(url.split(":")[2].split("/")[0]))
        return self.hub.proxies[name]

    def config_for(self, source: str) -> dict[str, Any]:
        config = self.config()
        moto = self.cloud_link(source, "moto").url
        config["sites"]["aws-hk"]["endpoint_url"] = moto
        config["sites"]["gcp-hk"]["endpoint_url"] = self.cloud_link(source, "gcp").url
        config["sites"]["azure-hk"]["endpoint_url"] = self.cloud_link(source, "azure").url
        engine = config["engines"][self.engine]
        engine["dns"]["endpoint_url"] = moto
        for name, replica in engine["replicas"].items():
            replica["control_url"] = self.cluster.link(source, name).url
        allowed = known_keys("policy")
        config["policy"].update({k: v for k, v in self.policy.items() if k in allowed})
        if self.webhook is not None:
            hook = {"url": self.cloud_link(source, "webhook").url + "/hook", "timeout": self.webhook_timeout}
            config["notifications"] = {"stdout": True, "webhooks": [hook]}
        return config

    def config_path_for(self, source: str) -> Path:
        return self.base / ("failover.yaml" if source == "orch" else f"failover-{source.replace(':', '-')}.yaml")

    def write_configs(self, sources: list[str]) -> None:
        for source in sources:
            self.config_path_for(source).write_text(yaml.safe_dump(self.config_for(source), sort_keys=False),
                                                    encoding="utf-8")
        self.config_path = self.config_path_for("orch")

    def env_for(self, source: str) -> dict[str, str]:
        return {**self.env(), "FAILOVER_CONFIG": str(self.config_path_for(source))}

    def reset_clouds(self) -> None:
        """Every cloud as a new run expects it: instances running, zones available, no faults queued."""
        import boto3

        self.impair_aws(False)
        ec2 = boto3.client("ec2", region_name=AWS_REGION, endpoint_url=self.moto_url)
        state = ec2.describe_instances(InstanceIds=[self.aws_instance])["Reservations"][0]["Instances"][0]["State"]
        if state["Name"] != "running":
            ec2.start_instances(InstanceIds=[self.aws_instance])
        if self.gcp is not None:
            self.gcp.reset()
            self.gcp.add_instance("spot-engine-gcp", GCP_ZONE)
        if self.azure is not None:
            self.azure.reset()
            self.azure.add_vm("spot-engine-azure", "1")


@dataclass(frozen=True)
class CronRun:
    started: float
    ended: float
    code: int
    message: str


class CronRunner:
    """`failover check` again and again (never two at once), every result kept: cron, compressed."""

    def __init__(self, env: dict[str, str], every: float = 0.5) -> None:
        self.env = env
        self.every = every
        self.runs: list[CronRun] = []
        self.current: subprocess.Popen[str] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cron", daemon=True)

    def start(self) -> CronRunner:
        self._thread.start()
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop after the run in progress (or, with `kill`, kill it: a test that is over waits for nothing)."""
        self._stop.set()
        running = self.current
        if kill and running is not None:
            with contextlib.suppress(OSError):
                running.kill()
        self._thread.join(timeout=150)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            self.current = subprocess.Popen([sys.executable, "-m", "orchestrator", "check", "--output", "json"],
                                            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True)
            try:
                out, err = self.current.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                self.current.kill()
                out, err = self.current.communicate()
            code = self.current.returncode
            message = ""
            with contextlib.suppress(ValueError, TypeError):
                message = str(json.loads(out)["message"])
            self.runs.append(CronRun(started, time.time(), code, message or err.strip()[-300:]))
            self.current = None
            self._stop.wait(self.every)


@dataclass
class WorldOptions:
    mode: Mode = "daemon"
    # probes a loaded machine can keep (300 ms timeouts against real processes); the protection window must be
    # at least ten detections long (interval x failure_threshold), which the configuration checks
    protection: str = "8s"
    probe_interval: str = "400ms"
    probe_timeout: str = "300ms"
    provider_interval: str = "1s"
    lease_ttl: str = "3s"
    policy: dict[str, Any] = field(default_factory=lambda: {"step_deadline": "30s", "failure_threshold": 2})
    cron_every: float = 0.5
    skew: dict[str, float] = field(default_factory=dict)  # process name -> seconds its wall clock is off
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # process name -> extra environment
    webhook_answer_bytes: int = 2
    clients: bool = True
    client_rate: float = 12.0
    seed: int = 0
    small_disk: tuple[str, ...] = ()
    first: str | None = None  # start this process first and wait until it leads, then the others


class Lab:
    """What outlives one run: proxies, clouds, etcd. `world()` renews replicas, store and clouds for a run."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.hub = ProxyHub()
        self.webhook = WebhookReceiver()
        self.bed = NemesisBed(self.base / "bed", hub=self.hub, webhook=self.webhook)
        self.etcd: Any = None
        self._runs = 0
        self.bed.start()

    def world(self, options: WorldOptions, tag: str | None = None) -> World:
        self._runs += 1
        tag = tag or f"r{self._runs}"
        bed = self.bed
        bed.protection, bed.probe_interval, bed.probe_timeout = (options.protection, options.probe_interval,
                                                                 options.probe_timeout)
        bed.provider_interval, bed.lease_ttl, bed.policy = options.provider_interval, options.lease_ttl, \
            dict(options.policy)
        bed.small_disk = options.small_disk
        self.webhook.bodies.clear()
        self.webhook.answer = b"ok" + b"." * max(0, options.webhook_answer_bytes - 2)
        bed.reset_clouds()
        self.hub.discard(f"{bed.tag}:")  # the last run's links
        bed.renew(tag)  # new replicas, and a fresh SQLite store beside them
        if options.mode == "ha":
            bed.store = f"{self.etcd_cluster().url}/{tag}-{uuid.uuid4().hex[:6]}"
        return World(self, options, tag)

    def etcd_cluster(self) -> Any:
        if self.etcd is None:
            from orchestrator.testbed.etcd import EtcdCluster

            self.etcd = EtcdCluster(3, self.base / "etcd").start()
        return self.etcd

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.bed.close()
        if self.etcd is not None:
            self.etcd.cleanup()
        self.webhook.close()
        self.hub.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class World:
    """One run: processes started by `start()`, faults applied by the caller, `finish()` heals and reads."""

    def __init__(self, lab: Lab, options: WorldOptions, tag: str) -> None:
        self.lab = lab
        self.bed = lab.bed
        self.cluster = lab.bed.cluster
        self.options = options
        self.tag = tag
        self.daemons = Daemons(self.bed.env(), self.cluster.base_dir)
        self.specs: dict[str, tuple[str, str, bool]] = {}  # process -> (vantage, config source, observe only)
        self.cron: CronRunner | None = None
        self.monitor = Monitor(self.cluster)
        self.stream: ClientStream | None = None
        self.history = History()
        self.began = time.time()
        self.held_down: set[str] = set()  # processes a fault keeps dead: not started again by `supervise`
        self.skewed: set[str] = set(options.skew)  # processes whose wall clock was set off

    # ---- processes ------------------------------------------------------------------------------------------

    def start(self, *, wait_leader: bool = True) -> World:
        mode = self.options.mode
        if mode == "ha":
            self.specs = {name: (vantage, f"vp:{vantage}", False) for name, vantage in HA_DAEMONS.items()}
        else:
            self.specs = {name: (vantage, f"vp:{vantage}", True) for name, vantage in AGENTS.items()}
            if mode == "daemon":
                self.specs["daemon"] = ("orchestrator", "orch", False)
        self.bed.write_configs(["orch", *sorted({source for _, source, _ in self.specs.values()})])
        self.monitor.start()
        first = self.options.first
        if first is not None:
            self.start_process(first)
            self.wait_for(lambda: self.leader() == first, 60, f"{first} to lead")
        for name in self.specs:
            if name != first:
                self.start_process(name)
        if mode == "cron":
            self.cron = CronRunner(self.bed.env_for("orch"), self.options.cron_every).start()
        elif wait_leader:
            self.wait_for(lambda: self.leader() is not None, 60, "a daemon to lead")
        if self.options.clients:
            self.start_clients()
        return self

    def start_process(self, name: str, extra: dict[str, str] | None = None) -> DaemonProcess:
        """Start (or start again) the orchestrator process `name` with its configuration, skew and failpoints."""
        vantage, source, observe_only = self.specs[name]
        env = self.bed.env_for(source)
        if name in self.options.skew:
            env.update(skew_env(self.options.skew[name]))
        env.update(self.options.env.get(name, {}))
        env.update(extra or {})
        self.daemons.running = [d for d in self.daemons.running if d.name != name]
        return self.daemons.start(name, vantage, env, observe_only=observe_only)

    def supervise(self) -> list[str]:
        """Start again every orchestrator process that died on its own (a failpoint, a crash), as systemd's
        `Restart=always` would; returns their names."""
        restarted = []
        for daemon in list(self.daemons.running):
            if not daemon.alive and daemon.name in self.specs and daemon.name not in self.held_down:
                self.start_process(daemon.name)
                restarted.append(daemon.name)
        return restarted

    def process(self, name: str) -> DaemonProcess | None:
        return next((d for d in self.daemons.running if d.name == name), None)

    def leader(self) -> str | None:
        leaders = self.daemons.leaders()
        return leaders[0] if len(leaders) == 1 else None

    def start_clients(self) -> ClientStream:
        replicas = [self.cluster.via("client", name) for name in NAMES]
        self.stream = ClientStream(replicas, self.cluster.token, seed=self.options.seed,
                                   rate=self.options.client_rate, history=self.history).start()
        return self.stream

    def operator(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """A `failover ...` command as an operator types it, against the main configuration."""
        return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=self.bed.env_for("orch"),
                              capture_output=True, text=True, timeout=timeout, check=False)

    # ---- waiting --------------------------------------------------------------------------------------------

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll `condition` every 100 ms; AssertionError with the processes' recent logs after `timeout`."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            with contextlib.suppress(Exception):
                if condition():
                    return time.monotonic() - began
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{self.logs()}")

    def logs(self, tail: int = 1500) -> str:
        parts = []
        for daemon in self.daemons.running:
            text = daemon.log.read_text(errors="replace")[-tail:] if daemon.log.exists() else ""
            parts.append(f"--- {daemon.name} ({'alive' if daemon.alive else 'exited'})\n{text}")
        if self.cron is not None and self.cron.runs:
            parts.append("--- cron: " + "; ".join(f"{r.code} {r.message[:80]}" for r in self.cron.runs[-5:]))
        return "\n".join(parts)

    def incidents(self) -> list[Any]:
        return read_incidents(self.bed.config_path)

    def settle(self, timeout: float = 60.0) -> bool:
        """Wait until no incident is running and one primary answers; False if the deadline passed first."""
        def settled() -> bool:
            self.supervise()
            running = [i for i in self.incidents() if i.status not in ("closed", "needs_human")]
            primaries = [s for s in (self.monitor.latest(n) for n in NAMES) if s and s.role == "primary"]
            return not running and len(primaries) >= 1
        try:
            self.wait_for(settled, timeout, "the run to settle")
            return True
        except AssertionError:
            return False

    # ---- the end --------------------------------------------------------------------------------------------

    def heal(self) -> None:
        """Every link healed, every process thawed, every dead replica started again, disks freed."""
        self.lab.hub.heal_all()
        for name in NAMES:
            self.cluster.free_disk(name)
            self.cluster.resume(name)
            if not self.cluster.running(name):
                with contextlib.suppress(RuntimeError):
                    self.cluster.start(name)
        for daemon in list(self.daemons.running):
            with contextlib.suppress(OSError):
                daemon.process.send_signal(signal.SIGCONT)
            if not daemon.alive and daemon.name in self.specs:
                self.start_process(daemon.name)

    def observe(self, settle: float = 60.0) -> Observed:
        """Stop the clients, let the system settle, and read everything the checker needs."""
        if self.stream is not None:
            self.stream.stop()
        if settle > 0:
            self.settle(settle)
        time.sleep(1.0)  # the last announcements and replication fetches land
        if self.cron is not None:
            self.cron.stop()
        samples = self.monitor.stop()
        journals, trades, statuses = read_replicas(self.cluster)
        incidents = self.incidents()
        return Observed(self.history.ops(), journals, trades, statuses, list(samples),
                        self.lab.webhook.announcements(), incidents,
                        archive_evidence(self.cluster, statuses, incidents), time.time(),
                        {name: list(times) for name, times in self.cluster.restored.items()})

    def close(self) -> None:
        """Everything of this run stopped at once (SIGKILL: nothing of it is needed any more)."""
        if self.stream is not None:
            self.stream.stop()
        if self.cron is not None:
            self.cron.stop(kill=True)
        for daemon in self.daemons.running:
            if daemon.alive:
                with contextlib.suppress(OSError):
                    daemon.process.kill()
        for daemon in self.daemons.running:
            with contextlib.suppress(Exception):
                daemon.process.wait(timeout=10)
        self.monitor.stop()
        self.lab.hub.heal_all()


def link_name(source: str, target: str) -> str:
    return f"{source}->{short(target)}"
