"""A fault on one HTTP/2 stream ends that stream only: the other calls on the connection go on.

RFC 7540 §5.1 and §5.4.2: frames that arrive on a stream shortly after it closed (WINDOW_UPDATE,
RST_STREAM) are ignored, and a malformed or oversized request is an error of its stream. The
server under test is grpcutil's, over real sockets. Clients: stock grpcio (blocking, in worker
threads), and for the frame sequences grpcio only produces by chance, a raw h2 client that
writes them on purpose.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import attrs
import grpc
import h2.config
import h2.connection
import h2.events
import purerpc
import pytest
import trio
from google.protobuf import wrappers_pb2
from h2.errors import ErrorCodes
from hyperframe.frame import RstStreamFrame, WindowUpdateFrame

from cellchat.grpcutil import CallLimits, GrpcServer

T = TypeVar("T")

SERVICE = "cellchat.test.Streams"
PAYLOAD = b"x" * 1000


class Streams:
    """`Count(n)` streams n replies of 1 kB; `Size(bytes)` answers the size it received."""

    async def count(
        self, message: wrappers_pb2.UInt32Value
    ) -> AsyncIterator[wrappers_pb2.BytesValue]:
        for _ in range(message.value):
            yield wrappers_pb2.BytesValue(value=PAYLOAD)

    async def size(self, message: wrappers_pb2.BytesValue) -> wrappers_pb2.UInt32Value:
        return wrappers_pb2.UInt32Value(value=len(message.value))

    @property
    def service(self) -> purerpc.Service:
        service = purerpc.Service(SERVICE)
        service.add_method(
            "Count",
            self.count,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_STREAM,
                wrappers_pb2.UInt32Value,
                wrappers_pb2.BytesValue,
            ),
        )
        service.add_method(
            "Size",
            self.size,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY, wrappers_pb2.BytesValue, wrappers_pb2.UInt32Value
            ),
        )
        return service


@attrs.define
class Running:
    server: GrpcServer
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@asynccontextmanager
async def running(limits: CallLimits | None = None) -> AsyncIterator[Running]:
    server = GrpcServer([Streams().service], limits=limits)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: server.serve(task_status=task_status))
        yield Running(server, port)
        nursery.cancel_scope.cancel()


async def in_thread(fn: Callable[[], T]) -> T:
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


@asynccontextmanager
async def channel(target: str) -> AsyncIterator[grpc.Channel]:
    # A channel of its own: grpcio otherwise shares connections between channels.
    ch = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        yield ch
    finally:
        await in_thread(ch.close)


def count_call(ch: grpc.Channel) -> Any:
    return ch.unary_stream(
        f"/{SERVICE}/Count",
        request_serializer=wrappers_pb2.UInt32Value.SerializeToString,
        response_deserializer=wrappers_pb2.BytesValue.FromString,
    )


def size_call(ch: grpc.Channel) -> Any:
    return ch.unary_unary(
        f"/{SERVICE}/Size",
        request_serializer=wrappers_pb2.BytesValue.SerializeToString,
        response_deserializer=wrappers_pb2.UInt32Value.FromString,
    )


# ---------------------------------------------------------------- grpcio


def _four_streams_one_cancelled(ch: grpc.Channel, messages: int) -> list[int | str]:
    """Four concurrent Count streams; the first is cancelled after 20 replies. What each got."""
    calls = [count_call(ch)(wrappers_pb2.UInt32Value(value=messages), timeout=30) for _ in "abcd"]
    results: list[int | str] = [0] * len(calls)

    def consume(index: int) -> None:
        received = 0
        try:
            for _ in calls[index]:
                received += 1
                if index == 0 and received == 20:
                    calls[index].cancel()
        except grpc.RpcError as exc:
            results[index] = exc.code().name
            return
        results[index] = received

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


async def test_cancelling_one_stream_leaves_the_others_running() -> None:
    messages = 500
    with trio.fail_after(60):
        async with running() as srv, channel(srv.target) as ch:
            # Rounds on one connection: each round's new streams make h2 clean up the closed
            # ones, after which grpcio's late WINDOW_UPDATEs for them used to end the
            # connection (and every call on it, UNAVAILABLE).
            for _ in range(10):
                results = await in_thread(lambda: _four_streams_one_cancelled(ch, messages))
                assert results[0] in ("CANCELLED", messages)  # the server may finish first
                assert results[1:] == [messages] * 3
            assert srv.server.statistics().connections == 1
            assert await in_thread(lambda: size_call(ch)(wrappers_pb2.BytesValue(value=b"ok")))
            assert srv.server.statistics().calls_in_flight == 0


async def test_an_oversized_message_fails_its_call_only() -> None:
    limits = CallLimits(max_message_bytes=2048)
    with trio.fail_after(30):
        async with running(limits) as srv, channel(srv.target) as ch:
            stream = count_call(ch)(wrappers_pb2.UInt32Value(value=1), timeout=20)
            ok = wrappers_pb2.BytesValue(value=b"y" * 100)
            for _ in range(3):
                error = await in_thread(lambda: _rpc_error(size_call(ch), b"z" * 10_000))
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "larger than max" in error.details()
                answer = await in_thread(lambda: size_call(ch)(ok, timeout=10))
                assert answer.value == 100
            assert len(await in_thread(lambda: list(stream))) == 1
            assert srv.server.statistics().connections == 1


async def test_a_reply_over_the_size_limit_fails_its_call_only() -> None:
    limits = CallLimits(max_message_bytes=512)
    with trio.fail_after(30):
        async with running(limits) as srv, channel(srv.target) as ch:
            stream = count_call(ch)(wrappers_pb2.UInt32Value(value=1), timeout=20)
            with pytest.raises(grpc.RpcError) as raised:
                await in_thread(lambda: list(stream))
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "larger than max" in raised.value.details()
            ok = wrappers_pb2.BytesValue(value=b"y" * 100)
            assert (await in_thread(lambda: size_call(ch)(ok, timeout=10))).value == 100
            assert srv.server.statistics().connections == 1


def _rpc_error(call: Any, value: bytes) -> grpc.RpcError:
    try:
        call(wrappers_pb2.BytesValue(value=value), timeout=10)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the call succeeded")


# ---------------------------------------------------------------- a raw h2 client


@attrs.define
class Response:
    headers: dict[str, str] = attrs.Factory(dict)
    data: bytearray = attrs.Factory(bytearray)
    trailers: dict[str, str] = attrs.Factory(dict)
    reset: int | None = None
    ended: bool = False

    @property
    def status(self) -> int:
        # A trailers-only response carries grpc-status in its (only) headers.
        return int(self.trailers.get("grpc-status") or self.headers["grpc-status"])

    @property
    def message(self) -> str:
        return self.trailers.get("grpc-message") or self.headers.get("grpc-message", "")

    def messages(self) -> list[bytes]:
        found, at = [], 0
        while at < len(self.data):
            (length,) = struct.unpack(">I", self.data[at + 1 : at + 5])
            found.append(bytes(self.data[at + 5 : at + 5 + length]))
            at += 5 + length
        return found


class RawClient:
    """An h2 client connection that can also write frames grpcio would not write on purpose."""

    def __init__(self, socket: trio.SocketStream) -> None:
        self.socket = socket
        # Headers go out as written, even the malformed ones the tests send.
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding="utf-8",
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config)
        self.responses: dict[int, Response] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int) -> AsyncIterator[RawClient]:
        async with await trio.open_tcp_stream("127.0.0.1", port) as socket:
            client = cls(socket)
            client.h2.initiate_connection()
            await client.send()
            yield client

    def request(
        self,
        method: str,
        message: bytes | None,
        *,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> int:
        """Queue a call; `message=None`: END_STREAM on the HEADERS frame, no message."""
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", f"/{SERVICE}/{method}"),
                (":authority", "test"),
                ("te", "trailers"),
                ("content-type", "application/grpc+proto"),
                *headers,
            ],
            end_stream=message is None,
        )
        if message is not None:
            framed = struct.pack(">?I", False, len(message)) + message
            self.h2.send_data(stream_id, framed, end_stream=True)
        self.responses[stream_id] = Response()
        return stream_id

    async def send(self, extra: bytes = b"") -> None:
        await self.socket.send_all(self.h2.data_to_send() + extra)

    async def wait_ended(self, *stream_ids: int) -> None:
        """Read until these streams ended or were reset (or the server hung up)."""
        while not all(self._done(self.responses[s]) for s in stream_ids):
            data = await self.socket.receive_some()
            if not data:
                return
            for event in self.h2.receive_data(data):
                self._handle(event)
            await self.send()

    @staticmethod
    def _done(response: Response) -> bool:
        return response.ended or response.reset is not None

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
            return
        response = self.responses.get(getattr(event, "stream_id", 0))
        if response is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            response.headers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            response.data += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            response.trailers = dict(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            response.ended = True
        elif isinstance(event, h2.events.StreamReset):
            response.reset = event.error_code


def count_request(n: int) -> bytes:
    return wrappers_pb2.UInt32Value(value=n).SerializeToString()


async def test_window_update_for_a_closed_and_cleaned_up_stream_is_ignored() -> None:
    with trio.fail_after(20):
        async with running() as srv, RawClient.connect(srv.port) as client:
            for _ in range(3):
                first = client.request("Count", count_request(3))
                await client.send()
                await client.wait_ended(first)
                assert client.responses[first].status == 0
                # The next stream opens (h2 then forgets the closed one), and a WINDOW_UPDATE
                # and a RST_STREAM for the closed stream follow in the same write, as grpcio's
                # do.
                second = client.request("Count", count_request(3))
                late = WindowUpdateFrame(first, window_increment=1000).serialize()
                late += RstStreamFrame(first, error_code=ErrorCodes.CANCEL).serialize()
                await client.send(late)
                await client.wait_ended(second)
                assert client.goaway is None
                response = client.responses[second]
                assert (response.status, len(response.messages())) == (0, 3)
            assert srv.server.statistics().connections == 1


async def test_a_malformed_request_fails_its_stream_only() -> None:
    with trio.fail_after(20):
        async with running() as srv, RawClient.connect(srv.port) as client:
            good = client.request("Count", count_request(2))
            bad_timeout = client.request(
                "Count", count_request(2), headers=(("grpc-timeout", "soonS"),)
            )
            bad_metadata = client.request(
                "Count", count_request(2), headers=(("trace-bin", "not*base64"),)
            )
            uppercase = client.request("Count", count_request(2), headers=(("X-Trace", "1"),))
            also_good = client.request("Count", count_request(2))
            await client.send()
            await client.wait_ended(good, bad_timeout, bad_metadata, uppercase, also_good)
            assert client.goaway is None
            assert client.responses[uppercase].reset == ErrorCodes.PROTOCOL_ERROR
            for stream_id in (good, also_good):
                response = client.responses[stream_id]
                assert (response.status, len(response.messages())) == (0, 2)
            for stream_id in (bad_timeout, bad_metadata):
                response = client.responses[stream_id]
                assert response.status == grpc.StatusCode.INTERNAL.value[0]
                assert response.message.startswith("malformed%20request")
            assert srv.server.statistics().calls_started == 2


async def test_a_request_without_messages_is_answered_on_its_stream() -> None:
    # END_STREAM on the HEADERS frame is legal gRPC (a request stream of no messages); a
    # unary method then answers INTERNAL, as it expected one message.
    with trio.fail_after(20):
        async with running() as srv, RawClient.connect(srv.port) as client:
            empty = client.request("Size", None)
            good = client.request("Size", b"\x0a\x03abc")
            await client.send()
            await client.wait_ended(empty, good)
            assert client.goaway is None
            assert client.responses[empty].status == grpc.StatusCode.INTERNAL.value[0]
            assert client.responses[empty].message == "Expected%20one%20message%2C%20got%20zero"
            assert client.responses[good].status == 0
            assert client.responses[good].messages() == [b"\x08\x03"]
            assert srv.server.statistics().connections == 1


async def test_a_deadline_passed_ends_a_call_whose_request_is_all_queued() -> None:
    # The handler reads events already queued without a trip through the scheduler, but still
    # sees its cancellation: a call whose deadline is over before it starts (grpc-timeout 0)
    # ends DEADLINE_EXCEEDED, though its request came whole and its handler never waits.
    with trio.fail_after(20):
        async with running() as srv, RawClient.connect(srv.port) as client:
            late = client.request("Size", b"\x0a\x03abc", headers=(("grpc-timeout", "0u"),))
            good = client.request("Size", b"\x0a\x03abc")
            await client.send()
            await client.wait_ended(late, good)
            assert client.responses[late].status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
            assert client.responses[good].messages() == [b"\x08\x03"]
            assert srv.server.statistics().calls_deadline_exceeded == 1
