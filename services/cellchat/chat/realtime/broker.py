"""The broker port: how replicas hand events to each other, and the in-process adapter.

Rules:
- Subjects are per user (`user_subject`): a replica subscribes to the subject of every user with
  at least one connection on it, and an event is published to the subjects of its recipients.
  Every replica then delivers to its own connections only.
- Delivery is at most once (Pub/Sub). A lost event is a gap the resume protocol closes: the
  client's next `subscribe` replays from storage. A broker that loses its connection tells the
  receiver (`interrupted`), which makes every local client reconnect and resume.
- `publish` never waits for recipients; `subscribe` returns only once the subscription is in
  effect (the resume protocol subscribes before it replays).
- The payload is an `Envelope`: the frame text, encoded once by the publisher and passed on
  unchanged, plus the (conversation, seq) key receivers use to drop duplicates.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

import attrs
import trio


class BrokerUnavailable(Exception):
    """The broker cannot be reached; new connections are refused with 503 meanwhile."""


@attrs.frozen(slots=True)
class Envelope:
    frame: str
    conversation_id: str = ""
    seq: int = 0  # > 0 only for `message.created`: the key duplicates are dropped by
    published_at: float = 0.0  # wall clock at publish, for the fan-out latency histogram
    #: `frame` as UTF-8, encoded once here so that no connection encodes it again.
    data: bytes = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "data", self.frame.encode())

    def to_wire(self) -> str:
        return f"{self.published_at:.6f} {self.seq} {self.conversation_id or '-'}\n{self.frame}"

    @classmethod
    def from_wire(cls, text: str) -> Envelope:
        header, _, frame = text.partition("\n")
        published, seq, cid = header.split(" ", 2)
        return cls(frame, "" if cid == "-" else cid, int(seq), float(published))

    @classmethod
    def now(cls, frame: str, conversation_id: str = "", seq: int = 0) -> Envelope:
        return cls(frame, conversation_id, seq, time.time())


def user_subject(cell_id: str, user_id: str) -> str:
    return f"cellchat:{cell_id}:user:{user_id}"


class Receiver(Protocol):
    """What a broker adapter hands messages to (the hub)."""

    def deliver(self, subject: str, envelope: Envelope) -> None: ...

    def interrupted(self) -> None: ...


class Broker(Protocol):
    @property
    def ready(self) -> bool: ...

    async def publish(self, subjects: Sequence[str], envelope: Envelope) -> None: ...

    async def subscribe(self, subject: str) -> None: ...

    async def unsubscribe(self, subject: str) -> None: ...


class InProcessBroker:
    """One replica, no broker process: publishing is handing the envelope to the hub."""

    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._subjects: set[str] = set()

    @property
    def ready(self) -> bool:
        return True

    async def publish(self, subjects: Sequence[str], envelope: Envelope) -> None:
        for subject in subjects:
            if subject in self._subjects:
                self._receiver.deliver(subject, envelope)
        await trio.lowlevel.checkpoint()

    async def subscribe(self, subject: str) -> None:
        self._subjects.add(subject)
        await trio.lowlevel.checkpoint()

    async def unsubscribe(self, subject: str) -> None:
        self._subjects.discard(subject)
        await trio.lowlevel.checkpoint()


@asynccontextmanager
async def open_broker(redis_url: str, receiver: Receiver) -> AsyncIterator[Broker]:
    """The Redis adapter when `redis_url` is set, else the in-process one."""
    if not redis_url:
        yield InProcessBroker(receiver)
        return
    from cellchat.chat.realtime.redis_broker import open_redis_broker

    async with open_redis_broker(redis_url, receiver) as broker:
        yield broker
