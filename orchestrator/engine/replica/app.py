"""The reference replica's HTTP surface (docs/design.md §7, `orchestrator/engine/openapi.yaml`): a Starlette app.

Handlers only translate: they check the bearer token, parse the body with the strict models of
`orchestrator.engine.protocol`, call `Node`, and render its answer. Order of checks on a mutating call, chosen so
that a refused call never changes anything: token (401) → body (422) → epoch, for control calls (409
`stale_epoch`) → role (409 `fenced` / `not_primary`) → idempotency (a repeat answers the first seq) → phase and
book (409 with the admission reason). In synchronous mode an order is answered only once a standby on another
cloud holds it; otherwise 503 `replication_timeout`: the entry stays journaled here, and a retry with the same
`client_order_id` answers its original seq as soon as the copy exists (or times out again), so a client that
retries until it gets 200 or 409 never creates a duplicate nor loses an acknowledged order. Control calls take
effect here at once and answer the status without waiting for replication: a halt must not depend on a standby
being up, and the phase entry reaches the standbys like any other (a promoted standby journals a halt anyway).
`POST /v1/phase` on a standby stamps the epoch and nothing else (its phase is its primary's): that is how the
orchestrator fences a primary it cannot reach, since a standby acknowledges no primary below its epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.core.model import Role
from orchestrator.engine import protocol as wire
from orchestrator.engine.protocol import Reason
from orchestrator.engine.replica.book import Refusal
from orchestrator.engine.replica.node import Node
from orchestrator.engine.replica.peers import PEERS, PeersRequest
from orchestrator.engine.replica.rejoin import Rejoiner
from orchestrator.engine.replica.replication import Replicator
from orchestrator.engine.replica.serving import BodyTooLarge, Limits, read_body

Body = TypeVar("Body", bound=BaseModel)

MAX_WAIT = 10.0
MAX_LIMIT = 5000
PROMOTE_POLLS = 3  # a promotion asks its peers again when they were set anew meanwhile, at most this often


class Invalid(Exception):
    """A body or query parameter that does not parse; answered 422 with its detail."""


class Refused(JSONResponse):
    """A refusal `{"accepted": false, "reason": ...}`; keeps its reason for the counters of `/v1/stats`. With
    `close`, the connection is closed after it, and the unread rest of a body with it (see `BodyTooLarge`)."""

    def __init__(self, refusal: Refusal, *, close: bool = False, **extra: Any) -> None:
        super().__init__({"accepted": False, "reason": refusal.reason, **extra}, status_code=refusal.status_code,
                         headers={"connection": "close"} if close else None)
        self.reason = refusal.reason


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads` hook: a key given twice is an error (parsers disagree on which one wins)."""
    body: dict[str, Any] = {}
    for key, value in pairs:
        if key in body:
            raise Invalid(f"{key}: given more than once")
        body[key] = value
    return body


_refusal = Refused


def _query_number(request: Request, name: str, default: float, low: float, high: float) -> float:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise Invalid(f"{name}: not a number") from None
    if not low <= value <= high:
        raise Invalid(f"{name}: must be between {low:g} and {high:g}")
    return value


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = _query_number(request, name, default, low, high)
    if value != int(value):
        raise Invalid(f"{name}: must be an integer")
    return int(value)


