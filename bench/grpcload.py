"""gRPC load: a stock grpc.aio client (asyncio, C core) driving any server of a proto.

Closed loops: `concurrency` callers each issue their next call as soon as the previous one
answered, for `duration` seconds after a short warm-up, over one channel (HTTP/2 multiplexes
them, as a real client would). Every loop is bounded in time and in calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

_OPTIONS = [("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.enable_retries", 0)]


def channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=_OPTIONS)


async def window_cpu(pid: int, *, warmup: float, duration: float) -> float:
    """CPU seconds process `pid` uses over the window a closed_loop started now measures."""
    from bench.common import cpu_seconds

    await asyncio.sleep(warmup)
    before = cpu_seconds(pid)
    await asyncio.sleep(duration)
    return cpu_seconds(pid) - before


async def closed_loop(call: Callable[[int, int], Awaitable[int]], *, concurrency: int,
                      duration: float, warmup: float = 0.5,
                      max_calls: int = 10_000_000) -> dict[str, Any]:
    """Run `call(worker, n)` in `concurrency` loops; it returns how many items it moved.

    Returns the calls and items completed inside the measured window (after the warm-up,
    before the deadline), its length, and the latency of every call that ran wholly inside
    it, in seconds."""
    latencies: list[float] = []
    counts = {"calls": 0, "items": 0, "errors": 0}
    start = time.monotonic()
    measure_from = start + warmup
    stop_at = measure_from + duration
    error_sample: list[str] = []

    async def worker(index: int) -> None:
        n = 0
        while n < max_calls:
            began = time.monotonic()
            if began >= stop_at:
                return
            try:
                items = await call(index, n)
            except grpc.aio.AioRpcError as exc:
                counts["errors"] += 1
                if len(error_sample) < 3:
                    error_sample.append(f"{exc.code().name}: {exc.details()}")
                await asyncio.sleep(0.01)
                n += 1
                continue
            ended = time.monotonic()
            n += 1
            if measure_from <= ended <= stop_at:  # throughput: completions in the window
                counts["calls"] += 1
                counts["items"] += items
                if began >= measure_from:  # latency: calls wholly inside it
                    latencies.append(ended - began)

    await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(concurrency))),
                           timeout=warmup + duration + 60)
    return {**counts, "seconds": duration, "latencies": latencies, "error_sample": error_sample}
