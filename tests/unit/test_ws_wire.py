"""Pre-encoded text frames written straight to trio-websocket's stream (chat/realtime/wire.py).

The fast path relies on private attributes of the installed trio-websocket; these tests fail if
it would silently fall back to `send_message` (`FrameWriter.attach` returning None), and check
with a real trio-websocket client over loopback that the frames, interleaved with the library's
own pings and close frame, arrive intact and in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
import wsproto
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket,
    serve_websocket,
)
from wsproto.events import CloseConnection, TextMessage

from cellchat.chat.realtime.wire import (
    ConnectionGone,
    FrameWriter,
    encode_text_frames,
    text_frame,
    text_frame_header,
)


@pytest.mark.parametrize("text", ["", "a", "é" * 62, "x" * 125, "y" * 126, "z" * 65535,
                                  "w" * 65536, "{\"type\":\"message.created\"}"])
def test_frames_decode_as_wsproto_decodes_them(text: str) -> None:
    client = wsproto.Connection(wsproto.ConnectionType.CLIENT)
    client.receive_data(encode_text_frames([text.encode(), b"next"]))
    events = list(client.events())
    assert [e.data for e in events if isinstance(e, TextMessage)] == [text, "next"]
    assert all(e.message_finished for e in events if isinstance(e, TextMessage))


def test_headers_match_wsproto_for_a_server() -> None:
    server = wsproto.Connection(wsproto.ConnectionType.SERVER)
    for size in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        wire = server.send(TextMessage(data="a" * size))
        assert wire == text_frame_header(size) + b"a" * size


@asynccontextmanager
async def serving() -> AsyncIterator[tuple[int, trio.MemoryReceiveChannel[WebSocketConnection],
                                            trio.Event]]:
    """A trio-websocket server handing each accepted connection to the test."""
    send, receive = trio.open_memory_channel[WebSocketConnection](1)
    done = trio.Event()

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await send.send(ws)
        await done.wait()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        try:
            yield server.port, receive, done
        finally:
            done.set()
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def attached(max_message_size: int = 1 << 20) -> AsyncIterator[
        tuple[WebSocketConnection, FrameWriter, WebSocketConnection]]:
    """A server-side connection with its FrameWriter, and the trio-websocket client of it."""
    async with serving() as (port, accepted, _), \
            open_websocket("127.0.0.1", port, "/", use_ssl=False,
                           max_message_size=max_message_size) as client:
        ws = await accepted.receive()
        writer = FrameWriter.attach(ws)
        assert writer is not None
        yield ws, writer, client


async def test_the_fast_path_is_available_with_the_installed_trio_websocket() -> None:
    with trio.fail_after(10):
        async with serving() as (port, accepted, _), \
                open_websocket("127.0.0.1", port, "/", use_ssl=False) as client:
            ws = await accepted.receive()
            # If this fails, trio-websocket's internals moved: sessions now pay wsproto per
            # recipient (the public fallback). Re-check wire.py against the new version.
            assert FrameWriter.attach(ws) is not None
            await client.aclose()


async def test_batches_interleave_with_pings_and_end_with_the_close_frame() -> None:
    texts = [f"frame {i} " + "x" * (i * 37 % 300) for i in range(200)]
    with trio.fail_after(20):
        async with attached() as (ws, writer, client):
            got: list[str] = []
            codes: list[int] = []

            async def read_all() -> None:
                while True:
                    try:
                        message = await client.get_message()
                    except ConnectionClosed as closed:
                        codes.append(closed.reason.code)
                        return
                    assert isinstance(message, str)
                    got.append(message)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all)
                for start in range(0, len(texts), 20):
                    async with trio.open_nursery() as pings:
                        # the library's own writes (pings, their pongs) race with the batches
                        pings.start_soon(ws.ping)
                        await writer.write([text_frame(t.encode())
                                            for t in texts[start:start + 20]])
                await ws.aclose(4009, "slow consumer")
                with pytest.raises(ConnectionGone):
                    await writer.write([text_frame(b"after the close frame")])
            assert got == texts
            assert codes == [4009]


async def test_a_batch_larger_than_the_socket_takes_arrives_whole_and_in_order() -> None:
    """The direct write takes what the kernel accepts; the rest goes through `send_all` while a
    client reads slowly, with the library's pings racing it."""
    texts = [f"{i:05d}" + "b" * 60_000 for i in range(100)]  # ~6 MB: many socket buffers
    with trio.fail_after(30):
        async with attached() as (ws, writer, client):
            got: list[str] = []

            async def read_slowly() -> None:
                while len(got) < len(texts):
                    message = await client.get_message()
                    assert isinstance(message, str)
                    got.append(message)
                    if len(got) % 10 == 0:
                        await trio.sleep(0.01)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_slowly)
                nursery.start_soon(ws.ping)
                await writer.write([text_frame(t.encode()) for t in texts])
            assert got == texts


