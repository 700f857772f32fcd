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
* `forget(stream_id)`, once a call is over: its stream is dropped at once, whatever the client
  still sends on it is discarded (its bytes given back to the connection's flow-control window),
  and a client still sending is told to stop (RST_STREAM NO_ERROR, RFC 7540 §8.1).

The rule for errors: **a fault on one stream ends that stream only** (RFC 7540 §5.4.2), never
the connection and the other calls on it. purerpc and h2 3.2 break it in a few places, which
we fix on our instance (nothing global is patched):

* a WINDOW_UPDATE for a stream we closed, arriving once h2 has cleaned the stream up (h2 does
  so when the next stream opens), raises StreamClosedError and h2 tears the connection down;
  RFC 7540 §5.1 says to ignore it. grpcio clients send those routinely after a stream ends or
  is cancelled.
* a request malformed for HTTP/2 (uppercase or connection-specific header names, bad
  pseudo-headers) is a connection error in h2; here RST_STREAM(PROTOCOL_ERROR) (§8.1.2.6).
  `_malformed` applies h2's rules, in one pass instead of h2's chain of generators.
* a request malformed for gRPC (method, content-type, `grpc-timeout`, `-bin` metadata)
  raises in purerpc's parser; we answer that stream INTERNAL with the reason instead.
* a request whose HEADERS frame ends the stream (a client stream of no messages, legal gRPC) is
  a protocol error for purerpc; here it is a request with no messages.
* a message over the size limit, or compressed with an encoding we cannot read, raises in
  purerpc's reader; here the handler reading it gets that error (RESOURCE_EXHAUSTED /
  INTERNAL through `statuses`), at the point where it would have read the message.
* DATA for a stream purerpc no longer tracks made it reset the stream and then crash.

And for throughput (every call of a busy connection pays these), `_listen` and the writer
differ from purerpc's: events are queued to their stream without a scheduler checkpoint each,
so one read's worth of requests is dispatched in one go, and the writer lets every ready task
add its frames before it writes, so the responses of a batch of calls leave in one send()
instead of one per frame. A handler reads the events queued to its stream without a trip
through the scheduler (`_ServerStream.receive_event`). The usual response fields (`:status`,
`content-type`, `grpc-status`) are HPACK blocks made once (`_ResponseEncoder`), and a
request's fields that are one HPACK byte (an index) skip hpack's per-field machinery
(`_RequestDecoder`). Response headers wait for the first message, or become a trailers-only
response when there is none.

