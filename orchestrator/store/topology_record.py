"""The topology as `failover replace` changed it, kept in the store beside the operator's configuration file.

Why in the store and not in the file: the configuration is the operator's (reviewed, versioned, deployed by their
own tooling); a replica replaced at 3 a.m. must be known at once to every daemon, cron run and operator, and the
file catches up when a human edits it. So the store records, per replica, where it runs now (site, instance,
control URL) and what it replaced; `failover status` says where that differs from the file (`differences`).

It also holds the progress of a replacement under way (`replacing`), so that a command killed between "instance
created" and "rejoined" resumes with the same idempotency key and never makes a second machine.

One versioned document (`topology`), changed only by compare-and-set like the quarantine book
(`store.documents`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.core.model import Replica, Topology
from orchestrator.errors import StoreError
from orchestrator.store.documents import Document, DocumentStore

__all__ = ["TOPOLOGY_KEY", "RecordedReplica", "TopologyRecordStore", "differences", "topology_book",
           "with_recorded"]

TOPOLOGY_KEY = "topology"
TOPOLOGY: Document[dict[str, Any]] = Document(
    TOPOLOGY_KEY, "recorded topology",
    lambda value: {key: dict(part) if isinstance(part, Mapping) else part for key, part in value.items()},
    lambda document: document)


@dataclass(frozen=True)
class RecordedReplica:
    """Where a replaced replica runs now, and what it replaced (`previous`: site, instance, control_url)."""

    engine: str
    replica: str
    site: str
    instance: str
    control_url: str
    at: float
    generation: int = 1  # how many times this replica was replaced
    previous: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "instance": self.instance, "control_url": self.control_url, "at": self.at,
                "generation": self.generation, "previous": dict(self.previous)}

    @classmethod
    def from_json(cls, engine: str, replica: str, body: Mapping[str, Any]) -> RecordedReplica:
        return cls(engine, replica, str(body["site"]), str(body["instance"]), str(body["control_url"]),
                   float(body["at"]), int(body.get("generation", 1)), dict(body.get("previous") or {}))


def _slot(engine: str, replica: str) -> str:
    return f"{engine}/{replica}"


class TopologyRecordStore(DocumentStore):
    """The recorded topology of a store; to be mixed into `StateStore` (until then, `topology_book(store)`)."""

    def recorded_replicas(self) -> dict[tuple[str, str], RecordedReplica]:
        """Every replica `failover replace` moved, by (engine, replica)."""
        document, _ = TOPOLOGY.read(self)
        found: dict[tuple[str, str], RecordedReplica] = {}
        try:
            for slot, body in (document.get("replicas") or {}).items():
                engine, replica = str(slot).split("/", 1)
                found[(engine, replica)] = RecordedReplica.from_json(engine, replica, body)
            return found
        except (KeyError, TypeError, ValueError) as error:
            raise StoreError(f"state {TOPOLOGY_KEY!r}: unreadable recorded replica ({error!r})") from None

    def replace_progress(self, engine: str, replica: str) -> dict[str, Any] | None:
        """The replacement of `replica` under way (its key, site, state, instance), or None."""
        document, _ = TOPOLOGY.read(self)
        found = (document.get("replacing") or {}).get(_slot(engine, replica))
        return dict(found) if isinstance(found, Mapping) else None

    def replacements_under_way(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every replacement not finished yet, by (engine, replica): its progress as `replace_progress` gives it."""
        document, _ = TOPOLOGY.read(self)
        return {(engine, replica): dict(body) for slot, body in (document.get("replacing") or {}).items()
                if isinstance(body, Mapping) for engine, _, replica in [str(slot).partition("/")]}

    def put_replace_progress(self, engine: str, replica: str, progress: Mapping[str, Any] | None) -> None:
        """Store (or, with None, drop) the progress of a replacement."""
        def change(document: dict[str, Any]) -> dict[str, Any]:
            replacing = {**(document.get("replacing") or {})}
            if progress is None:
                replacing.pop(_slot(engine, replica), None)
            else:
                replacing[_slot(engine, replica)] = dict(progress)
            return {**document, "replacing": replacing}
        TOPOLOGY.change(self, change)

    def record_replacement(self, recorded: RecordedReplica) -> None:
        """The replica runs at its new place from now on; its progress record is dropped in the same write."""
        slot = _slot(recorded.engine, recorded.replica)

        def change(document: dict[str, Any]) -> dict[str, Any]:
            replicas = {**(document.get("replicas") or {}), slot: recorded.to_json()}
            replacing = {key: value for key, value in (document.get("replacing") or {}).items() if key != slot}
            return {**document, "replicas": replicas, "replacing": replacing}
        TOPOLOGY.change(self, change)


class _Bound(TopologyRecordStore):
    """A store that does not mix the record in yet, seen through it."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def get_state(self, key: str) -> tuple[dict[str, Any], int] | None:
        found: tuple[dict[str, Any], int] | None = self._store.get_state(key)
        return found

    def put_state(self, key: str, value: Mapping[str, Any], expected_version: int | None) -> int:
        return int(self._store.put_state(key, value, expected_version))

    def audit(self, actor: str, action: str, detail: Mapping[str, Any], at: float) -> Any:
        return self._store.audit(actor, action, detail, at)


def topology_book(store: Any) -> TopologyRecordStore:
    """The store's recorded topology, whether `StateStore` mixes `TopologyRecordStore` in or not."""
    return store if isinstance(store, TopologyRecordStore) else _Bound(store)


def with_recorded(topology: Topology, recorded: Mapping[tuple[str, str], RecordedReplica]) -> Topology:
    """The configured topology with each recorded replica at its recorded site, instance and control URL (a
    recorded replica whose engine, replica or site the configuration no longer has is left out)."""
    engines = dict(topology.engines)
    for (engine_name, replica_name), record in recorded.items():
        engine = engines.get(engine_name)
        if engine is None or record.site not in topology.sites:
            continue
        replicas = tuple(dataclasses.replace(replica, site=record.site, instance=record.instance,
                                             control_url=record.control_url)
                         if replica.name == replica_name else replica for replica in engine.replicas)
        engines[engine_name] = dataclasses.replace(engine, replicas=replicas)
    return dataclasses.replace(topology, engines=engines)


def differences(topology: Topology, recorded: Mapping[tuple[str, str], RecordedReplica]) -> list[str]:
    """One line per recorded replica that the configuration file still places elsewhere (what `failover status`
    prints, so the operator knows what to copy into the file)."""
    lines = []
    for (engine_name, replica_name), record in sorted(recorded.items()):
        engine = topology.engines.get(engine_name)
        configured: Replica | None = next((r for r in engine.replicas if r.name == replica_name), None) \
            if engine is not None else None
        if configured is None:
            lines.append(f"{engine_name}/{replica_name}: recorded on {record.site} ({record.instance}) by failover "
                         "replace, but the configuration has no such replica")
            continue
        changed = [f"{field} {getattr(configured, field)} -> {getattr(record, field)}"
                   for field in ("site", "instance", "control_url")
                   if getattr(configured, field) != getattr(record, field)]
        if changed:
            lines.append(f"{engine_name}/{replica_name}: replaced, the configuration still says "
                         f"{'; '.join(changed)} (update the file)")
    return lines
