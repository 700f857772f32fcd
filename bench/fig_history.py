"""Figure 5: p99 of a GetMessages page at 1,000 and at 1,000,000 messages in one conversation.

Two direct conversations are created through the service (so participants, memberships and
heads are the service's own), then filled directly with the driver in the schema's shape
(cql/001_init.cql, services/cellchat/chat/storage/cql.py): messages partitioned by
(conversation_id, bucket = seq // 1000), every row written with the service's own `msg_insert`
statement, 100 rows of one partition per UNLOGGED batch (single-partition, so one mutation on
one replica), 16 batches in flight (`execute_concurrent`, in chunks whose timed-out batches
are written again); each partition's static `last_seq` set to its highest seq, and the
conversation head written USING TIMESTAMP <last seq>, exactly as a send leaves them. Messages
carry 150-byte texts.

Then a stock grpc.aio client reads pages (page_size 50) one at a time, alternating between the
two conversations: pages ending at a random depth (`before_seq` uniform over the history),
and the newest page. Figure = p99(1M) / p99(1k) of the random-depth pages.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import struct
import time
import uuid
from typing import Any

from bench import chatapi, grpcload
from bench.common import HOST, Row, summary_ms
from bench.context import Context
from cellchat.api.chat.v1 import chat_pb2 as pb
from cellchat.api.chat.v1 import chat_pb2_grpc

BUCKET = 1000  # open_cql_store's bucket_size
ROWS_PER_BATCH = 100
_TABLE = re.compile(r"\b(FROM|INTO|UPDATE)\s+(\w+)")


def _message_ids(first_ms: int, count: int) -> list[bytes]:
    """`count` UUIDv7 strings (as UTF-8 bytes), one per millisecond from `first_ms`: the
    layout of cellchat.chat.domain.ids.uuid7, built in bulk (uuid7() per row would be half
    the fill's client CPU)."""
    noise = os.urandom(8 * count)
    out = []
    for i in range(count):
        rand = int.from_bytes(noise[8 * i:8 * i + 8], "big")
        value = ((first_ms + i) & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 52) << 64
        value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
        h = f"{value:032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".encode())
    return out


