"""The presence API over real sockets: grpcio stubs (a client we do not own) and our own
purerpc `PresenceClient`, against `serve_presence` on Redis.

The server runs in the test's Trio loop; grpcio is blocking, so each call runs in a worker
thread.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import grpc
import jwt as pyjwt
import pytest
import trio

from cellchat.api.health.v1 import health_pb2, health_pb2_grpc
from cellchat.api.presence.v1 import presence_pb2 as pb
from cellchat.api.presence.v1 import presence_pb2_grpc
from cellchat.auth import JwtSettings, mint_token
from cellchat.chat.domain.errors import NotFound, PermissionDenied, Unauthenticated
from cellchat.presence.client import (
    ConnectionReporter,
    PresenceUnavailable,
    ServiceTokens,
    open_presence_client,
)
from cellchat.presence.config import PresenceConfig
from cellchat.presence.memory import ChangeFeed, InMemoryDirectory
from cellchat.presence.model import Status
from cellchat.presence.server import serve_presence
from cellchat.settings import Settings

pytestmark = pytest.mark.redis

JWT = JwtSettings(verify_key="presence-integration-secret-0123456789")
FAST = PresenceConfig(
    lease_ttl_ms=1_500, heartbeat_interval_ms=500, typing_ttl_ms=1_000, sweep_interval_ms=200
)


@attrs.frozen
class Api:
    port: int
    users: presence_pb2_grpc.PresenceServiceStub
    replicas: presence_pb2_grpc.PresenceReportServiceStub
    channel: grpc.Channel
    directory: InMemoryDirectory
    feed: ChangeFeed

    async def call(self, stub: Any, method: str, request: Any, *, user: str | None = None,
                   token: str | None = None, metadata: list[tuple[str, str]] | None = None,
                   ) -> Any:
        headers = list(metadata or [])
        if token is None and user is not None:
            token = mint_token(JWT, user)
        if token is not None:
            headers.append(("authorization", f"Bearer {token}"))
        fn: Callable[..., Any] = getattr(stub, method)
        return await trio.to_thread.run_sync(lambda: fn(request, metadata=headers, timeout=10))


def settings_for(redis_url: str, uid: str, port: int = 0) -> Settings:
    return Settings(cell_id=f"t{uid}", redis_url=redis_url, presence_port=port, jwt=JWT,
                    dev_jwt=False, grace_s=1.0)


@pytest.fixture
async def api(nursery: trio.Nursery, redis: Any, uid: str) -> AsyncIterator[Api]:
    directory = InMemoryDirectory()
    feed = ChangeFeed()
    with trio.fail_after(10):
        port: int = await nursery.start(
            lambda task_status: serve_presence(
                settings_for(redis.url, uid), config=FAST, directory=directory, sink=feed,
                task_status=task_status,
            )
        )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Api(port, presence_pb2_grpc.PresenceServiceStub(channel),
                  presence_pb2_grpc.PresenceReportServiceStub(channel), channel, directory, feed)
    finally:
        channel.close()


def people(*names: str) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"{name}-{tag}" for name in names]


async def expect_status(code: grpc.StatusCode, coro: Any) -> str:
    with pytest.raises(grpc.RpcError) as info:
        await coro
    assert info.value.code() == code, info.value.details()
    return str(info.value.details())


SVC = "svc:chat-test"


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds (the caller's fail_after bounds the wait)."""
    for _ in itertools.count():
        if condition():
            return
        await trio.sleep(0.02)


