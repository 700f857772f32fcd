"""Figure 3's peers: bare scylla-driver loops, each in its own process.

    python -m bench.cqlpeer same    --hosts H --port P --keyspace K --work FILE --seconds S
    python -m bench.cqlpeer insert  ...

`same` issues, per message, the CQL statements the chat service issues for one SendMessage into
a direct conversation (services/cellchat/chat/storage/cql.py `append_messages` and what the use
case around it reads and writes), with the same dependencies: sequential where the service
awaits one before the next, concurrent where it gathers. The statements' CQL text is taken
from that module (`_STATEMENTS`), never copied, and prepared the same way (keyspace-qualified,
same execution profile, same frame compression); the store class itself is not used. Like the
service's send sequencer, it reads a conversation's last seq once and then remembers the seq it
wrote; like the service's app, it reads a direct conversation's pair once. What the service
adds on top of this loop (gRPC, auth, validation, the use case, the sequencer, the Trio bridge)
is its overhead.

`insert` issues one plain `msg_insert` per message (no conditional batch, no reads): the floor
that shows what allocating the sequence costs.

Each worker owns one conversation and loops closed (next message when the previous is done)
for `seconds` after a warm-up. The driver's futures wake asyncio through call_soon_threadsafe,
the asyncio twin of the service's Trio bridge. Prints one JSON line with the result.

`SAME_SEQUENCE` lists the statements of one steady-state send; the orchestrator compares it
with a trace of the real service (bench/trace.py) and notes any drift.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

#: The statements of one steady-state send, as the service issued them when this peer was
#: written (checked against a trace of the service on every run; see bench/trace.py).
SAME_SEQUENCE = (
    "block_select_pair",
    "cid_select",
    "cid_insert",
    "BATCH(msg_cas_eq,msg_insert)",
    "inbox_insert", "inbox_insert",
    "head_write",
    "part_horizons", "memb_horizons",
)

_TABLE = re.compile(r"\b(FROM|INTO|UPDATE)\s+(\w+)")
BUCKET_SIZE = 1000  # open_cql_store's default, the one the service runs with


#: The statements each mode may issue (prepared at start; the rest of the module's are not).
NEEDED = {
    "same": {name.split("(")[0] for name in SAME_SEQUENCE if not name.startswith("BATCH")}
    | {"msg_cas_eq", "msg_cas_null", "msg_insert", "msg_static_serial", "head_select",
       "msg_top", "part_select"},
    "insert": {"msg_insert"},
}


def _prepare(session: Any, keyspace: str, mode: str) -> dict[str, Any]:
    from cassandra import ConsistencyLevel

    from cellchat.chat.storage.cql import _SERIAL_READS, _STATEMENTS

    prepared = {}
    for name, text in _STATEMENTS.items():
        if name not in NEEDED[mode]:
            continue
        statement = session.prepare(_TABLE.sub(rf"\1 {keyspace}.\2", text))
        if name in _SERIAL_READS:
            statement.consistency_level = ConsistencyLevel.LOCAL_SERIAL
        prepared[name] = statement
    return prepared


def _connect(hosts: Sequence[str], port: int) -> Any:
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
    from cassandra.query import dict_factory

    from cellchat.chat.storage.cql import COMPRESSION

    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        request_timeout=5.0, row_factory=dict_factory,
    )
    cluster = Cluster(list(hosts), port=port, execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                      compression=COMPRESSION)
    return cluster


class Db:
    """execute_async, awaited from asyncio (first page only, like the service's reads)."""

    def __init__(self, session: Any, statements: dict[str, Any]) -> None:
        self.session = session
        self.q = statements
        self.loop = asyncio.get_running_loop()

    def _future(self, statement: Any, params: Any) -> asyncio.Future[Any]:
        loop = self.loop
        future: asyncio.Future[Any] = loop.create_future()

        def done(rows: Any) -> None:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(rows))

        def failed(exc: BaseException) -> None:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_exception(exc))

        self.session.execute_async(statement, params, timeout=5.0).add_callbacks(done, failed)
        return future

    async def run(self, name: str, *params: Any) -> list[dict[str, Any]]:
        return list(await self._future(self.q[name], params) or [])

    async def batch(self, batch: Any) -> list[dict[str, Any]]:
        return list(await self._future(batch, None) or [])


def _full(bucket: int, last_seq: int) -> bool:
    return last_seq >= (bucket + 1) * BUCKET_SIZE - 1


#: The last seq each conversation reached, as the service's send sequencer remembers it.
_KNOWN_LAST_SEQ: dict[str, int] = {}
#: Each direct conversation's pair, as the service's app remembers it.
_KNOWN_PAIRS: dict[str, set[str]] = {}


