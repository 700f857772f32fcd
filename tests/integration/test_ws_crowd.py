"""A large group across two replicas on a Redis that allows each subscriber only a small
output buffer: its events travel once per replica (the cell subject), not once per member, and
its conversation frames do not list every participant.

Before, a group's `conversation.created` went to each member's subject with the whole
participant list, so a replica's one subscriber connection got one copy per member; past
Redis's `client-output-buffer-limit pubsub` Redis dropped that connection and the replica closed
every socket with 1012. Here the limit is lowered (64 KiB) so that 120 members are enough to
show it: 60 copies of a ~9 KB frame per replica would be over 500 KB.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import coredis
import grpc
import pytest
import trio

from cellchat.api.chat.v1 import chat_pb2 as pb
from cellchat.api.chat.v1 import chat_pb2_grpc
from tests.infra import redis as redis_infra
from tests.infra.ports import free_port
from tests.integration.test_ws_embedded import WsClient, http_get, metric, token, users
from tests.integration.test_ws_replicas import Replica, signal_term, start_replica

pytestmark = [pytest.mark.cassandra, pytest.mark.redis]

MEMBERS = 120


@pytest.fixture(scope="module")
def tight_redis() -> Iterator[Any]:
    redis_infra.ensure_installed()
    server = redis_infra.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def crowd_replicas(cassandra: Any, cql_keyspace: str, tight_redis: Any
                   ) -> Iterator[tuple[tuple[Replica, int], tuple[Replica, int]]]:
    started: list[tuple[Replica, int]] = []
    with tempfile.TemporaryDirectory(prefix="cellchat-crowd-") as tmp:
        try:
            for name in ("crowd-1", "crowd-2"):
                grpc_port = free_port()
                replica = start_replica(name, cassandra, cql_keyspace, tight_redis.url,
                                        Path(tmp), GRPC_PORT=str(grpc_port),
                                        MAX_GROUP_PARTICIPANTS="500", WS_QUEUE_SIZE="256")
                started.append((replica, grpc_port))
            yield started[0], started[1]
        finally:
            for replica, _ in started:
                replica.process.kill(signal_term(), grace=5)


def create_group(grpc_port: int, admin: str, members: list[str]) -> str:
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        created = stub.CreateConversation(
            pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_GROUP, title="crowd",
                                         member_ids=members),
            metadata=[("authorization", f"Bearer {token(admin)}")], timeout=30)
    return str(created.conversation.conversation_id)


async def test_a_large_group_reaches_everyone_on_both_replicas_without_overflowing_redis(
        crowd_replicas: tuple[tuple[Replica, int], tuple[Replica, int]],
        tight_redis: Any) -> None:
    (one, grpc_one), (two, _) = crowd_replicas
    async with coredis.Redis(host=tight_redis.host, port=tight_redis.port,
                             decode_responses=True) as admin_client:
        await admin_client.config_set({"client-output-buffer-limit": "pubsub 64kb 64kb 0"})
    admin, *members = users("admin", *[f"m{i}" for i in range(MEMBERS)])
    with trio.fail_after(240):
        boss = await WsClient.open(one.ws, admin)
        clients = [await WsClient.open((one if i % 2 else two).ws, member)
                   for i, member in enumerate(members)]
        for client in (boss, *clients):
            await client.subscribe()

        cid = await trio.to_thread.run_sync(create_group, grpc_one, admin, members)

        for client in (boss, *clients):
            created = await client.expect("conversation.created", within=30)
            conversation = created["conversation"]
            assert conversation["conversation_id"] == cid
            assert conversation["participant_count"] == MEMBERS + 1
            assert conversation["participants_complete"] is False
            assert conversation["participants"] == []
        sent = await boss.say(cid, "hello, everyone")
        for client in clients:
            got = await client.expect("message.created", within=30)
            assert got["message"]["message_id"] == sent["message_id"]
        for client in (boss, *clients):  # every connection is still open and answering
            await client.send(type="ping", ref="alive")
            await client.expect("pong", ref="alive")
        for replica in (one, two):
            status, body = await http_get(replica.ops, "/metrics")
            assert status == 200
            assert metric(body, "cellchat_broker_errors_total") == 0
            assert metric(body, "cellchat_broker_up") == 1
        for client in (boss, *clients):
            await client.close()
