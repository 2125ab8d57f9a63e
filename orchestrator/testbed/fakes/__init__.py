"""Local API-shaped fakes of the cloud APIs the adapters use, for tests, benchmarks and drills.

Each answers in its API's own shapes, so the real SDKs run their real code paths against it: `GcpComputeFake` and
`AzureComputeFake` (with Service Health, host errors and Resource Health), `AwsHealthFake` (moto has no Health API),
`CloudDnsFake` and `AzureDnsFake` (the DNS routers), `ArcClusterFake` (a Route 53 ARC cluster's data plane). Serve one
on a port with `FakeServer(api, port=...).start()` or, for a drill in another process, from the command line:
`python -m orchestrator.testbed.fakes gcp|azure|aws-health|dns-gcp|dns-azure|arc --port 8081` (see `__main__.py`);
or hand `werkzeug_handler(api)` to pytest-httpserver. Nothing here imports a cloud SDK.
"""

from orchestrator.testbed.fakes._http import FakeApi, FakeRequest, FakeResponse, FakeServer, Fault, werkzeug_handler
from orchestrator.testbed.fakes.arc import ArcClusterFake
from orchestrator.testbed.fakes.aws_health import AwsHealthFake
from orchestrator.testbed.fakes.azure import AzureComputeFake
from orchestrator.testbed.fakes.dns_azure import AzureDnsFake
from orchestrator.testbed.fakes.dns_gcp import CloudDnsFake
from orchestrator.testbed.fakes.gcp import GcpComputeFake

__all__ = [
    "ArcClusterFake",
    "AwsHealthFake",
    "AzureComputeFake",
    "AzureDnsFake",
    "CloudDnsFake",
    "FakeApi",
    "FakeRequest",
    "FakeResponse",
    "FakeServer",
    "Fault",
    "GcpComputeFake",
    "werkzeug_handler",
]
