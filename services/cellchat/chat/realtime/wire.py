"""Server-to-client text frames as bytes, and writing them to one connection.

Why: fan-out writes the same frame to thousands of sockets. Through trio-websocket each write
is one wsproto event, framed again for every recipient, by a task woken for it. A server's
frames are never masked (RFC 6455 §5.1), so the wire bytes of a text frame are a 2-10 byte
header and the UTF-8 text, the same for every recipient: `text_frame` builds them once, without
wsproto, and `FrameWriter` writes them.

Rules:
- `text_frame` and `encode_text_frames` are sans-I/O: final (FIN), unfragmented, unmasked text
  frames, RSV bits clear. With permessage-deflate negotiated (trio-websocket's server never
  offers it) a frame with RSV1 clear is still a valid, uncompressed message.
- Frames never interleave: everything is written under one lock per connection, the lock
  trio-websocket writes its pings, pongs and close frames under. `FrameWriter.attach` puts a
  `StreamLock` in its place, a FIFO lock held by the connection rather than by a task, so that a
  write begun by one task (`try_write`, from whoever delivers a frame) can be finished by
  another (the connection's writer task) with the lock held in between.
- `try_write` writes a whole frame at once, without a scheduling round, when nothing else is
  being written and the kernel takes it: the common case of fan-out to a client that keeps up.
  What the kernel does not take is the caller's to queue first; the lock then stays held for
  the writer task, which writes it (`write`) before anything else.
- Nothing is written once the connection has a close reason: once trio-websocket has started a
  closing handshake, no data frame may follow the close frame.
- It relies on private attributes of `trio_websocket.WebSocketConnection` (`_stream`,
  `_stream_lock`, `_close_reason`). `FrameWriter.attach` checks them and returns None when they
  are missing or of another kind; the caller then falls back to the public `send_message`
  (tests/unit/test_ws_wire.py fails if that fallback is ever taken with the pinned library).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from types import TracebackType

import trio
from trio_websocket import WebSocketConnection

_FIN_TEXT = 0x81
_SHORT = [bytes((_FIN_TEXT, n)) for n in range(126)]
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, final text frame carrying `length` payload bytes."""
    if length < 126:
        return _SHORT[length]
    if length < 1 << 16:
        return _MEDIUM.pack(_FIN_TEXT, 126, length)
    return _LONG.pack(_FIN_TEXT, 127, length)


def text_frame(payload: bytes) -> bytes:
    """One text frame carrying `payload` (UTF-8 text), header included."""
    return text_frame_header(len(payload)) + payload


def frame_payload(frame: bytes) -> bytes:
    """The payload of a frame `text_frame` built (the inverse, for the public fallback)."""
    length = frame[1]
    return frame[2 if length < 126 else 4 if length == 126 else 10:]


def encode_text_frames(payloads: Iterable[bytes]) -> bytes:
    """Every payload (UTF-8 text) as one text frame, in order, as one byte string."""
    parts: list[bytes] = []
    for payload in payloads:
        parts.append(text_frame_header(len(payload)))
        parts.append(payload)
    return b"".join(parts)


class ConnectionGone(Exception):
    """The connection is closing or closed: nothing more can be written to it."""