async def send_same(db: Db, cid: str, sender: str, recipient: str, n: int) -> None:
    """One SendMessage's statements, in the service's order and grouping."""
    from cassandra import ConsistencyLevel
    from cassandra.query import BatchStatement, BatchType

    from cellchat.chat.domain.ids import uuid7
    from cellchat.chat.storage.cql import INBOX_PERIOD_MS

    client_id = f"peer-{os.getpid()}-{n}"
    members = _KNOWN_PAIRS.get(cid)
    if members is None:  # a direct pair never changes: read once (the service: same)
        members = _KNOWN_PAIRS[cid] = {row["user_id"] for row in
                                       await db.run("part_select", cid)}
    if sender not in members:
        raise RuntimeError(f"{sender} is not a participant of {cid}")
    pair = sorted([sender, recipient])
    if any(row["blocked"] for row in await db.run("block_select_pair", pair, pair)):
        raise RuntimeError(f"blocked in {cid}")
    await db.run("cid_select", cid, sender, [client_id])
    last = _KNOWN_LAST_SEQ.pop(cid, None)
    if last is None:  # the first send of this conversation reads it (the service: same)
        head = await db.run("head_select", cid)
        hint = (head[0]["last_seq"] or 0) if head else 0
        top = await db.run("msg_top", cid, hint // BUCKET_SIZE)
        last = (top[0]["last_seq"] or 0) if top else 0
    bucket = last // BUCKET_SIZE
    seq = last + 1
    now = time.time_ns() // 1_000_000
    await db.run("cid_insert", cid, sender, client_id, seq)
    batch = BatchStatement(batch_type=BatchType.UNLOGGED,
                           serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL)
    if last == 0:
        target, condition = 0, ("msg_cas_null", (seq, cid, 0))
    elif not _full(bucket, last):
        target, condition = bucket, ("msg_cas_eq", (seq, cid, bucket, last))
    else:  # the partition is full: check its end, then open the next one (service: same)
        await db.run("msg_static_serial", cid, bucket)
        target, condition = bucket + 1, ("msg_cas_null", (seq, cid, bucket + 1))
    batch.add(db.q[condition[0]], condition[1])
    batch.add(db.q["msg_insert"], (
        cid, target, seq, uuid7(now, os.urandom(10)), sender, "text", "." * 150, "",
        client_id, now, 0, 1, False, 0, 0))
    outcome = await db.batch(batch)
    if not outcome or not outcome[0]["[applied]"]:
        raise RuntimeError(f"conditional batch not applied in {cid} at {seq}")
    _KNOWN_LAST_SEQ[cid] = seq
    period = now // INBOX_PERIOD_MS
    await asyncio.gather(db.run("inbox_insert", sender, period, now, cid),
                         db.run("inbox_insert", recipient, period, now, cid))
    await db.run("head_write", seq, seq, now, cid)
    await asyncio.gather(db.run("part_horizons", seq, seq, seq, cid, sender),
                         db.run("memb_horizons", seq, seq, seq, sender, cid))


class PlainInsert:
    def __init__(self) -> None:
        self.seq: dict[str, int] = {}

    async def send(self, db: Db, cid: str, sender: str, recipient: str, n: int) -> None:
        from cellchat.chat.domain.ids import uuid7

        seq = self.seq[cid] = self.seq.get(cid, 0) + 1
        now = time.time_ns() // 1_000_000
        await db.run("msg_insert", cid, seq // BUCKET_SIZE, seq, uuid7(now, os.urandom(10)),
                     sender, "text", "." * 150, "", f"plain-{n}", now, 0, 1, False, 0, 0)


async def _main(args: argparse.Namespace, work: list[list[str]]) -> dict[str, Any]:
    cluster = _connect(args.hosts.split(","), args.port)
    loop = asyncio.get_running_loop()
    session = await loop.run_in_executor(None, cluster.connect)
    try:
        statements = await loop.run_in_executor(None, _prepare, session, args.keyspace,
                                                args.mode)
        db = Db(session, statements)
        send = send_same if args.mode == "same" else PlainInsert().send
        latencies: list[float] = []
        errors: list[str] = []
        started = time.monotonic()
        measure_from = started + args.warmup
        stop_at = measure_from + args.seconds
        done = 0

        async def worker(cid: str, sender: str, recipient: str) -> None:
            nonlocal done
            n = 0
            while time.monotonic() < stop_at:
                began = time.monotonic()
                try:
                    await send(db, cid, sender, recipient, n)
                except Exception as exc:  # counted; the loop goes on
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    await asyncio.sleep(0.01)
                n += 1
                ended = time.monotonic()
                if measure_from <= ended <= stop_at:  # as bench/grpcload.py counts
                    done += 1
                    if began >= measure_from:
                        latencies.append(ended - began)

        cpu: dict[str, float] = {}

        async def clock() -> None:  # this process's CPU over the measured window
            await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
            cpu["from"] = time.process_time()
            await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
            cpu["to"] = time.process_time()

        await asyncio.wait_for(asyncio.gather(clock(), *(worker(*w) for w in work)),
                               timeout=args.warmup + args.seconds + 60)
    finally:
        await loop.run_in_executor(None, cluster.shutdown)
    return {"mode": args.mode, "sends": done, "seconds": args.seconds,
            "cpu_ms_per_send": (cpu["to"] - cpu["from"]) / max(1, done) * 1e3,
            "rate": done / args.seconds, "latencies": latencies, "errors": len(errors),
            "error_sample": errors[:3], "workers": len(work)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cqlpeer")
    parser.add_argument("mode", choices=["same", "insert"])
    parser.add_argument("--hosts", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keyspace", required=True)
    parser.add_argument("--work", required=True, help="JSON file: [[cid, sender, recipient]]")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    with open(args.work) as handle:
        work = json.load(handle)  # [[cid, sender, recipient], ...]
    result = asyncio.run(_main(args, work))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