class ReplicaApp:
    def __init__(self, node: Node, *, peer_interval: float = 0.2, limits: Limits = Limits()) -> None:
        self.node = node
        self.peer_interval = peer_interval
        self.limits = limits
        self.replicator: Replicator | None = None
        self.rejoiner: Rejoiner | None = None

    def authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expected = self.node.settings.token.encode()
        return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected)

    def may_read(self, request: Request) -> bool:
        """Journal and trades expose accounts and orders: the token, unless started with `--public-read`."""
        return self.node.settings.public_read or self.authorized(request)

    async def _parse(self, request: Request, model: type[Body]) -> Body:
        """The body as `model` (BodyTooLarge past the cap, Invalid otherwise), duplicate keys refused."""
        raw = await read_body(request, self.limits.max_body)
        try:
            body = model.model_validate_json(raw)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise Invalid(f"{where}: {first['msg']}" if where else first["msg"]) from None
        try:  # valid, so small and shallow: safe to parse again
            json.loads(raw, object_pairs_hook=_refuse_duplicate_keys)
        except (ValueError, RecursionError) as error:
            raise Invalid(f"not plain JSON: {error}") from None
        return body

    def _mutating(self, kind: str, handler: Callable[[Request], Awaitable[Response]]) \
            -> Callable[[Request], Awaitable[Response]]:
        """Token check, 422 on a bad body, and the accepted/refused counters of `GET /v1/stats`."""

        async def endpoint(request: Request) -> Response:
            if not self.authorized(request):
                response: Response = _refusal(Refusal(Reason.UNAUTHORIZED, 401))
            else:
                try:
                    response = await handler(request)
                except Invalid as error:
                    response = _refusal(Refusal(Reason.INVALID, 422), detail=str(error))
                except BodyTooLarge as error:
                    response = _refusal(Refusal(Reason.TOO_LARGE, 413), close=error.close, detail=str(error))
            if isinstance(response, Refused):
                self.node.refused[response.reason] += 1
            else:
                self.node.accepted[kind] += 1
            return response

        return endpoint

    # --- control ------------------------------------------------------------------------------------------

    def _control_refusal(self, refused: Refusal) -> Response:
        """A refused control call; `stale_epoch` says the highest epoch seen, so the caller knows who is newer."""
        if refused.reason == Reason.STALE_EPOCH:
            return _refusal(refused, epoch=self.node.epoch)
        if refused.reason == Reason.EPOCH_TOO_FAR:
            return _refusal(refused, epoch=self.node.epoch,
                            detail=f"an epoch may exceed the highest seen ({self.node.epoch}) by at most 2**50")
        return _refusal(refused)

    def _status_or(self, refused: Refusal | None) -> Response:
        return JSONResponse(self.node.status()) if refused is None else self._control_refusal(refused)

    async def status(self, request: Request) -> Response:
        return JSONResponse(self.node.status())

    async def phase(self, request: Request) -> Response:
        body = await self._parse(request, wire.PhaseRequest)
        async with self.node.control_lock:
            return self._status_or(self.node.stamp(body.epoch, body.phase, body.until))

    async def fence(self, request: Request) -> Response:
        body = await self._parse(request, wire.FenceRequest)
        async with self.node.control_lock:
            return self._status_or(self.node.fence_at(body.epoch))

    async def promote(self, request: Request) -> Response:
        """Checked once to start, then, after asking every peer for its status (which may take the whole poll
        timeout when one is in a dark data centre), decided again at commit against the state then: a fence or a
        higher epoch that was answered meanwhile is never undone by this older request."""
        body = await self._parse(request, wire.PromoteRequest)
        node = self.node
        async with node.control_lock:
            refused = node.see_epoch(body.epoch) or node.can_promote(body.force)
            if refused is not None or node.is_primary():
                return self._status_or(refused)
            was_fenced = node.role is Role.FENCED
        assert self.replicator is not None
        for attempt in range(PROMOTE_POLLS):
            asked = list(self.replicator.urls)
            await self.replicator.poll_peers(timeout=node.settings.promote_poll_timeout)
            async with node.control_lock:
                if self.replicator.urls != asked and attempt + 1 < PROMOTE_POLLS:
                    continue  # the peers were set anew while we asked (`POST /v1/peers`): ask the new ones
                refused = node.promotion_refused(body.epoch, body.force, was_fenced)
                if refused is not None or node.is_primary():  # or another promotion at this epoch came first
                    return self._status_or(refused)
                rival = self.replicator.rival_primary()
                if rival is not None and rival[0] >= node.epoch:  # it would not see itself deposed
                    return _refusal(Refusal(Reason.STALE_EPOCH), epoch=rival[0], peer=rival[1])
                peer_seq, peer = self.replicator.highest_peer()
                if not body.force and peer_seq > node.journal.last_seq:
                    return _refusal(Refusal(Reason.BEHIND), last_seq=node.journal.last_seq, peer_seq=peer_seq,
                                    peer=peer)
                node.promote()
                return JSONResponse(node.status())
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt always decides

    async def rejoin(self, request: Request) -> Response:
        """`POST /v1/rejoin`: the epoch rule, then refused on a primary (it is fenced first), then the rebuild of
        `rejoin` started in the background; the answer is the rejoin's record (`GET /v1/rejoin` follows it)."""
        body = await self._parse(request, wire.RejoinRequest)
        assert self.rejoiner is not None
        async with self.node.control_lock:
            refused = self.node.see_epoch(body.epoch)
            if refused is not None:
                return self._control_refusal(refused)
            if self.node.is_primary():
                return _refusal(Refusal(Reason.IS_PRIMARY), detail="a primary is fenced before it rejoins")
            return JSONResponse(self.rejoiner.start(body.epoch, body.primary.rstrip("/")))

    def _peers_body(self) -> dict[str, Any]:
        node = self.node
        return {"replica": node.settings.replica_id, "epoch": node.epoch,
                "peers_epoch": node.control.peers_epoch if node.control.peers is not None else None,
                "source": "control" if node.control.peers is not None else "flags", "peers": list(node.peer_urls())}

    async def set_peers(self, request: Request) -> Response:
        """`POST /v1/peers`: the epoch checked (`Node.set_peers`), the list persisted, then used at once by
        discovery, catch-up and the next promotion's poll (`Replicator.use_peers`); answers the list now."""
        body = await self._parse(request, PeersRequest)
        assert self.replicator is not None
        async with self.node.control_lock:  # not in the middle of a promotion's two halves' decisions
            refused = self.node.set_peers(body.epoch, tuple(body.peers))
            if refused is not None:
                if refused.reason == Reason.STALE_EPOCH:
                    return _refusal(refused, epoch=self.node.peers_floor())
                return self._control_refusal(refused)
            self.replicator.use_peers(self.node.peer_urls())
            return JSONResponse(self._peers_body())

    async def peers(self, request: Request) -> Response:
        if not self.may_read(request):
            return _refusal(Refusal(Reason.UNAUTHORIZED, 401))
        return JSONResponse(self._peers_body())

    async def rejoin_status(self, request: Request) -> Response:
        if not self.may_read(request):
            return _refusal(Refusal(Reason.UNAUTHORIZED, 401))
        assert self.rejoiner is not None
        return JSONResponse(self.rejoiner.to_wire())

    async def snapshot(self, request: Request) -> Response:
        if not self.may_read(request):
            return _refusal(Refusal(Reason.UNAUTHORIZED, 401))
        return JSONResponse(self.node.snapshot())

    # --- order entry ---------------------------------------------------------------------------------------

    async def _submit(self, kind: str, body: BaseModel) -> Response:
        outcome = self.node.submit(kind, body.model_dump(mode="json"))
        account = getattr(body, "account", None)
        if isinstance(outcome, Refusal):
            self.node.count_refusal(account, str(outcome.reason))
            return _refusal(outcome)
        if not await self.node.wait_replicated(outcome.seq):
            self.node.count_refusal(account, str(Reason.REPLICATION_TIMEOUT))
            return _refusal(Refusal(Reason.REPLICATION_TIMEOUT, 503), seq=outcome.seq)
        return JSONResponse({"accepted": True, "seq": outcome.seq})

    async def orders(self, request: Request) -> Response:
        return await self._submit("order", await self._parse(request, wire.OrderRequest))

    async def cancel(self, request: Request) -> Response:
        return await self._submit("cancel", await self._parse(request, wire.CancelRequest))

    async def margin(self, request: Request) -> Response:
        return await self._submit("margin", await self._parse(request, wire.MarginRequest))

    # --- reads -------------------------------------------------------------------------------------------

    async def journal(self, request: Request) -> Response:
        if not self.may_read(request):
            return _refusal(Refusal(Reason.UNAUTHORIZED, 401))
        try:
            after = _query_int(request, "after", 0, 0, 2**62)
            limit = _query_int(request, "limit", 1000, 1, MAX_LIMIT)
            wait = _query_number(request, "wait", 0.0, 0.0, MAX_WAIT)
        except Invalid as error:
            return _refusal(Refusal(Reason.INVALID, 422), detail=str(error))
        standby = request.query_params.get("replica")
        if standby is not None:
            if not self.authorized(request):
                return _refusal(Refusal(Reason.UNAUTHORIZED, 401))
            cloud = request.query_params.get("cloud", "")
            refused = self.node.check_fetch(standby, cloud, after, request.query_params.get("hash", ""))
            if refused is not None:
                return _refusal(refused)
        entries = self.node.journal.after(after, limit)
        if not entries and wait > 0:
            await self.node.appended.wait(wait)
            entries = self.node.journal.after(after, limit)
        return JSONResponse([entry.to_wire() for entry in entries])

    async def trades(self, request: Request) -> Response:
        if not self.may_read(request):
            return _refusal(Refusal(Reason.UNAUTHORIZED, 401))
        try:
            after = _query_int(request, "after", 0, 0, 2**62)
            limit = _query_int(request, "limit", 1000, 1, MAX_LIMIT)
        except Invalid as error:
            return _refusal(Refusal(Reason.INVALID, 422), detail=str(error))
        return JSONResponse([trade.to_wire() for trade in self.node.ledger.trades_after(after, limit)])

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.node.stats())

    # --- assembly ------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Peers are polled once before the first request, so that a deposed primary restarting fences itself
        before it can take an order; then discovery and replication run in the background."""
        async with httpx.AsyncClient() as client:
            self.replicator = Replicator(self.node, client, interval=self.peer_interval)
            self.rejoiner = Rejoiner(self.node, client, follow=self.replicator.learn_primary)
            self.rejoiner.resume()  # a rejoin a crash cut short goes on (fenced again before anything is served)
            await self.replicator.poll_peers()
            self.replicator.check_deposed()
            tasks = [asyncio.create_task(self.replicator.watch()), asyncio.create_task(self.replicator.follow())]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await self.rejoiner.stop()
                await asyncio.gather(*tasks, return_exceptions=True)

    def routes(self) -> list[Route]:
        return [
            Route(wire.STATUS, self.status, methods=["GET"]),
            Route(wire.PHASE, self._mutating("phase", self.phase), methods=["POST"]),
            Route(wire.PROMOTE, self._mutating("promote", self.promote), methods=["POST"]),
            Route(wire.FENCE, self._mutating("fence", self.fence), methods=["POST"]),
            Route(wire.ORDERS, self._mutating("order", self.orders), methods=["POST"]),
            Route(wire.CANCEL, self._mutating("cancel", self.cancel), methods=["POST"]),
            Route(wire.MARGIN, self._mutating("margin", self.margin), methods=["POST"]),
            Route(wire.JOURNAL, self.journal, methods=["GET"]),
            Route(wire.TRADES, self.trades, methods=["GET"]),
            Route(wire.STATS, self.stats, methods=["GET"]),
            Route(wire.SNAPSHOT, self.snapshot, methods=["GET"]),
            Route(wire.REJOIN, self._mutating("rejoin", self.rejoin), methods=["POST"]),
            Route(wire.REJOIN, self.rejoin_status, methods=["GET"]),
            Route(PEERS, self._mutating("peers", self.set_peers), methods=["POST"]),
            Route(PEERS, self.peers, methods=["GET"]),
        ]


def create_app(node: Node, *, peer_interval: float = 0.2, limits: Limits = Limits()) -> Starlette:
    replica = ReplicaApp(node, peer_interval=peer_interval, limits=limits)
    return Starlette(routes=replica.routes(), lifespan=replica.lifespan)