async def test_replica_reports_and_user_reads_end_to_end(api: Api) -> None:
    alice, bob, eve = people("alice", "bob", "eve")
    api.directory.join("deal", alice)
    api.directory.join("deal", bob)
    with trio.fail_after(30):
        beat = await api.call(api.replicas, "Heartbeat", pb.HeartbeatRequest(
            replica_id="r1", connections=[pb.Connection(connection_id="c1", user_id=alice)],
        ), user=SVC)
        assert (beat.lease_ttl_ms, beat.heartbeat_interval_ms) == (1_500, 500)
        opened = await api.call(api.replicas, "ConnectionOpened", pb.ConnectionOpenedRequest(
            replica_id="r1", connection=pb.Connection(connection_id="c2", user_id=eve),
        ), user=SVC)
        assert opened.lease_ttl_ms == 1_500

        seen = await api.call(api.users, "GetOnlineStatus",
                              pb.GetOnlineStatusRequest(user_ids=[alice, eve, bob]), user=bob)
        assert [(p.user_id, p.status) for p in seen.presences] == [
            (alice, pb.PRESENCE_STATUS_ONLINE),
            (eve, pb.PRESENCE_STATUS_UNKNOWN),  # shares no conversation with bob
            (bob, pb.PRESENCE_STATUS_OFFLINE),  # himself, never connected
        ]
        assert seen.presences[0].last_seen_ms >= time.time() * 1000 - 5_000
        assert seen.presences[1].last_seen_ms == 0

        away = await api.call(api.users, "SetOnlineStatus",
                              pb.SetOnlineStatusRequest(status=pb.PRESENCE_STATUS_AWAY), user=alice)
        assert away.presence.status == pb.PRESENCE_STATUS_AWAY
        assert away.lease_ttl_ms == 1_500

        typing = await api.call(api.users, "SetTypingIndicator", pb.SetTypingIndicatorRequest(
            conversation_id="deal", typing=True), user=bob)
        assert typing.expires_at_ms > time.time() * 1000
        indicators = await api.call(api.users, "GetTypingIndicators",
                                    pb.GetTypingIndicatorsRequest(conversation_id="deal"),
                                    user=alice)
        assert [t.user_id for t in indicators.typing] == [bob]
        assert indicators.conversation_id == "deal"

        await api.call(api.replicas, "ReportTyping", pb.ReportTypingRequest(
            user_id=alice, conversation_id="deal", typing=True), user=SVC)
        for_bob = await api.call(api.replicas, "GetOnlineStatusFor", pb.GetOnlineStatusForRequest(
            viewer_id=bob, user_ids=[alice, eve]), user=SVC)
        assert [p.status for p in for_bob.presences] == [pb.PRESENCE_STATUS_AWAY,
                                                         pb.PRESENCE_STATUS_UNKNOWN]

        await api.call(api.replicas, "ConnectionClosed", pb.ConnectionClosedRequest(
            replica_id="r1", connection_id="c1"), user=SVC)
        # alice's SetOnlineStatus(AWAY) holds an API lease of its own until it lapses.
        with trio.fail_after(FAST.offline_bound_ms / 1000 + 5):
            while True:
                seen = await api.call(api.users, "GetOnlineStatus",
                                      pb.GetOnlineStatusRequest(user_ids=[alice]), user=bob)
                if seen.presences[0].status == pb.PRESENCE_STATUS_OFFLINE:
                    break
                await trio.sleep(0.1)
        assert seen.presences[0].last_seen_ms > 0


