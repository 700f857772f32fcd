"""This replica's connections: who is connected, and one bounded outbox per connection.

Rules:
- The broker hands envelopes to `Hub.deliver`, which never waits: each recipient connection's
  `Outbox` takes the frame with `send_nowait` into its own bounded queue, and the connection's
  own writer task drains it onto the socket. One slow socket therefore never delays the broker,
  the sender or any other connection.
- Overflow policy: a full queue (or a full hold buffer before/while replaying) closes that
  connection with 4009 (slow consumer). Frames are never dropped silently from a connection that
  stays open: a dropped frame would be a gap the client cannot see.
- The same frame text object goes to every recipient; nothing is encoded per connection.
- A user's broker subject is subscribed while they have at least one connection here, and
  `attach` returns only once the subscription is in effect (resume: subscribe, then replay).
  Subscribe and unsubscribe of one user are serialized, so a quick reconnect cannot end up
  unsubscribed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import attrs
import trio

from cellchat.chat.realtime.broker import Broker, Envelope, user_subject
from cellchat.chat.realtime.frames import CloseCode
from cellchat.chat.realtime.resume import DeliveryGate, HoldOverflow
from cellchat.ops import Metrics

log = logging.getLogger(__name__)

CloseRequest = Callable[[CloseCode, str], None]


@attrs.frozen
class OutboxStatistics:
    queued: int
    capacity: int
    held: int
    closed: bool


class Outbox:
    """The outgoing side of one connection: gate, bounded queue, and the close hook."""

    def __init__(self, connection_id: str, user_id: str, capacity: int,
                 request_close: CloseRequest, metrics: Metrics) -> None:
        self.connection_id = connection_id
        self.user_id = user_id
        self.capacity = capacity
        self.gate = DeliveryGate(hold_limit=capacity)
        self._send, self.frames = trio.open_memory_channel[str](capacity)
        self._request_close = request_close
        self._metrics = metrics
        self.closed = False

    def deliver(self, envelope: Envelope) -> None:
        """A live envelope for this connection (from the broker)."""
        if self.closed:
            return
        try:
            ready = self.gate.live(envelope)
        except HoldOverflow:
            self._overflow()
            return
        for item in ready:
            self.put(item.frame)

    def put(self, frame: str) -> None:
        """Queue one frame (live, replayed or an answer); never waits."""
        if self.closed:
            return
        try:
            self._send.send_nowait(frame)
        except trio.WouldBlock:
            self._overflow()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.closed = True

    async def put_wait(self, frame: str) -> bool:
        """Queue one frame, waiting for room (replays: backpressure instead of overflow).
        False once the connection is closing."""
        if self.closed:
            return False
        try:
            await self._send.send(frame)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    def close_input(self) -> None:
        """No more frames: the writer drains what is queued, then stops."""
        self.closed = True
        self._send.close()

    def _overflow(self) -> None:
        self._metrics.ws_queue_drops.inc()
        self._metrics.ws_slow_consumer_closes.inc()
        self.close_input()
        self._request_close(CloseCode.SLOW_CONSUMER, "slow consumer: outgoing queue full")

    def interrupt(self, code: CloseCode, reason: str) -> None:
        self._request_close(code, reason)

    def statistics(self) -> OutboxStatistics:
        stats = self._send.statistics()
        return OutboxStatistics(stats.current_buffer_used, self.capacity, self.gate.held,
                                self.closed)


@attrs.define(eq=False)
class _User:
    outboxes: set[Outbox] = attrs.field(factory=set)
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    subscribed: bool = False


@attrs.frozen
class HubStatistics:
    users: int
    connections: int


class Hub:
    def __init__(self, cell_id: str, metrics: Metrics) -> None:
        self._cell_id = cell_id
        self._prefix = user_subject(cell_id, "")
        self._metrics = metrics
        self._users: dict[str, _User] = {}
        self._connections = 0
        self._left = trio.Event()
        self.broker: Broker | None = None

    def subject(self, user_id: str) -> str:
        return self._prefix + user_id

    def connections_of(self, user_id: str) -> int:
        entry = self._users.get(user_id)
        return len(entry.outboxes) if entry else 0

    async def attach(self, outbox: Outbox) -> None:
        """Register the connection; returns once its user's subject is subscribed."""
        assert self.broker is not None, "Hub.broker must be set before connections attach"
        entry = self._users.get(outbox.user_id)
        if entry is None:
            entry = self._users[outbox.user_id] = _User()
        entry.outboxes.add(outbox)
        try:
            async with entry.lock:
                if not entry.subscribed:
                    started = time.perf_counter()
                    await self.broker.subscribe(self.subject(outbox.user_id))
                    self._metrics.broker_seconds.labels("subscribe").observe(
                        time.perf_counter() - started)
                    entry.subscribed = True
        except BaseException:
            await self.detach(outbox)
            raise
        self._connections += 1
        self._metrics.ws_connections.inc()

    async def detach(self, outbox: Outbox) -> None:
        entry = self._users.get(outbox.user_id)
        if entry is None or outbox not in entry.outboxes:
            return
        entry.outboxes.discard(outbox)
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            async with entry.lock:
                if not entry.outboxes and entry.subscribed and self.broker is not None:
                    entry.subscribed = False
                    await self.broker.unsubscribe(self.subject(outbox.user_id))
                if (not entry.outboxes and entry.lock.statistics().tasks_waiting == 0
                        and self._users.get(outbox.user_id) is entry):
                    del self._users[outbox.user_id]

    def detached(self, outbox: Outbox) -> None:
        """Bookkeeping once a connection that attached successfully is gone."""
        self._connections -= 1
        self._metrics.ws_connections.dec()
        self._left.set()

    async def wait_empty(self) -> None:
        """Until no connection is attached (graceful shutdown)."""
        while self._connections:
            self._left = trio.Event()
            await self._left.wait()

    def deliver(self, subject: str, envelope: Envelope) -> None:
        if not subject.startswith(self._prefix):
            return
        entry = self._users.get(subject[len(self._prefix):])
        if entry is None:
            return
        if envelope.published_at:
            self._metrics.fanout_seconds.observe(max(0.0, time.time() - envelope.published_at))
        for outbox in tuple(entry.outboxes):
            outbox.deliver(envelope)

    def interrupted(self) -> None:
        """The broker connection was lost: events may be missing; every client resumes."""
        self.close_all(CloseCode.SERVICE_RESTART, "broker connection lost: reconnect and resume")

    def close_all(self, code: CloseCode, reason: str) -> None:
        for entry in tuple(self._users.values()):
            for outbox in tuple(entry.outboxes):
                outbox.interrupt(code, reason)

    def statistics(self) -> HubStatistics:
        return HubStatistics(len(self._users),
                             sum(len(e.outboxes) for e in self._users.values()))
