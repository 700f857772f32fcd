"""Figure 1b (information): what connecting costs when the users share one group.

cellchat announces a user's presence to everyone who shares a conversation with them
(cellchat/chat/realtime/presence_frames.py): on connect, it reads the participants of each of
the user's conversations and checks blocks both ways for every peer, then publishes one
`presence` frame to every peer. For the members of one group of N, connecting all of them
therefore costs O(N^2) reads and frames. This figure connects N members of one group to a
fresh replica (`cellchat run` defaults) and compares the server CPU it takes with the same
number of users who share no conversation (the peer column: cellchat itself, without the
group). Each client sends `subscribe` as soon as it gets `hello`, as real clients do, and keeps
reading; the server counts as done once it is quiet (or after a bounded wait).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from bench import chatapi
from bench.common import HOST, Child, Row, cpu_seconds
from bench.context import Context
from bench.fig_fanout import wait_quiet
from bench.wsclient import OPEN, Conn, Pool

SUBSCRIBE = json.dumps({"type": "subscribe", "positions": {}}).encode()


def _connect_storm(ctx: Context, server: Child, users: list[str]) -> dict[str, Any]:
    frames = {"presence": 0, "other": 0}

    def on_text(conn: Conn, payload: bytes) -> None:
        if payload.startswith(b'{"type":"hello"'):
            conn.send_text(SUBSCRIBE)
        elif payload.startswith(b'{"type":"presence"'):
            frames["presence"] += 1
        else:
            frames["other"] += 1

    pool = Pool(on_text)
    cpu0, began = cpu_seconds(server.pid), time.monotonic()
    try:
        conns = pool.open_many(HOST, server.info["ws"], [chatapi.ws_path(u) for u in users],
                               parallel=50, timeout=ctx.timeout(300))
        connected_s = time.monotonic() - began
        busy_s, quiet = wait_quiet(pool, server.pid, limit=ctx.timeout(90))
        return {
            "users": len(users), "open": sum(1 for c in conns if c.state == OPEN),
            "refused": sum(1 for c in conns if c.status and c.status != 101),
            "server_closes": dict(pool.closed_by_server),
            "presence_frames": frames["presence"], "other_frames": frames["other"],
            "server_cpu_s": cpu_seconds(server.pid) - cpu0,
            "connect_s": connected_s, "busy_after_s": busy_s, "quiet": quiet,
        }
    finally:
        pool.close_all(linger=0.5)


def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.presence_members
    tag = uuid.uuid4().hex[:6]
    # Groups hold 100 participants by default (MAX_GROUP_PARTICIPANTS): lift that for N.
    with ctx.cellchat("cellchat-presence",
                      extra={"MAX_GROUP_PARTICIPANTS": str(max(100, n + 1))}) as server:
        alone = _connect_storm(ctx, server, [f"pres-a{i}-{tag}" for i in range(n)])
        wait_quiet(Pool(), server.pid, limit=ctx.timeout(30))
        members = [f"pres-g{i}-{tag}" for i in range(n)]
        chatapi.create_group(server.info["grpc"], f"pres-admin-{tag}", members, "presence")
        group = _connect_storm(ctx, server, members)
    for label, r in (("no shared conversation", alone), ("members of one group", group)):
        ctx.note(f"connect {n} users, {label}: server CPU {r['server_cpu_s']:.1f}s, "
                 f"{r['presence_frames']:,} presence frames, busy {r['busy_after_s']:.0f}s "
                 f"after connecting{'' if r['quiet'] else ' (still busy)'}, "
                 f"refused {r['refused']}, closes {r['server_closes']}")
    return [
        Row("presence_storm", f"1b server CPU to connect {n} members of one group", "s",
            group["server_cpu_s"], alone["server_cpu_s"], "same, no group", "(info)",
            "lower", None, details={"group": group, "no_group": alone}),
    ]
