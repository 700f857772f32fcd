"""One server-side HTTP/2 connection, with purerpc's machinery and what a graceful stop needs.

This is the only module that touches purerpc's (and h2's) internals; `server.py` talks to it
alone. purerpc does the protocol work: the h2 state machine, gRPC framing, messages, the
servicer and stub conventions. Its `Server` is what we replace, because it cannot stop
gracefully and swallows handler errors; what we add here on top of `GRPCProtoSocket`:

* `send_goaway()`: a GOAWAY frame that tells the client to open no new streams here, while the
  streams in flight go on. h2 3.x moves its connection to CLOSED as soon as it *sends* a GOAWAY
  (and then refuses every frame of the streams still running), so this first GOAWAY bypasses its
  state machine and is written straight to h2's outbound buffer (the buffer purerpc's own
  `_h2_monkeypatch` also manages). `close()` sends the final one through h2 proper.
* `refuse(stream_id)`: RST_STREAM(REFUSED_STREAM) for a stream opened after our GOAWAY; gRPC
  clients retry those transparently, since the server provably did not process them.
* `on_reset`: purerpc drops a client's RST_STREAM (`GRPCConnection._stream_reset` returns no
  event), so a cancelled call's handler would run on. We hook that method on our instance and
  report the stream id, so the server cancels the handler.

Pinned by pyproject: purerpc 0.8 (`<0.9`), whose `h2<4` pin this relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.abc
import h2.exceptions
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame
from purerpc.grpc_proto import GRPCProtoSocket
from purerpc.grpclib.config import GRPCConfiguration

__all__ = ["ServerConnection"]


class ServerConnection(GRPCProtoSocket):  # type: ignore[misc]
    """`async with` it around an accepted socket; `listen()` yields a stream per new call."""

    def __init__(
        self,
        stream: anyio.abc.SocketStream,
        *,
        max_message_bytes: int,
        on_reset: Callable[[int], None],
    ) -> None:
        super().__init__(
            GRPCConfiguration(client_side=False, max_message_length=max_message_bytes), stream
        )
        self._on_reset = on_reset
        self._grpc_connection._stream_reset = self._stream_reset

    def _stream_reset(self, event: Any) -> list[object]:
        self._on_reset(event.stream_id)
        return []

    async def send_goaway(self) -> None:
        h2 = self._grpc_connection.h2_connection
        frame = GoAwayFrame(
            stream_id=0,
            last_stream_id=h2.highest_inbound_stream_id,
            error_code=ErrorCodes.NO_ERROR,
            additional_data=b"server is shutting down",
        )
        h2._data_to_send += frame.serialize()
        await self._socket.flush()

    async def refuse(self, stream_id: int) -> None:
        try:
            self._grpc_connection.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
        except h2.exceptions.StreamClosedError:
            pass  # the client gave up on it first
        self.forget(stream_id)
        await self._socket.flush()

    def forget(self, stream_id: int) -> None:
        """Drop a reset stream: purerpc only forgets streams that were closed both ways."""
        self._streams.pop(stream_id, None)

    async def close(self) -> None:
        """Queue the final GOAWAY; it is written when the `async with` block exits."""
        self._grpc_connection.h2_connection.close_connection(error_code=ErrorCodes.NO_ERROR)
        await self._socket.flush()
