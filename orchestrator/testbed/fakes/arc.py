"""A Route 53 ARC cluster data-plane fake (`route53-recovery-cluster`, AWS JSON 1.0, target `ToggleCustomerAPI`).

Serves `GetRoutingControlState`, `UpdateRoutingControlState` and `UpdateRoutingControlStates` as `POST /` with the
operation in `X-Amz-Target`. Errors are `{"__type": "...Exception", "message": ...}`: an unknown control 404
`ResourceNotFoundException`; an update that would leave fewer than `min_on` controls On (the cluster's assertion
safety rule, "at least one cell serves") 409 `ConflictException`, and nothing changes.

A real cluster has five regional endpoints serving one state: serve one `ArcClusterFake` from several
`FakeServer`s, and stop one to play a lost region.
"""

from __future__ import annotations

from typing import Any

from orchestrator.testbed.fakes._http import FakeApi, FakeRequest, FakeResponse

TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
         409: "ConflictException", 429: "ThrottlingException", 500: "InternalServerException",
         503: "EndpointTemporarilyUnavailableException"}


class ArcClusterFake(FakeApi):
    def __init__(self, controls: dict[str, str] | None = None, min_on: int = 1) -> None:
        super().__init__()
        self.initial = dict(controls or {})
        self.min_on = min_on
        self.reset()

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.controls: dict[str, str] = dict(self.initial)  # ARN -> "On" / "Off"
            self.updates = 0

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        operation = request.headers.get("x-amz-target", "").split(".", 1)[-1]
        body = request.json()
        if operation == "GetRoutingControlState":
            arn = str(body.get("RoutingControlArn", ""))
            if arn not in self.controls:
                return self._error(404, f"Routing control {arn} not found")
            return FakeResponse(200, {"RoutingControlArn": arn, "RoutingControlState": self.controls[arn],
                                      "RoutingControlName": arn.rsplit("/", 1)[-1]})
        if operation in ("UpdateRoutingControlState", "UpdateRoutingControlStates"):
            entries = body.get("UpdateRoutingControlStateEntries") or [body]
            return self._update(entries)
        return self._error(400, f"unknown operation {operation!r}")

    def _update(self, entries: list[dict[str, Any]]) -> FakeResponse:
        after = dict(self.controls)
        for entry in entries:
            arn, state = str(entry.get("RoutingControlArn", "")), str(entry.get("RoutingControlState", ""))
            if arn not in after:
                return self._error(404, f"Routing control {arn} not found")
            if state not in ("On", "Off"):
                return self._error(400, f"RoutingControlState must be On or Off, not {state!r}")
            after[arn] = state
        if sum(1 for state in after.values() if state == "On") < self.min_on:
            return self._error(409, f"the update violates a safety rule: at least {self.min_on} control(s) On")
        self.controls = after
        self.updates += 1
        return FakeResponse(200, {})

    def _error_body(self, status: int, message: str) -> Any:
        return {"__type": TYPES.get(status, "InternalServerException"), "message": message}

    def _error(self, status: int, message: str) -> FakeResponse:
        return FakeResponse(status, self._error_body(status, message))
