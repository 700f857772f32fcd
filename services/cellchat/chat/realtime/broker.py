"""The broker port: how replicas hand events to each other, and the in-process adapter.

Rules:
- Two kinds of subjects. A user's own subject (`user_subject`): a replica subscribes to it
  while the user has at least one connection there. The cell's subject (`cell_subject`): every
  chat replica of the cell subscribes to it for its whole life.
- An event for a few recipients (fewer than `CROWD`) is published to their user subjects, so it
  reaches only the replicas that serve them. An event for a crowd (a large group) is published
  ONCE, to the cell subject, with its recipients listed in the envelope; each replica hands it
  to the recipients connected there. Publishing a crowd's event per user would put one copy per
  member on every replica's single subscriber connection (a 5,000-member group: 5,000 copies of
  every message), which Redis ends by dropping the subscriber once its output buffer fills.
- Redis delivers what one subscriber connection receives in publish order, whichever channel
  it came on, so the two routes never reorder a conversation's events.
- Delivery is at most once (Pub/Sub). A lost event is a gap the resume protocol closes: the
  client's next `subscribe` replays from storage. A broker that loses its connection tells the
  receiver (`interrupted`), which makes every local client reconnect and resume.
- `publish` never waits for recipients; `subscribe` returns only once the subscription is in
  effect (the resume protocol subscribes before it replays).
- The payload is an `Envelope`: the frame text, encoded once by the publisher and passed on
  unchanged (framed once by each replica that receives it), plus the (conversation, seq) key
  receivers use to drop duplicates.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

import attrs
import trio

from cellchat.chat.realtime.wire import text_frame


class BrokerUnavailable(Exception):
    """The broker cannot be reached; new connections are refused with 503 meanwhile."""


#: From this many recipients on, an event goes to the cell subject once instead of to each
#: recipient's subject. Below it, the per-user copies cost less than every replica receiving it.
CROWD = 8


@attrs.frozen(slots=True)
class Envelope:
    frame: str
    conversation_id: str = ""
    seq: int = 0  # > 0 only for `message.created`: the key duplicates are dropped by
    published_at: float = 0.0  # wall clock at publish, for the fan-out latency histogram
    #: Who it is for, when it travels on the cell subject (empty on a user's subject).
    recipients: tuple[str, ...] = ()
    #: `frame` as a WebSocket text frame (header and UTF-8 text), built once here so that no
    #: connection encodes or frames it again.
    wire: bytes = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "wire", text_frame(self.frame.encode()))

    def to_wire(self) -> str:
        """`<published_at> <seq> <conversation or ->` newline [recipients as a JSON array,
        newline, when there are any] frame. Conversation ids are UUIDs (no spaces); user ids
        may hold any character, hence JSON for them."""
        header = f"{self.published_at:.6f} {self.seq} {self.conversation_id or '-'}"
        if self.recipients:
            return f"{header} *\n{json.dumps(self.recipients)}\n{self.frame}"
        return f"{header}\n{self.frame}"

    @classmethod
    def from_wire(cls, text: str) -> Envelope:
        header, _, rest = text.partition("\n")
        fields = header.split(" ")
        if len(fields) == 4 and fields[3] == "*":
            listed, _, frame = rest.partition("\n")
            try:
                recipients = json.loads(listed)
            except ValueError:
                raise ValueError("malformed envelope recipients") from None
            if not isinstance(recipients, list) or not all(isinstance(r, str)
                                                           for r in recipients):
                raise ValueError("malformed envelope recipients: not a list of user ids")
        elif len(fields) == 3:
            frame, recipients = rest, []
        else:
            raise ValueError("malformed envelope header")
        published, seq, cid = fields[:3]
        return cls(frame, "" if cid == "-" else cid, int(seq), float(published),
                   tuple(recipients))

    @classmethod
    def now(cls, frame: str, conversation_id: str = "", seq: int = 0) -> Envelope:
        return cls(frame, conversation_id, seq, time.time())


def user_subject(cell_id: str, user_id: str) -> str:
    return f"cellchat:{cell_id}:user:{user_id}"


def cell_subject(cell_id: str) -> str:
    """Where events for a crowd go (see the module rules). Outside the user subjects' prefix."""
    return f"cellchat:{cell_id}:crowd"


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

    def __init__(self, receiver: Receiver, standing: Sequence[str] = ()) -> None:
        self._receiver = receiver
        self._subjects: set[str] = set(standing)

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
async def open_broker(redis_url: str, receiver: Receiver, standing: Sequence[str] = ()
                      ) -> AsyncIterator[Broker]:
    """The Redis adapter when `redis_url` is set, else the in-process one. `standing`:
    subjects subscribed for the broker's whole life (a chat replica's cell subject)."""
    if not redis_url:
        yield InProcessBroker(receiver, standing)
        return
    from cellchat.chat.realtime.redis_broker import open_redis_broker

    async with open_redis_broker(redis_url, receiver, standing) as broker:
        yield broker