Pinned by pyproject: purerpc 0.8 (`<0.9`), whose `h2<4` pin this relies on.
"""

from __future__ import annotations

import logging
import re
import string
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
import h2.connection
import h2.events
import h2.exceptions
import h2.stream
import hpack
import trio
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame, HeadersFrame, WindowUpdateFrame
from purerpc.grpc_proto import GRPCProtoSocket, GRPCProtoStream
from purerpc.grpc_socket import GRPCStreamState, SocketWrapper
from purerpc.grpclib.buffers import MessageReadBuffer
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.events import (
    MessageReceived,
    RequestEnded,
    RequestReceived,
    ResponseEnded,
    WindowUpdated,
)
from purerpc.grpclib.exceptions import ProtocolError
from purerpc.grpclib.headers import HeaderDict
from purerpc.grpclib.status import Status, StatusCode

__all__ = ["ServerConnection"]

log = logging.getLogger(__name__)

# What purerpc's request parser raises on bad headers besides its own ProtocolError: a missing
# header (KeyError), a bad number or base64 (ValueError), a path without a slash (ValueError).
_MALFORMED_REQUEST = (ProtocolError, KeyError, ValueError, IndexError)
_CLOSED_BY_US = (h2.stream.StreamState.HALF_CLOSED_LOCAL, h2.stream.StreamState.CLOSED)
_H2_HEADERS_RECEIVED = (h2.events.RequestReceived, h2.events.TrailersReceived)
# What `_malformed` checks: as h2.utilities, for decoded (str) names and values.
_WHITESPACE = frozenset(string.whitespace)
_UPPERCASE = re.compile("[A-Z]")
_PSEUDO_HEADERS = frozenset((":method", ":scheme", ":authority", ":path", ":status", ":protocol"))
_CONNECTION_SPECIFIC = frozenset(
    ("connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade")
)
# gRPC's length-prefixed message: compressed flag, length (big-endian).
_MESSAGE_PREFIX = struct.Struct(">?I")


def _field_blocks() -> dict[tuple[str, str], bytes]:
    """The fields of our usual response headers and trailers, each as an HPACK block.

    Encoded once, with only HPACK's static table (never-indexed literals, or a static
    index), so each block means the same whatever the connection's dynamic table holds,
    and leaves that table alone: h2's encoder stays in step with the client's decoder.
    """
    fields = [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("content-type", "application/grpc+proto"),
        *(("grpc-status", str(code.value)) for code in StatusCode),
    ]
    return {
        field: hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(*field)]) for field in fields
    }


class _ResponseEncoder(hpack.Encoder):  # type: ignore[misc]
    """h2's HPACK encoder, except that header lists of only our usual fields cost a lookup.

    Nearly every call answers with the same `:status`, `content-type` and `grpc-status`
    fields: encoding them anew (a linear search of the header tables per field) was a good
    part of answering a call. A list with any other field (a `grpc-message`, custom
    metadata), or due to announce a table size change, goes through the real encoder.
    """

    _BLOCKS = _field_blocks()

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        if not self.header_table.resized:
            blocks = self._BLOCKS
            try:
                return b"".join([blocks[field] for field in headers])
            except (KeyError, TypeError):
                pass
        encoded: bytes = super().encode(headers, huffman)
        return encoded


class _RequestDecoder(hpack.Decoder):  # type: ignore[misc]
    """h2's HPACK decoder, with a shortcut for a field that is one byte: an index.

    Clients index the fields they repeat on every call (all but `grpc-timeout`, say), so
    most fields of a request are one byte; hpack decodes each through three calls and two
    debug logs. Other representations go through hpack's own per-field methods, and the
    block's checks are hpack's: size updates only first, the header list size limit, the
    table size within what we allowed.
    """

    def decode(self, data: bytes, raw: bool = False) -> list[hpack.HeaderTuple]:
        if not raw:  # h2 asks for bytes, and decodes them itself
            decoded: list[hpack.HeaderTuple] = super().decode(data, raw)
            return decoded
        headers: list[hpack.HeaderTuple] = []
        table = self.header_table
        view = memoryview(data)
        at, end, size = 0, len(data), 0
        while at < end:
            first = data[at]
            if first & 0x80 and first != 0xFF:  # indexed, the index within the first byte
                name, value = table.get_by_index(first & 0x7F)
                # hpack may keep an entry as a view of the block it came in: bytes, always.
                header = hpack.HeaderTuple(bytes(name), bytes(value))
                at += 1
            else:
                if first & 0x80:
                    header, used = self._decode_indexed(view[at:])
                elif first & 0x40:
                    header, used = self._decode_literal_index(view[at:])
                elif first & 0x20:
                    if headers:
                        raise hpack.HPACKDecodingError("table size update after a field")
                    used = self._update_encoding_context(view[at:])
                    at += used
                    continue
                else:
                    header, used = self._decode_literal_no_index(view[at:])
                at += used
                # Literals may be slices of `view`: bytes, of the same tuple class.
                header = header.__class__(bytes(header[0]), bytes(header[1]))
            headers.append(header)
            size += 32 + len(header[0]) + len(header[1])  # RFC 7541 §4.1
            if size > self.max_header_list_size:
                raise hpack.OversizedHeaderListError(
                    f"a header list larger than {self.max_header_list_size} bytes"
                )
        self._assert_valid_table_size()
        return headers


class _RequestFailed(RequestEnded):  # type: ignore[misc]
    """The request side of a stream broke: the handler gets `error` when it reads on."""

    def __init__(self, stream_id: int, error: ProtocolError) -> None:
        super().__init__(stream_id)
        self.error = error


class _ServerStream(GRPCProtoStream):  # type: ignore[misc]
    _response_started: bool

    def __init__(
        self, grpc_connection: Any, stream_id: int, socket: SocketWrapper, grpc_socket: Any
    ) -> None:
        # purerpc's GRPCStream.__init__, but its per-stream memory channel is a deque (see
        # `receive_event`), and the flow-control event is made only when a sender must wait.
        self._stream_id = stream_id
        self._grpc_connection = grpc_connection
        self._grpc_socket = grpc_socket
        self._socket = socket
        self._flow_control_update_event: trio.Event | None = None
        self._events: deque[Any] = deque()
        self._event_arrived: trio.Event | None = None
        self._incoming_message_type: Any = None
        self._response_started = False
        self._state = GRPCStreamState.OPEN
        self._start_stream_event: Any = None
        self._end_stream_event: Any = None

    def _put_event(self, event: Any) -> None:
        self._events.append(event)
        if self._event_arrived is not None:
            self._event_arrived.set()

    def _window_opened(self) -> None:
        if self._flow_control_update_event is not None:
            self._flow_control_update_event.set()

    async def _wait_flow_control_update(self) -> None:
        self._flow_control_update_event = trio.Event()
        await self._flow_control_update_event.wait()
        self._flow_control_update_event = None

    async def receive_event(self) -> Any:
        """purerpc's `receive_event`, but an event already queued costs no scheduling round.

        It checkpoints only if cancelled then: a unary call whose request came in one read
        runs from its first step to its last in one go. A handler reading queued events cannot
        starve the others for long: only `listen()` queues them, and it cannot run meanwhile,
        so they are at most one read's worth.
        """
        events = self._events
        if events:
            await trio.lowlevel.checkpoint_if_cancelled()
        else:
            while not events:
                self._event_arrived = trio.Event()
                await self._event_arrived.wait()
            self._event_arrived = None
        event = events.popleft()
        if isinstance(event, MessageReceived):
            self._grpc_connection.acknowledge_received_data(
                self._stream_id, event.flow_controlled_length
            )
            await self._socket.flush()
            if self._incoming_message_type is not None:
                message = self._incoming_message_type()
                message.ParseFromString(event.data)
                event.data = message
        elif isinstance(event, _RequestFailed):
            self._end_stream_event = event
            raise event.error
        elif isinstance(event, RequestEnded):
            self._end_stream_event = event
        else:
            self._start_stream_event = event
        return event

    async def send_message(self, message: Any) -> None:
        connection = self._grpc_connection
        if not self._response_started:
            # The response headers leave with the first message (same send, same packet).
            connection.start_response(self._stream_id, "+proto")
            self._response_started = True
        data = message.SerializeToString()
        size = len(data)
        if (
            size <= connection.config.max_message_length
            and size + 5 <= connection.flow_control_window(self._stream_id)
        ):
            # What purerpc's `_send` comes to for a message that fits the window and a frame,
            # without its write buffer per message.
            connection.send_data(self._stream_id, _MESSAGE_PREFIX.pack(False, size) + data)
            await self._socket.flush()
        else:  # too large (it raises), or sent as the window opens
            await self._send(data)


class _Writer(SocketWrapper):  # type: ignore[misc]
    """purerpc's socket writer, but one send() per scheduler round rather than per flush."""

    def __init__(self, grpc_connection: Any, stream: anyio.abc.SocketStream) -> None:
        super().__init__(grpc_connection, stream)
        self._flush_event = trio.Event()

    async def _writer_thread(self) -> None:
        while True:
            # Every task made runnable with us (the other calls of the batch) adds its frames
            # before we write: one send() for all of them.
            await trio.lowlevel.cancel_shielded_checkpoint()
            data = self._grpc_connection.data_to_send()
            if data:
                await self._stream.send(data)
            elif self._running:
                await self._flush_event.wait()
                self._flush_event = trio.Event()
            else:
                return

    async def flush(self) -> None:
        self._flush_event.set()


