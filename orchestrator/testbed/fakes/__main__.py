"""Serve a fake cloud API on a port, for drills: `python -m orchestrator.testbed.fakes gcp|azure [options]`.

    python -m orchestrator.testbed.fakes gcp --port 8081 --project exchange-prod --region asia-east2 \\
        --zone asia-east2-a --instance spot-engine-1
    python -m orchestrator.testbed.fakes azure --port 8082 --resource-group trading --location eastasia \\
        --zone 1 --instance spot-engine-1

Point a site at it with `endpoint_url: http://127.0.0.1:PORT`; the adapters use placeholder credentials for a
plain-http loopback endpoint. Inject faults from the drill with `POST /_fake/fault`, `/_fake/zones/{zone}`,
`/_fake/vms/{name}`, `/_fake/service-health`, `/_fake/resource-health/{name}` and friends (see
`orchestrator/testbed/fakes/_http.py`, `gcp.py`, `azure.py`). Prints one line, `listening on URL`, once ready.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from orchestrator.testbed.fakes._http import FakeApi, FakeServer
from orchestrator.testbed.fakes.azure import AzureComputeFake
from orchestrator.testbed.fakes.gcp import GcpComputeFake


def build(argv: list[str] | None = None) -> tuple[FakeApi, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.testbed.fakes", description=__doc__.splitlines()[0])
    parser.add_argument("cloud", choices=["gcp", "azure"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--project", default="exchange-prod")
    parser.add_argument("--region", default="asia-east2")
    parser.add_argument("--subscription", default="00000000-0000-0000-0000-000000000000")
    parser.add_argument("--resource-group", default="trading")
    parser.add_argument("--location", default="eastasia")
    parser.add_argument("--zone", action="append", help="repeatable; the first one holds the instances")
    parser.add_argument("--instance", action="append", default=[], help="repeatable; created running")
    parser.add_argument("--settle-reads", type=int, default=1, help="reads before a start or stop completes")
    parser.add_argument("--retry-after", type=int, default=0, help="azure: Retry-After (s) of operations in progress")
    args = parser.parse_args(argv)
    api: FakeApi
    if args.cloud == "gcp":
        zones = tuple(args.zone or [f"{args.region}-a"])
        gcp = GcpComputeFake(args.project, args.region, zones, settle_reads=args.settle_reads)
        for name in args.instance:
            gcp.add_instance(name, zones[0])
        api = gcp
    else:
        zone = (args.zone or ["1"])[0]
        azure = AzureComputeFake(args.subscription, args.resource_group, args.location, args.settle_reads,
                                 retry_after=args.retry_after)
        for name in args.instance:
            azure.add_vm(name, zone)
        api = azure
    return api, args


def main(argv: list[str] | None = None) -> int:
    api, args = build(argv)
    server = FakeServer(api, args.host, args.port)
    print(f"listening on {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
