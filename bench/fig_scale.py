"""Figures 6 and 7: end-to-end latency across replicas, and two replicas against one.

The production shape: chat replicas on Cassandra with the Redis broker between them. `pairs`
direct conversations; each buyer sends with a stock grpc.aio client (SendMessage), each seller
is connected over /ws/chat and reads `message.created` frames (the lean client of
bench/wsclient.py, driven from the same asyncio loop through its epoll descriptor).

7, scale-out: closed-loop SendMessage, one caller per conversation, for `scale_seconds`:
  - one replica: every sender and receiver on replica A;
  - two replicas: half of the senders on A with their receivers on B, half the other way round.
  Figure = sends/s with two replicas / sends/s with one. Both replicas, Cassandra, Redis and the
  load generator share the same two cores, so the ceiling here is the machine, not cellchat:
  see bench/README.md.
6, end to end: open-loop sends at half the two-replica rate, spread over the conversations,
  sender and receiver on different replicas; latency = the frame read by the receiver minus
  the moment the send was due (so a backlog counts, no coordinated omission).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import grpc

from bench import chatapi, grpcload
from bench.common import HOST, Row, summary_ms
from bench.context import Context
from bench.fig_fanout import _connect, _subscribe_all
from bench.fig_send import create_pairs
from bench.wsclient import Conn, Pool
from cellchat.api.chat.v1 import chat_pb2 as pb
from cellchat.api.chat.v1 import chat_pb2_grpc

MARK = re.compile(rb"bm(\d+)-(\d+)e")


class Receivers:
    """The sellers' WebSocket connections; records send-to-read latency of every message."""

    def __init__(self) -> None:
        self.pool: Pool | None = None
        self.latencies_ns: list[int] = []
        self.count = 0
        self.measuring = False
        self.retried_503 = 0

    def on_text(self, conn: Conn, payload: bytes) -> None:
        if not payload.startswith(b'{"type":"message.created"'):
            return
        match = MARK.search(payload)
        if match is None:
            return
        self.count += 1
        if self.measuring:
            self.latencies_ns.append(time.monotonic_ns() - int(match.group(2)))

    def connect(self, ctx: Context, by_port: dict[int, list[str]]) -> None:
        """Connect each seller to the WebSocket port it is listed under."""
        self.pool = Pool()
        for port, users in by_port.items():
            pool, conns = _connect(port, users, ctx.timeout(120))
            _subscribe_all(pool, conns, ctx.timeout(60))
            self.retried_503 += pool.retried_503
            # Move the connections into one pool (one epoll for the asyncio loop to watch).
            for conn in conns:
                pool.ep.unregister(conn.fd)
                del pool.conns[conn.fd]
                conn.pool = self.pool
                self.pool.conns[conn.fd] = conn
                self.pool.ep.register(conn.fd, 1)  # EPOLLIN
            pool.ep.close()
        self.pool.on_text = self.on_text

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close_all()
            self.pool = None


async def _closed(work: list[tuple[Any, str, str]], receivers: Receivers, seconds: float,
                  ) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    assert receivers.pool is not None
    loop.add_reader(receivers.pool.ep.fileno(), receivers.pool.poll, 0)
    try:
        async def call(worker: int, n: int) -> int:
            stub, cid, buyer = work[worker]
            await stub.SendMessage(pb.SendMessageRequest(
                conversation_id=cid, client_message_id=f"c{worker}-{n}-{time.monotonic_ns()}",
                kind=pb.MESSAGE_KIND_TEXT, text=chatapi.text_of(n, time.monotonic_ns())),
                metadata=chatapi.auth(buyer), timeout=30)
            return 1

        before = receivers.count
        result = await grpcload.closed_loop(call, concurrency=len(work), duration=seconds)
        await asyncio.sleep(1.0)  # let the last frames land
        result["delivered"] = receivers.count - before
        return result
    finally:
        loop.remove_reader(receivers.pool.ep.fileno())


