"""The Compute fakes with a caller's permissions: every call needs its permission, as the real APIs check it, and
each cloud's permission-asking API answers from the same grant. For testing the shipped policy files
(configs/iam/) through `failover plan --check-permissions`.

- `GcpComputeIamFake(granted=...)`: `granted` is a custom role's `includedPermissions`. Serves `POST .../zones/{z}/
  instances/{i}/testIamPermissions` and Resource Manager's `POST /v1/projects/{p}:testIamPermissions` (the granted
  subset of what was asked, `{}` when none); a call without its permission is 403 `forbidden`.
- `AzureComputeIamFake(actions=..., not_actions=...)`: a custom role's `Actions` / `NotActions` (wildcards allowed).
  Serves the permissions API on the resource group and on each VM (`.../providers/Microsoft.Authorization/
  permissions`); a call without its action is 403 `AuthorizationFailed`.

`load_gcp_role(path)` and `load_azure_role(path)` read the shipped files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from orchestrator.testbed.fakes._http import FakeRequest, FakeResponse
from orchestrator.testbed.fakes.azure import AzureComputeFake
from orchestrator.testbed.fakes.gcp import GcpComputeFake
from providers.permissions.actions import allows

GCP_TEST_INSTANCE = re.compile(r"^/compute/v1/projects/[^/]+/zones/[^/]+/instances/[^/]+/testIamPermissions$")
GCP_TEST_PROJECT = re.compile(r"^/v1/projects/[^/:]+:testIamPermissions$")
GCP_NEEDS = (  # (method, path pattern under /compute/v1/projects/{p}/, permission)
    ("GET", re.compile(r"regions/[^/]+$"), "compute.regions.get"),
    ("GET", re.compile(r"zones/[^/]+$"), "compute.zones.get"),
    ("GET", re.compile(r"zones/[^/]+/instances/[^/]+$"), "compute.instances.get"),
    ("POST", re.compile(r"zones/[^/]+/instances/[^/]+/start$"), "compute.instances.start"),
    ("POST", re.compile(r"zones/[^/]+/instances/[^/]+/stop$"), "compute.instances.stop"),
    ("GET", re.compile(r"zones/[^/]+/operations/[^/]+$"), "compute.zoneOperations.get"),
)
AZURE_PERMISSIONS = re.compile(
    r"^/subscriptions/[^/]+/resourcegroups/[^/]+(?:/providers/Microsoft\.Compute/+virtualMachines/[^/]+)?"
    r"/providers/Microsoft\.Authorization/permissions$", re.IGNORECASE)
AZURE_VM = re.compile(r"/providers/Microsoft\.Compute/virtualMachines(?:/[^/]+(?:/(?P<action>[A-Za-z]+))?)?$",
                      re.IGNORECASE)
AZURE_NEEDS = {"start": "start/action", "deallocate": "deallocate/action", "poweroff": "powerOff/action"}


def load_gcp_role(path: Path) -> list[str]:
    """The `includedPermissions` of a custom role file (`gcloud iam roles create --file`)."""
    return [str(p) for p in yaml.safe_load(path.read_text())["includedPermissions"]]


def load_azure_role(path: Path) -> tuple[list[str], list[str]]:
    """The `Actions` and `NotActions` of a custom role definition (`az role definition create`)."""
    role = json.loads(path.read_text())
    return [str(a) for a in role["Actions"]], [str(a) for a in role.get("NotActions", [])]


class GcpComputeIamFake(GcpComputeFake):
    def __init__(self, *args: Any, granted: Iterable[str], **kwargs: Any) -> None:
        self.granted = frozenset(granted)
        super().__init__(*args, **kwargs)

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        if request.method == "POST" and (GCP_TEST_INSTANCE.match(request.path) or GCP_TEST_PROJECT.match(request.path)):
            asked = [str(p) for p in request.json().get("permissions", [])]
            granted = [p for p in asked if p in self.granted]
            return FakeResponse(200, {"permissions": granted} if granted else {})
        below = request.path.split("/compute/v1/projects/", 1)[-1].split("/", 1)[-1]
        for method, pattern, permission in GCP_NEEDS:
            if request.method == method and pattern.match(below) and permission not in self.granted:
                return FakeResponse(403, self._error_body(
                    403, f"Required '{permission}' permission for 'projects/{self.project}/{below}'"))
        return super()._dispatch(request)


class AzureComputeIamFake(AzureComputeFake):
    def __init__(self, *args: Any, actions: Iterable[str], not_actions: Iterable[str] = (), **kwargs: Any) -> None:
        self.actions, self.not_actions = tuple(actions), tuple(not_actions)
        super().__init__(*args, **kwargs)

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        if request.method == "GET" and AZURE_PERMISSIONS.match(request.path):
            return FakeResponse(200, {"value": [{"actions": list(self.actions), "notActions": list(self.not_actions),
                                                 "dataActions": [], "notDataActions": []}]})
        match = AZURE_VM.search(request.path)
        if match is not None:
            verb = AZURE_NEEDS.get((match["action"] or "").lower(), "read")
            action = f"Microsoft.Compute/virtualMachines/{verb}"
            if not allows(self.actions, self.not_actions, action):
                return FakeResponse(403, {"error": {"code": "AuthorizationFailed", "message": (
                    f"The client does not have authorization to perform action '{action}' over scope "
                    f"'{request.path}' or the scope is invalid.")}})
        return super()._dispatch(request)
