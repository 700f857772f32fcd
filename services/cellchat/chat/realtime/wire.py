"""Server-to-client text frames as bytes, and writing a batch of them to one connection.

Why: fan-out writes the same frame to thousands of sockets. Through trio-websocket each write
is one wsproto event, framed again for every recipient. A server's frames are never masked
(RFC 6455 §5.1), so the wire bytes of a text frame are a 2-10 byte header and the UTF-8 text,
the same for every recipient: `encode_text_frames` builds them without wsproto, and
`FrameWriter` writes a whole batch with one `send_all`.

Rules:
- `encode_text_frames` is sans-I/O: final (FIN), unfragmented, unmasked text frames, RSV bits
  clear. With permessage-deflate negotiated (trio-websocket's server never offers it) a frame
  with RSV1 clear is still a valid, uncompressed message.
- `FrameWriter` writes on trio-websocket's own stream under trio-websocket's own stream lock
  (first straight to the socket's descriptor, without a scheduling round; what the kernel does
  not take at once goes through the stream's `send_all`),
  the lock its pings, pongs and close frames are written under: frames never interleave. It
  writes only while the connection is open (no close reason yet): once trio-websocket has
  started a closing handshake, no data frame may follow the close frame.
- It relies on private attributes of `trio_websocket.WebSocketConnection` (`_stream`,
  `_stream_lock`, `_close_reason`). `FrameWriter.attach` checks them and returns None when they
  are missing or of another kind; the caller then falls back to the public `send_message`
  (tests/unit/test_ws_wire.py fails if that fallback is ever taken with the pinned library).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

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


def encode_text_frames(payloads: Iterable[bytes]) -> bytes:
    """Every payload (UTF-8 text) as one text frame, in order, as one byte string."""
    parts: list[bytes] = []
    for payload in payloads:
        parts.append(text_frame_header(len(payload)))
        parts.append(payload)
    return b"".join(parts)


class ConnectionGone(Exception):
    """The connection is closing or closed: nothing more can be written to it."""


class FrameWriter:
    """Writes pre-encoded text frames straight to a trio-websocket connection's stream."""

    __slots__ = ("_lock", "_stream", "_ws")

    def __init__(self, ws: WebSocketConnection, stream: trio.abc.SendStream,
                 lock: trio.StrictFIFOLock) -> None:
        self._ws = ws
        self._stream = stream
        self._lock = lock

    @classmethod
    def attach(cls, ws: WebSocketConnection) -> FrameWriter | None:
        """The writer for `ws`, or None if trio-websocket's internals are not as expected."""
        stream = getattr(ws, "_stream", None)
        lock = getattr(ws, "_stream_lock", None)
        if (not isinstance(stream, trio.abc.SendStream)
                or not isinstance(lock, trio.StrictFIFOLock)
                or not hasattr(ws, "_close_reason")):
            return None
        return cls(ws, stream, lock)

    async def write(self, payloads: list[bytes]) -> None:
        """Write every payload as a text frame, with one `send_all`.

        Raises `ConnectionGone` if the connection is closing, closed or broken. Cancelled
        mid-way, part of a frame may have been written: the stream is then unusable for
        frames (close the TCP connection, send no close frame)."""
        data = encode_text_frames(payloads)
        lock = self._lock
        if lock.locked():
            await lock.acquire()
        else:
            lock.acquire_nowait()  # no scheduling round when nobody else is writing
        try:
            # Checked under the lock: a close frame queued behind it is written after us.
            if self._ws._close_reason is not None:
                raise ConnectionGone
            sent = self._write_now(data)
            if sent < len(data):
                try:
                    await self._stream.send_all(memoryview(data)[sent:])
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    raise ConnectionGone from None
        finally:
            lock.release()

    def _write_now(self, data: bytes) -> int:
        """As much of `data` as the socket takes without waiting (the whole of it, unless the
        client is behind): `send_all` would spend a scheduling round on each write, which at
        fan-out's one small write per connection costs more than the write itself. Under the
        lock; the descriptor is looked up each time (-1 once the socket is closed)."""
        socket = getattr(self._stream, "socket", None)
        fd = socket.fileno() if socket is not None else -1
        if fd < 0:
            return 0
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            raise ConnectionGone from None

    async def abort(self) -> None:
        """Close the TCP connection at once, without a close frame (after a cut-off write)."""
        await self._stream.aclose()
