"""Presence end to end, every service its own process: two chat replicas (`cellchat run` with
PRESENCE_ADDR) and one presence service (`cellchat presence`) on real Cassandra and Redis,
`websockets` clients on different replicas, grpcio for the presence API.

Online and offline across replicas (frames and GetOnlineStatus), a user on two replicas, a
SIGKILLed replica whose users go offline within the documented bound, typing expiry reaching
the peer once, a stranger who sees nothing, a blocked pair who do not see each other, and a
group over the live limit whose members learn presence from the API only.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import grpc
import pytest
import trio

from cellchat.api.presence.v1 import presence_pb2 as pb
from cellchat.api.presence.v1 import presence_pb2_grpc
from cellchat.chat.app.service import ChatApp
from cellchat.chat.domain.model import Role
from cellchat.chat.storage.cql import open_cql_store
from cellchat.presence.config import PresenceConfig
from tests.infra.ports import ManagedProcess, free_port, spawn
from tests.integration.test_ws_embedded import JWT, WsClient, http_get, token, users
from tests.integration.test_ws_replicas import Replica, _ready, start_replica

pytestmark = [pytest.mark.cassandra, pytest.mark.redis]

FAST = PresenceConfig(lease_ttl_ms=2_000, heartbeat_interval_ms=500, typing_ttl_ms=1_500,
                      sweep_interval_ms=200)
PRESENCE_ENV = {
    "PRESENCE_LEASE_TTL_MS": str(FAST.lease_ttl_ms),
    "PRESENCE_HEARTBEAT_INTERVAL_MS": str(FAST.heartbeat_interval_ms),
    "PRESENCE_TYPING_TTL_MS": str(FAST.typing_ttl_ms),
    "PRESENCE_SWEEP_INTERVAL_MS": str(FAST.sweep_interval_ms),
    # Groups of more than 3 push no presence frames (the default is 100).
    "PRESENCE_LIVE_GROUP_LIMIT": "3",
}
# Process scheduling, Redis Pub/Sub and the WebSocket hop, on top of the documented bounds.
SLACK_S = 1.5


@attrs.define
class Cell:
    cell_id: str
    presence_port: int
    presence_ops: int
    presence: ManagedProcess
    one: Replica
    two: Replica
    env: dict[str, str]
    logdir: Path
    cassandra: Any
    keyspace: str
    redis_url: str

    def replica(self, name: str) -> Replica:
        return start_replica(name, self.cassandra, self.keyspace, self.redis_url, self.logdir,
                             **self.env)


def start_presence(cassandra: Any, keyspace: str, redis_url: str, logdir: Path,
                   env: dict[str, str]) -> tuple[ManagedProcess, int, int]:
    port, ops = free_port(), free_port()
    environment = {
        **os.environ,
        "SCYLLA_HOSTS": cassandra.host, "SCYLLA_PORT": str(cassandra.port),
        "SCYLLA_KEYSPACE": keyspace, "REDIS_URL": redis_url, "JWT_SECRET": JWT.verify_key,
        "PRESENCE_PORT": str(port), "OPS_PORT": str(ops), "SHUTDOWN_GRACE_S": "2", **env,
    }
    environment.pop("PRESENCE_ADDR", None)
    log = logdir / "presence.log"
    process = spawn([sys.executable, "-m", "cellchat.cli", "presence"], log, env=environment)
    deadline = time.monotonic() + 90
    while not _ready(ops):
        if not process.running() or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"presence did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return process, port, ops


@pytest.fixture(scope="module")
def cell(cassandra: Any, cql_keyspace: str, redis: Any) -> Iterator[Cell]:
    cell_id = f"pe{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="cellchat-presence-") as tmp:
        logdir = Path(tmp)
        common = {"CELL_ID": cell_id, **PRESENCE_ENV}
        presence, port, ops = start_presence(cassandra, cql_keyspace, redis.url, logdir, common)
        env = {**common, "PRESENCE_ADDR": f"127.0.0.1:{port}"}
        started: list[Replica] = []
        try:
            for name in ("chat-a", "chat-b"):
                started.append(start_replica(name, cassandra, cql_keyspace, redis.url, logdir,
                                             **env))
            yield Cell(cell_id, port, ops, presence, started[0], started[1], env, logdir,
                       cassandra, cql_keyspace, redis.url)
        finally:
            for replica in started:
                replica.process.kill(signal.SIGTERM, grace=5)
            presence.kill(signal.SIGTERM, grace=5)


async def online_status(cell: Cell, viewer: str, user_ids: list[str]) -> list[tuple[int, int]]:
    """(status, last_seen_ms) per user as `viewer` sees them, through grpcio."""
    def call() -> Any:
        with grpc.insecure_channel(f"127.0.0.1:{cell.presence_port}") as channel:
            stub = presence_pb2_grpc.PresenceServiceStub(channel)
            return stub.GetOnlineStatus(pb.GetOnlineStatusRequest(user_ids=user_ids),
                                        metadata=[("authorization", f"Bearer {token(viewer)}")],
                                        timeout=10)
    reply = await trio.to_thread.run_sync(call)
    return [(p.status, p.last_seen_ms) for p in reply.presences]


async def connected(port: int, user: str) -> WsClient:
    client = await WsClient.open(port, user)
    await client.subscribe()
    return client


def presence_frames(frames: list[dict[str, Any]], user: str | None = None) -> list[dict[str, Any]]:
    return [f for f in frames
            if f["type"] == "presence" and (user is None or f["user_id"] == user)]


async def test_online_and_offline_across_replicas(cell: Cell) -> None:
    alice, bob = users("alice", "bob")
    with trio.fail_after(60):
        a = await connected(cell.one.ws, alice)
        await a.open_direct(bob)
        assert await online_status(cell, alice, [bob]) == [(pb.PRESENCE_STATUS_OFFLINE, 0)]

        b = await connected(cell.two.ws, bob)
        frame = await a.expect("presence", user_id=bob)
        assert (frame["online"], frame["status"]) == (True, "online")
        [(status, _)] = await online_status(cell, alice, [bob])
        assert status == pb.PRESENCE_STATUS_ONLINE
        # bob sees alice too (she was online before he came: he asks, frames are changes)
        [(status, _)] = await online_status(cell, bob, [alice])
        assert status == pb.PRESENCE_STATUS_ONLINE

        closed_at_ms = time.time() * 1000
        await b.close()
        frame = await a.expect("presence", user_id=bob)
        assert (frame["online"], frame["status"]) == (False, "offline")
        assert closed_at_ms - 1000 <= frame["last_seen_ms"] <= time.time() * 1000
        assert await online_status(cell, alice, [bob]) == [
            (pb.PRESENCE_STATUS_OFFLINE, frame["last_seen_ms"])]
        await a.close()


async def test_a_user_on_two_replicas_stays_online_until_both_are_gone(cell: Cell) -> None:
    alice, bob = users("alice", "bob")
    with trio.fail_after(60):
        a = await connected(cell.one.ws, alice)
        await a.open_direct(bob)
        phone = await connected(cell.one.ws, bob)
        laptop = await connected(cell.two.ws, bob)
        assert (await a.expect("presence", user_id=bob))["online"] is True

        await laptop.close()
        # Longer than a lease: the phone's replica keeps renewing it.
        quiet = await a.nothing(FAST.lease_ttl_ms / 1000 + 0.5)
        assert presence_frames(quiet, bob) == []
        [(status, _)] = await online_status(cell, alice, [bob])
        assert status == pb.PRESENCE_STATUS_ONLINE

        await phone.close()
        frame = await a.expect("presence", user_id=bob)
        assert frame["online"] is False
        [(status, _)] = await online_status(cell, alice, [bob])
        assert status == pb.PRESENCE_STATUS_OFFLINE
        await a.close()


async def test_sigkilled_replicas_users_go_offline_within_the_bound(cell: Cell) -> None:
    alice, bob, carol = users("alice", "bob", "carol")
    doomed = await trio.to_thread.run_sync(cell.replica, "chat-doomed")
    try:
        with trio.fail_after(90):
            a = await connected(cell.one.ws, alice)
            await a.open_direct(bob)
            await a.open_direct(carol)
            b = await connected(doomed.ws, bob)
            c = await connected(cell.two.ws, carol)
            assert (await a.expect("presence", user_id=bob))["online"] is True
            assert (await a.expect("presence", user_id=carol))["online"] is True
            await trio.sleep(2 * FAST.heartbeat_interval_ms / 1000)  # heartbeats are flowing

            killed = time.monotonic()
            killed_ms = time.time() * 1000
            doomed.process.kill(signal.SIGKILL)
            frame = await a.expect("presence", within=30, user_id=bob)
            elapsed = time.monotonic() - killed
            assert frame["online"] is False
            # Not a clean close (that would be immediate): the lease lapsed, within the
            # documented bound (lease + sweep after the last heartbeat, so after the kill).
            assert elapsed >= 0.5
            assert elapsed <= FAST.offline_bound_ms / 1000 + SLACK_S, elapsed
            assert frame["last_seen_ms"] <= killed_ms + FAST.lease_ttl_ms
            [(bob_status, seen), (carol_status, _)] = await online_status(
                cell, alice, [bob, carol])
            assert (bob_status, seen) == (pb.PRESENCE_STATUS_OFFLINE, frame["last_seen_ms"])
            assert carol_status == pb.PRESENCE_STATUS_ONLINE  # the other replica's users stay
            assert presence_frames(await a.nothing(0.5), carol) == []
            await a.close()
            await c.close()
            assert b.user == bob  # its replica is gone: nothing to close
    finally:
        doomed.process.kill()


async def test_typing_expiry_reaches_the_peer_once(cell: Cell) -> None:
    alice, bob = users("alice", "bob")
    with trio.fail_after(60):
        a = await connected(cell.one.ws, alice)
        cid = await a.open_direct(bob)
        b = await connected(cell.two.ws, bob)
        await a.expect("presence", user_id=bob)

        await b.send(type="typing", conversation_id=cid, state="started")
        started = await a.expect("typing.started", user_id=bob)
        assert started["expires_in_ms"] == FAST.typing_ttl_ms  # one setting for both sides
        since = time.monotonic()
        stopped = await a.expect("typing.stopped", within=10, user_id=bob)
        assert stopped == {"type": "typing.stopped", "conversation_id": cid, "user_id": bob}
        elapsed = time.monotonic() - since
        assert FAST.typing_ttl_ms / 1000 - 0.3 <= elapsed <= FAST.typing_bound_ms / 1000 + SLACK_S

        # An explicit stop is fanned out by the replica alone: exactly one typing.stopped.
        await b.send(type="typing", conversation_id=cid, state="started")
        await a.expect("typing.started", user_id=bob)
        await b.send(type="typing", conversation_id=cid, state="stopped")
        await a.expect("typing.stopped", user_id=bob)
        later = await a.nothing(FAST.typing_bound_ms / 1000 + 0.5)
        assert [f for f in later if f["type"] == "typing.stopped"] == []
        await a.close()
        await b.close()


async def test_a_stranger_sees_unknown_and_gets_no_frames(cell: Cell) -> None:
    alice, bob, stranger = users("alice", "bob", "stranger")
    with trio.fail_after(60):
        a = await connected(cell.one.ws, alice)
        cid = await a.open_direct(bob)
        x = await connected(cell.two.ws, stranger)
        b = await connected(cell.two.ws, bob)
        await a.expect("presence", user_id=bob)
        await b.send(type="typing", conversation_id=cid, state="started")
        await a.expect("typing.stopped", within=10, user_id=bob)  # the expiry went out
        await b.close()
        await a.expect("presence", user_id=bob)
        assert await online_status(cell, stranger, [bob, alice]) == [
            (pb.PRESENCE_STATUS_UNKNOWN, 0), (pb.PRESENCE_STATUS_UNKNOWN, 0)]
        got = x.skipped + await x.nothing(0.5)
        assert [f for f in got if f["type"] in ("presence", "typing.stopped")] == []
        # ... and nobody got the stranger's presence either
        assert presence_frames(a.skipped, stranger) == []
        await a.close()
        await x.close()


async def test_a_blocked_pair_does_not_see_each_other(cell: Cell) -> None:
    alice, dave, erin = users("alice", "dave", "erin")
    with trio.fail_after(60):
        a = await connected(cell.one.ws, alice)
        await a.open_direct(dave)
        await a.open_direct(erin)
        async with open_cql_store([cell.cassandra.host], cell.cassandra.port,
                                  cell.keyspace) as store:
            assert await store.set_block(dave, alice, blocked=True,
                                         at_ms=int(time.time() * 1000))
        d = await connected(cell.two.ws, dave)
        e = await connected(cell.two.ws, erin)
        # erin's frame (after dave's connect) arrives; dave's never does.
        assert (await a.expect("presence", user_id=erin))["online"] is True
        assert presence_frames(a.skipped + await a.nothing(0.5), dave) == []
        assert presence_frames(d.skipped + await d.nothing(0.2), alice) == []
        [(dave_status, _)] = await online_status(cell, alice, [dave])
        [(alice_status, _)] = await online_status(cell, dave, [alice])
        assert (dave_status, alice_status) == (pb.PRESENCE_STATUS_UNKNOWN,) * 2
        await d.close()
        await e.close()
        assert (await a.expect("presence", user_id=erin))["online"] is False
        assert presence_frames(a.skipped, dave) == []
        await a.close()


async def test_groups_over_the_live_limit_leave_presence_to_the_api(cell: Cell) -> None:
    alice, bob, g1, g2, g3, s1, s2 = users("alice", "bob", "g1", "g2", "g3", "s1", "s2")
    with trio.fail_after(60):
        async with open_cql_store([cell.cassandra.host], cell.cassandra.port,
                                  cell.keyspace) as store:
            app = ChatApp(store)
            await app.create_direct(alice, bob, counterpart_role=Role.SELLER)
            await app.create_group(alice, "big", [g1, g2, g3])  # 4 participants: over 3
            await app.create_group(alice, "small", [s1, s2])  # 3: live
        b = await connected(cell.two.ws, bob)
        s = await connected(cell.two.ws, s1)
        g = await connected(cell.two.ws, g1)
        a = await connected(cell.one.ws, alice)
        assert (await b.expect("presence", user_id=alice))["online"] is True
        assert (await s.expect("presence", user_id=alice))["online"] is True
        assert presence_frames(g.skipped + await g.nothing(0.5), alice) == []
        # The big group's members still see each other, on demand.
        [(status, _)] = await online_status(cell, g1, [alice])
        assert status == pb.PRESENCE_STATUS_ONLINE

        other = await connected(cell.one.ws, g2)
        small = await connected(cell.two.ws, s2)
        assert (await a.expect("presence", user_id=s2))["online"] is True
        assert presence_frames(a.skipped + await a.nothing(0.5), g2) == []
        [(g2_status, _), g3_presence] = await online_status(cell, alice, [g2, g3])
        assert (g2_status, g3_presence) == (pb.PRESENCE_STATUS_ONLINE,
                                            (pb.PRESENCE_STATUS_OFFLINE, 0))
        for client in (b, s, g, a, other, small):
            await client.close()


async def test_the_presence_process_reports_ready(cell: Cell) -> None:
    with trio.fail_after(30):
        status, body = await http_get(cell.presence_ops, "/readyz")
        assert status == 200, body
        status, body = await http_get(cell.presence_ops, "/metrics")
        assert status == 200
        # the presence process exports the fan-out metrics (samples appear with traffic)
        assert b"# TYPE cellchat_events_published_total counter" in body
        assert b"cellchat_broker_up 1.0" in body
