"""Figure 1b (information): what connecting costs when the users share one group.

cellchat announces a user's presence to everyone who shares a conversation of at most
PRESENCE_LIVE_GROUP_LIMIT (100) participants with them (cellchat/chat/realtime/presence_frames.py;
members of larger groups ask `GetOnlineStatus`). Computing that audience costs a few reads per
change whatever the group size (the user's conversation ids, each conversation's participants,
cached for a second, and the blocks with all peers in one batched read); publishing is one frame
per peer, so connecting all N members of a group that pushes live costs O(N^2) deliveries.

The figure connects N members of one group to a fresh replica (`cellchat run` defaults, the
group size cap MAX_GROUP_PARTICIPANTS lifted to N) and compares the server CPU it takes with the
same number of users who share no conversation (the peer column: cellchat itself, without the
group). Two rows: the defaults (N = 200 is over the live limit: no presence frames, the members
learn presence on demand), and a second replica with PRESENCE_LIVE_GROUP_LIMIT lifted to N + 1,
where every member's connect is pushed to every member already connected (the cost of live
presence in a group that size). Each client sends `subscribe` as soon as it gets `hello`, as real
clients do, and keeps reading; the server counts as done once it is quiet (or after a bounded
wait). With `--profile`, the group storms are sampled.
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


def _group_storm(ctx: Context, server: Child, n: int, label: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    members = [f"pres-g{i}-{tag}" for i in range(n)]
    chatapi.create_group(server.info["grpc"], f"pres-admin-{tag}", members, "presence")
    with ctx.sampling(server, f"presence-{label}-{n}"):
        return _connect_storm(ctx, server, members)


def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.presence_members
    tag = uuid.uuid4().hex[:6]
    # Groups hold 100 participants by default (MAX_GROUP_PARTICIPANTS): lift that for N.
    groups = {"MAX_GROUP_PARTICIPANTS": str(max(100, n + 1))}
    with ctx.cellchat("cellchat-presence", extra=groups) as server:
        alone = _connect_storm(ctx, server, [f"pres-a{i}-{tag}" for i in range(n)])
        wait_quiet(Pool(), server.pid, limit=ctx.timeout(30))
        group = _group_storm(ctx, server, n, "default")
    # The group holds the N members and its admin.
    live_limit = {**groups, "PRESENCE_LIVE_GROUP_LIMIT": str(max(100, n + 1))}
    with ctx.cellchat("cellchat-presence-live", extra=live_limit) as server:
        live = _group_storm(ctx, server, n, "live")
    for label, r in (("no shared conversation", alone), ("members of one group", group),
                     ("members of one group, live limit lifted", live)):
        ctx.note(f"connect {n} users, {label}: server CPU {r['server_cpu_s']:.1f}s, "
                 f"{r['presence_frames']:,} presence frames, busy {r['busy_after_s']:.0f}s "
                 f"after connecting{'' if r['quiet'] else ' (still busy)'}, "
                 f"refused {r['refused']}, closes {r['server_closes']}")
    return [
        Row("presence_storm", f"1b server CPU to connect {n} members of one group", "s",
            group["server_cpu_s"], alone["server_cpu_s"], "same, no group", "(info)",
            "lower", None, details={"group": group, "no_group": alone}),
        Row("presence_storm_live", f"1b same, live presence to all {n} members", "s",
            live["server_cpu_s"], alone["server_cpu_s"], "same, no group", "(info)",
            "lower", None, details={"group": live, "no_group": alone,
                                    "PRESENCE_LIVE_GROUP_LIMIT": max(100, n + 1)}),
    ]
