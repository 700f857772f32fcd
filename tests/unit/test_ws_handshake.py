"""Letting go of the HTTP handshake after the upgrade (chat/realtime/websocket.py).

`release_handshake` relies on a private attribute of the installed trio-websocket: these tests
fail if it would silently do nothing, and check over loopback, with a trio-websocket client,
that a connection whose handshake was released still reads, writes, pings and closes.
"""

from __future__ import annotations

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket,
    serve_websocket,
)

from cellchat.chat.realtime.websocket import release_handshake


async def test_a_released_connection_still_reads_writes_pings_and_closes() -> None:
    released: list[bool] = []
    received: list[str | bytes] = []

    async def handler(request: WebSocketRequest) -> None:
        ws: WebSocketConnection = await request.accept()
        # If this fails, trio-websocket's internals moved: every idle connection keeps its
        # HTTP handshake state again. Re-check `release_handshake` against the new version.
        released.append(release_handshake(ws))
        received.append(await ws.get_message())
        await ws.send_message("hello back")
        await ws.ping(b"beat")
        received.append(await ws.get_message())
        await ws.aclose(4000, "bye")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
            async with open_websocket("127.0.0.1", server.port, "/", use_ssl=False) as client:
                await client.send_message("hello")
                assert await client.get_message() == "hello back"
                await client.send_message(b"\x00" * 70_000)
                with pytest.raises(ConnectionClosed) as closed:
                    await client.get_message()
                assert closed.value.reason.code == 4000
            nursery.cancel_scope.cancel()
    assert released == [True]
    assert received == ["hello", b"\x00" * 70_000]


async def test_a_connection_not_yet_upgraded_is_left_alone() -> None:
    refused: list[bool] = []

    async def handler(request: WebSocketRequest) -> None:
        refused.append(release_handshake(request._connection))
        await request.reject(403)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
            with pytest.raises(ConnectionRejected):
                async with open_websocket("127.0.0.1", server.port, "/", use_ssl=False):
                    pass
            nursery.cancel_scope.cancel()
    assert refused == [False]
