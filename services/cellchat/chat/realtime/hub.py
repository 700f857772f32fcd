"""This replica's connections: who is connected, and one bounded outbox per connection.

Rules:
- The broker hands envelopes to `Hub.deliver`, which never waits: a connection with nothing
  queued or being written gets the frame written to its socket at once, as far as the kernel
  takes it without waiting (wire.py's `try_write`: no task is woken, the common case when
  clients keep up); anything else goes into the connection's own bounded queue, which its
  writer task drains onto the socket. One slow socket therefore never delays the broker, the
  sender or any other connection, and frames leave in the order they were given.
- Overflow policy: a full queue (or a full hold buffer before/while replaying) closes that
  connection with 4009 (slow consumer). Frames are never dropped silently from a connection that
  stays open: a dropped frame would be a gap the client cannot see.
- The same frame bytes object (`Envelope.wire`, header included) goes to every recipient;
  nothing is encoded or framed per connection, and a connection's writer writes everything
  queued with one write.
- A user's broker subject is subscribed while they have at least one connection here, and
  `attach` returns only once the subscription is in effect (resume: subscribe, then replay).
  Subscribe and unsubscribe of one user are serialized, so a quick reconnect cannot end up
  unsubscribed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from cellchat.chat.realtime.broker import Broker, Envelope, cell_subject, user_subject
from cellchat.chat.realtime.frames import CloseCode
from cellchat.chat.realtime.resume import DeliveryGate, HoldOverflow
from cellchat.chat.realtime.wire import FrameWriter, text_frame
from cellchat.ops import Metrics

log = logging.getLogger(__name__)

CloseRequest = Callable[[CloseCode, str], None]


@attrs.frozen
class OutboxStatistics:
    queued: int  # frames not yet written (those being written included)
    capacity: int
    held: int
    closed: bool


class Outbox:
    """The outgoing side of one connection: gate, bounded queue, and the close hook.

    The queue holds whole frames (`wire.text_frame`): a live envelope's `wire` is the very
    object every other recipient gets. With a `direct` writer set and nothing queued or in
    flight, a frame is first offered to the socket at once (`FrameWriter.try_write`); what the
    kernel does not take is queued. The connection's writer task takes everything queued at
    once (`take`) and writes it as one batch. `capacity` bounds the frames not yet written, the
    batch being written included. Everything is created lazily: an idle connection's outbox is
    a handful of attributes (a replica keeps tens of thousands)."""

    __slots__ = ("_in_flight", "_metrics", "_queue", "_request_close", "_room", "_writer",
                 "capacity", "closed", "connection_id", "direct", "gate", "user_id")

    def __init__(self, connection_id: str, user_id: str, capacity: int,
                 request_close: CloseRequest, metrics: Metrics) -> None:
        self.connection_id = connection_id
        self.user_id = user_id
        self.capacity = capacity
        self.gate = DeliveryGate(hold_limit=capacity)
        self.closed = False
        self._queue: list[bytes] | None = None
        self._in_flight = 0
        self._writer: trio.lowlevel.Task | None = None  # parked in `take`
        self._room: trio.Event | None = None  # a `put_wait` waiting for room
        self._request_close = request_close
        self._metrics = metrics
        #: Set by the session once its writer runs: frames may then be written at once.
        self.direct: FrameWriter | None = None

    def deliver(self, envelope: Envelope) -> bool:
        """A live envelope for this connection (from the broker). True if it was written to
        the socket at once (the caller counts those; the writer task counts what it writes)."""
        if self.closed:
            return False
        gate = self.gate
        if not gate.holding:  # the common case, without a list per delivery
            return gate.admit(envelope) and self.put_frame(envelope.wire)
        try:
            ready = gate.live(envelope)
        except HoldOverflow:
            self._overflow()
            return False
        # Not holding any more: at most the envelope itself, admitted.
        return any([self.put_frame(item.wire) for item in ready])

    def put(self, frame: str) -> None:
        """Give one frame (an answer to this client); never waits."""
        if self.put_frame(text_frame(frame.encode())):
            self._metrics.ws_frames_out.inc()

    def put_frame(self, frame: bytes) -> bool:
        """Give one whole frame (live, replayed or an answer); never waits. True if it was
        written to the socket at once, False if queued (or dropped: closing, or overflow)."""
        if self.closed:
            return False
        queue = self._queue
        if queue is None and not self._in_flight:
            direct = self.direct
            if direct is not None:
                sent = direct.try_write(frame)
                if sent == len(frame):
                    return True
                if sent:
                    frame = frame[sent:]  # the rest goes first; the lock is held for it
            self._queue = [frame]
            self._wake_writer()
            return False
        if self.queued >= self.capacity:
            self._overflow()
            return False
        if queue is None:
            self._queue = [frame]
        else:
            queue.append(frame)
        self._wake_writer()
        return False

    async def put_wait(self, frame: bytes) -> bool:
        """Give one frame, waiting for room (replays: backpressure instead of overflow).
        False once the connection is closing."""
        while not self.closed and self.queued >= self.capacity:
            if self._room is None:
                self._room = trio.Event()
            await self._room.wait()
        if self.closed:
            await trio.lowlevel.checkpoint()
            return False
        if self.put_frame(frame):
            self._metrics.ws_frames_out.inc()
        await trio.lowlevel.checkpoint()
        return not self.closed

    async def take(self) -> list[bytes]:
        """Everything queued, once there is something (the writer's loop). The previous batch
        counts as written from this call on. An empty list: closed and nothing left to write.
        One writer task at a time."""
        self._in_flight = 0
        if self._room is not None:
            self._room.set()
            self._room = None
        if self._queue is None and not self.closed:
            assert self._writer is None, "one writer per outbox"
            self._writer = trio.lowlevel.current_task()

            def abort(_: object) -> trio.lowlevel.Abort:
                self._writer = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        batch = self._queue
        if batch is None:
            return []
        self._queue = None
        self._in_flight = len(batch)
        return batch

    def close_input(self) -> None:
        """No more frames: the writer gets what is queued, then an empty batch."""
        self.closed = True
        self._wake_writer()
        if self._room is not None:
            self._room.set()
            self._room = None

    def _wake_writer(self) -> None:
        writer = self._writer
        if writer is not None:
            self._writer = None
            trio.lowlevel.reschedule(writer)

    def _overflow(self) -> None:
        self._metrics.ws_queue_drops.inc()
        self._metrics.ws_slow_consumer_closes.inc()
        self.close_input()
        self._request_close(CloseCode.SLOW_CONSUMER, "slow consumer: outgoing queue full")

    def interrupt(self, code: CloseCode, reason: str) -> None:
        self._request_close(code, reason)

    @property
    def queued(self) -> int:
        return (len(self._queue) if self._queue is not None else 0) + self._in_flight

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(self.queued, self.capacity, self.gate.held, self.closed)


@attrs.define(eq=False)
class _User:
    """A user connected here. Kept per user for as long as they are connected, so nothing idle
    in it costs more than it must: the connections are a tuple (usually of one; replaced on
    each connect and disconnect, which are rare next to deliveries, which iterate it), and the
    lock exists only while a subscribe or unsubscribe of the user is under way (`_locked`)."""

    outboxes: tuple[Outbox, ...] = ()
    lock: trio.Lock | None = None
    subscribed: bool = False


@attrs.frozen
class HubStatistics:
    users: int
    connections: int


class Hub:
    def __init__(self, cell_id: str, metrics: Metrics) -> None:
        self._cell_id = cell_id
        self._prefix = user_subject(cell_id, "")
        #: Subscribed for the replica's whole life: events for a crowd come here, once.
        self.cell_subject = cell_subject(cell_id)
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
        entry.outboxes = (*entry.outboxes, outbox)
        try:
            async with _locked(entry):
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
        entry.outboxes = tuple(o for o in entry.outboxes if o is not outbox)
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            async with _locked(entry):
                if not entry.outboxes and entry.subscribed and self.broker is not None:
                    entry.subscribed = False
                    await self.broker.unsubscribe(self.subject(outbox.user_id))
                if (not entry.outboxes and _waiting(entry) == 0
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
        if subject == self.cell_subject:
            users = self._users
            here = [users[u] for u in envelope.recipients if u in users]
        elif subject.startswith(self._prefix):
            entry = self._users.get(subject[len(self._prefix):])
            here = [entry] if entry is not None else []
        else:
            return
        if not here:
            return
        if envelope.published_at:
            self._metrics.fanout_seconds.observe(max(0.0, time.time() - envelope.published_at))
        written = 0
        for entry in here:
            for outbox in entry.outboxes:  # a tuple: a connect meanwhile replaces it
                if outbox.deliver(envelope):
                    written += 1
        if written:
            self._metrics.ws_frames_out.inc(written)

    def interrupted(self) -> None:
        """The broker connection was lost: events may be missing; every client resumes."""
        self.close_all(CloseCode.SERVICE_RESTART, "broker connection lost: reconnect and resume")

    def close_all(self, code: CloseCode, reason: str) -> None:
        for entry in tuple(self._users.values()):
            for outbox in entry.outboxes:
                outbox.interrupt(code, reason)

    def statistics(self) -> HubStatistics:
        return HubStatistics(len(self._users),
                             sum(len(e.outboxes) for e in self._users.values()))


@asynccontextmanager
async def _locked(entry: _User) -> AsyncIterator[None]:
    """Hold `entry`'s lock, created on first need and dropped when its last holder leaves
    with nobody waiting (a later holder makes a new one: nobody can hold the old one then)."""
    lock = entry.lock
    if lock is None:
        lock = entry.lock = trio.Lock()
    async with lock:
        try:
            yield
        finally:
            if lock.statistics().tasks_waiting == 0 and entry.lock is lock:
                entry.lock = None


def _waiting(entry: _User) -> int:
    """How many tasks wait for `entry`'s lock."""
    return entry.lock.statistics().tasks_waiting if entry.lock is not None else 0
