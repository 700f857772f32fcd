"""Two chat replicas as separate `cellchat run` processes on real Cassandra and Redis, with
`websockets` clients connected to different replicas: cross-replica delivery, multi-device,
resume without gaps, a slow consumer, bad input against a replica process, and a Redis outage.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.infra.ports import ManagedProcess, free_port, spawn
from tests.integration.test_ws_embedded import (
    JWT,
    WsClient,
    handshake_status,
    http_get,
    metric,
    token,
    users,
    ws_url,
)

pytestmark = [pytest.mark.cassandra, pytest.mark.redis]


@attrs.define
class Replica:
    name: str
    process: ManagedProcess
    ws: int
    ops: int
    log: Path


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def start_replica(name: str, cassandra: Any, keyspace: str, redis_url: str,
                  logdir: Path, **env: str) -> Replica:
    ws, ops, grpc = free_port(), free_port(), free_port()
    environment = {
        **os.environ,
        "SCYLLA_HOSTS": cassandra.host, "SCYLLA_PORT": str(cassandra.port),
        "SCYLLA_KEYSPACE": keyspace, "MIGRATE_ON_START": "false", "REDIS_URL": redis_url,
        "JWT_SECRET": JWT.verify_key, "GRPC_PORT": str(grpc), "WS_PORT": str(ws),
        "OPS_PORT": str(ops), "SHUTDOWN_GRACE_S": "2", "WS_QUEUE_SIZE": "64",
        "WS_RATE_PER_S": "2000", "WS_BURST": "2000", "WS_MAX_FRAME_BYTES": "16384",
        **env,
    }
    log = logdir / f"{name}.log"
    process = spawn([sys.executable, "-m", "cellchat.cli", "run"], log, env=environment)
    deadline = time.monotonic() + 90
    while not _ready(ops):
        if not process.running() or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"replica {name} did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return Replica(name, process, ws, ops, log)


@pytest.fixture(scope="module")
def replicas(cassandra: Any, cql_keyspace: str, redis: Any) -> Iterator[tuple[Replica, Replica]]:
    with tempfile.TemporaryDirectory(prefix="cellchat-ws-") as tmp:
        one = start_replica("chat-1", cassandra, cql_keyspace, redis.url, Path(tmp))
        try:
            two = start_replica("chat-2", cassandra, cql_keyspace, redis.url, Path(tmp))
        except BaseException:
            one.process.kill()
            raise
        try:
            yield one, two
        finally:
            for replica in (one, two):
                replica.process.kill(signal_term(), grace=5)


async def wait_ready(ops_port: int) -> None:
    """Poll /readyz (an HTTP endpoint has nothing to wait on but time)."""
    for _ in range(600):
        if (await http_get(ops_port, "/readyz"))[0] == 200:
            return
        await trio.sleep(0.1)
    raise AssertionError(f"replica with ops port {ops_port} never became ready")


def signal_term() -> int:
    import signal
    return int(signal.SIGTERM)


async def test_delivery_and_receipts_across_replicas(replicas: tuple[Replica, Replica]) -> None:
    one, two = replicas
    buyer, seller = users("buyer", "seller")
    with trio.fail_after(60):
        b = await WsClient.open(one.ws, buyer)
        s = await WsClient.open(two.ws, seller)
        await b.subscribe()
        await s.subscribe()
        cid = await b.open_direct(seller)
        await s.expect("conversation.created")
        sent = await b.say(cid, "Still available?")
        got = await s.expect("message.created")
        assert got["message"]["message_id"] == sent["message_id"]
        await s.send(type="delivered", conversation_id=cid, seq=sent["seq"])
        await b.expect("status", user_id=seller, delivered_seq=1)
        await s.send(type="read", conversation_id=cid, seq=sent["seq"])
        await b.expect("status", user_id=seller, read_seq=1)
        await s.send(type="typing", conversation_id=cid, state="started")
        assert (await b.expect("typing.started"))["user_id"] == seller
        await b.close()
        await s.close()


async def test_two_devices_on_two_replicas_get_everything(
        replicas: tuple[Replica, Replica]) -> None:
    one, two = replicas
    alice, bob = users("alice", "bob")
    with trio.fail_after(60):
        phone = await WsClient.open(one.ws, alice)
        laptop = await WsClient.open(two.ws, alice)
        b = await WsClient.open(one.ws, bob)
        for c in (phone, laptop, b):
            await c.subscribe()
        cid = await b.open_direct(alice)
        for i in range(10):
            await b.say(cid, f"m{i}")
        await laptop.say(cid, "from the laptop")
        for device in (phone, laptop):
            seqs = []
            while len(seqs) < 11:
                seqs.append((await device.expect("message.created"))["message"]["seq"])
            assert sorted(seqs) == list(range(1, 12))
        for c in (phone, laptop, b):
            await c.close()


async def test_resume_on_the_other_replica_without_gap_or_duplicate(
        replicas: tuple[Replica, Replica]) -> None:
    one, two = replicas
    alice, bob = users("alice", "bob")
    with trio.fail_after(90):
        a = await WsClient.open(one.ws, alice)
        b = await WsClient.open(two.ws, bob)
        await a.subscribe()
        await b.subscribe()
        cid = await a.open_direct(bob)
        for i in range(5):
            await a.say(cid, f"before {i}")
        last = 0
        for _ in range(5):
            last = (await b.expect("message.created"))["message"]["seq"]
        await b.close()
        for i in range(7):
            await a.say(cid, f"away {i}")
        b2 = await WsClient.open(one.ws, bob)
        async with trio.open_nursery() as n:
            n.start_soon(b2.send_raw, json.dumps({"type": "subscribe", "ref": "r",
                                                  "positions": {cid: last}}))
            for i in range(5):
                await a.say(cid, f"during {i}")
        seqs: list[int] = []
        while len(seqs) < 12:
            frame = await b2.recv()
            if frame["type"] == "message.created":
                seqs.append(frame["message"]["seq"])
        assert sorted(seqs) == list(range(6, 18)), seqs
        assert not [f for f in await b2.nothing(1.0) if f["type"] == "message.created"]
        await a.close()
        await b2.close()


async def test_bad_input_against_a_replica_process(replicas: tuple[Replica, Replica]) -> None:
    one, two = replicas
    alice, = users("alice")
    with trio.fail_after(60):
        assert await handshake_status(ws_url(one.ws, alice, tok="x.y.z")) == 401
        assert await handshake_status(ws_url(one.ws, alice, tok=token(alice, ttl_s=-300))) == 401
        assert await handshake_status(ws_url(two.ws, alice, as_user="bob")) == 403
        a = await WsClient.open(two.ws, alice)
        await a.send_raw("nope")
        assert (await a.expect("error"))["code"] == "bad_frame"
        await a.send_raw(json.dumps({"type": "ping", "ref": "z" * 20000}))
        assert await a.closed_with() == 1009
        healthy = await WsClient.open(two.ws, alice)
        await healthy.send(type="ping", ref="ok")
        await healthy.expect("pong", ref="ok")
        await healthy.close()


async def test_redis_outage_makes_clients_resume(
        replicas: tuple[Replica, Replica], redis: Any) -> None:
    one, two = replicas
    alice, bob = users("alice", "bob")
    with trio.fail_after(120):
        a = await WsClient.open(one.ws, alice)
        await a.subscribe()
        cid = await a.open_direct(bob)
        await a.say(cid, "before the outage")
        await trio.to_thread.run_sync(redis.kill)
        try:
            assert await a.closed_with(within=30) == 1012
            status, _ = await http_get(one.ops, "/readyz")
            assert status == 503
            assert await handshake_status(ws_url(one.ws, alice)) == 503
        finally:
            await trio.to_thread.run_sync(redis.restart)
        with trio.fail_after(60):
            for replica in (one, two):
                await wait_ready(replica.ops)
        a2 = await WsClient.open(one.ws, alice)
        b = await WsClient.open(two.ws, bob)
        await a2.subscribe({cid: 1})
        await b.subscribe({cid: 0})
        assert (await b.expect("message.created"))["message"]["seq"] == 1
        await a2.say(cid, "after the outage")
        assert (await b.expect("message.created"))["message"]["seq"] == 2
        _, text = await http_get(one.ops, "/metrics")
        assert metric(text, 'cellchat_ws_closes_total{code="1012"}') >= 1
        await a2.close()
        await b.close()
