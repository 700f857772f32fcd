"""The chat API over real sockets, called with stock grpcio stubs, stored in Cassandra.

The server runs in the test's Trio loop; the grpcio client is blocking, so each call runs in a
worker thread. Every test names its own users, so tests share the session's keyspace.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import grpc
import pytest
import trio

from cellchat.api.chat.v1 import chat_pb2 as pb
from cellchat.api.chat.v1 import chat_pb2_grpc
from cellchat.auth import JwtSettings, mint_token
from cellchat.chat.server import ChatPorts, serve_chat
from cellchat.settings import Settings

JWT = JwtSettings(verify_key="integration-secret-0123456789abcdef")


@attrs.frozen
class Client:
    stub: chat_pb2_grpc.ChatServiceStub
    channel: grpc.Channel

    async def call(self, method: str, request: Any, user: str | None, *,
                   token: str | None = None, deadline_s: float = 20) -> Any:
        metadata = []
        if token is None and user is not None:
            token = mint_token(JWT, user)
        if token is not None:
            metadata.append(("authorization", f"Bearer {token}"))
        fn: Callable[..., Any] = getattr(self.stub, method)
        return await trio.to_thread.run_sync(
            lambda: fn(request, metadata=metadata, timeout=deadline_s)
        )


@pytest.fixture
async def chat(nursery: trio.Nursery, cassandra: Any, cql_keyspace: str) -> AsyncIterator[Client]:
    settings = Settings(
        scylla_hosts=(cassandra.host,), scylla_port=cassandra.port,
        scylla_keyspace=cql_keyspace, migrate_on_start=False,
        grpc_port=0, ws_port=0, ops_port=0, jwt=JWT, dev_jwt=False,
    )
    ports: ChatPorts = await nursery.start(serve_chat, settings)
    channel = grpc.insecure_channel(f"127.0.0.1:{ports.grpc}")
    try:
        yield Client(chat_pb2_grpc.ChatServiceStub(channel), channel)
    finally:
        channel.close()


def users() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"buyer-{tag}", f"seller-{tag}"


async def direct(chat: Client, buyer: str, seller: str, product: str = "") -> str:
    response = await chat.call(
        "CreateConversation",
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_DIRECT, counterpart_id=seller,
                                     context=pb.Context(product_id=product)),
        buyer,
    )
    return str(response.conversation.conversation_id)


async def expect_status(code: grpc.StatusCode, coro: Any) -> str:
    with pytest.raises(grpc.RpcError) as info:
        await coro
    assert info.value.code() == code, info.value.details()
    return str(info.value.details())


async def test_buyer_seller_conversation_end_to_end(chat: Client) -> None:
    buyer, seller = users()
    with trio.fail_after(60):
        cid = await direct(chat, buyer, seller, "listing-1")
        assert cid == await direct(chat, buyer, seller, "listing-1")
        sent = await chat.call("SendMessage", pb.SendMessageRequest(
            conversation_id=cid, client_message_id="c-1", kind=pb.MESSAGE_KIND_TEXT,
            text="Is the lamp still available?"), buyer)
        assert sent.message.seq == 1
        assert not sent.duplicate
        retry = await chat.call("SendMessage", pb.SendMessageRequest(
            conversation_id=cid, client_message_id="c-1", kind=pb.MESSAGE_KIND_TEXT,
            text="Is the lamp still available?"), buyer)
        assert retry.duplicate
        assert retry.message.message_id == sent.message.message_id
        card = await chat.call("SendMessage", pb.SendMessageRequest(
            conversation_id=cid, client_message_id="c-2", kind=pb.MESSAGE_KIND_PRODUCT,
            product=pb.ProductCard(product_id="lamp-1", title="Lamp",
                                   price=pb.Money(amount_minor=1999, currency="EUR"))), seller)
        assert card.message.seq == 2
        assert card.message.product.price.amount_minor == 1999
        inbox = await chat.call("GetUserConversations", pb.GetUserConversationsRequest(), buyer)
        top = inbox.conversations[0]
        assert top.conversation.conversation_id == cid
        assert top.unread_count == 1
        assert top.last_message.seq == 2
        read = await chat.call("MarkMessagesAsRead", pb.MarkMessagesAsReadRequest(
            conversation_id=cid), buyer)
        assert (read.read_seq, read.unread_count) == (2, 0)
        history = await chat.call("GetMessages", pb.GetMessagesRequest(conversation_id=cid),
                                  seller)
        assert [m.seq for m in history.messages] == [2, 1]
        assert history.messages[0].status == pb.DELIVERY_STATUS_READ
        edited = await chat.call("EditMessage", pb.EditMessageRequest(
            conversation_id=cid, seq=1, text="Is the lamp available?"), buyer)
        assert edited.message.version == 2
        deleted = await chat.call("DeleteMessage", pb.DeleteMessageRequest(
            conversation_id=cid, seq=1), buyer)
        assert deleted.message.deleted
        assert deleted.message.seq == 1


async def test_precise_statuses_and_nothing_written(chat: Client) -> None:
    buyer, seller = users()
    with trio.fail_after(60):
        cid = await direct(chat, buyer, seller)
        details = await expect_status(grpc.StatusCode.INVALID_ARGUMENT, chat.call(
            "SendMessage", pb.SendMessageRequest(conversation_id=cid, client_message_id="x",
                                                 kind=pb.MESSAGE_KIND_TEXT, text="x" * 5000),
            buyer))
        assert details.startswith("text:")
        details = await expect_status(grpc.StatusCode.INVALID_ARGUMENT, chat.call(
            "SendMessage", pb.SendMessageRequest(conversation_id=cid, client_message_id="y",
                                                 kind=99, text="hi"), buyer))
        assert details.startswith("kind:")
        details = await expect_status(grpc.StatusCode.INVALID_ARGUMENT, chat.call(
            "SendMessage", pb.SendMessageRequest(conversation_id=cid, client_message_id="z",
                                                 kind=pb.MESSAGE_KIND_IMAGE), buyer))
        assert details.startswith("image:")
        await expect_status(grpc.StatusCode.INVALID_ARGUMENT, chat.call(
            "GetMessages", pb.GetMessagesRequest(conversation_id="nope"), buyer))
        await expect_status(grpc.StatusCode.INVALID_ARGUMENT, chat.call(
            "GetMessages", pb.GetMessagesRequest(conversation_id=cid, page_size=1000), buyer))
        await expect_status(grpc.StatusCode.NOT_FOUND, chat.call(
            "GetMessages", pb.GetMessagesRequest(conversation_id=cid), "eve-stranger"))
        await expect_status(grpc.StatusCode.NOT_FOUND, chat.call(
            "GetMessages", pb.GetMessagesRequest(conversation_id=str(uuid.uuid4())), buyer))
        await chat.call("SendMessage", pb.SendMessageRequest(
            conversation_id=cid, client_message_id="ok", kind=pb.MESSAGE_KIND_TEXT,
            text="mine"), buyer)
        await expect_status(grpc.StatusCode.PERMISSION_DENIED, chat.call(
            "EditMessage", pb.EditMessageRequest(conversation_id=cid, seq=1, text="theirs"),
            seller))
        await expect_status(grpc.StatusCode.UNAUTHENTICATED, chat.call(
            "GetMessages", pb.GetMessagesRequest(conversation_id=cid), None))
        await expect_status(grpc.StatusCode.UNAUTHENTICATED, chat.call(
            "GetMessages", pb.GetMessagesRequest(conversation_id=cid), None,
            token=mint_token(attrs.evolve(JWT, verify_key="some-other-secret-0123456789abcdefgh"),
                             buyer)))
        await expect_status(grpc.StatusCode.UNAUTHENTICATED, chat.call(
            "GetMessages", pb.GetMessagesRequest(conversation_id=cid), None,
            token=mint_token(JWT, buyer, ttl_s=-3600)))
        history = await chat.call("GetMessages", pb.GetMessagesRequest(conversation_id=cid),
                                  buyer)
        assert [m.seq for m in history.messages] == [1]


async def test_group_burst_from_twenty_senders(chat: Client) -> None:
    tag = uuid.uuid4().hex[:8]
    admin = f"admin-{tag}"
    members = [f"m{i}-{tag}" for i in range(19)]
    with trio.fail_after(120):
        group = await chat.call("CreateConversation", pb.CreateConversationRequest(
            kind=pb.CONVERSATION_KIND_GROUP, title="Support", member_ids=members), admin)
        cid = group.conversation.conversation_id
        errors: list[Exception] = []

        async def sender(who: str) -> None:
            for n in range(5):
                try:
                    await chat.call("SendMessage", pb.SendMessageRequest(
                        conversation_id=cid, client_message_id=f"{who}-{n}",
                        kind=pb.MESSAGE_KIND_TEXT, text=f"{who} says {n}"), who)
                except grpc.RpcError as exc:
                    errors.append(exc)

        async with trio.open_nursery() as nursery:
            for who in [admin, *members]:
                nursery.start_soon(sender, who)
        assert errors == []
        seqs: list[int] = []
        before = 0
        while True:
            page = await chat.call("GetMessages", pb.GetMessagesRequest(
                conversation_id=cid, page_size=100, before_seq=before), admin)
            seqs += [m.seq for m in page.messages]
            if not page.has_more:
                break
            before = page.messages[-1].seq
        assert sorted(seqs) == list(range(1, 101))
