"""Marketplace integration through a running chat replica: events out on the cell's stream
(valid CloudEvents, through the outbox, surviving a Redis outage), events in from the
marketplace stream (orders, products, blocks). Real Cassandra and Redis; grpcio clients."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import attrs
import coredis
import grpc
import pytest
import trio

from cellchat.api.chat.v1 import chat_pb2 as pb
from cellchat.api.chat.v1 import chat_pb2_grpc
from cellchat.auth import mint_token
from cellchat.chat.server import ChatPorts, serve_chat
from cellchat.events import catalog, envelope
from cellchat.events.catalog import SchemaRegistry
from cellchat.events.envelope import CloudEvent
from cellchat.settings import Settings
from tests.integration.test_chat_grpc import JWT


@attrs.frozen
class Cell:
    cell_id: str
    stub: chat_pb2_grpc.ChatServiceStub
    redis: coredis.Redis[str]
    stream_in: str
    ws_port: int

    async def call(self, method: str, request: Any, user: str) -> Any:
        metadata = [("authorization", f"Bearer {mint_token(JWT, user)}")]
        fn = getattr(self.stub, method)
        return await trio.to_thread.run_sync(
            lambda: fn(request, metadata=metadata, timeout=20))

    async def published(self) -> list[CloudEvent]:
        entries = await self.redis.xrange(catalog.events_stream(self.cell_id))
        return [envelope.decode(entry.field_values["event"]) for entry in entries]

    async def inject(self, event_type: str, data: dict[str, Any]) -> None:
        event = CloudEvent(id=str(uuid.uuid4()), source="marketplace/test", type=event_type,
                           data=data, time=None)
        await self.redis.xadd(self.stream_in, {"event": envelope.encode(event)})


@pytest.fixture
async def cell(nursery: trio.Nursery, cassandra: Any, cql_keyspace: str,
               redis: Any) -> AsyncIterator[Cell]:
    cell_id = f"t{uuid.uuid4().hex[:8]}"
    stream_in = f"marketplace.{cell_id}"
    settings = Settings(
        cell_id=cell_id, scylla_hosts=(cassandra.host,), scylla_port=cassandra.port,
        scylla_keyspace=cql_keyspace, migrate_on_start=False, redis_url=redis.url,
        marketplace_stream=stream_in, grpc_port=0, ws_port=0, ops_port=0, jwt=JWT,
        dev_jwt=False,
    )
    client: coredis.Redis[str] = coredis.Redis.from_url(redis.url, decode_responses=True)
    async with client:
        # The consumer group starts at the end of the stream: create it first.
        await client.xgroup_create(stream_in, catalog.consumer_group(cell_id), "$",
                                   mkstream=True)
        ports: ChatPorts = await nursery.start(serve_chat, settings)
        channel = grpc.insecure_channel(f"127.0.0.1:{ports.grpc}")
        try:
            yield Cell(cell_id, chat_pb2_grpc.ChatServiceStub(channel), client, stream_in,
                       ports.ws)
        finally:
            channel.close()
            nursery.cancel_scope.cancel()


async def wait_for(predicate: Any, limit_s: float = 20) -> Any:
    with trio.fail_after(limit_s):
        while True:
            value = await predicate()
            if value:
                return value
            await trio.sleep(0.1)


async def test_published_events_are_valid_and_complete(cell: Cell) -> None:
    buyer, seller = f"b-{uuid.uuid4().hex[:6]}", f"s-{uuid.uuid4().hex[:6]}"
    created = await cell.call("CreateConversation", pb.CreateConversationRequest(
        kind=pb.CONVERSATION_KIND_DIRECT, counterpart_id=seller), buyer)
    cid = created.conversation.conversation_id
    for n in range(3):
        await cell.call("SendMessage", pb.SendMessageRequest(
            conversation_id=cid, client_message_id=f"m{n}", kind=pb.MESSAGE_KIND_TEXT,
            text=f"hello {n}"), buyer)
    await cell.call("MarkMessagesAsRead", pb.MarkMessagesAsReadRequest(conversation_id=cid),
                    seller)

    async def all_there() -> list[CloudEvent] | None:
        events = await cell.published()
        return events if len(events) >= 5 else None

    events = await wait_for(all_there)
    registry = SchemaRegistry()
    for event in events:
        registry.validate(event)
        assert event.source == f"cellchat/{cell.cell_id}"
    types = [e.type for e in events]
    assert types.count(catalog.CONVERSATION_CREATED) == 1
    assert types.count(catalog.MESSAGE_READ) == 1
    sent = [e.data["seq"] for e in events if e.type == catalog.MESSAGE_SENT]
    assert sent == [1, 2, 3]  # per conversation, in seq order
    assert len({e.id for e in events}) == len(events)


async def test_a_redis_outage_delays_events_and_loses_none(cell: Cell, redis: Any) -> None:
    buyer, seller = f"b-{uuid.uuid4().hex[:6]}", f"s-{uuid.uuid4().hex[:6]}"
    created = await cell.call("CreateConversation", pb.CreateConversationRequest(
        kind=pb.CONVERSATION_KIND_DIRECT, counterpart_id=seller), buyer)
    cid = created.conversation.conversation_id
    redis.kill()
    try:
        for n in range(5):  # the chat API keeps working: storage is Cassandra
            await cell.call("SendMessage", pb.SendMessageRequest(
                conversation_id=cid, client_message_id=f"m{n}", kind=pb.MESSAGE_KIND_TEXT,
                text="while redis is down"), buyer)
    finally:
        redis.restart()

    async def all_sent() -> list[int] | None:
        try:
            events = await cell.published()
        except Exception:  # the client is reconnecting
            return None
        seqs = [e.data["seq"] for e in events
                if e.type == catalog.MESSAGE_SENT and e.data["conversation_id"] == cid]
        return seqs if len(set(seqs)) == 5 else None

    seqs = await wait_for(all_sent, limit_s=60)
    assert sorted(set(seqs)) == [1, 2, 3, 4, 5]


async def test_consumed_events_change_the_chat(cell: Cell) -> None:
    tag = uuid.uuid4().hex[:6]
    buyer, seller = f"b-{tag}", f"s-{tag}"
    order_id, product_id = f"o-{tag}", f"p-{tag}"
    await cell.inject(catalog.ORDER_CREATED, {
        "order_id": order_id, "buyer_id": buyer, "seller_id": seller, "status": "paid",
        "total": {"amount_minor": 4200, "currency": "EUR"}, "item_count": 2})

    async def inbox() -> Any:
        page = await cell.call("GetUserConversations", pb.GetUserConversationsRequest(), seller)
        return [c for c in page.conversations if c.last_message.seq == 1] or None

    summary = (await wait_for(inbox))[0]
    assert summary.conversation.context.order_id == order_id
    assert summary.last_message.order.total.amount_minor == 4200
    assert summary.last_message.sender_id == "system"
    cid = summary.conversation.conversation_id

    await cell.call("SendMessage", pb.SendMessageRequest(
        conversation_id=cid, client_message_id="card", kind=pb.MESSAGE_KIND_PRODUCT,
        product=pb.ProductCard(product_id=product_id, title="Lamp",
                               price=pb.Money(amount_minor=1999, currency="EUR"))), seller)
    await cell.inject(catalog.PRODUCT_UPDATED, {
        "product_id": product_id, "title": "Lamp", "image_url": "https://i/l.png",
        "price": {"amount_minor": 1499, "currency": "EUR"}, "available": True, "version": 3})

    async def repriced() -> Any:
        page = await cell.call("GetMessages", pb.GetMessagesRequest(conversation_id=cid), buyer)
        card = page.messages[0]
        return card if card.product_current.price.amount_minor == 1499 else None

    card = await wait_for(repriced)
    assert card.product.price.amount_minor == 1999  # what was shown when sent

    await cell.inject(catalog.USER_BLOCKED, {"blocker_id": seller, "blocked_id": buyer,
                                             "at_ms": 1000})

    async def blocked() -> bool:
        try:
            await cell.call("SendMessage", pb.SendMessageRequest(
                conversation_id=cid, client_message_id=f"try-{uuid.uuid4()}",
                kind=pb.MESSAGE_KIND_TEXT, text="hello?"), buyer)
        except grpc.RpcError as exc:
            refusals.append(exc.code())
            return True
        return False

    refusals: list[grpc.StatusCode] = []

    await wait_for(blocked)
    assert refusals == [grpc.StatusCode.PERMISSION_DENIED]
    # replayed out of order: the older unblock changes nothing, the newer one lifts it
    await cell.inject(catalog.USER_UNBLOCKED, {"blocker_id": seller, "blocked_id": buyer,
                                               "at_ms": 500})
    await cell.inject(catalog.USER_UNBLOCKED, {"blocker_id": seller, "blocked_id": buyer,
                                               "at_ms": 2000})

    async def unblocked() -> bool:
        return not await blocked()

    await wait_for(unblocked)
    # every consumed event was handled: nothing went to the dead-letter stream
    assert await cell.redis.xrange(catalog.dead_letter_stream(cell.stream_in)) == ()


async def test_malformed_events_are_dead_lettered(cell: Cell) -> None:
    await cell.redis.xadd(cell.stream_in, {"event": "{not json"})
    await cell.inject("com.marketplace.unknown.v1", {"x": 1})

    async def dead() -> Any:
        entries = await cell.redis.xrange(catalog.dead_letter_stream(cell.stream_in))
        return entries if len(entries) >= 2 else None

    entries = await wait_for(dead)
    reasons = sorted(entry.field_values["reason"] for entry in entries)
    assert reasons == ["malformed", "unknown_type"]
    assert json.dumps([dict(entry.field_values) for entry in entries])  # plain strings


async def test_presence_transitions_are_published(cell: Cell) -> None:
    import websockets

    user = f"u-{uuid.uuid4().hex[:6]}"
    url = (f"ws://127.0.0.1:{cell.ws_port}/ws/chat?token={mint_token(JWT, user)}"
           f"&user_id={user}")

    async def presence_events() -> list[CloudEvent]:
        return [e for e in await cell.published()
                if e.type in (catalog.USER_ONLINE, catalog.USER_OFFLINE)
                and e.data["user_id"] == user]

    def connect_and_leave() -> None:
        from websockets.sync.client import connect

        with connect(url, open_timeout=10) as socket:
            socket.recv(timeout=10)  # hello: the connection is registered

    assert websockets  # the stock client library the test uses
    await trio.to_thread.run_sync(connect_and_leave)

    async def both() -> list[CloudEvent] | None:
        events = await presence_events()
        return events if len(events) >= 2 else None

    events = await wait_for(both, limit_s=30)
    assert [e.type for e in events] == [catalog.USER_ONLINE, catalog.USER_OFFLINE]
    registry = SchemaRegistry()
    for event in events:
        registry.validate(event)