async def test_precise_statuses(api: Api) -> None:
    alice, carol = people("alice", "carol")
    api.directory.join("deal", alice)
    with trio.fail_after(30):
        await expect_status(grpc.StatusCode.NOT_FOUND, api.call(
            api.users, "SetTypingIndicator",
            pb.SetTypingIndicatorRequest(conversation_id="deal", typing=True), user=carol))
        await expect_status(grpc.StatusCode.NOT_FOUND, api.call(
            api.users, "GetTypingIndicators",
            pb.GetTypingIndicatorsRequest(conversation_id="nope"), user=alice))
        details = await expect_status(grpc.StatusCode.INVALID_ARGUMENT, api.call(
            api.users, "GetOnlineStatus",
            pb.GetOnlineStatusRequest(user_ids=[f"u{i}" for i in range(101)]), user=alice))
        assert details.startswith("user_ids:")
        await expect_status(grpc.StatusCode.INVALID_ARGUMENT, api.call(
            api.users, "SetOnlineStatus",
            pb.SetOnlineStatusRequest(status=pb.PRESENCE_STATUS_UNKNOWN), user=alice))
        await expect_status(grpc.StatusCode.INVALID_ARGUMENT, api.call(
            api.users, "SetOnlineStatus", pb.SetOnlineStatusRequest(), user=alice))
        await expect_status(grpc.StatusCode.INVALID_ARGUMENT, api.call(
            api.users, "SetTypingIndicator", pb.SetTypingIndicatorRequest(typing=True),
            user=alice))
        details = await expect_status(grpc.StatusCode.INVALID_ARGUMENT, api.call(
            api.replicas, "Heartbeat", pb.HeartbeatRequest(replica_id="~api"), user=SVC))
        assert "reserved" in details
        await expect_status(grpc.StatusCode.INVALID_ARGUMENT, api.call(
            api.replicas, "Heartbeat", pb.HeartbeatRequest(replica_id="r1", connections=[
                pb.Connection(connection_id="c1", user_id=alice),
                pb.Connection(connection_id="c1", user_id=carol),
            ]), user=SVC))
        # End users may not report connections.
        await expect_status(grpc.StatusCode.PERMISSION_DENIED, api.call(
            api.replicas, "Heartbeat", pb.HeartbeatRequest(replica_id="r1"), user=alice))
        # The server stays healthy.
        health = health_pb2_grpc.HealthStub(api.channel)
        for service in ("", "cellchat.presence.v1.PresenceService",
                        "cellchat.presence.v1.PresenceReportService"):
            reply = await trio.to_thread.run_sync(
                lambda s=service: health.Check(health_pb2.HealthCheckRequest(service=s),
                                               timeout=10))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _bad_tokens() -> dict[str, list[tuple[str, str]]]:
    now = int(time.time())
    claims = {"sub": "mallory", "iss": JWT.issuer, "aud": JWT.audience, "exp": now + 600}
    wrong_key = pyjwt.encode(claims, "another-secret-of-enough-length-0123", algorithm="HS256")
    alg_none = pyjwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    expired = mint_token(JWT, "mallory", ttl_s=60, now=now - 3600)
    return {
        "missing": [],
        "empty": [("authorization", "Bearer")],
        "not bearer": [("authorization", f"Basic {mint_token(JWT, 'mallory')}")],
        "garbage": [("authorization", "Bearer not.a.jwt")],
        "wrong key": [("authorization", f"Bearer {wrong_key}")],
        "alg none": [("authorization", f"Bearer {alg_none}")],
        "expired": [("authorization", f"Bearer {expired}")],
        "two headers": [("authorization", f"Bearer {mint_token(JWT, 'a')}"),
                        ("authorization", f"Bearer {mint_token(JWT, 'b')}")],
    }


CALLS = [
    ("users", "SetOnlineStatus", pb.SetOnlineStatusRequest(status=pb.PRESENCE_STATUS_ONLINE)),
    ("users", "GetOnlineStatus", pb.GetOnlineStatusRequest(user_ids=["alice"])),
    ("users", "SetTypingIndicator", pb.SetTypingIndicatorRequest(conversation_id="c", typing=True)),
    ("users", "GetTypingIndicators", pb.GetTypingIndicatorsRequest(conversation_id="c")),
    ("replicas", "Heartbeat", pb.HeartbeatRequest(replica_id="r1")),
    ("replicas", "ConnectionOpened", pb.ConnectionOpenedRequest(
        replica_id="r1", connection=pb.Connection(connection_id="c", user_id="u"))),
    ("replicas", "ConnectionClosed", pb.ConnectionClosedRequest(replica_id="r1",
                                                                connection_id="c")),
    ("replicas", "ReportTyping", pb.ReportTypingRequest(user_id="u", conversation_id="c")),
    ("replicas", "GetOnlineStatusFor", pb.GetOnlineStatusForRequest(viewer_id="u")),
]


