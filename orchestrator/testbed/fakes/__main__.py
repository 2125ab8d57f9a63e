"""Serve a fake cloud API on a port, for drills in another process: `python -m orchestrator.testbed.fakes CHOICE`.

    python -m orchestrator.testbed.fakes gcp --port 8081 --project exchange-prod --region asia-east2 \\
        --zone asia-east2-a --instance spot-engine-1
    python -m orchestrator.testbed.fakes azure --port 8082 --resource-group trading --location eastasia \\
        --zone 1 --instance spot-engine-1
    python -m orchestrator.testbed.fakes aws-health --port 8083 --standby         # us-east-1, and us-east-2
    python -m orchestrator.testbed.fakes dns-gcp --port 8084 --managed-zone engine-zone=engine.example.internal.
    python -m orchestrator.testbed.fakes dns-azure --port 8085 --resource-group dns --dns-zone engine.example.internal
    python -m orchestrator.testbed.fakes arc --port 8086 --endpoints 3 \\
        --control arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/hk=On

Point a site at it with `endpoint_url: http://127.0.0.1:PORT` (AWS Health: the site's `health_endpoint_urls`; DNS:
the DNS target's `endpoint_url`; ARC: `cluster_endpoints`); the adapters use placeholder credentials for a
plain-http loopback endpoint. Prints one line, `listening on URL`, per endpoint once it is ready (AWS Health with
`--standby`: the active endpoint, then the passive one over the same events; ARC: `--endpoints` lines, one cluster
state behind them all, as a real cluster's regional endpoints).

Faults and state from the drill, over HTTP: `POST /_fake/fault`, `/_fake/reset`, `GET /_fake/requests` on every
fake (see `_http.py`); the Compute fakes' own (`/_fake/zones/{zone}`, `/_fake/vms/{name}`, `/_fake/service-health`,
`/_fake/resource-health/{name}`, see `gcp.py`, `azure.py`); and here, for AWS Health, `POST /_fake/events
{"region", "zone", "service", "status", "start"}` (answers the event's `arn`), `POST /_fake/events/end {"arn",
"end"}` and `GET /_fake/events` (the open ones): the hk-2022 drill posts the Health event after the provider's
delay, as the status page confirmed late.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from orchestrator.testbed.fakes._http import FakeApi, FakeRequest, FakeResponse, FakeServer
from orchestrator.testbed.fakes.arc import ArcClusterFake
from orchestrator.testbed.fakes.aws_health import AwsHealthFake, EventBook
from orchestrator.testbed.fakes.azure import AzureComputeFake
from orchestrator.testbed.fakes.dns_azure import AzureDnsFake
from orchestrator.testbed.fakes.dns_gcp import CloudDnsFake
from orchestrator.testbed.fakes.gcp import GcpComputeFake

CHOICES = ["gcp", "azure", "aws-health", "dns-gcp", "dns-azure", "arc"]


class ServedHealthFake(AwsHealthFake):
    """`AwsHealthFake` with its events posted over HTTP (`/_fake/events`), for a drill in another process."""

    def standby(self, region: str = "us-east-2") -> ServedHealthFake:
        return ServedHealthFake(region, self.book)

    def _control_state(self, request: FakeRequest) -> FakeResponse:
        spec: dict[str, Any] = request.json() if request.method == "POST" else {}
        if request.path == "/_fake/events" and request.method == "POST":
            start = spec.get("start")
            arn = self.add_event(str(spec.get("region", "")), spec.get("zone"), str(spec.get("service", "EC2")),
                                 str(spec.get("status", "open")), None if start is None else float(start))
            return FakeResponse(200, {"arn": arn})
        if request.path == "/_fake/events/end" and request.method == "POST":
            end = spec.get("end")
            try:
                self.end_event(str(spec.get("arn", "")), None if end is None else float(end))
            except KeyError:
                return FakeResponse(404, {"error": f"no event {spec.get('arn')!r}"})
            return FakeResponse(200, {"ok": True})
        if request.path == "/_fake/events" and request.method == "GET":
            return FakeResponse(200, [event.shape() for event in self.open_events()])
        return super()._control_state(request)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.testbed.fakes", description=__doc__.splitlines()[0])
    parser.add_argument("cloud", choices=CHOICES)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--project", default="exchange-prod")
    parser.add_argument("--region", default=None, help="gcp: asia-east2; aws-health: us-east-1")
    parser.add_argument("--subscription", default="00000000-0000-0000-0000-000000000000")
    parser.add_argument("--resource-group", default=None, help="azure: trading; dns-azure: dns")
    parser.add_argument("--location", default="eastasia")
    parser.add_argument("--zone", action="append", help="repeatable; the first one holds the instances")
    parser.add_argument("--instance", action="append", default=[], help="repeatable; created running")
    parser.add_argument("--settle-reads", type=int, default=None,
                        help="reads before a start or stop completes (1), or a Cloud DNS change is done (2)")
    parser.add_argument("--retry-after", type=int, default=0, help="azure: Retry-After (s) of operations in progress")
    parser.add_argument("--standby", action="store_true", help="aws-health: also serve the passive endpoint")
    parser.add_argument("--managed-zone", action="append", default=[], metavar="NAME=DNS_NAME",
                        help="dns-gcp: repeatable")
    parser.add_argument("--dns-zone", action="append", default=[], metavar="NAME", help="dns-azure: repeatable")
    parser.add_argument("--control", action="append", default=[], metavar="ARN=On|Off", help="arc: repeatable")
    parser.add_argument("--min-on", type=int, default=1, help="arc: the safety rule's least number of controls On")
    parser.add_argument("--endpoints", type=int, default=1, help="arc: regional endpoints serving the cluster")
    return parser


def build(argv: list[str] | None = None) -> tuple[FakeApi, argparse.Namespace]:
    """The fake the arguments describe, and the arguments (`endpoints` then says how many servers to start)."""
    parser = _parser()
    args = parser.parse_args(argv)
    builders = {"gcp": _gcp, "azure": _azure, "aws-health": _health, "dns-gcp": _dns_gcp, "dns-azure": _dns_azure,
                "arc": _arc}
    try:
        return builders[args.cloud](args), args
    except ValueError as error:
        parser.error(str(error))  # one line, exit 2


def _gcp(args: argparse.Namespace) -> FakeApi:
    region = args.region or "asia-east2"
    zones = tuple(args.zone or [f"{region}-a"])
    gcp = GcpComputeFake(args.project, region, zones, settle_reads=args.settle_reads or 1)
    for name in args.instance:
        gcp.add_instance(name, zones[0])
    return gcp


def _azure(args: argparse.Namespace) -> FakeApi:
    zone = (args.zone or ["1"])[0]
    azure = AzureComputeFake(args.subscription, args.resource_group or "trading", args.location,
                             args.settle_reads or 1, retry_after=args.retry_after)
    for name in args.instance:
        azure.add_vm(name, zone)
    return azure


def _health(args: argparse.Namespace) -> FakeApi:
    return ServedHealthFake(args.region or "us-east-1", EventBook())


def _dns_gcp(args: argparse.Namespace) -> FakeApi:
    dns = CloudDnsFake(args.project, settle_reads=args.settle_reads or 2)
    for spec in args.managed_zone:
        name, _, dns_name = spec.partition("=")
        if not name or not dns_name:
            raise ValueError(f"--managed-zone {spec!r}: expected NAME=DNS_NAME")
        dns.add_zone(name, dns_name)
    return dns


def _dns_azure(args: argparse.Namespace) -> FakeApi:
    dns = AzureDnsFake(args.subscription, args.resource_group or "dns")
    for name in args.dns_zone:
        dns.add_zone(name)
    return dns


def _arc(args: argparse.Namespace) -> FakeApi:
    controls = {}
    for spec in args.control:
        arn, _, state = spec.rpartition("=")
        if not arn or state not in ("On", "Off"):
            raise ValueError(f"--control {spec!r}: expected ARN=On or ARN=Off")
        controls[arn] = state
    if args.endpoints < 1:
        raise ValueError(f"--endpoints {args.endpoints}: at least 1")
    return ArcClusterFake(controls, min_on=args.min_on)


def endpoints(api: FakeApi, args: argparse.Namespace) -> list[FakeApi]:
    """What each server serves, in order: the fake, then AWS Health's passive endpoint or ARC's other regions."""
    if isinstance(api, ServedHealthFake) and args.standby:
        return [api, api.standby("us-east-2" if api.region == "us-east-1" else "us-east-1")]
    if isinstance(api, ArcClusterFake):
        return [api] * args.endpoints
    return [api]


def main(argv: list[str] | None = None) -> int:
    api, args = build(argv)
    apis = endpoints(api, args)
    servers = [FakeServer(served, args.host, args.port if turn == 0 else 0) for turn, served in enumerate(apis)]
    for server in servers[1:]:
        server.start()
    for server in servers:
        print(f"listening on {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        servers[0].serve_forever()
    for server in servers[1:]:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