class ServerConnection(GRPCProtoSocket):  # type: ignore[misc]
    """`async with` it around an accepted socket; `listen()` yields a stream per new call."""

    StreamClass = _ServerStream

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
        self._socket = _Writer(self._grpc_connection, stream)
        self._on_reset = on_reset
        self._max_message_bytes = max_message_bytes
        grpc_connection = self._grpc_connection
        grpc_connection._stream_reset = self._stream_reset
        grpc_connection._request_received = self._request_received
        grpc_connection._data_received = self._data_received
        self._h2: h2.connection.H2Connection = grpc_connection.h2_connection
        self._h2.encoder = _ResponseEncoder()
        decoder = _RequestDecoder(max_header_list_size=self._h2.decoder.max_header_list_size)
        decoder.max_allowed_table_size = self._h2.decoder.max_allowed_table_size
        self._h2.decoder = decoder
        # Our headers are purerpc's constants and statuses, lowercase and valid by
        # construction: h2 need not check and rewrite each of them on every call.
        self._h2.config.validate_outbound_headers = False
        self._h2.config.validate_inbound_headers = False  # `_headers_frame` checks them
        self._h2.config.normalize_outbound_headers = False
        dispatch = self._h2._frame_dispatch_table
        self._receive_window_update_frame = dispatch[WindowUpdateFrame]
        dispatch[WindowUpdateFrame] = self._window_update_frame
        self._receive_headers_frame = dispatch[HeadersFrame]
        dispatch[HeadersFrame] = self._headers_frame

    # ------------------------------------------------------------ reading

    async def listen(self) -> AsyncIterator[Any]:
        """Yield a stream per new call; return when the client closes the connection.

        purerpc's loop, but with no checkpoint per event: a read's events are all queued to
        their streams before any handler runs, and nothing else runs in between (so `forget`
        may drop a stream at any time). Events of a stream already forgotten are dropped.
        """
        streams = self._streams
        while True:
            try:
                data = await self._socket.recv(self._receive_buffer_size)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            events = self._grpc_connection.receive_data(data)
            await self._socket.flush()
            for event in events:
                stream_id = event.stream_id
                if isinstance(event, WindowUpdated):
                    if stream_id == 0:
                        for waiting in streams.values():
                            waiting._window_opened()
                    elif stream_id in streams:
                        streams[stream_id]._window_opened()
                    continue
                if isinstance(event, RequestReceived):
                    stream = self._allocate_stream(stream_id)
                else:
                    stream = streams.get(stream_id)
                    if stream is None:
                        self._discard(event)
                        continue
                stream._put_event(event)
                if isinstance(event, RequestReceived):
                    yield stream
                elif isinstance(event, RequestEnded | ResponseEnded):
                    stream._close_remote()

    def _stream_reset(self, event: Any) -> list[object]:
        self._on_reset(event.stream_id)
        return []

    def _window_update_frame(self, frame: WindowUpdateFrame) -> Any:
        """h2's WINDOW_UPDATE handler, except for a stream closed and cleaned up: ignored.

        RFC 7540 §5.1: WINDOW_UPDATE (and RST_STREAM, which h2 already ignores) may arrive on
        a stream shortly after it closed, and must be ignored. h2 does so while it still
        tracks the stream, and raises StreamClosedError (a connection error) after.
        """
        stream_id = frame.stream_id
        h2_connection = self._h2
        if (
            stream_id
            and stream_id not in h2_connection.streams
            and h2_connection._stream_closed_by(stream_id) is not None
        ):
            events = h2_connection.state_machine.process_input(
                h2.connection.ConnectionInputs.RECV_WINDOW_UPDATE
            )
            return [], events
        return self._receive_window_update_frame(frame)

    def _headers_frame(self, frame: HeadersFrame) -> Any:
        """h2's HEADERS handler, except that a malformed request is an error of its stream.

        h2 validates a request's headers (pseudo-headers, uppercase names, connection-specific
        fields) once it has opened the stream, and raises a plain ProtocolError, which ends
        the connection; RFC 7540 §8.1.2.6 makes it a stream error of type PROTOCOL_ERROR.
        Errors before the stream exists (HPACK, stream ids, limits) stay connection errors,
        and so do malformed trailers, as in h2. h2's own check is off (seven generators
        chained over every field of every request): `_malformed` makes the same in one pass.
        """
        h2_connection = self._h2
        opening = frame.stream_id not in h2_connection.streams
        try:
            frames, events = self._receive_headers_frame(frame)
            for event in events:
                if isinstance(event, _H2_HEADERS_RECEIVED):
                    trailers = isinstance(event, h2.events.TrailersReceived)
                    problem = _malformed(event.headers, trailers=trailers)
                    if problem is not None:
                        raise h2.exceptions.ProtocolError(problem)
        except h2.exceptions.ProtocolError as exc:
            if not (
                opening
                and type(exc) is h2.exceptions.ProtocolError
                and frame.stream_id in h2_connection.streams
            ):
                raise
            log.debug("gRPC stream %d reset: malformed request: %s", frame.stream_id, exc)
            self._reset(frame.stream_id, ErrorCodes.PROTOCOL_ERROR)
            return [], []
        return frames, events

    def _request_received(self, event: Any) -> list[object]:
        try:
            request = RequestReceived.parse_from_stream_id_and_headers_destructive(
                event.stream_id, HeaderDict(event.headers)
            )
        except _MALFORMED_REQUEST as exc:
            reason = f"missing header {exc}" if isinstance(exc, KeyError) else str(exc)
            self._reject(event.stream_id, f"malformed request: {reason}", ended=event.stream_ended)
            return []
        # With END_STREAM on the HEADERS frame (a request of no messages), h2's StreamEnded
        # follows, and purerpc turns it into RequestEnded as it finds this buffer.
        self._grpc_connection.message_read_buffers[event.stream_id] = MessageReadBuffer(
            request.message_encoding, self._max_message_bytes
        )
        return [request]

    def _reject(self, stream_id: int, message: str, *, ended: bool) -> None:
        log.debug("gRPC stream %d rejected: %s", stream_id, message)
        self._grpc_connection.respond_status(stream_id, Status(StatusCode.INTERNAL, message))
        if not ended:
            self._reset(stream_id, ErrorCodes.NO_ERROR)

    def _reset(self, stream_id: int, error_code: ErrorCodes) -> None:
        try:
            self._h2.reset_stream(stream_id, error_code)
        except h2.exceptions.ProtocolError:
            pass  # the stream or the whole connection is closed already: nothing to stop

    def _data_received(self, event: Any) -> list[object]:
        stream_id = event.stream_id
        buffers = self._grpc_connection.message_read_buffers
        buffer = buffers.get(stream_id)
        if buffer is None:  # rejected, failed or forgotten: nobody reads it
            self._release(event.flow_controlled_length, stream_id)
            return []
        failure: ProtocolError | None = None
        try:
            buffer.data_received(event.data, event.flow_controlled_length)
        except ProtocolError as exc:  # too large, or an unknown compression
            failure = exc
        events: list[object] = [
            MessageReceived(stream_id, message, flow_controlled_length)
            for message, flow_controlled_length in buffer.read_all_complete_messages_flowcontrol()
        ]
        if failure is not None:
            del buffers[stream_id]
            self._release(_unread_bytes(buffer), stream_id)
            events.append(_RequestFailed(stream_id, failure))
        return events

    def _release(self, flow_controlled_length: int, stream_id: int) -> None:
        """Give the bytes of discarded DATA back to the window (else the connection stalls)."""
        if flow_controlled_length:
            self._h2.acknowledge_received_data(flow_controlled_length, stream_id)

    def _discard(self, event: Any) -> None:
        if isinstance(event, MessageReceived):
            self._release(event.flow_controlled_length, event.stream_id)

    # ------------------------------------------------------------ ending streams

    def forget(self, stream_id: int) -> None:
        """Drop a stream whose call is over (purerpc only drops streams closed both ways)."""
        self._grpc_connection.message_read_buffers.pop(stream_id, None)
        h2_stream = self._h2.streams.get(stream_id)
        if h2_stream is not None and not h2_stream.closed:
            # The client is still sending: tell it to stop. NO_ERROR if it has our answer.
            answered = h2_stream.state_machine.state in _CLOSED_BY_US
            self._reset(stream_id, ErrorCodes.NO_ERROR if answered else ErrorCodes.CANCEL)
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            for event in stream._events:
                self._discard(event)
            stream._events.clear()

    async def refuse(self, stream_id: int) -> None:
        self._reset(stream_id, ErrorCodes.REFUSED_STREAM)  # unless the client gave up first
        self.forget(stream_id)
        await self._socket.flush()

    async def send_goaway(self) -> None:
        h2_connection = self._h2
        frame = GoAwayFrame(
            stream_id=0,
            last_stream_id=h2_connection.highest_inbound_stream_id,
            error_code=ErrorCodes.NO_ERROR,
            additional_data=b"server is shutting down",
        )
        h2_connection._data_to_send += frame.serialize()
        await self._socket.flush()

    async def close(self) -> None:
        """Queue the final GOAWAY; it is written when the `async with` block exits."""
        self._h2.close_connection(error_code=ErrorCodes.NO_ERROR)
        await self._socket.flush()