async def test_nothing_is_written_once_the_peer_closed() -> None:
    with trio.fail_after(10):
        async with serving() as (port, accepted, _):
            async with open_websocket("127.0.0.1", port, "/", use_ssl=False) as client:
                ws = await accepted.receive()
                writer = FrameWriter.attach(ws)
                assert writer is not None
                await client.aclose()
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
            with pytest.raises(ConnectionGone):
                await writer.write([text_frame(b"too late")])


def test_a_close_frame_is_understood_after_raw_frames() -> None:
    """The sans-I/O view of the ordering the writer keeps: data frames, then wsproto's close."""
    server = wsproto.Connection(wsproto.ConnectionType.SERVER)
    client = wsproto.Connection(wsproto.ConnectionType.CLIENT)
    client.receive_data(encode_text_frames([b"one", b"two"])
                        + server.send(CloseConnection(code=4001, reason="expired")))
    events = list(client.events())
    assert [type(e).__name__ for e in events] == ["TextMessage", "TextMessage",
                                                  "CloseConnection"]
    assert isinstance(events[2], CloseConnection)
    assert events[2].code == 4001


async def test_a_frame_begun_at_once_is_finished_by_the_writer_before_anything_else() -> None:
    """`try_write` writes what the kernel takes; the rest is the writer's, under a lock held
    in between, so the library's ping waits behind it and nothing interleaves."""
    big = text_frame(b"r" * 3_000_000)  # more than loopback's socket buffers take at once
    with trio.fail_after(20):
        async with attached(max_message_size=1 << 22) as (ws, writer, client):
            sent = writer.try_write(big)
            assert 0 < sent < len(big)
            assert writer.owed
            pinged = trio.Event()

            async def ping() -> None:
                await ws.ping()
                pinged.set()

            got: list[str] = []

            async def read() -> None:
                for _ in range(2):
                    message = await client.get_message()
                    assert isinstance(message, str)
                    got.append(message)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ping)
                await trio.testing.wait_all_tasks_blocked()
                assert writer.try_write(text_frame(b"no")) == 0  # busy: the caller queues
                nursery.start_soon(read)
                await writer.write([big[sent:], text_frame(b"after")])
                assert not writer.owed
                await pinged.wait()  # answered: the ping went out after the whole frame
            assert [len(m) for m in got] == [3_000_000, 5]
            assert got[1] == "after"


async def test_aborting_with_a_frame_unfinished_frees_whoever_waits_to_write() -> None:
    big = text_frame(b"a" * 3_000_000)
    with trio.fail_after(10):
        async with attached() as (ws, writer, _):
            assert 0 < writer.try_write(big) < len(big)
            outcome: list[str] = []

            async def ping() -> None:
                try:
                    await ws.ping()
                except ConnectionClosed:
                    outcome.append("closed")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ping)
                await trio.testing.wait_all_tasks_blocked()
                assert outcome == []  # waiting for the lock the unfinished frame holds
                await writer.abort()
            assert outcome == ["closed"]
            assert not writer.owed
