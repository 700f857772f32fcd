"""Figure 3: SendMessage sustained rate and p99 through gRPC with Cassandra, against
(a) a bare scylla-driver loop issuing the same CQL statements, and (b) a plain INSERT loop.

cellchat: one replica on Cassandra (in-process broker: nobody is connected, so publishing is
free and the figure is about the send path). `send_concurrency` closed-loop callers, each the
buyer of its own direct conversation, send 150-byte texts with a stock grpc.aio client.
Peers: bench/cqlpeer.py in its own process, the same number of workers, each on its own
conversation (created through the service, so every row the statements read exists), while
the chat replica is stopped. The statement list of peer (a) is checked against a trace of the
service (bench/trace.py); a difference is reported in the results.

Before the rounds, peer (a) runs for a few seconds unmeasured, on conversations of its own: the
node runs with server JVM settings, whose JIT compiles the hot statements during the first
seconds of load (a cold first round measured 30-50% below the next).

The load of a shared machine drifts within a minute, so cellchat and peer (a) are measured in
`rounds` alternating rounds (cellchat first in even rounds, the peer first in odd ones), each
with a fresh replica or peer process; rates, CPU per send and latencies are pooled over the
rounds, and each round's rates are in the details.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import chatapi, grpcload
from bench.common import HOST, Row, python_child, summary_ms
from bench.context import Context
from bench.cqlpeer import SAME_SEQUENCE
from bench.trace import service_send_statements
from cellchat.api.chat.v1 import chat_pb2 as pb
from cellchat.api.chat.v1 import chat_pb2_grpc


def create_pairs(port: int, count: int, label: str) -> list[tuple[str, str, str]]:
    """`count` direct conversations [(cid, buyer, seller)], created concurrently."""
    tag = uuid.uuid4().hex[:6]
    pairs = [(f"{label}-b{i}-{tag}", f"{label}-s{i}-{tag}") for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        cids = list(pool.map(lambda p: chatapi.create_direct(port, *p), pairs))
    return [(cid, b, s) for cid, (b, s) in zip(cids, pairs, strict=True)]


async def send_load(port: int, work: list[tuple[str, str, str]], seconds: float, *,
                    warmup: float = 1.0, pid: int = 0) -> dict[str, Any]:
    """Closed-loop SendMessage: one caller per conversation, the buyer sending."""
    tag = uuid.uuid4().hex[:6]
    text = "." * 150
    async with grpcload.channel(f"{HOST}:{port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)

        async def call(worker: int, n: int) -> int:
            cid, buyer, _ = work[worker]
            await stub.SendMessage(pb.SendMessageRequest(
                conversation_id=cid, client_message_id=f"{tag}-{worker}-{n}",
                kind=pb.MESSAGE_KIND_TEXT, text=text), metadata=chatapi.auth(buyer), timeout=30)
            return 1

        load = grpcload.closed_loop(call, concurrency=len(work), duration=seconds,
                                    warmup=warmup)
        if not pid:
            return await load
        result, cpu = await asyncio.gather(
            load, grpcload.window_cpu(pid, warmup=warmup, duration=seconds))
        result["server_cpu_s"] = cpu
        return result


def run_peer(ctx: Context, mode: str, work: list[tuple[str, str, str]], *,
             seconds: float | None = None, label: str = "") -> dict[str, Any]:
    host, port = ctx.cassandra()
    seconds = ctx.sizes.send_seconds if seconds is None else seconds
    name = f"cqlpeer-{label or mode}"
    work_file = ctx.run_dir / f"{name}-work.json"
    work_file.write_text(json.dumps(work))
    child = python_child(name, "bench.cqlpeer", [
        mode, "--hosts", host, "--port", str(port), "--keyspace", ctx.ensure_keyspace(),
        "--work", str(work_file), "--seconds", str(seconds)], {}, ctx.log_dir)
    result = child.result(timeout=ctx.timeout(seconds + 120))
    return result


def _by_round(rates: list[float]) -> str:
    if len(rates) < 2:
        return ""
    return " (rounds: " + ", ".join(f"{rate:,.0f}/s" for rate in rates) + ")"


def run(ctx: Context) -> list[Row]:
    sizes = ctx.sizes
    host, port = ctx.cassandra()
    keyspace = ctx.ensure_keyspace()
    traced = service_send_statements(host, port, keyspace)
    drift = sorted(traced) != sorted(SAME_SEQUENCE)
    if drift:
        ctx.note(f"WARNING: the service's send path changed; peer (a) issues {SAME_SEQUENCE}, "
                 f"the service {traced}: update bench/cqlpeer.py")
    c = sizes.send_concurrency
    rounds = max(1, sizes.rounds)
    cell_runs: list[dict[str, Any]] = []
    same_runs: list[dict[str, Any]] = []
    with ctx.cellchat("cellchat-send-setup", store="cassandra") as server:
        work = create_pairs(server.info["grpc"], 4 * c, "send")
    # Not measured: the node's JIT compiles the send path's statements now, or the first
    # round (cellchat's) would pay for it alone.
    run_peer(ctx, "same", work[3 * c:], seconds=min(15.0, 1.5 * sizes.send_seconds),
             label="warm-up")
    for index in range(rounds):
        order = ("cellchat", "same") if index % 2 == 0 else ("same", "cellchat")
        for who in order:
            if who == "same":
                same_runs.append(run_peer(ctx, "same", work[c:2 * c]))
                continue
            with ctx.cellchat(f"cellchat-send-{index}", store="cassandra") as server:
                label = "send" if index == 0 else f"send-{index}"
                with ctx.sampling(server, label):
                    cell_runs.append(asyncio.run(send_load(
                        server.info["grpc"], work[:c], sizes.send_seconds, pid=server.pid)))
    calls = sum(r["calls"] for r in cell_runs)
    cpu = sum(r["server_cpu_s"] for r in cell_runs)
    cellchat = {
        "calls": calls, "seconds": sum(r["seconds"] for r in cell_runs),
        "latencies": [x for r in cell_runs for x in r["latencies"]],
        "errors": sum(r["errors"] for r in cell_runs),
        "error_sample": [e for r in cell_runs for e in r["error_sample"]][:3],
    }
    sends = sum(r["sends"] for r in same_runs)
    same = {
        "sends": sends, "seconds": sum(r["seconds"] for r in same_runs),
        "rate": sends / sum(r["seconds"] for r in same_runs),
        "latencies": [x for r in same_runs for x in r["latencies"]],
        "errors": sum(r["errors"] for r in same_runs),
        "error_sample": [e for r in same_runs for e in r["error_sample"]][:3],
        "cpu_ms_per_send": sum(r["cpu_ms_per_send"] * r["sends"] for r in same_runs)
        / max(1, sends),
        "workers": c, "rounds": rounds,
        "round_rates": [r["rate"] for r in same_runs],
    }
    cellchat_rate = cellchat["calls"] / cellchat["seconds"]
    cellchat_lat = summary_ms(cellchat["latencies"])
    cell_rates = [r["calls"] / r["seconds"] for r in cell_runs]
    ctx.note(f"cellchat: {cellchat_rate:,.0f} sends/s, p99 {cellchat_lat['p99_ms']:.0f} ms, "
             f"errors {cellchat['errors']} {cellchat['error_sample'][:1]}, "
             f"server CPU {cpu / max(1, calls) * 1e3:.1f} ms/send" + _by_round(cell_rates))
    same_lat = summary_ms(same["latencies"])
    ctx.note(f"driver loop, same CQL: {same['rate']:,.0f} sends/s, "
             f"p99 {same_lat['p99_ms']:.0f} ms, errors {same['errors']}, "
             f"CPU {same['cpu_ms_per_send']:.1f} ms/send" + _by_round(same["round_rates"]))
    plain = run_peer(ctx, "insert", work[2 * c:3 * c])
    plain_lat = summary_ms(plain["latencies"])
    ctx.note(f"driver loop, plain INSERT: {plain['rate']:,.0f} inserts/s, "
             f"p99 {plain_lat['p99_ms']:.0f} ms, errors {plain['errors']}")
    details = {
        "concurrency": c, "service_statements": traced, "peer_statements": list(SAME_SEQUENCE),
        "statement_drift": drift,
        "rounds": rounds,
        "cellchat": {"rate": cellchat_rate, "latency": cellchat_lat,
                     "errors": cellchat["errors"], "error_sample": cellchat["error_sample"],
                     "server_cpu_ms_per_send": cpu / max(1, calls) * 1e3,
                     "round_rates": cell_rates},
        "same": {k: v for k, v in same.items() if k != "latencies"} | {"latency": same_lat},
        "insert": {k: v for k, v in plain.items() if k != "latencies"} | {"latency": plain_lat},
    }
    return [
        Row("send_vs_driver", "3 SendMessage/s vs driver loop, same CQL", "/s", cellchat_rate,
            same["rate"], "driver (a)", ">= 0.8x", "higher", 0.8, details=details),
        Row("send_p99_vs_driver", "3 SendMessage p99 vs driver loop", "ms",
            cellchat_lat["p99_ms"], same_lat["p99_ms"], "driver (a)", "(info)", "lower", None),
        Row("send_vs_insert", "3 SendMessage/s vs plain INSERT loop", "/s", cellchat_rate,
            plain["rate"], "INSERT (b)", "(info)", "higher", None),
        Row("send_p99_vs_insert", "3 SendMessage p99 vs plain INSERT", "ms",
            cellchat_lat["p99_ms"], plain_lat["p99_ms"], "INSERT (b)", "(info)", "lower", None),
    ]
