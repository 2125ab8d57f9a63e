"""What the controller tells the world: events for timelines and logs, and announcements for people."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TextIO


class EventKind(StrEnum):
    VERDICT = "verdict"  # a subject's verdict changed
    DETECTION = "detection"  # the primary of an engine was found unable to serve
    ACTION = "action"  # decide() asked for something
    STEP = "step"  # a runbook step finished (or failed)
    PHASE = "phase"  # a trading phase changed (with its announcement)
    INCIDENT = "incident"  # opened, proposed, needs_human, closed
    PAGE = "page"  # a human is needed


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    kind: EventKind
    engine: str | None
    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)


class Notifier(ABC):
    @abstractmethod
    def publish(self, event: Event) -> None:
        """Deliver one event; must not raise (a failing webhook must not stop a failover)."""


class EventLog(Notifier):
    """Keeps every event in memory: the simulator's timeline and tests read it."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event) -> None:
        self.events.append(event)


class Announcer(Notifier):
    """Prints phase announcements and pages to a stream, for people watching a terminal or a log."""

    def __init__(self, stream: TextIO | None = None, kinds: frozenset[EventKind] = frozenset(
            {EventKind.PHASE, EventKind.PAGE, EventKind.INCIDENT})) -> None:
        self._stream = stream or sys.stdout
        self._kinds = kinds

    def publish(self, event: Event) -> None:
        if event.kind in self._kinds:
            print(event.message, file=self._stream, flush=True)


class Fanout(Notifier):
    def __init__(self, *notifiers: Notifier) -> None:
        self.notifiers = list(notifiers)

    def publish(self, event: Event) -> None:
        for notifier in self.notifiers:
            try:
                notifier.publish(event)
            except Exception:  # one broken channel must not silence the others
                continue