def fill(host: str, port: int, keyspace: str, cid: str, sender: str, count: int,
         *, concurrency: int = 16) -> dict[str, Any]:
    """Write messages 1..count into `cid`; returns timing. Blocking (driver threads).

    Rows are bound once per batch through the driver (which sets the routing key), the other
    rows of the batch get their values serialized here with the prepared statement's own
    column types: per-row `bind()` would make the client, not Cassandra, the bottleneck."""
    from cassandra.cluster import Cluster
    from cassandra.concurrent import execute_concurrent
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
    from cassandra.query import BatchStatement, BatchType

    from cellchat.chat.storage.cql import _STATEMENTS

    def qualified(name: str) -> str:
        return _TABLE.sub(rf"\1 {keyspace}.\2", _STATEMENTS[name])

    cluster = Cluster([host], port=port,
                      load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()))
    began = time.monotonic()
    try:
        session = cluster.connect()
        insert = session.prepare(qualified("msg_insert"))
        head = session.prepare(qualified("head_write"))
        # The static column a send's conditional batch leaves behind; written plainly here,
        # since nothing else writes this conversation while it is filled.
        static = session.prepare(
            f"UPDATE {keyspace}.messages SET last_seq = ? WHERE conversation_id = ? AND bucket = ?")
        base_ms = time.time_ns() // 1_000_000 - count
        protocol = cluster.protocol_version
        types = [column.type for column in insert.column_metadata]
        template = (cid, 0, 0, "", sender, "text", "." * 150, "", "", 0, 0, 1, False, 0, 0)
        constant = [t.serialize(v, protocol) for t, v in zip(types, template, strict=True)]
        bigint, integer = struct.Struct(">q").pack, struct.Struct(">i").pack
        ids = _message_ids(base_ms + 1, count)

        def batches() -> Any:
            for bucket in range(count // BUCKET + 1):
                first, last = max(1, bucket * BUCKET), min(count, (bucket + 1) * BUCKET - 1)
                bucket_value = integer(bucket)
                for start in range(first, last + 1, ROWS_PER_BATCH):
                    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                    if start == first:
                        batch.add(static, (last, cid, bucket))
                    for seq in range(start, min(last, start + ROWS_PER_BATCH - 1) + 1):
                        values = list(constant)
                        values[1] = bucket_value
                        values[2] = bigint(seq)
                        values[3] = ids[seq - 1]
                        values[8] = b"fill-%d" % seq
                        values[9] = bigint(base_ms + seq)
                        if seq == start:  # bound through the driver: sets the routing key
                            batch.add(insert, (cid, bucket, seq, ids[seq - 1].decode(),
                                               sender, "text", "." * 150, "",
                                               f"fill-{seq}", base_ms + seq, 0, 1, False,
                                               0, 0))
                        else:
                            batch._add_statement_and_params(True, insert.query_id, values)
                    yield batch, ()

        # In chunks, so a timed-out batch (an overloaded node) can be written again: the rows
        # are the same values, so a retry is idempotent.
        retried = 0
        source = batches()
        while True:
            chunk = list(itertools.islice(source, 400))
            if not chunk:
                break
            for attempt in range(6):
                results = execute_concurrent(session, chunk, concurrency=concurrency,
                                             raise_on_first_error=False)
                chunk = [item for item, (ok, _) in zip(chunk, results, strict=True) if not ok]
                if not chunk:
                    break
                retried += len(chunk)
                time.sleep(0.5 * (attempt + 1))
            if chunk:
                raise RuntimeError(f"{len(chunk)} batches still failing after 6 attempts: "
                                   f"{results[0][1]!r}")
        session.execute(head, (count, count, base_ms + count, cid), timeout=30)
    finally:
        cluster.shutdown()
    seconds = time.monotonic() - began
    return {"messages": count, "seconds": seconds, "rows_per_s": count / seconds,
            "retried_batches": retried}


async def read_pages(port: int, reader: str, convs: dict[int, tuple[str, int]], pages: int,
                     seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {f"{kind}_{n}": [] for n in convs
                                       for kind in ("random", "newest")}
    errors = 0
    async with grpcload.channel(f"{HOST}:{port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        metadata = chatapi.auth(reader)

        async def page(cid: str, before: int) -> float:
            began = time.monotonic()
            response = await stub.GetMessages(pb.GetMessagesRequest(
                conversation_id=cid, page_size=50, before_seq=before),
                metadata=metadata, timeout=30)
            elapsed = time.monotonic() - began
            if len(response.messages) != 50:
                raise RuntimeError(f"page of {len(response.messages)} messages, wanted 50")
            return elapsed

        for i in range(pages + 10):  # the first 10 rounds warm up, unmeasured
            for n, (cid, count) in convs.items():
                for kind in ("random", "newest"):
                    before = rng.randint(51, count) if kind == "random" else 0
                    try:
                        elapsed = await page(cid, before)
                    except Exception:
                        errors += 1
                        continue
                    if i >= 10:
                        samples[f"{kind}_{n}"].append(elapsed)
    return {"latency": {k: summary_ms(v) for k, v in samples.items()}, "errors": errors}


def run(ctx: Context) -> list[Row]:
    sizes = ctx.sizes
    host, port = ctx.cassandra()
    keyspace = ctx.ensure_keyspace()
    small, large = sizes.history_sizes
    tag = uuid.uuid4().hex[:6]
    with ctx.cellchat("cellchat-history", store="cassandra") as server:
        grpc_port = server.info["grpc"]
        convs: dict[int, tuple[str, int]] = {}
        reader = f"hist-b-{tag}"
        fills = {}
        for n in (small, large):
            cid = chatapi.create_direct(grpc_port, reader, f"hist-s{n}-{tag}", f"hist-{n}")
            fills[n] = fill(host, port, keyspace, cid, reader, n)
            ctx.note(f"filled {n:,} messages in {fills[n]['seconds']:.0f}s "
                     f"({fills[n]['rows_per_s']:,.0f} rows/s)")
            convs[n] = (cid, n)
        with ctx.sampling(server, "history"):
            result = asyncio.run(read_pages(grpc_port, reader, convs, sizes.history_pages))
    lat = result["latency"]
    for key, value in lat.items():
        ctx.note(f"GetMessages {key}: p50 {value['p50_ms']:.1f} ms, p99 {value['p99_ms']:.1f} ms")
    details = {"fill": fills, "pages": sizes.history_pages, "latency": lat,
               "errors": result["errors"]}
    return [
        Row("history_p99", f"5 GetMessages p99 @ {large:,} vs {small:,} (random page)", "ms",
            lat[f"random_{large}"]["p99_ms"], lat[f"random_{small}"]["p99_ms"],
            f"same @ {small:,}", "<= 1.2x", "lower", 1.2, details=details),
        Row("history_newest_p99", f"5 GetMessages p99 @ {large:,} vs {small:,} (newest page)",
            "ms", lat[f"newest_{large}"]["p99_ms"], lat[f"newest_{small}"]["p99_ms"],
            f"same @ {small:,}", "(info)", "lower", None),
    ]