def _malformed(headers: list[tuple[str, str]], *, trailers: bool) -> str | None:
    """Why a received header block is malformed (RFC 7540 §8.1.2), or None if it is not.

    The checks h2 3.x makes when it validates inbound headers, for a server: field names
    lowercase, without surrounding whitespace, not connection-specific; `te` only
    "trailers"; pseudo-headers known, once each, before the other fields, none in trailers;
    a request has `:method`, `:scheme` and a non-empty `:path`, an `:authority` or a `host`
    (the same if both), no `:status`, and `:protocol` only for CONNECT.
    """
    pseudo: dict[str, str] = {}
    regular = False
    host: str | None = None
    for name, value in headers:
        if not name or name[0] in _WHITESPACE or name[-1] in _WHITESPACE:
            return f"header name {name!r} empty or surrounded by whitespace"
        if value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE):
            return f"value of {name} surrounded by whitespace"
        if _UPPERCASE.search(name):
            return f"uppercase header name {name!r}"
        if name[0] == ":":
            if regular:
                return f"pseudo-header {name} after a regular header"
            if name in pseudo:
                return f"duplicate pseudo-header {name}"
            if name not in _PSEUDO_HEADERS:
                return f"unknown pseudo-header {name}"
            pseudo[name] = value
            continue
        regular = True
        if name in _CONNECTION_SPECIFIC:
            return f"connection-specific header {name}"
        if name == "te" and value.lower() != "trailers":
            return f"te header {value!r}, not trailers"
        if name == "host":
            host = value
    if trailers:
        return f"pseudo-headers in trailers: {sorted(pseudo)}" if pseudo else None
    for required in (":method", ":scheme", ":path"):
        if required not in pseudo:
            return f"no {required} pseudo-header"
    if ":status" in pseudo:
        return "a :status pseudo-header in a request"
    if ":protocol" in pseudo and pseudo[":method"] != "CONNECT":
        return "a :protocol pseudo-header in a request other than CONNECT"
    authority = pseudo.get(":authority")
    if authority is None and host is None:
        return "neither :authority nor host"
    if authority is not None and host is not None and authority != host:
        return f":authority {authority!r} and host {host!r} differ"
    if not pseudo[":path"]:
        return "an empty :path"
    return None


def _unread_bytes(buffer: MessageReadBuffer) -> int:
    """Flow-controlled bytes a failed read buffer holds: its partial message, header included."""
    pending: int = buffer._flow_controlled_length or 0
    queued: int = sum(length for _, length in buffer._buffer._deque)
    return pending + queued
