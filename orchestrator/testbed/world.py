"""A local testbed: three clouds and three engine replicas on 127.0.0.1, and a configuration that points at them.

- AWS: moto's threaded server in this process (EC2 instance in ap-east-1a, a Route 53 zone and record), and the
  AWS Health API fake on two ports (its active and passive endpoints, us-east-1 and us-east-2) over the same events;
- GCP and Azure: the API-shaped fakes of `orchestrator.testbed.fakes`, served in this process;
- three reference replicas (`orchestrator.engine.replica`), one per cloud, as real processes over real HTTP,
  synchronous replication across clouds;
- `failover.yaml` in the base directory, valid for `failover config validate`, with a SQLite store beside it.

The faults a drill injects act on these same objects (kill a replica process, impair the moto instance and zone,
stop a fake VM), so the orchestrator sees them exactly as it would see a cloud: through the SDKs and over HTTP.
Used by the drill, the end-to-end tests and the CI dry run. Everything started is stopped by `close()`.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.core.durations import parse_duration
from orchestrator.testbed.fakes import AzureComputeFake, FakeServer, GcpComputeFake
from orchestrator.testbed.fakes.aws_health import AwsHealthFake
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec

AWS_REGION = "ap-east-1"
AWS_ZONE = "ap-east-1a"
GCP_PROJECT, GCP_REGION, GCP_ZONE = "exchange-drill", "asia-east2", "asia-east2-a"
AZURE_SUBSCRIPTION, AZURE_GROUP, AZURE_LOCATION = "00000000-0000-0000-0000-00000000d411", "trading", "eastasia"
DNS_ZONE, DNS_RECORD = "engine.example.internal.", "spot.engine.example.internal"
# moto's documented placeholder credentials: only ever sent to the moto server on loopback
MOTO_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": AWS_REGION, "AWS_EC2_METADATA_DISABLED": "true"}

# Probes a loaded machine can keep against real processes: on 2 cores at load 20 and more, a replica still answers
# its status within 300 ms, where 25 ms timeouts called healthy replicas down (issue 11). The configuration wants the
# protection window at least ten detections long (interval x failure_threshold 3 = 1.2 s), hence 12 s.
LOADED_PROBE_INTERVAL, LOADED_PROBE_TIMEOUT, LOADED_PROTECTION = "400ms", "300ms", "12s"
# How long a test waits for something that takes well under a second on an idle machine: only a bug lasts longer.
GENEROUS = 60.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = GENEROUS, poll: float = 0.1) -> float:
    """Poll `condition` until it is truthy and return the seconds waited; AssertionError naming `what` when
    `timeout` runs out. Tests wait on the state they need, never for a fixed time, so a busy machine only makes
    them slower."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - began


