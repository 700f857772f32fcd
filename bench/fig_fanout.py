"""Figure 1: fan-out of one conversation to 1,000 and 5,000 WebSocket subscribers.

cellchat: one replica (`cellchat run`: embedded store, in-process broker; a second series with
the Redis broker, as replicas run in production). N users and an admin connect once each over
/ws/chat (authenticated, `subscribe`d), then the admin creates a group with all of them (so
connecting sets off no presence announcements to the group: fig_presence.py measures those),
and sends 150-byte text messages with `send` frames on its own connection. Delivered = a
`message.created` frame read by a member's connection.

Peer: a minimal server on the `websockets` library (bench/servers.py `ws-peer`): the same JWT
check before the upgrade, compression off, and every received message broadcast() to every
connection. The sender sends a frame of exactly the size cellchat delivered, so both servers
write the same number of bytes per delivery.

Method (the same for both): the load generator (this process, raw epoll client, see
bench/wsclient.py) keeps at most `window` messages in flight (sent but not yet read by every
subscriber), so neither server's queues overflow and the rate is what the server sustains.
Each message carries its send time (monotonic clock, shared by all processes); latency is read
time minus send time, over every delivery. Rate = deliveries / (last delivery - first send).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from functools import partial
from typing import Any

from bench import chatapi
from bench.common import HOST, Child, Row, ServiceFailure, cpu_seconds, summary_ms
from bench.context import Context
from bench.wsclient import OPEN, Conn, Pool

MARK = re.compile(rb"bm(\d+)-(\d+)e")
TEXT_BYTES = 150


class FanoutRun:
    """One measurement: N subscribers, one sender, a window of messages in flight."""

    def __init__(self, pool: Pool, sender: Conn, subscribers: list[Conn],
                 frame_for: Any) -> None:
        self.pool = pool
        self.sender = sender
        self.subscribers = subscribers
        self.frame_for = frame_for  # (index, sent_ns) -> bytes sent by the sender
        self.delivered: dict[int, int] = {}
        self.latencies_ns: list[int] = []
        self.measure_from = 1 << 62  # message index from which latencies count
        self.next_index = 0
        self.completed = 0
        self.deliveries = 0
        self.all_deliveries = 0  # warm-up included
        self.frame_bytes = 0
        self.last_delivery = 0.0
        self.first_send = 0.0
        self.stop_sending = False
        self.window = 1
        self._lost_seen = pool.lost
        self._expected = sum(1 for c in subscribers if c.state == OPEN)

    def on_text(self, conn: Conn, payload: bytes) -> None:
        if conn is self.sender or not payload.startswith((b'{"type":"message.created"', b"bm")):
            return
        match = MARK.search(payload)
        if match is None:
            return
        index = int(match.group(1))
        self.all_deliveries += 1
        now = time.monotonic_ns()
        if not self.frame_bytes:
            self.frame_bytes = len(payload)
        if index >= self.measure_from:
            self.latencies_ns.append(now - int(match.group(2)))
            self.deliveries += 1
            self.last_delivery = now / 1e9
        count = self.delivered.get(index, 0) + 1
        self.delivered[index] = count
        if count >= self.expected():
            del self.delivered[index]
            self.completed += 1
            self.top_up()

    def expected(self) -> int:
        """Subscribers still open (recounted only when a connection was lost)."""
        if self._lost_seen != self.pool.lost:
            self._lost_seen = self.pool.lost
            self._expected = sum(1 for c in self.subscribers if c.state == OPEN)
        return self._expected

    def in_flight(self) -> int:
        return self.next_index - self.completed

    def top_up(self) -> None:
        while not self.stop_sending and self.in_flight() < self.window:
            now = time.monotonic_ns()
            if not self.first_send and self.next_index >= self.measure_from:
                self.first_send = now / 1e9
            self.sender.send_text(self.frame_for(self.next_index, now))
            self.next_index += 1

    def run(self, *, window: int, warmup_messages: int, seconds: float,
            drain_timeout: float) -> dict[str, Any]:
        self.window = window
        self.pool.on_text = self.on_text
        # Warm-up: a few messages through every subscriber, not measured.
        self.measure_from = 1 << 62
        self.top_up()
        if not self.pool.run_until(lambda: self.completed >= warmup_messages,
                                   drain_timeout, progress=lambda: self.completed):
            raise ServiceFailure(f"warm-up stalled: {self.completed}/{warmup_messages} messages "
                               f"reached all subscribers; closes {self.pool.closed_by_server}")
        self.stop_sending = True
        self.pool.run_until(lambda: self.in_flight() == 0, drain_timeout,
                            progress=lambda: self.completed)
        # Measured: keep `window` messages in flight for `seconds`, then let them land.
        self.measure_from = self.next_index
        self.stop_sending = False
        began = time.monotonic()
        self.top_up()
        last_progress, last_completed = time.monotonic(), self.completed
        while time.monotonic() - began < seconds:
            self.pool.poll(0.05)
            if self.completed != last_completed:
                last_progress, last_completed = time.monotonic(), self.completed
            elif time.monotonic() - last_progress > drain_timeout:
                raise ServiceFailure(f"fan-out stalled; closes {self.pool.closed_by_server}")
        self.stop_sending = True
        drained = self.pool.run_until(lambda: self.in_flight() == 0, drain_timeout,
                                      progress=lambda: self.completed)
        elapsed = max(1e-9, self.last_delivery - self.first_send)
        measured = self.next_index - self.measure_from
        return {
            "subscribers": len(self.subscribers),
            "open_at_end": self.expected(),
            "messages": measured,
            "deliveries": self.deliveries,
            "rate": self.deliveries / elapsed,
            "seconds": elapsed,
            "latency": summary_ms([v / 1e9 for v in self.latencies_ns]),
            "frame_bytes": self.frame_bytes,
            "window": window,
            "drained": drained,
            "server_closes": dict(self.pool.closed_by_server),
        }


def _connect(port: int, users: list[str], timeout: float, *, parallel: int = 200,
             retry_budget: float = 60.0) -> tuple[Pool, list[Conn]]:
    """Open one authenticated connection per user, `parallel` handshakes at a time.

    A 503 means "retry" (docs/websocket.md): those handshakes are tried again, fewer at a
    time, with a growing pause, as a client would, for at most `retry_budget` seconds;
    `pool.retried_503` counts them (the figures report it). Any other refusal, or a 503 that
    outlasts the budget, is an error."""
    pool = Pool()
    paths = [chatapi.ws_path(u) for u in users]
    conns = pool.open_many(HOST, port, paths, tags=users, timeout=timeout, parallel=parallel)
    give_up = time.monotonic() + retry_budget
    attempt = 0
    while time.monotonic() < give_up:
        again = [i for i, c in enumerate(conns) if c.state != OPEN and c.status == 503]
        if not again:
            break
        pool.retried_503 += len(again)
        attempt += 1
        pause = min(5.0, 0.5 * attempt)
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline:  # keep the open ones read meanwhile
            pool.poll(0.05)
        retried = pool.open_many(HOST, port, [paths[i] for i in again],
                                 tags=[users[i] for i in again], timeout=timeout,
                                 parallel=max(5, parallel >> (attempt + 1)))
        for i, conn in zip(again, retried, strict=True):
            conns[i] = conn
    refused = [c for c in conns if c.state != OPEN]
    if refused:
        pool.close_all(linger=0.5)
        statuses = sorted({c.status for c in refused})
        raise ServiceFailure(f"{len(refused)} of {len(users)} WebSocket handshakes failed "
                           f"(HTTP {statuses}) after {pool.retried_503} retries in "
                           f"{retry_budget:.0f}s")
    return pool, conns


def wait_quiet(pool: Pool, pid: int, *, limit: float, busy_below: float = 0.15
               ) -> tuple[float, bool]:
    """Keep reading until the server under test uses less than `busy_below` of a core over a
    second (what connecting set off, e.g. presence announcements, has settled), at most
    `limit` seconds. Returns (seconds waited, whether it went quiet)."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        while time.monotonic() - t0 < 1.0:
            pool.poll(0.05)
        if (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) < busy_below:
            return time.monotonic() - began, True
    return time.monotonic() - began, False


