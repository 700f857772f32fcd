"""The database goes away and comes back: calls fail with UNAVAILABLE meanwhile, nothing is
half-written, and the service recovers by itself. The outage is a cut TCP proxy between the
service and the session's Cassandra node."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
import trio

from cellchat.api.chat.v1 import chat_pb2 as pb
from cellchat.api.chat.v1 import chat_pb2_grpc
from cellchat.auth import mint_token
from cellchat.chat.server import ChatPorts, serve_chat
from cellchat.settings import Settings
from tests.infra.proxy import Proxy
from tests.integration.test_chat_grpc import JWT


async def test_database_outage_gives_unavailable_then_recovers(
    nursery: trio.Nursery, cassandra: Any, cql_keyspace: str
) -> None:
    proxy = Proxy(cassandra.host, cassandra.port)
    proxy_port: int = await nursery.start(proxy.run)
    settings = Settings(
        scylla_hosts=("127.0.0.1",), scylla_port=proxy_port, scylla_keyspace=cql_keyspace,
        migrate_on_start=False, grpc_port=0, ws_port=0, ops_port=0, jwt=JWT, dev_jwt=False,
    )
    ports: ChatPorts = await nursery.start(serve_chat, settings)
    channel = grpc.insecure_channel(f"127.0.0.1:{ports.grpc}")
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    tag = uuid.uuid4().hex[:8]
    buyer = f"buyer-{tag}"
    auth = [("authorization", f"Bearer {mint_token(JWT, buyer)}")]

    def call(method: str, request: Any) -> Any:
        return getattr(stub, method)(request, metadata=auth, timeout=15)

    def send(client_id: str) -> Any:
        return call("SendMessage", pb.SendMessageRequest(
            conversation_id=cid, client_message_id=client_id, kind=pb.MESSAGE_KIND_TEXT,
            text=client_id))

    try:
        with trio.fail_after(120):
            created = await trio.to_thread.run_sync(call, "CreateConversation",
                pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_DIRECT,
                                             counterpart_id=f"seller-{tag}"))
            cid = created.conversation.conversation_id
            await trio.to_thread.run_sync(send, "before")
            proxy.cut()
            with pytest.raises(grpc.RpcError) as info:
                await trio.to_thread.run_sync(send, "during")
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
            proxy.restore()
            # The driver reconnects by itself (backoff capped at 10 s); retrying is safe.
            codes: list[grpc.StatusCode] = []
            while True:
                try:
                    retried = await trio.to_thread.run_sync(send, "during")
                    break
                except grpc.RpcError as exc:
                    codes.append(exc.code())
                    await trio.sleep(0.5)
            assert set(codes) <= {grpc.StatusCode.UNAVAILABLE}
            history = await trio.to_thread.run_sync(
                call, "GetMessages", pb.GetMessagesRequest(conversation_id=cid))
            assert [m.text for m in history.messages] == ["during", "before"]
            assert retried.message.seq == 2
    finally:
        channel.close()
        nursery.cancel_scope.cancel()
