"""The engine control protocol on the wire (docs/design.md §7): paths, bodies, refusal reasons and time format.

The normative description is `openapi.yaml` next to this module; `tests/engine/test_engine_openapi.py` checks that
the reference replica serves exactly the routes the document lists and that its answers validate against it.
This module holds what both ends need in code: the request bodies as strict pydantic models (the replica parses
with them; the document's request schemas say the same), the reason strings, and ISO-8601 conversion, because
our code counts time in float seconds while the wire carries UTC strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from importlib import resources
from typing import Any, Literal, TypedDict

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.core.model import Phase, ReplicaStatus, Role

TOKEN_ENV = "FAILOVER_CONTROL_TOKEN"

STATUS = "/v1/status"
PHASE = "/v1/phase"
PROMOTE = "/v1/promote"
FENCE = "/v1/fence"
ORDERS = "/v1/orders"
CANCEL = "/v1/cancel"
MARGIN = "/v1/margin"
JOURNAL = "/v1/journal"
TRADES = "/v1/trades"
STATS = "/v1/stats"
SNAPSHOT = "/v1/snapshot"
REJOIN = "/v1/rejoin"


class Reason(StrEnum):
    """Refusal reasons of our own; phase refusals are the strings of `orchestrator.core.phases.ADMISSION`."""

    UNAUTHORIZED = "unauthorized"  # 401
    INVALID = "invalid"  # 422, with a `detail`
    STALE_EPOCH = "stale_epoch"  # 409, with the highest `epoch` seen
    FENCED = "fenced"  # 409
    NOT_PRIMARY = "not_primary"  # 409
    BEHIND = "behind"  # 409 to a promotion, with `last_seq`, `peer_seq`, `peer`
    WOULD_CROSS = "would_cross"  # 409: a post-only order that would take liquidity
    UNKNOWN_ORDER = "unknown_order"  # 422: cancel of an order this engine never acknowledged
    ORDER_CLOSED = "order_closed"  # 409: cancel of an order already filled or killed
    DUPLICATE = "duplicate_client_order_id"  # 409: a reused id with different fields
    DIVERGED = "diverged"  # 409 to a replication fetch whose journal is not a prefix of ours
    REPLICATION_TIMEOUT = "replication_timeout"  # 503: durable here, not yet on another cloud
    EPOCH_TOO_FAR = "epoch_too_far"  # 409: more than MAX_EPOCH_JUMP above the highest epoch seen
    TOO_LARGE = "too_large"  # 413: a request body over the replica's cap
    IS_PRIMARY = "is_primary"  # 409 to a rejoin: a primary is fenced before it is rebuilt as a standby
    REJOINING = "rejoining"  # 409 to a promotion while the replica's journal is being rebuilt


# Epochs are `fencing token * 10**6 + n`, the token an etcd create revision (up to ~10**9 on a long-lived
# cluster), so a first epoch near 10**15 is normal. Above 2**53 - 1 a JSON number is not exact everywhere; and a
# replica refuses a jump of more than 2**50 over the highest epoch it has seen, since one absurd epoch (10**30)
# would otherwise be persisted and block every legitimate one for good.
MAX_EPOCH = 2**53 - 1
MAX_EPOCH_JUMP = 2**50


_DECIMAL = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,18})?$")


def parse_decimal(text: str, what: str) -> Decimal:
    """A strictly positive plain decimal (`"12.50"`); exponents, signs and floats are refused."""
    if not _DECIMAL.match(text):
        raise ValueError(f"{what} must be a positive decimal string such as '12.5'")
    try:
        value = Decimal(text)
    except InvalidOperation as error:  # pragma: no cover - the pattern already excludes these
        raise ValueError(f"{what} is not a decimal") from error
    if value <= 0:
        raise ValueError(f"{what} must be greater than zero")
    return value


def to_wire_time(at: float) -> str:
    """`2024-05-01T03:00:00.250000Z`: UTC, microseconds, always the same width so strings sort as times."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_wire_time(text: str) -> float:
    """Seconds since the epoch from an ISO-8601 string that names its offset (`Z` or `+08:00`)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; send UTC such as 2024-05-01T03:00:00Z")
    return moment.timestamp()


class _Body(BaseModel):
    """Request bodies: unknown fields are errors and JSON types are not coerced (`"5"` is not an epoch)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EpochBody(_Body):
    epoch: int = Field(ge=0, le=MAX_EPOCH)


class FenceRequest(EpochBody):
    """`POST /v1/fence`."""


