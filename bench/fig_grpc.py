"""Figure 4: purerpc (cellchat's gRPC stack) against grpc.aio, same proto, same client.

The bench Echo service (bench/proto/bench_echo.proto) is served three ways, one process each:
grpc.aio (the peer), cellchat.grpcutil.serve_grpc (purerpc plus what cellchat adds: deadlines,
error mapping, graceful stop, reflection; what the chat service runs), and a bare
purerpc.Server for reference. The load generator is a grpc.aio client in the orchestrator's
process: `concurrency` closed-loop callers on one channel for unary calls (150-byte payload),
and the same number of concurrent server streams of `grpc_stream_messages` replies each.
With `--long`, servers are measured in alternating rounds and the median is kept.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import grpc

from bench import echo, grpcload
from bench.common import HOST, Row, cpu_seconds, summary_ms
from bench.context import Context

PAYLOAD = b"x" * 150
SERVERS = (("grpc-aio", "grpc.aio"), ("grpc-cellchat", "cellchat"),
           ("grpc-purerpc", "purerpc bare"))


async def _streams(stub: Any, request: Any, *, concurrency: int, duration: float,
                   warmup: float = 0.5) -> dict[str, Any]:
    """Concurrent server streams, restarted as they end; messages counted as they arrive
    inside the measured window (a stream is cut at the window's end)."""
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + duration
    counts = {"items": 0, "streams": 0, "errors": 0}
    error_sample: list[str] = []

    async def worker() -> None:
        while time.monotonic() < stop_at:
            call = stub.ServerStream(request, timeout=warmup + duration + 30)
            try:
                async for _ in call:
                    now = time.monotonic()
                    if now >= stop_at:
                        call.cancel()
                        return
                    if now >= measure_from:
                        counts["items"] += 1
            except grpc.aio.AioRpcError as exc:
                # Counted, and the stream restarted: a broken call must not end the figure.
                counts["errors"] += 1
                if len(error_sample) < 3:
                    error_sample.append(f"{exc.code().name}: {exc.details()}")
                continue
            counts["streams"] += 1

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))),
                           timeout=warmup + duration + 60)
    return {**counts, "seconds": duration, "error_sample": error_sample}


async def _measure(port: int, pid: int, sizes: Any) -> dict[str, Any]:
    pb, _, grpc_stubs = echo.modules()
    async with grpcload.channel(f"{HOST}:{port}") as channel:
        stub = grpc_stubs.EchoStub(channel)
        request = pb.EchoRequest(payload=PAYLOAD)

        async def unary(worker: int, n: int) -> int:
            await stub.Unary(request, timeout=30)
            return 1

        cpu0 = cpu_seconds(pid)
        u = await grpcload.closed_loop(unary, concurrency=sizes.grpc_concurrency,
                                       duration=sizes.grpc_seconds)
        cpu1 = cpu_seconds(pid)
        stream_request = pb.EchoRequest(payload=PAYLOAD, count=sizes.grpc_stream_messages)
        s = await _streams(stub, stream_request, concurrency=max(1, sizes.grpc_concurrency // 4),
                           duration=sizes.grpc_seconds)
        cpu2 = cpu_seconds(pid)
    unary_total = u["calls"] + u["errors"]
    return {
        "unary_rate": u["calls"] / u["seconds"],
        "unary": summary_ms(u["latencies"]), "unary_errors": u["errors"],
        # Server CPU per call (warm-up included): steadier than rates on a busy machine.
        "unary_server_cpu_us": (cpu1 - cpu0) / max(1, unary_total) * 1e6,
        "stream_rate": s["items"] / s["seconds"],
        "stream_server_cpu_us": (cpu2 - cpu1) / max(1, s["items"]) * 1e6,
        "stream_errors": s["errors"],
        "errors": u["error_sample"] + s["error_sample"],
    }


def run(ctx: Context) -> list[Row]:
    sizes = ctx.sizes
    echo.generate()
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in SERVERS}
    for _ in range(sizes.rounds):
        for kind, _label in SERVERS:
            with ctx.server(f"{kind}", kind) as child, ctx.sampling(child, kind):
                result = asyncio.run(_measure(child.info["grpc"], child.pid, sizes))
            samples[kind].append(result)
            ctx.note(f"{kind}: unary {result['unary_rate']:,.0f}/s "
                     f"(p99 {result['unary']['p99_ms']:.1f} ms, "
                     f"{result['unary_server_cpu_us']:.0f} us server CPU/call), "
                     f"stream {result['stream_rate']:,.0f} msg/s "
                     f"({result['stream_server_cpu_us']:.0f} us/msg), "
                     f"errors {result['unary_errors']}/{result['stream_errors']}")

    def median(kind: str, field: str) -> float:
        return statistics.median(r[field] for r in samples[kind])

    def p99(kind: str) -> float:
        return statistics.median(r["unary"]["p99_ms"] for r in samples[kind])

    details = {kind: runs for kind, runs in samples.items()}
    rows = [
        Row("grpc_unary", "4 gRPC unary calls/s", "/s", median("grpc-cellchat", "unary_rate"),
            median("grpc-aio", "unary_rate"), "grpc.aio", ">= 0.7x", "higher", 0.7,
            details={"purerpc_bare_rate": median("grpc-purerpc", "unary_rate"),
                     "cellchat_p99_ms": p99("grpc-cellchat"), "aio_p99_ms": p99("grpc-aio"),
                     "runs": details}),
        Row("grpc_unary_p99", "4 gRPC unary p99", "ms", p99("grpc-cellchat"), p99("grpc-aio"),
            "grpc.aio", "(info)", "lower", None),
        Row("grpc_stream", "4 gRPC server-stream msg/s", "/s",
            median("grpc-cellchat", "stream_rate"), median("grpc-aio", "stream_rate"),
            "grpc.aio", ">= 0.7x", "higher", 0.7,
            details={"purerpc_bare_rate": median("grpc-purerpc", "stream_rate")}),
    ]
    return rows