def _subscribe_all(pool: Pool, conns: list[Conn], timeout: float) -> None:
    """cellchat: send `subscribe` on every connection and wait for every `subscribed`."""
    waiting = {c.fd for c in conns}

    def on_text(conn: Conn, payload: bytes) -> None:
        if payload.startswith(b'{"type":"subscribed"'):
            waiting.discard(conn.fd)

    pool.on_text = on_text
    frame = json.dumps({"type": "subscribe", "positions": {}}).encode()
    for conn in conns:
        conn.send_text(frame)
    if not pool.run_until(lambda: not waiting, timeout):
        raise ServiceFailure(f"{len(waiting)} connections never got `subscribed`")


def measure_cellchat(ctx: Context, server: Child, n: int, label: str) -> dict[str, Any]:
    port, ws_port = server.info["grpc"], server.info["ws"]
    sizes = ctx.sizes
    tag = uuid.uuid4().hex[:6]
    admin = f"fan-{label}-{n}-admin-{tag}"
    members = [f"fan-{label}-{n}-u{i}-{tag}" for i in range(n)]
    # Members connect first and the group is created afterwards: a member who connects while
    # in the group has its presence announced to every other member (O(N^2) frames for the
    # group; bench/fig_presence.py measures that), which would still be running here.
    began = time.monotonic()
    pool, conns = _connect(ws_port, [*members, admin], ctx.timeout(300),
                           retry_budget=ctx.timeout(90))
    try:
        connected = time.monotonic() - began
        _subscribe_all(pool, conns, ctx.timeout(120))
        created_frames = {"n": 0}

        def on_created(conn: Conn, payload: bytes) -> None:
            if payload.startswith(b'{"type":"conversation.created"'):
                created_frames["n"] += 1

        pool.on_text = on_created
        began = time.monotonic()
        cid = chatapi.create_group(port, admin, members, f"fan-out {n}")
        pool.run_until(lambda: created_frames["n"] >= pool.open_count, ctx.timeout(120),
                       progress=lambda: created_frames["n"])
        created = time.monotonic() - began
        if pool.lost:
            raise ServiceFailure(
                f"creating the group closed {pool.lost} of {len(conns)} connections "
                f"(close codes {pool.closed_by_server}; 1012 = the replica lost its broker)")
        busy_s, quiet = wait_quiet(pool, server.pid, limit=ctx.timeout(60))
        sender, subscribers = conns[-1], conns[:-1]

        def frame_for(index: int, sent_ns: int) -> bytes:
            return json.dumps({
                "type": "send", "conversation_id": cid, "client_message_id": f"m{index}",
                "kind": "text", "text": chatapi.text_of(index, sent_ns, TEXT_BYTES),
            }).encode()

        run = FanoutRun(pool, sender, subscribers, frame_for)
        cpu0 = cpu_seconds(server.pid)
        with ctx.sampling(server, f"fanout-{label}-{n}"):
            result = run.run(window=sizes.fanout_window, warmup_messages=sizes.fanout_window,
                             seconds=sizes.fanout_seconds, drain_timeout=ctx.timeout(30))
        _cpu_per_delivery(result, cpu_seconds(server.pid) - cpu0, run)
        result.update(setup_create_s=created, setup_connect_s=connected,
                      conversation_created_frames=created_frames["n"],
                      handshakes_retried_after_503=pool.retried_503,
                      busy_after_connect_s=busy_s, quiet_before_measuring=quiet)
        return result
    finally:
        pool.close_all()


