"""Figure 2: idle memory per authenticated WebSocket connection at 10,000 connections.

Each server runs in a fresh process. A few connections are opened and closed first (so code
paths and caches are loaded), then the server's RSS is read once it stops moving; then 10,000
connections of 10,000 distinct users are opened (token checked before the upgrade; cellchat's
also `subscribe`, as every client does) and left idle; RSS is read again once it settles.
Figure = RSS delta / connections. cellchat runs as `cellchat run` does (embedded store,
in-process broker); the peer is the same `websockets` server as in the fan-out figure.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench.common import Child, Row, rss_bytes, settle_rss
from bench.context import Context
from bench.fig_fanout import _connect, _subscribe_all
from bench.wsclient import OPEN


def _measure(ctx: Context, server: Child, n: int, *, subscribe: bool,
             label: str) -> dict[str, Any]:
    pid, ws_port = server.pid, server.info["ws"]
    tag = uuid.uuid4().hex[:6]
    warm_pool, warm = _connect(ws_port, [f"mem-{label}-warm{i}-{tag}" for i in range(20)],
                               ctx.timeout(60))
    if subscribe:
        _subscribe_all(warm_pool, warm, ctx.timeout(60))
    warm_pool.close_all()
    settle = ctx.sizes.settle_s
    time.sleep(settle)
    base = settle_rss(pid, timeout=ctx.timeout(15), quiet_for=settle)
    began = time.monotonic()
    with ctx.sampling(server, f"memory-connect-{label}"):
        pool, conns = _connect(ws_port, [f"mem-{label}-u{i}-{tag}" for i in range(n)],
                               ctx.timeout(600))
    try:
        if subscribe:
            _subscribe_all(pool, conns, ctx.timeout(300))
        connect_s = time.monotonic() - began
        # Keep answering pings while RSS settles.
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            pool.poll(0.1)
        after = settle_rss(pid, timeout=ctx.timeout(20), quiet_for=settle)
        still_open = sum(1 for c in conns if c.state == OPEN)
        peak = rss_bytes(pid)
    finally:
        pool.close_all()
    return {
        "connections": n, "open_at_measure": still_open,
        "handshakes_retried_after_503": pool.retried_503,
        "rss_before": base, "rss_after": after, "rss_peak_seen": peak,
        "per_connection_bytes": (after - base) / n, "connect_seconds": connect_s,
        "handshakes_per_s": n / connect_s if connect_s else 0.0,
    }


def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.memory_connections
    with ctx.cellchat("cellchat-memory") as server:
        c = _measure(ctx, server, n, subscribe=True, label="cellchat")
    ctx.note(f"cellchat: {c['per_connection_bytes'] / 1024:.1f} KiB per connection "
             f"({c['open_at_measure']} open; {c['handshakes_per_s']:.0f} handshakes/s)")
    with ctx.server("ws-peer-memory", "ws-peer") as peer:
        p = _measure(ctx, peer, n, subscribe=False, label="peer")
    ctx.note(f"websockets peer: {p['per_connection_bytes'] / 1024:.1f} KiB per connection "
             f"({p['open_at_measure']} open; {p['handshakes_per_s']:.0f} handshakes/s)")
    return [
        Row("memory", f"2 idle memory per connection @ {n:,}", "KiB",
            c["per_connection_bytes"] / 1024, p["per_connection_bytes"] / 1024, "websockets",
            "<= 1.0x", "lower", 1.0, details={"cellchat": c, "peer": p}),
        Row("handshakes", "2 handshakes/s while connecting", "/s", c["handshakes_per_s"],
            p["handshakes_per_s"], "websockets", "(info)", "higher", None),
    ]
