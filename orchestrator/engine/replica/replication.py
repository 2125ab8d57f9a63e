"""How replicas find each other and copy the journal.

Discovery: every replica polls `GET /v1/status` of each peer it knows every `interval` seconds: the list the
orchestrator set at run time (`POST /v1/peers`, persisted: `peers`), else its `--peer` URLs and `--standby-of`.
A standby copies from the reachable *primary with the highest epoch* (ties: the longer journal, then the smaller
replica id); when a standby is promoted, the others see a primary with a higher epoch on their next poll and
switch to it, with no command from the orchestrator. A primary that sees another replica,
of any role, carrying a higher epoch fences itself (the replica's side of `core.runbook.deposed_primaries`): it
was deposed while it could not hear, and must not take one more write. A standby at a higher epoch is proof
enough: it is the orchestrator's halt that reached the others and not us (a primary stopped through its cloud,
then started again on its data directory after the failover, is primary at its old epoch; it polls its peers
once before it serves, and fences itself then).

Fencing by epoch: a standby replicates from (and so acknowledges) only a primary whose epoch is at least its
*floor*: the highest epoch it has seen, its own (persisted; the orchestrator raises it with `POST /v1/phase` on
the standby) or one a peer reported carrying (`Replicator.floor`; kept in memory only, since a journal is vouched
by what its own replica was told, never by hearsay). A primary below the floor is, for this standby, as good as
absent: the standby looks for another primary and meanwhile catches up as below. So once every standby on another
cloud carries epoch E, a primary below E, even alive and unaware, can no longer acknowledge an order in
synchronous mode; and one standby the halt missed does not become that primary's partner while another replica it
hears carries E (soak seed 2014: a standby frozen through the halt followed the old primary, started again at its
old epoch, acknowledged its order, and a later halt vouched that order at E for the other standby to copy). The
check is made right before each acknowledging fetch is sent, against the epoch the primary last reported (epochs
only grow, so that report can only understate it); a fetch already in flight when the floor rises acknowledges
only entries held before.

Catch-up (on unless `--no-peer-catch-up`): while no such primary is reachable (the old one is dead, fenced or
below our floor, the new one not yet promoted), a standby copies from the reachable peer with the longest journal
among those whose journal is vouched at our floor or above (`journal_epoch` in their status: the epoch, except
on a fenced replica, where it stays the epoch it had when fenced). This is what lets the runbook's
`wait_caught_up` succeed after the primary died, and it is safe because entries are hash-chained: a batch that
does not chain onto our journal is refused and its peer is never copied from again. A catch-up fetch never
names the fetcher (no `replica`), so it acknowledges nothing, even to a primary.

The rule that keeps a zombie out: once a standby carries epoch E, nothing written after that moment by a replica
below E enters its journal. A primary frozen while the orchestrator stamped the standbys with E, and thawed
later, still believes it is primary and journals (and matches) orders that nobody acknowledges; it is below E,
so no standby at E follows it or copies from it, and if the orchestrator then fences it at E its journal stays
vouched at its old epoch only. The check is made from the peer's last reported status when the source is chosen
and again right before each fetch leaves, and a batch that arrives after our own epoch rose above the source's is
dropped (the source may have written it after the stamp; the next fetch asks again under the new epoch). A
deposed primary's entries that no standby at E holds were never acknowledged in synchronous mode: they stay in
its journal only, for reconciliation (clients retry with the same `client_order_id`), and a promotion's `behind`
check ignores them (`highest_peer`).

Copying: a standby long-polls its primary with `GET /v1/journal?after=N&hash=H&replica=ID&cloud=C&wait=S` and the
control token. `after=N` with `hash` = the hash of its entry N is its acknowledgement that it holds 1..N durably,
because it asks for N+1 only after fsync'ing N; a primary checks the hash and wakes the writers waiting for a
copy on another cloud (see `Node.check_fetch`). A standby whose journal is not a prefix of its *primary's* is
diverged: it stops replicating and reports `error` in its status until it is rejoined (`rejoin`: its diverged
tail archived, its journal rebuilt from the primary; a diverged journal is never repaired silently). While a
rejoin runs, the replica is fenced and `follow` leaves it alone. A catch-up peer that disagrees is only skipped:
without a primary, nobody can say which of the two histories is the wrong one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from orchestrator.core.model import Role
from orchestrator.engine.protocol import JOURNAL, MAX_EPOCH_JUMP, STATUS, Reason
from orchestrator.engine.replica.journal import Entry
from orchestrator.engine.replica.node import Node

log = logging.getLogger("orchestrator.engine.replica")

FETCH_LIMIT = 500


class Replicator:
    def __init__(self, node: Node, client: httpx.AsyncClient, *, interval: float = 0.2, wait: float = 1.0) -> None:
        self.node = node
        self.client = client
        self.interval = interval
        self.wait = wait
        self.urls = list(node.peer_urls())
        self.seen: dict[str, dict[str, Any] | None] = dict.fromkeys(self.urls)
        self.mismatched: set[str] = set()  # catch-up peers whose history is not ours
        self.peer_epoch = 0  # the highest epoch a peer was seen carrying (see `floor`)
        self.wake = asyncio.Event()  # set to poll the peers now rather than after `interval`

    def use_peers(self, urls: tuple[str, ...]) -> None:
        """The peers set at run time (`POST /v1/peers`, already persisted by `Node.set_peers`), from now on: a
        promotion asks exactly these, `follow` chooses among them, and the watcher polls them at once. What was
        last seen of a peer that stays is kept; a peer dropped is forgotten (its old address may be a machine that
        is gone, or another's), and so is a primary a rejoin taught us, since the orchestrator's list names every
        replica where it runs now."""
        self.urls = list(urls)
        self.seen = {url: self.seen.get(url) for url in self.urls}
        self.mismatched &= set(self.urls)
        self.wake.set()

    def learn_primary(self, url: str) -> None:
        """A primary this replica was rejoined to (`rejoin`), polled and followed like a configured peer from now
        on; and the peers a diverged journal made us skip are worth another look."""
        url = url.rstrip("/")
        if url not in self.urls:
            self.urls.append(url)
            self.seen[url] = None
        self.mismatched.clear()

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.node.settings.token}"}

    async def _status(self, url: str, timeout: float) -> dict[str, Any] | None:
        try:
            response = await self.client.get(url + STATUS, timeout=timeout)
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        if response.status_code != 200 or not isinstance(body, dict):
            return None
        if body.get("replica") == self.node.settings.replica_id:
            return None  # ourselves, listed among the peers
        return body

    async def poll_peers(self, timeout: float = 0.5) -> dict[str, dict[str, Any] | None]:
        """Ask every peer for its status at once; an unreachable peer maps to None."""
        asked = list(self.urls)
        answers = await asyncio.gather(*(self._status(url, timeout) for url in asked))
        fresh = dict(zip(asked, answers, strict=True))
        # the peers may have been set anew while we waited: keep to the list now (a peer added since is unknown)
        self.seen = {url: fresh.get(url) for url in self.urls}
        self._learn()
        return self.seen

    def _carried(self, body: dict[str, Any]) -> int:
        """The epoch a peer reports carrying; 0 if it reports none we can take (malformed, or so far above ours
        that a control call bearing it would be refused as `epoch_too_far`)."""
        epoch = body.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch - self.node.epoch > MAX_EPOCH_JUMP:
            return 0
        return epoch

    def _learn(self) -> None:
        """Remember the highest epoch a peer carries; say so once when it rises above ours."""
        for url, body in self._reachable():
            carried = self._carried(body)
            if carried > max(self.peer_epoch, self.node.epoch) and self.node.role is Role.STANDBY:
                log.warning("%s: %s carries epoch %d (we carry %d): no primary below it is followed or copied "
                            "from now on", self.node.settings.replica_id, url, carried, self.node.epoch)
            self.peer_epoch = max(self.peer_epoch, carried)

    def floor(self) -> int:
        """The epoch below which no primary is followed, acknowledged or copied from: ours, or the highest a peer
        was seen carrying (now or since this process started). Epochs only grow, and every control call that
        raises one comes from an orchestrator that deposed whoever is below it (`core.runbook.deposed_primaries`),
        so a stamp that reached a peer and not us deposes a primary just the same. Never persisted, and never our
        `journal_epoch`: what we hold is vouched only by what we ourselves were told."""
        self._learn()
        return max(self.node.epoch, self.peer_epoch)

    def _reachable(self) -> list[tuple[str, dict[str, Any]]]:
        return [(url, body) for url, body in self.seen.items() if body is not None]

    def vouched(self, body: dict[str, Any]) -> bool:
        """Whether a peer's journal is vouched at our floor or above (a peer that does not report `journal_epoch`
        is judged by its epoch)."""
        return int(body.get("journal_epoch", body["epoch"])) >= self.floor()

    def may_catch_up_from(self, url: str) -> bool:
        body = self.seen.get(url)
        return body is not None and url not in self.mismatched and self.vouched(body)

    def highest_peer(self) -> tuple[int, str | None]:
        """The longest journal among the peers last seen that may hold acknowledged entries we lack, and whose it
        is: standbys of any epoch (one nobody stamped may have acknowledged a primary we no longer follow) and
        others vouched at our epoch; not a deposed primary's journal, whose extra entries nobody acknowledged."""
        best: tuple[int, str | None] = (0, None)
        for url, body in self._reachable():
            counts = body.get("role") == Role.STANDBY or self.vouched(body)
            if counts and int(body["last_seq"]) > best[0]:
                best = (int(body["last_seq"]), url)
        return best

    def rival_primary(self) -> tuple[int, str] | None:
        """The reachable primary (other than us) with the highest epoch, if any."""
        rivals = [(int(body["epoch"]), url) for url, body in self._reachable() if body.get("role") == Role.PRIMARY]
        return max(rivals) if rivals else None

    def acknowledgeable(self, url: str) -> bool:
        """Whether `url` was last seen as a primary this standby may acknowledge (its epoch is not below our
        floor)."""
        body = self.seen.get(url)
        return (body is not None and body.get("role") == Role.PRIMARY
                and self.node.acknowledges(int(body["epoch"])) and int(body["epoch"]) >= self.floor())

    def choose_source(self) -> tuple[str, bool] | None:
        """Where to copy from, and whether to acknowledge it (it is a primary we follow): see the module's
        docstring."""
        primaries = sorted((str(body["replica"]), url, int(body["epoch"]), int(body["last_seq"]))
                           for url, body in self._reachable() if self.acknowledgeable(url))
        if primaries:
            return max(primaries, key=lambda primary: (primary[2], primary[3]))[1], True
        if not self.node.settings.peer_catch_up:
            return None
        ahead = sorted((int(body["last_seq"]), url) for url, body in self._reachable()
                       if int(body["last_seq"]) > self.node.journal.last_seq and self.may_catch_up_from(url))
        return (ahead[-1][1], False) if ahead else None

    def check_deposed(self) -> None:
        """On a primary: fence ourselves if a peer carries an epoch above ours, whatever its role (see the
        module's docstring)."""
        if self.node.role is not Role.PRIMARY:
            return
        above = sorted(((self._carried(body), url, str(body.get("role"))) for url, body in self._reachable()
                        if self._carried(body) > self.node.epoch), reverse=True)
        if above:
            epoch, url, role = above[0]
            self.node.fence(f"deposed ({url} is {role} at epoch {epoch})")

    async def watch(self) -> None:
        while True:
            try:
                await self.poll_peers()
                self.check_deposed()
            except (KeyError, ValueError, TypeError) as error:  # a peer answered a malformed status
                log.warning("%s: peer poll failed: %r", self.node.settings.replica_id, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.interval)
            self.wake.clear()

    async def follow(self) -> None:
        while True:
            source = None
            if self.node.role is Role.STANDBY and self.node.error is None and not self.node.rejoining:
                try:
                    source = self.choose_source()
                except (KeyError, ValueError, TypeError) as error:
                    log.warning("%s: cannot choose a source: %r", self.node.settings.replica_id, error)
            if source is None or not await self.fetch_once(*source):
                await asyncio.sleep(self.interval)

    async def fetch_once(self, source: str, is_primary: bool) -> bool:
        """One fetch from `source`; True if it gave entries or an empty answer (so ask again at once).

        From a primary (`is_primary`): a long-poll that acknowledges what we hold, sent only if that primary's
        epoch is still not below ours, checked here with no await before the request leaves. From a catch-up
        peer: a plain read without `replica`, which acknowledges nothing, sent only if the peer's journal is still
        vouched at our epoch; the chain check of `Node.receive` tells whether its entries continue our journal.
        Either way, a batch that arrives after our floor rose above the source's epoch is dropped (see the
        module's docstring), and the caller asks again at once under the new floor."""
        node = self.node
        if not self._allowed(source, is_primary):
            return False  # our floor rose (or its status changed) since the source was chosen
        sent_at_floor = self.floor()
        node.following = source
        params: dict[str, str | int | float] = {"after": node.journal.last_seq, "limit": FETCH_LIMIT}
        if is_primary:
            params.update(hash=node.journal.last_hash, replica=node.settings.replica_id, cloud=node.settings.cloud,
                          wait=self.wait)
        try:
            response = await self.client.get(source + JOURNAL, params=params, headers=self._auth,
                                              timeout=self.wait + 2.0)
            body = response.json()
        except (httpx.HTTPError, ValueError):
            self.seen[source] = None
            return False
        if response.status_code == 409 and isinstance(body, dict) and body.get("reason") == Reason.DIVERGED:
            self._diverged(source, is_primary, f"it does not hold our entry {params['after']}")
            return False
        if response.status_code != 200 or not isinstance(body, list):
            self.seen[source] = None  # refused (token?) or gone: rediscover
            return False
        if node.role is not Role.STANDBY:
            return True  # promoted or fenced while waiting: these entries are no longer ours to take
        if self.floor() != sent_at_floor and not self._allowed(source, is_primary):
            return True  # our floor rose above the source while the fetch was out: it may have written these after
        if is_primary:
            node.primary_contact_at = node.monotonic()
        try:
            node.receive([Entry.from_wire(item) for item in body])
        except ValueError as error:
            self._diverged(source, is_primary, str(error))
            return False
        return is_primary or bool(body)

    def _allowed(self, source: str, is_primary: bool) -> bool:
        return self.acknowledgeable(source) if is_primary else self.may_catch_up_from(source)

    def _diverged(self, source: str, is_primary: bool, detail: str) -> None:
        if not is_primary:
            self.mismatched.add(source)
            log.warning("%s: not catching up from %s: %s", self.node.settings.replica_id, source, detail)
            return
        self.node.error = f"diverged from {source}: {detail}"
        log.error("%s: replication stopped: %s", self.node.settings.replica_id, self.node.error)
