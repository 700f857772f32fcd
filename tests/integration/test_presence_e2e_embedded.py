"""Presence on the embedded default: `serve_chat` with default settings (SQLite, in-process
broker, presence in the same process) and `websockets` clients. Connecting, going away,
disconnecting and a lapsing typing indicator reach the peer as frames; the presence API is on
the chat gRPC port; a stranger gets nothing.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
import trio

from cellchat.api.presence.v1 import presence_pb2 as pb
from cellchat.api.presence.v1 import presence_pb2_grpc
from cellchat.chat.server import ChatPorts, serve_chat
from cellchat.presence.config import PresenceConfig
from tests.integration.test_ws_embedded import WsClient, embedded_settings, token, users

FAST = PresenceConfig(lease_ttl_ms=2_000, heartbeat_interval_ms=500, typing_ttl_ms=1_000,
                      sweep_interval_ms=100)


@pytest.fixture
async def chat(nursery: trio.Nursery) -> ChatPorts:
    ports: ChatPorts = await nursery.start(serve_chat, embedded_settings(presence=FAST))
    return ports


async def presence_api(port: int, method: str, request: Any, user: str) -> Any:
    def call() -> Any:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = presence_pb2_grpc.PresenceServiceStub(channel)
            return getattr(stub, method)(
                request, metadata=[("authorization", f"Bearer {token(user)}")], timeout=10)
    return await trio.to_thread.run_sync(call)


async def test_presence_frames_between_two_clients_on_the_embedded_default(
        chat: ChatPorts) -> None:
    buyer, seller, stranger = users("buyer", "seller", "stranger")
    with trio.fail_after(60):
        b = await WsClient.open(chat.ws, buyer)
        hello = b.seen[0]
        assert hello["revision"] >= 2  # presence.status and pushed presence arrived in 2
        assert hello["typing_ttl_ms"] == FAST.typing_ttl_ms  # one setting, shared
        await b.subscribe()
        cid = await b.open_direct(seller)
        x = await WsClient.open(chat.ws, stranger)
        await x.subscribe()

        s = await WsClient.open(chat.ws, seller)
        await s.subscribe()
        online = await b.expect("presence", user_id=seller)
        assert (online["online"], online["status"]) == (True, "online")

        # The presence API answers on the chat gRPC port.
        seen = await presence_api(chat.grpc, "GetOnlineStatus",
                                  pb.GetOnlineStatusRequest(user_ids=[seller, stranger]), buyer)
        assert [p.status for p in seen.presences] == [
            pb.PRESENCE_STATUS_ONLINE, pb.PRESENCE_STATUS_UNKNOWN]

        # AWAY: still online, with the status.
        await presence_api(chat.grpc, "SetOnlineStatus",
                           pb.SetOnlineStatusRequest(status=pb.PRESENCE_STATUS_AWAY), seller)
        away = await b.expect("presence", user_id=seller)
        assert (away["online"], away["status"]) == (True, "away")
        await presence_api(chat.grpc, "SetOnlineStatus",
                           pb.SetOnlineStatusRequest(status=pb.PRESENCE_STATUS_ONLINE), seller)
        assert (await b.expect("presence", user_id=seller))["status"] == "online"

        # Typing: the start comes from the WebSocket path, the stop from presence's expiry, once.
        await s.send(type="typing", conversation_id=cid, state="started")
        assert (await b.expect("typing.started"))["user_id"] == seller
        stopped = await b.expect("typing.stopped", within=FAST.typing_bound_ms / 1000 + 5)
        assert stopped == {"type": "typing.stopped", "conversation_id": cid, "user_id": seller}

        await s.close()
        offline = await b.expect("presence", user_id=seller)
        assert (offline["online"], offline["status"]) == (False, "offline")
        assert offline["last_seen_ms"] > 0

        later = await b.nothing(0.5)
        assert not [f for f in later if f["type"].startswith("typing")]  # no duplicate stop
        assert not [f for f in x.skipped + await x.nothing(0.2)
                    if f["type"] in ("presence", "typing.stopped")]
        await b.close()
        await x.close()