@dataclass
class Testbed:
    __test__ = False  # not a pytest test class
    base: Path
    engine: str = "spot"
    protection: str = "20s"
    probe_interval: str = "500ms"
    probe_timeout: str = "300ms"
    provider_interval: str = "1s"
    min_failover_interval: str = "1h"
    flap_window: str = "30m"
    lease_ttl: str = "5s"
    approval: str = "auto"
    step_deadline: str = "60s"  # policy.step_deadline: scales every step's deadline (announce: 1/6 of it)
    store: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    moto_url: str = ""
    aws_instance: str = ""
    dns_zone_id: str = ""
    gcp_url: str = ""
    azure_url: str = ""
    aws_health_api: bool = False  # aws-hk reads the AWS Health fake (the drill turns it on; other tests keep EC2 only)
    aws_health_urls: tuple[str, ...] = ()
    aws_health: AwsHealthFake | None = None
    gcp: GcpComputeFake | None = None
    azure: AzureComputeFake | None = None
    replicas: ReplicaCluster | None = None
    config_path: Path = Path()
    _stack: ExitStack = field(default_factory=ExitStack)
    _moto: Any = None

    # ---- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Testbed:
        self.base.mkdir(parents=True, exist_ok=True)
        os.environ.update(MOTO_ENV)
        self._start_moto()
        self._start_fakes()
        self._start_replicas()
        self.write_config()
        return self

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def env(self) -> dict[str, str]:
        """Environment for a child process (the CLI, a daemon) that talks to this testbed."""
        return {**os.environ, **MOTO_ENV, "FAILOVER_CONFIG": str(self.config_path)}

    # ---- clouds ---------------------------------------------------------------------------------------------

    def _start_moto(self) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._moto = server
        self._stack.callback(server.stop)
        host, port = server.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        ec2 = boto3.client("ec2", region_name=AWS_REGION, endpoint_url=self.moto_url)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        started = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="c6i.4xlarge",
                                    Placement={"AvailabilityZone": AWS_ZONE})
        self.aws_instance = started["Instances"][0]["InstanceId"]
        route53 = boto3.client("route53", region_name="us-east-1", endpoint_url=self.moto_url)
        zone = route53.create_hosted_zone(Name=DNS_ZONE, CallerReference=uuid.uuid4().hex,
                                          HostedZoneConfig={"Comment": "failover drill", "PrivateZone": False})
        self.dns_zone_id = zone["HostedZone"]["Id"].split("/")[-1]

    def _start_fakes(self) -> None:
        self.gcp = GcpComputeFake(GCP_PROJECT, GCP_REGION, (GCP_ZONE,))
        self.gcp.add_instance("spot-engine-gcp", GCP_ZONE)
        self.azure = AzureComputeFake(AZURE_SUBSCRIPTION, AZURE_GROUP, AZURE_LOCATION)
        self.azure.add_vm("spot-engine-azure", "1")
        gcp_server, azure_server = FakeServer(self.gcp).start(), FakeServer(self.azure).start()
        self._stack.callback(gcp_server.stop)
        self._stack.callback(azure_server.stop)
        self.gcp_url, self.azure_url = gcp_server.url, azure_server.url
        self.aws_health = AwsHealthFake("us-east-1")
        active, passive = FakeServer(self.aws_health).start(), FakeServer(self.aws_health.standby("us-east-2")).start()
        self._stack.callback(active.stop)
        self._stack.callback(passive.stop)
        self.aws_health_urls = (active.url, passive.url)

    def renew(self, tag: str) -> Path:
        """Fresh replicas (aws primary again) and a fresh store under `tag`, same clouds: one testbed serves many
        independent runs."""
        if self.replicas is not None:
            self.replicas.close()
        self.store = f"sqlite:///{self.base / f'failover-state-{tag}.db'}"
        self._start_replicas(tag)
        return self.write_config()

    def _start_replicas(self, tag: str = "") -> None:
        cluster = ReplicaCluster(self.base / f"replicas{'-' + tag if tag else ''}", [
            ReplicaSpec(f"{self.engine}-aws", "aws", primary=True),
            ReplicaSpec(f"{self.engine}-gcp", "gcp"),
            ReplicaSpec(f"{self.engine}-azure", "azure"),
        ], engine=self.engine)
        self._stack.callback(cluster.close)
        cluster.start()
        self.replicas = cluster

    # ---- faults: what a lost data centre looks like from outside ---------------------------------------------

    def impair_aws(self, impaired: bool = True) -> None:
        """moto reports the zone impaired and the instance's status checks failed (as AWS does, minutes late)."""
        from moto.core import DEFAULT_ACCOUNT_ID  # type: ignore[attr-defined]
        from moto.ec2.models import ec2_backends
        from moto.ec2.models.instances import Instance

        for zone in ec2_backends[DEFAULT_ACCOUNT_ID][AWS_REGION].zones[AWS_REGION]:
            if zone.name == AWS_ZONE:
                zone.state = "impaired" if impaired else "available"
        patched = "_drill_original_status"
        if impaired and patched not in vars(Instance):
            original: Any = vars(Instance)["system_status"]
            sick = self.aws_instance

            def system_status(instance: Any) -> Any:
                if instance.id == sick and instance.state_code == 16:
                    return {"Status": "impaired", "Details": [{"Name": "reachability", "Status": "failed"}]}
                return original.fget(instance)

            setattr(Instance, patched, original)
            setattr(Instance, "system_status", property(system_status))  # noqa: B010 - patching a class property
            self._stack.callback(self.impair_aws, False)
        elif not impaired and patched in vars(Instance):
            setattr(Instance, "system_status", vars(Instance)[patched])  # noqa: B010
            delattr(Instance, patched)

    def post_aws_health(self, posted: bool = True, at: float | None = None) -> str | None:
        """AWS Health posts (or closes) an open EC2 issue for the site's zone, as its status page does, late. Returns
        what it did, or None when there was nothing to close."""
        assert self.aws_health is not None
        if posted:
            self.aws_health.add_event(AWS_REGION, AWS_ZONE, "EC2", "open", at)
            return f"AWS Health: EC2 issue posted for {AWS_ZONE}"
        closed = [event.arn for event in self.aws_health.open_events() if event.zone == AWS_ZONE]
        for arn in closed:
            self.aws_health.end_event(arn, at)
        return f"AWS Health: EC2 issue closed for {AWS_ZONE}" if closed else None

    def lose_aws(self, *, kill: bool = False) -> None:
        """The primary's data centre goes dark: its replica stops answering (frozen, or killed) and AWS's API
        reports the zone and the instance impaired."""
        assert self.replicas is not None
        name = f"{self.engine}-aws"
        if kill:
            self.replicas.kill(name)
        else:
            self.replicas.pause(name)
        self.impair_aws(True)

    def restore_aws(self) -> None:
        assert self.replicas is not None
        self.impair_aws(False)
        self.replicas.resume(f"{self.engine}-aws")

    # ---- configuration --------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        assert self.replicas is not None
        gcp_url, azure_url = self.gcp_url, self.azure_url
        name = self.engine
        return {
            "version": 1,
            "display_timezone": "Asia/Hong_Kong",
            "store": self.store or f"sqlite:///{self.base / 'failover-state.db'}",
            "require_multi_cloud": True,
            "control_token_file": str(self.replicas.token_file),
            "sites": {
                "aws-hk": {"provider": "aws", "region": AWS_REGION, "zones": [AWS_ZONE], "endpoint_url": self.moto_url,
                           **self._aws_health()},
                "gcp-hk": {"provider": "gcp", "region": GCP_REGION, "zones": [GCP_ZONE], "project": GCP_PROJECT,
                           "endpoint_url": gcp_url},
                "azure-hk": {"provider": "azure", "region": AZURE_LOCATION, "zones": ["1"],
                             "subscription": AZURE_SUBSCRIPTION, "resource_group": AZURE_GROUP,
                             "endpoint_url": azure_url},
            },
            "probes": {"interval": self.probe_interval, "timeout": self.probe_timeout,
                       "vantage_points": ["aws-hk", "gcp-hk", "azure-hk"], "provider_interval": self.provider_interval},
            "policy": {"failure_threshold": 3, "quorum": 2, "flap_count": 3, "flap_window": self.flap_window,
                       "max_lag_on_failover": 0, "min_failover_interval": self.min_failover_interval,
                       "approval": self.approval, "prefer_other_provider": True, "step_deadline": self.step_deadline},
            "protection_window": {"duration": self.protection, "allow": ["cancel", "post_only", "add_margin"]},
            "engines": {
                name: {
                    "primary": f"{name}-aws",
                    "replicas": {
                        f"{name}-aws": {"site": "aws-hk", "instance": self.aws_instance,
                                        "control_url": self.replicas.url(f"{name}-aws")},
                        f"{name}-gcp": {"site": "gcp-hk", "instance": "spot-engine-gcp",
                                        "control_url": self.replicas.url(f"{name}-gcp")},
                        f"{name}-azure": {"site": "azure-hk", "instance": "spot-engine-azure",
                                          "control_url": self.replicas.url(f"{name}-azure")},
                    },
                    "dns": {"provider": "aws", "zone_id": self.dns_zone_id, "record": DNS_RECORD, "ttl": 30,
                            "endpoint_url": self.moto_url},
                },
            },
            "notifications": {"stdout": True},
            "daemon": {"listen": "127.0.0.1:0", "lease_ttl": self.lease_ttl},
            **self.extra,
        }

    def _aws_health(self) -> dict[str, Any]:
        """The aws-hk options that read the AWS Health fake: every provider poll, stale after ten of them."""
        if not self.aws_health_api:
            return {}
        return {"health_api": True, "signal_interval": self.provider_interval,
                "signal_stale_after": f"{10 * parse_duration(self.provider_interval):g}s",
                "health_endpoint_urls": list(self.aws_health_urls)}

    def write_config(self) -> Path:
        self.config_path = self.base / "failover.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False), encoding="utf-8")
        return self.config_path


@contextmanager
def testbed(base: Path, **options: Any) -> Iterator[Testbed]:
    bed = Testbed(base, **options)
    try:
        yield bed.start()
    finally:
        bed.close()
