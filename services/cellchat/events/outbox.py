"""The outbox port: events waiting to be published, each next to the change it announces.

Why: an event must go out if and only if its change happened, and the store cannot write the
event and the change atomically (a conditional batch cannot span partitions; see DESIGN.md §3).
So a use case records the *intent* first, then makes the change; the relay (relay.py) publishes
an intent only once a `ChangeChecker` confirms the change exists, and drops it as never-happened
if the change is still missing after a grace period (the writer died between the two steps).

Rules:
- An `Intent` is a `CloudEvent` plus a `Check`: a small, serialisable description of the change
  (`Check.of("message", conversation_id="c1", seq=42)`) that only the checker interprets.
  `Check.UNCONDITIONAL` is for events that are facts by themselves (presence transitions decided
  in Redis): the relay publishes them without asking. Kinds the chat store is expected to answer:
  `message` (conversation_id, seq), `read_horizon` (conversation_id, user_id, read_seq),
  `conversation` (conversation_id).
- The intent's id is its event's id: recording the same event twice keeps one intent, and `done`
  takes those ids. The grace period counts from the event's `time`, which every intent has.
- `pending(limit)` returns at most `limit` intents, oldest first, that are not `done`;
  `done(ids)` forgets them (unknown ids are ignored). Adapters raise the chat store errors
  (`StoreUnavailable`, `StoreTimeout`) at their boundary.
- `ChangeChecker.exists(intent)` answers True (the change is there: publish), False (it is not
  there: wait, then drop after the grace period) or None (cannot tell now: wait, never drop).
- `to_json`/`from_json` give adapters one text column per intent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import attrs
import trio

from cellchat.chat.domain.errors import StoreUnavailable
from cellchat.events import envelope
from cellchat.events.envelope import CloudEvent

__all__ = [
    "ChangeChecker",
    "Check",
    "InMemoryOutbox",
    "Intent",
    "Outbox",
    "OutboxFull",
    "OutboxStatistics",
]

KeyValue = str | int


@attrs.frozen
class Check:
    """Which change an event announces: a kind and a key, opaque to everyone but the checker."""

    kind: str
    key: tuple[tuple[str, KeyValue], ...] = ()

    UNCONDITIONAL: ClassVar[Check]

    @classmethod
    def of(cls, kind: str, **key: KeyValue) -> Check:
        return cls(kind, tuple(sorted(key.items())))

    def __getitem__(self, name: str) -> KeyValue:
        for field, value in self.key:
            if field == name:
                return value
        raise KeyError(name)

    def as_dict(self) -> dict[str, KeyValue]:
        return dict(self.key)


Check.UNCONDITIONAL = Check("unconditional")


@attrs.frozen(eq=True, hash=False)
class Intent:
    event: CloudEvent
    check: Check

    def __attrs_post_init__(self) -> None:
        if self.event.time is None:
            raise ValueError("an intent's event needs a time (the grace period starts there)")

    @property
    def id(self) -> str:
        return self.event.id

    @property
    def recorded_at_ms(self) -> int:
        assert self.event.time is not None  # checked at construction
        return int(self.event.time.timestamp() * 1000)

    def to_json(self) -> str:
        check: dict[str, Any] = {"kind": self.check.kind, "key": self.check.as_dict()}
        return json.dumps(
            {"event": json.loads(envelope.encode(self.event)), "check": check},
            ensure_ascii=False, separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Intent:
        document = json.loads(text)
        check = document["check"]
        return cls(
            envelope.from_mapping(document["event"]),
            Check.of(check["kind"], **check["key"]),
        )


class Outbox(Protocol):
    async def record(self, intents: Sequence[Intent]) -> None:
        """Store the intents (all or none); an id already recorded is kept as it is."""
        ...

    async def pending(self, limit: int) -> list[Intent]:
        """At most `limit` intents not yet done, oldest first."""
        ...

    async def done(self, ids: Sequence[str]) -> None:
        """Forget these intents: published, or dropped as never-happened."""
        ...


class ChangeChecker(Protocol):
    async def exists(self, intent: Intent) -> bool | None:
        """True: the change is stored. False: it is not (yet). None: cannot tell now."""
        ...


class OutboxFull(StoreUnavailable):
    """The in-memory outbox holds `capacity` intents; the change is refused, not its event lost."""


@attrs.frozen
class OutboxStatistics:
    pending: int
    capacity: int


class InMemoryOutbox:
    """The outbox of the embedded (single-process) service and of the tests.

    Bounded: recording beyond `capacity` raises `OutboxFull`, so the use case fails (and is
    retried by its client) instead of its event silently going missing. Contents do not survive
    the process, like the embedded store itself.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._intents: dict[str, Intent] = {}

    async def record(self, intents: Sequence[Intent]) -> None:
        new = {intent.id: intent for intent in intents if intent.id not in self._intents}
        if len(self._intents) + len(new) > self._capacity:
            raise OutboxFull(f"the outbox holds {self._capacity} unpublished events")
        self._intents.update(new)
        await _checkpoint()

    async def pending(self, limit: int) -> list[Intent]:
        await _checkpoint()
        intents: list[Intent] = []
        for intent in self._intents.values():
            if len(intents) >= limit:
                break
            intents.append(intent)
        return intents

    async def done(self, ids: Sequence[str]) -> None:
        for intent_id in ids:
            self._intents.pop(intent_id, None)
        await _checkpoint()

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(pending=len(self._intents), capacity=self._capacity)


async def _checkpoint() -> None:
    await trio.lowlevel.checkpoint()