class StreamLock:
    """A FIFO lock held by a connection rather than by a task.

    trio's locks must be released by the task that acquired them; here a frame begun by the
    task that delivers it is finished by the connection's writer task. Waiters are served in
    arrival order, and `release` hands the lock straight to the first of them (as trio's
    `StrictFIFOLock` does), so nobody can jump the queue. The parking lot exists only while
    someone waits: a replica keeps tens of thousands of these."""

    __slots__ = ("_held", "_lot")

    def __init__(self) -> None:
        self._held = False
        self._lot: trio.lowlevel.ParkingLot | None = None

    def locked(self) -> bool:
        return self._held

    def acquire_nowait(self) -> None:
        if self._held:
            raise trio.WouldBlock
        self._held = True

    async def acquire(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._held:
            self._held = True
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        await self._lot.park()  # woken by `release`, which handed the lock over

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("release of a StreamLock that is not held")
        lot = self._lot
        if lot:
            lot.unpark()  # still held: now by the first waiter
            return
        self._lot = None
        self._held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


class FrameWriter:
    """Writes pre-encoded text frames (`text_frame`) straight to a trio-websocket stream."""

    __slots__ = ("_lock", "_owed", "_stream", "_ws")

    def __init__(self, ws: WebSocketConnection, stream: trio.SocketStream,
                 lock: StreamLock) -> None:
        self._ws = ws
        self._stream = stream
        self._lock = lock
        self._owed = False  # `try_write` left part of a frame: the lock is held for `write`

    @classmethod
    def attach(cls, ws: WebSocketConnection) -> FrameWriter | None:
        """The writer for `ws`, or None if trio-websocket's internals are not as expected.

        Replaces the connection's stream lock with a `StreamLock`: call it once, before
        anything but the handshake has been written (a lock already held is not replaced,
        and the connection gets no writer)."""
        stream = getattr(ws, "_stream", None)
        lock = getattr(ws, "_stream_lock", None)
        if (not isinstance(stream, trio.SocketStream)
                or not isinstance(lock, trio.StrictFIFOLock | StreamLock)
                or lock.locked()
                or not hasattr(ws, "_close_reason")):
            return None
        if not isinstance(lock, StreamLock):
            lock = StreamLock()
            ws._stream_lock = lock  # type: ignore[assignment]
        return cls(ws, stream, lock)

    def try_write(self, frame: bytes) -> int:
        """Write `frame` now if nothing else is being written; never waits.

        Returns how many bytes were written: all of them, none (busy, closing, the socket
        full or broken: the caller queues the frame, and the writer finds out what is wrong),
        or a part. After a part, the caller must queue the rest ahead of anything else; the
        lock stays held until the writer task writes it (`write`)."""
        if self._lock._held or self._ws._close_reason is not None:
            return 0
        fd = self._stream.socket.fileno()  # -1 once closed: looked up each time, never kept
        if fd < 0:
            return 0
        try:
            sent = os.write(fd, frame)
        except OSError:  # full (BlockingIOError) or broken: the writer finds out which
            return 0
        if sent < len(frame):
            self._lock.acquire_nowait()
            self._owed = True
        return sent

    async def write(self, frames: list[bytes]) -> None:
        """Write every frame, in order, with as few system calls as the kernel allows.

        Raises `ConnectionGone` if the connection is closing, closed or broken. Cancelled
        mid-way, part of a frame may have been written: the stream is then unusable for
        frames (close the TCP connection, send no close frame)."""
        lock = self._lock
        owed = self._owed
        if owed:
            self._owed = False  # frames[0] ends a frame `try_write` began: the lock is ours
        elif lock._held:
            await lock.acquire()
        else:
            lock._held = True  # no scheduling round when nobody else is writing
        try:
            # Checked under the lock: a close frame queued behind it is written after us.
            # A frame already begun is finished first, or the close frame would be garbled.
            closing = self._ws._close_reason is not None
            if closing and not owed:
                raise ConnectionGone
            data = frames[0] if closing or len(frames) == 1 else b"".join(frames)
            sent = self._write_now(data)
            if sent < len(data):
                try:
                    await self._stream.send_all(memoryview(data)[sent:])
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    raise ConnectionGone from None
            if closing:
                raise ConnectionGone
        finally:
            lock.release()

    @property
    def owed(self) -> bool:
        """A frame was begun and its rest not written yet: no close frame can follow it."""
        return self._owed

    def _write_now(self, data: bytes) -> int:
        """As much of `data` as the socket takes without waiting (the whole of it, unless the
        client is behind): `send_all` would spend a scheduling round on each write, which at
        fan-out's one small write per connection costs more than the write itself. Under the
        lock (or with nothing else able to run); the descriptor is looked up each time (-1 once
        the socket is closed)."""
        fd = self._stream.socket.fileno()
        if fd < 0:
            return 0
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            raise ConnectionGone from None

    async def abort(self) -> None:
        """Close the TCP connection at once, without a close frame (after a cut-off write).
        A lock held for a frame's rest is released: whoever waits for it (trio-websocket's
        reader, to answer a ping) then finds the stream closed instead of waiting forever."""
        try:
            await self._stream.aclose()
        finally:
            if self._owed:
                self._owed = False
                self._lock.release()