def measure_peer(ctx: Context, ws_port: int, pid: int, n: int,
                 frame_bytes: int) -> dict[str, Any]:
    sizes = ctx.sizes
    tag = uuid.uuid4().hex[:6]
    users = [f"fan-peer-{n}-u{i}-{tag}" for i in range(n)] + [f"fan-peer-{n}-sender-{tag}"]
    pool, conns = _connect(ws_port, users, ctx.timeout(300))
    try:
        sender, subscribers = conns[-1], conns[:-1]
        busy_s, quiet = wait_quiet(pool, pid, limit=ctx.timeout(120))

        def frame_for(index: int, sent_ns: int) -> bytes:
            return chatapi.text_of(index, sent_ns, frame_bytes).encode()

        run = FanoutRun(pool, sender, subscribers, frame_for)
        cpu0 = cpu_seconds(pid)
        result = run.run(window=sizes.fanout_window, warmup_messages=sizes.fanout_window,
                         seconds=sizes.fanout_seconds, drain_timeout=ctx.timeout(30))
        _cpu_per_delivery(result, cpu_seconds(pid) - cpu0, run)
        result.update(busy_after_connect_s=busy_s, quiet_before_measuring=quiet)
        return result
    finally:
        pool.close_all()


def _cpu_per_delivery(result: dict[str, Any], cpu_s: float, run: FanoutRun) -> None:
    """Server CPU per delivery over the whole run (warm-up included, so over every frame
    delivered): steadier than the rate when neighbours load the machine."""
    total = run.all_deliveries
    result["server_cpu_s"] = cpu_s
    result["server_cpu_us_per_delivery"] = cpu_s / total * 1e6 if total else None