async def test_every_call_with_a_bad_token_is_unauthenticated(api: Api) -> None:
    with trio.fail_after(60):
        for what, metadata in _bad_tokens().items():
            for stub_name, method, request in CALLS:
                with pytest.raises(grpc.RpcError) as info:
                    await api.call(getattr(api, stub_name), method, request, metadata=metadata)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, (what, method)
                if what == "wrong key":
                    assert "mallory" not in str(info.value.details())
    assert api.feed.statistics().published == 0  # nothing happened


async def test_purerpc_client_and_reporter(api: Api) -> None:
    alice, bob = people("alice", "bob")
    api.directory.join("deal", alice)
    api.directory.join("deal", bob)
    with trio.fail_after(30):
        async with (
            open_presence_client("127.0.0.1", api.port, token=ServiceTokens(JWT, "chat-r1"))
            as client,
            trio.open_nursery() as nursery,
        ):
            reporter = ConnectionReporter(client, "r1", heartbeat_interval_s=5)
            await nursery.start(reporter.run)
            reporter.opened("c1", alice)
            await eventually(lambda: reporter.statistics().deltas_sent >= 1)
            assert reporter.statistics().heartbeats >= 1
            [seen] = await client.get_online_status_for(bob, [alice])
            assert seen.status is Status.ONLINE
            bob_token = mint_token(JWT, bob)
            expires = await client.set_typing("deal", True, token=bob_token)
            assert expires > 0
            typing = await client.get_typing("deal", token=mint_token(JWT, alice))
            assert [t.user_id for t in typing] == [bob]
            presence = await client.set_online_status(Status.AWAY, token=bob_token)
            assert presence.status is Status.AWAY
            with pytest.raises(NotFound):
                await client.report_typing(bob, "elsewhere", True)
            with pytest.raises(Unauthenticated):
                await client.get_online_status([alice], token="nope")
            with pytest.raises(PermissionDenied):
                async with open_presence_client("127.0.0.1", api.port,
                                                token=lambda: mint_token(JWT, alice)) as user:
                    await user.heartbeat("r1", {})
            reporter.closed("c1")
            await eventually(lambda: reporter.statistics().deltas_sent >= 2)
            [seen] = await client.get_online_status_for(bob, [alice])
            assert seen.status is Status.OFFLINE
            nursery.cancel_scope.cancel()


async def test_purerpc_client_survives_a_presence_restart(redis: Any, uid: str) -> None:
    from tests.infra.ports import free_port

    port = free_port()
    alice, bob = people("alice", "bob")
    directory = InMemoryDirectory({"deal": [alice, bob]})

    async def run_presence(task_status: trio.TaskStatus[int]) -> None:
        await serve_presence(settings_for(redis.url, uid, port), config=FAST,
                             directory=directory, task_status=task_status)

    with trio.fail_after(60):
        async with (
            open_presence_client("127.0.0.1", port, token=ServiceTokens(JWT, "chat-r1"),
                                 call_timeout_s=2) as client,
            trio.open_nursery() as nursery,
        ):
            first = trio.CancelScope()

            async def first_instance(task_status: trio.TaskStatus[int]) -> None:
                with first:
                    await run_presence(task_status)

            await nursery.start(first_instance)
            reporter = ConnectionReporter(client, "r1", retry_s=0.1)
            reporter.opened("c1", alice)
            await nursery.start(reporter.run)
            first.cancel()
            await trio.sleep(0.2)
            with pytest.raises(PresenceUnavailable):
                await client.get_online_status_for(bob, [alice])
            await nursery.start(run_presence)
            # The client reconnects; the reporter resyncs; alice is online throughout the lease.
            while True:
                try:
                    [seen] = await client.get_online_status_for(bob, [alice])
                    break
                except PresenceUnavailable:
                    await trio.sleep(0.1)
            assert seen.status is Status.ONLINE
            nursery.cancel_scope.cancel()
