"""An AWS Health API fake (`DescribeEvents` only), in the API's own JSON protocol, because moto has none.

The Health API speaks AWS JSON 1.1: every call is `POST /` with `X-Amz-Target: AWSHealth_20160804.<Operation>` and a
JSON body; an error is a 4xx/5xx with `{"__type": "<Code>", "message": ...}`, which botocore turns into a
`ClientError` with that code. Served here: `DescribeEvents` with the filter fields the adapter sends (`services`,
`regions`, `availabilityZones`, `eventStatusCodes`, `eventTypeCategories`), pages of `maxResults` (10 to 100, default
100 as AWS) joined by an opaque `nextToken`, and AWS's errors for a bad token or a bad page size.

AWS serves the API from two regional endpoints, active and passive (us-east-1, then us-east-2). A fake stands for
one of them (`region`); `AwsHealthFake.standby(...)` makes the other one over the same events, so a test can break
one endpoint and read from the other. Each fake refuses a request signed for another region, as AWS does, which is
how a client that signs for us-east-1 while talking to us-east-2 is caught.

Events are injected in-process: `add_event(region, zone, service, status, start)` (zone None: a region-wide event)
returns the event's ARN; `end_event(arn, end)` closes it. Faults: `fail_next` / `hang_next` of `FakeApi`.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.testbed.fakes._http import FakeApi, FakeRequest, FakeResponse

TARGET = "AWSHealth_20160804."
ACCOUNT = "123456789012"
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/health/aws4_request")
CODES = {400: "ValidationException", 403: "AccessDeniedException", 429: "ThrottlingException",
         500: "InternalFailure", 503: "ServiceUnavailableException"}


@dataclass(frozen=True)
class HealthEvent:
    arn: str
    service: str
    event_type_code: str
    category: str  # issue | scheduledChange | accountNotification | investigation
    region: str
    zone: str | None
    status: str  # open | upcoming | closed
    start: float
    end: float | None = None
    updated: float = 0.0

    def shape(self) -> dict[str, Any]:
        """The event as `DescribeEvents` lists it (times as epoch seconds, as the JSON protocol carries them)."""
        shaped: dict[str, Any] = {
            "arn": self.arn, "service": self.service, "eventTypeCode": self.event_type_code,
            "eventTypeCategory": self.category, "region": self.region, "startTime": self.start,
            "lastUpdatedTime": self.updated or self.start, "statusCode": self.status, "eventScopeCode": "PUBLIC",
        }
        if self.zone is not None:
            shaped["availabilityZone"] = self.zone
        if self.end is not None:
            shaped["endTime"] = self.end
        return shaped


class EventBook:
    """The events both endpoints serve (AWS replicates them between its active and passive regions)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[HealthEvent] = []
        self._ids = itertools.count(1)


class AwsHealthFake(FakeApi):
    """One endpoint of the AWS Health API. `AwsHealthFake("us-east-1")`; `.standby("us-east-2")` for the other."""

    def __init__(self, region: str = "us-east-1", book: EventBook | None = None) -> None:
        super().__init__()
        self.region = region
        self.book = book if book is not None else EventBook()
        self.pages_served = 0

    def standby(self, region: str = "us-east-2") -> AwsHealthFake:
        """The other endpoint, over the same events."""
        return AwsHealthFake(region, self.book)

    # --- events, for tests and drills ------------------------------------------------------------------------------

    def add_event(
        self,
        region: str,
        zone: str | None,
        service: str = "EC2",
        status: str = "open",
        start: float | None = None,
        *,
        event_type_code: str | None = None,
        category: str | None = None,
    ) -> str:
        """Post an event and return its ARN. `zone` None: the event covers the region (no `availabilityZone`)."""
        started = time.time() if start is None else start
        with self.book.lock:
            number = next(self.book._ids)
            code = event_type_code or f"AWS_{service.upper()}_OPERATIONAL_ISSUE"
            arn = f"arn:aws:health:{region}::event/{service}/{code}/{code}_{number:06d}"
            kind = category or ("scheduledChange" if status == "upcoming" else "issue")
            self.book.events.append(HealthEvent(arn, service, code, kind, region, zone, status, started,
                                                updated=started))
        return arn

    def end_event(self, arn: str, end: float | None = None) -> None:
        """Close an event (`statusCode: closed`, `endTime`); KeyError for an ARN never posted."""
        ended = time.time() if end is None else end
        with self.book.lock:
            for index, event in enumerate(self.book.events):
                if event.arn == arn:
                    self.book.events[index] = replace(event, status="closed", end=ended, updated=ended)
                    return
        raise KeyError(arn)

    def clear_events(self) -> None:
        with self.book.lock:
            self.book.events.clear()

    def open_events(self) -> list[HealthEvent]:
        with self.book.lock:
            return [event for event in self.book.events if event.status != "closed"]

    # --- the protocol ----------------------------------------------------------------------------------------------

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        target = request.headers.get("x-amz-target", "")
        if request.method != "POST" or not target.startswith(TARGET):
            return self._error(400, "UnknownOperationException", f"no operation for {request.method} {target!r}")
        signed = SCOPE.search(request.headers.get("authorization", ""))
        if signed is not None and signed.group("region") != self.region:
            return self._error(400, "InvalidSignatureException",
                               f"Credential should be scoped to a valid region, not '{signed.group('region')}'")
        operation = target[len(TARGET):]
        if operation != "DescribeEvents":
            return self._error(400, "UnknownOperationException", f"{operation} is not served by this fake")
        return self._describe_events(request.json())

    def _describe_events(self, body: dict[str, Any]) -> FakeResponse:
        size = body.get("maxResults", 100)
        if not isinstance(size, int) or not 10 <= size <= 100:
            return self._error(400, "ValidationException", "maxResults must be between 10 and 100")
        token = body.get("nextToken")
        offset = 0
        if token is not None:
            found = re.fullmatch(r"page-(\d+)", str(token))
            if found is None:
                return self._error(400, "InvalidPaginationToken", "the nextToken is not valid")
            offset = int(found.group(1))
        with self.book.lock:
            matching = [event for event in self.book.events if _matches(event, body.get("filter") or {})]
        matching.sort(key=lambda event: event.updated, reverse=True)  # AWS: most recently updated first
        page = matching[offset:offset + size]
        answer: dict[str, Any] = {"events": [event.shape() for event in page]}
        if offset + size < len(matching):
            answer["nextToken"] = f"page-{offset + size}"
        self.pages_served += 1
        return FakeResponse(200, answer, {"Content-Type": "application/x-amz-json-1.1"})

    def _error(self, status: int, code: str, message: str) -> FakeResponse:
        return FakeResponse(status, {"__type": code, "message": message},
                            {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code})

    def _error_body(self, status: int, message: str) -> Any:
        return {"__type": CODES.get(status, "InternalFailure"), "message": message}


def _matches(event: HealthEvent, wanted: dict[str, Any]) -> bool:
    """AWS's filter semantics: every given field must match; within a field, any of its values."""
    fields = {"services": event.service, "regions": event.region, "eventStatusCodes": event.status,
              "eventTypeCategories": event.category, "eventTypeCodes": event.event_type_code, "eventArns": event.arn}
    for key, value in fields.items():
        if wanted.get(key) and value not in wanted[key]:
            return False
    zones = wanted.get("availabilityZones")
    return not zones or event.zone in zones


__all__ = ["AwsHealthFake", "EventBook", "HealthEvent"]