class PromoteRequest(EpochBody):
    """`POST /v1/promote`; `force` promotes even while behind a reachable peer."""

    force: bool = False


class PhaseRequest(EpochBody):
    """`POST /v1/phase`; `until` is the end of the protection window, informative in other phases."""

    phase: Phase
    until: str | None = None

    @field_validator("until")
    @classmethod
    def _until_in_utc(cls, value: str | None) -> str | None:
        """Any offset is accepted; the replica keeps and answers UTC, so the same instant is the same string."""
        return None if value is None else to_wire_time(from_wire_time(value))


class RejoinRequest(EpochBody):
    """`POST /v1/rejoin`: rebuild this replica as a standby of the primary at `primary` (its base URL)."""

    primary: str = Field(min_length=8, max_length=2048, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


class OrderRequest(_Body):
    """`POST /v1/orders`; the key of an order is `(account, client_order_id)`."""

    client_order_id: str = Field(min_length=1, max_length=64)
    account: str = Field(min_length=1, max_length=64)
    market: str = Field(min_length=1, max_length=32)
    side: Literal["buy", "sell"]
    type: Literal["limit", "market"]
    price: str | None = None
    qty: str
    post_only: bool = False
    tif: Literal["gtc", "ioc", "fok"] = "gtc"

    @model_validator(mode="after")
    def _consistent(self) -> OrderRequest:
        parse_decimal(self.qty, "qty")
        if self.type == "limit":
            if self.price is None:
                raise ValueError("a limit order needs a price")
            parse_decimal(self.price, "price")
        elif self.price is not None:
            raise ValueError("a market order has no price")
        if self.post_only and (self.type != "limit" or self.tif != "gtc"):
            raise ValueError("post_only needs type limit and tif gtc")
        return self


class CancelRequest(_Body):
    """`POST /v1/cancel`."""

    client_order_id: str = Field(min_length=1, max_length=64)
    account: str = Field(min_length=1, max_length=64)


class MarginRequest(_Body):
    """`POST /v1/margin`; `request_id` (our extension) makes a retry harmless, as client_order_id does."""

    account: str = Field(min_length=1, max_length=64)
    amount: str
    request_id: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("amount")
    @classmethod
    def _positive(cls, value: str) -> str:
        parse_decimal(value, "amount")
        return value


class StandbySeen(TypedDict):
    """One standby as a primary reports it in `standbys`."""

    cloud: str
    seq: int
    age_s: float  # since its last acknowledging fetch, on the primary's monotonic clock


class StatusBody(TypedDict):
    """`GET /v1/status` as the reference replica answers it (`Status` in openapi.yaml). The first seven fields are
    the protocol every engine serves (`status_from_wire`); the rest are extensions an engine may leave out. Ages
    are seconds on the replica's monotonic clock, so they mean the same whatever its wall clock says."""

    replica: str
    role: str
    epoch: int
    phase: str
    phase_until: str | None
    last_seq: int
    applied_seq: int
    journal_epoch: int  # the epoch its journal is vouched at (a fenced replica: its epoch when fenced)
    cloud: str
    synchronous: bool
    following: str | None  # standby: the replica it copies from
    replicated_seq: int | None  # primary: the highest seq a standby on another cloud holds
    error: str | None  # why replication stopped (a diverged journal)
    unreplicated_age_s: float | None  # synchronous primary: age of the oldest entry not held on another cloud
    replication_timeouts: int  # writes answered 503 replication_timeout since start
    standbys: dict[str, StandbySeen] | None  # primary: who fetches, from which cloud, how far, how long ago
    primary_contact_age_s: float | None  # standby: since its last fetch from a primary it follows
    rejoining: bool  # its journal is being rebuilt from a primary (`POST /v1/rejoin`)


def status_from_wire(body: Mapping[str, Any]) -> ReplicaStatus:
    """The core's `ReplicaStatus` from a `GET /v1/status` body; raises KeyError/ValueError on a bad body."""
    until = body["phase_until"]
    return ReplicaStatus(
        replica=str(body["replica"]),
        role=Role(body["role"]),
        epoch=int(body["epoch"]),
        phase=Phase(body["phase"]),
        phase_until=None if until is None else from_wire_time(str(until)),
        last_seq=int(body["last_seq"]),
        applied_seq=int(body["applied_seq"]),
    )


def load_openapi() -> dict[str, Any]:
    """The protocol document shipped with the package, parsed."""
    text = resources.files("orchestrator.engine").joinpath("openapi.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    if not isinstance(document, dict):  # pragma: no cover - the file is ours
        raise ValueError("openapi.yaml is not a mapping")
    return document