async def _open(work: list[tuple[Any, str, str]], receivers: Receivers, rate: float,
                seconds: float, max_in_flight: int = 512) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    assert receivers.pool is not None
    loop.add_reader(receivers.pool.ep.fileno(), receivers.pool.poll, 0)
    tasks: set[asyncio.Task[None]] = set()
    counts = {"sent": 0, "errors": 0, "skipped": 0}
    try:
        async def send(i: int, due_ns: int) -> None:
            stub, cid, buyer = work[i % len(work)]
            try:
                await stub.SendMessage(pb.SendMessageRequest(
                    conversation_id=cid, client_message_id=f"o{i}-{due_ns}",
                    kind=pb.MESSAGE_KIND_TEXT, text=chatapi.text_of(i, due_ns)),
                    metadata=chatapi.auth(buyer), timeout=30)
                counts["sent"] += 1
            except grpc.aio.AioRpcError:
                counts["errors"] += 1

        receivers.measuring = True
        before = receivers.count
        start = time.monotonic_ns()
        interval_ns = int(1e9 / rate)
        total = int(rate * seconds)
        for i in range(total):
            due = start + i * interval_ns
            delay = (due - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= max_in_flight:
                counts["skipped"] += 1
                continue
            task = asyncio.create_task(send(i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        deadline = time.monotonic() + 5
        # The frames arrive through the epoll reader callback: poll the count, bounded.
        while receivers.count - before < counts["sent"] and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        receivers.measuring = False
        return {**counts, "rate": rate, "seconds": seconds,
                "delivered": receivers.count - before}
    finally:
        loop.remove_reader(receivers.pool.ep.fileno())


def _stubs(ports: list[int]) -> dict[int, Any]:
    return {p: chat_pb2_grpc.ChatServiceStub(grpcload.channel(f"{HOST}:{p}")) for p in ports}


async def _with_stubs(ports: list[int], plan: Any) -> Any:
    stubs = _stubs(ports)
    return await plan(stubs)


def run(ctx: Context) -> list[Row]:
    sizes = ctx.sizes
    seconds = sizes.scale_seconds
    extra = {"WS_RATE_PER_S": "1000", "WS_BURST": "1000"}
    receivers = Receivers()
    with ctx.cellchat("cellchat-replica-a", store="cassandra", redis=True,
                      extra=extra) as a:
        pairs = create_pairs(a.info["grpc"], sizes.scale_pairs, "scale")
        # 7a: one replica.
        receivers.connect(ctx, {a.info["ws"]: [s for _, _, s in pairs]})
        try:
            one = asyncio.run(_with_stubs([a.info["grpc"]], lambda stubs: _closed(
                [(stubs[a.info["grpc"]], cid, b) for cid, b, _ in pairs], receivers,
                seconds)))
        finally:
            receivers.close()
        one_rate = one["calls"] / one["seconds"]
        ctx.note(f"one replica: {one_rate:,.0f} sends/s (p99 "
                 f"{summary_ms(one['latencies'])['p99_ms']:.0f} ms), "
                 f"{one['delivered']} delivered, errors {one['errors']}")
        with ctx.cellchat("cellchat-replica-b", store="cassandra", redis=True,
                          extra=extra) as b:
            ga, gb, wa, wb = a.info["grpc"], b.info["grpc"], a.info["ws"], b.info["ws"]
            # Even pairs send on A and read on B; odd pairs the other way round.
            receivers.connect(ctx, {wb: [s for _, _, s in pairs[0::2]],
                                    wa: [s for _, _, s in pairs[1::2]]})
            try:
                def plan(stubs: dict[int, Any]) -> list[tuple[Any, str, str]]:
                    return [(stubs[ga if i % 2 == 0 else gb], cid, buyer)
                            for i, (cid, buyer, _) in enumerate(pairs)]

                with ctx.sampling(a, "scale-two-replicas-a"):
                    two = asyncio.run(_with_stubs([ga, gb], lambda stubs: _closed(
                        plan(stubs), receivers, seconds)))
                two_rate = two["calls"] / two["seconds"]
                ctx.note(f"two replicas: {two_rate:,.0f} sends/s (p99 "
                         f"{summary_ms(two['latencies'])['p99_ms']:.0f} ms), "
                         f"{two['delivered']} delivered, errors {two['errors']}")
                # 6: end to end at half the two-replica maximum.
                rate = max(1.0, two_rate / 2)
                e2e = asyncio.run(_with_stubs([ga, gb], lambda stubs: _open(
                    plan(stubs), receivers, rate, sizes.e2e_seconds)))
                latency = summary_ms([v / 1e9 for v in receivers.latencies_ns])
                ctx.note(f"end to end at {rate:,.0f} sends/s: p50 {latency['p50_ms']:.0f} ms, "
                         f"p99 {latency['p99_ms']:.0f} ms; sent {e2e['sent']}, delivered "
                         f"{e2e['delivered']}, errors {e2e['errors']}, skipped {e2e['skipped']}")
            finally:
                receivers.close()
    strip = ("latencies",)
    details = {
        "pairs": sizes.scale_pairs,
        "one": {k: v for k, v in one.items() if k not in strip}
        | {"latency": summary_ms(one["latencies"]), "rate": one_rate},
        "two": {k: v for k, v in two.items() if k not in strip}
        | {"latency": summary_ms(two["latencies"]), "rate": two_rate},
        "e2e": e2e | {"latency": latency},
    }
    json.dumps(details)  # fail here, not in the report, if something is not serializable
    return [
        Row("e2e_p99", f"6 end-to-end p99 across replicas @ {rate:,.0f}/s", "ms",
            latency["p99_ms"], None, "", "<= 50 ms", "lower", 50.0, absolute=True,
            details=details),
        Row("scale_out", "7 two replicas vs one, sends/s", "/s", two_rate, one_rate,
            "1 replica", ">= 1.6x", "higher", 1.6),
    ]