_CELLCHAT_ENV = {
    # One sender writes every message of the figure: lift its per-connection rate limit (the
    # default, 20 frames/s, is a per-human limit) and let the group hold every subscriber.
    "WS_RATE_PER_S": "1000000", "WS_BURST": "100000", "MAX_GROUP_PARTICIPANTS": "100000",
}


def _describe(label: str, n: int, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{label} {n} subscribers: FAILED: {r['error']}"
    return (f"{label} {n} subscribers: {r['rate']:,.0f} deliveries/s, "
            f"p99 {r['latency']['p99_ms']:.0f} ms, server CPU "
            f"{r.get('server_cpu_us_per_delivery') or 0:.1f} µs/delivery, "
            f"frame {r['frame_bytes']} B, closes "
            f"{r['server_closes']}, 503s retried {r.get('handshakes_retried_after_503', 0)}, "
            f"busy {r['busy_after_connect_s']:.0f}s after connecting"
            f"{'' if r['quiet_before_measuring'] else ' (still busy when measured)'}")


def run(ctx: Context) -> list[Row]:
    sizes = ctx.sizes
    results: dict[str, dict[int, dict[str, Any]]] = {"cellchat": {}, "cellchat-redis": {},
                                                    "peer": {}}

    def attempt(label: str, n: int, measure: Any) -> None:
        try:
            results[label][n] = measure()
        except Exception as exc:  # one failed series must not hide the others
            results[label][n] = {"error": f"{type(exc).__name__}: {exc}",
                                 "service_failure": isinstance(exc, ServiceFailure)}
        ctx.note(_describe(label, n, results[label][n]))

    for label, redis in (("cellchat", False), ("cellchat-redis", True)):
        with ctx.cellchat(f"{label}-fanout", redis=redis, extra=_CELLCHAT_ENV) as server:
            for n in sizes.fanout_subscribers:
                attempt(label, n, partial(measure_cellchat, ctx, server, n, label))
    with ctx.server("ws-peer-fanout", "ws-peer") as peer:
        for n in sizes.fanout_subscribers:
            frame_bytes = results["cellchat"][n].get("frame_bytes") or 529
            attempt("peer", n, partial(measure_peer, ctx, peer.info["ws"], peer.pid, n,
                                       frame_bytes))

    def value(r: dict[str, Any], *path: str) -> float | None:
        found: Any = r
        for key in path:
            if not isinstance(found, dict) or key not in found:
                return None
            found = found[key]
        return float(found)

    rows: list[Row] = []
    for n in sizes.fanout_subscribers:
        c, cr, p = results["cellchat"][n], results["cellchat-redis"][n], results["peer"][n]
        failed = c if "error" in c else p
        error, service = failed.get("error", ""), bool(failed.get("service_failure"))
        rows.append(Row(f"fanout_{n}", f"1 fan-out {n:,} subs, deliveries/s", "/s",
                        value(c, "rate"), value(p, "rate"), "websockets", ">= 1.0x", "higher",
                        1.0, details={"cellchat": c, "peer": p}, error=error,
                        service_failure=service))
        rows.append(Row(f"fanout_{n}_p99", f"1 fan-out {n:,} subs, p99", "ms",
                        value(c, "latency", "p99_ms"), value(p, "latency", "p99_ms"),
                        "websockets", "(info)", "lower", None, error=error,
                        service_failure=service))
        failed = cr if "error" in cr else p
        rows.append(Row(f"fanout_{n}_redis", f"1 fan-out {n:,} subs via Redis, deliveries/s",
                        "/s", value(cr, "rate"), value(p, "rate"), "websockets", ">= 1.0x",
                        "higher", 1.0, details={"cellchat": cr}, error=failed.get("error", ""),
                        service_failure=bool(failed.get("service_failure"))))
    return rows
