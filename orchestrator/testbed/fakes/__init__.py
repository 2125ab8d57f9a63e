"""Local API-shaped fakes of the cloud APIs the adapters use, for tests, benchmarks and drills.

`GcpComputeFake` and `AzureComputeFake` answer in each API's own JSON shapes, so the real SDKs run their real code
paths against them. Serve one on a port with `FakeServer(api, port=...).start()` or from the command line:
`python -m orchestrator.testbed.fakes gcp --port 8081` (see `__main__.py` here); or hand `werkzeug_handler(api)`
to pytest-httpserver. Nothing here imports a cloud SDK.
"""

from orchestrator.testbed.fakes._http import FakeApi, FakeRequest, FakeResponse, FakeServer, Fault, werkzeug_handler
from orchestrator.testbed.fakes.azure import AzureComputeFake
from orchestrator.testbed.fakes.gcp import GcpComputeFake

__all__ = [
    "AzureComputeFake",
    "FakeApi",
    "FakeRequest",
    "FakeResponse",
    "FakeServer",
    "Fault",
    "GcpComputeFake",
    "werkzeug_handler",
]
