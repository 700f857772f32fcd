"""Chat replicas as real processes, SIGKILLed: their users go offline within the bound.

Two presence instances (serve_presence, in this process) share Redis; two replica processes
report their connections over gRPC with `PresenceClient` + `ConnectionReporter`, each to a
different instance. One replica is killed with SIGKILL: no close, no goodbye. Its users must go
offline within lease TTL + sweep interval of the kill (the documented bound), exactly once
across both instances, while the other replica's users stay online.
"""

from __future__ import annotations

import itertools
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from cellchat.auth import JwtSettings
from cellchat.presence.client import ServiceTokens, open_presence_client
from cellchat.presence.config import PresenceConfig
from cellchat.presence.memory import ChangeFeed, InMemoryDirectory
from cellchat.presence.model import Change, Status, UserOffline, UserOnline
from cellchat.presence.server import serve_presence
from cellchat.presence.service import wall_clock_ms
from cellchat.settings import Settings
from tests.infra.ports import ManagedProcess, spawn

pytestmark = pytest.mark.redis

JWT = JwtSettings(verify_key="presence-kill-secret-0123456789abcdef")
FAST = PresenceConfig(
    lease_ttl_ms=2_000, heartbeat_interval_ms=500, typing_ttl_ms=1_000, sweep_interval_ms=200
)
# Start-up of a Python process and scheduling on a loaded machine, on top of the bound.
SLACK_MS = 500
REPO = Path(__file__).resolve().parents[2]

REPLICA = """
import sys
import trio
from cellchat.auth import JwtSettings
from cellchat.presence.client import ServiceTokens, open_presence_client
from cellchat.presence.client import ConnectionReporter, ServiceTokens, open_presence_client

port, secret, replica, *pairs = sys.argv[1:]

async def main():
    tokens = ServiceTokens(JwtSettings(verify_key=secret), replica)
    async with open_presence_client("127.0.0.1", int(port), token=tokens) as client:
        reporter = ConnectionReporter(client, replica)
        for pair in pairs:
            connection, user = pair.split("=")
            reporter.opened(connection, user)
        async with trio.open_nursery() as nursery:
            await nursery.start(reporter.run)
            while reporter.statistics().heartbeats == 0:
                await trio.sleep(0.01)
            print("ready", flush=True)

trio.run(main)
"""


async def start_replica(port: int, name: str, connections: dict[str, str],
                        log: Path) -> ManagedProcess:
    argv = [sys.executable, "-c", REPLICA, str(port), JWT.verify_key, name,
            *(f"{c}={u}" for c, u in connections.items())]
    process = spawn(argv, log_path=log, cwd=REPO)
    with trio.fail_after(30):
        while "ready" not in (output := await trio.Path(log).read_text(errors="replace")):
            if not process.running():
                raise AssertionError(f"replica {name} exited:\n{output}")
            await trio.sleep(0.05)
    return process


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds (the caller's fail_after bounds the wait)."""
    for _ in itertools.count():
        if condition():
            return
        await trio.sleep(0.02)


async def test_sigkilled_replicas_users_go_offline_within_the_bound(
    nursery: trio.Nursery, redis: Any, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    alice, bob, carol = f"alice-{tag}", f"bob-{tag}", f"carol-{tag}"
    directory = InMemoryDirectory({"deal": [alice, bob, carol]})
    settings = Settings(cell_id=f"kill{tag}", redis_url=redis.url, presence_port=0, jwt=JWT,
                        dev_jwt=False, grace_s=1.0)
    feeds = [ChangeFeed(), ChangeFeed()]
    changes: list[Change] = []

    async def record(feed: ChangeFeed, task_status: trio.TaskStatus[None]) -> None:
        async with feed.subscribe() as received:
            task_status.started()
            async for change in received:
                changes.append(change)

    ports = []
    for feed in feeds:
        await nursery.start(record, feed)
        ports.append(await nursery.start(
            lambda task_status, feed=feed: serve_presence(
                settings, config=FAST, directory=directory, sink=feed, task_status=task_status)
        ))

    doomed = await start_replica(ports[0], f"r1-{tag}", {"a": alice, "b": bob},
                                 tmp_path / "r1.log")
    survivor = await start_replica(ports[1], f"r2-{tag}", {"b": bob, "c": carol},
                                   tmp_path / "r2.log")
    try:
        with trio.fail_after(30):
            await eventually(
                lambda: {c.user_id for c in changes if isinstance(c, UserOnline)}
                == {alice, bob, carol}
            )
            await trio.sleep(2 * FAST.lease_ttl_ms / 1000)  # heartbeats hold the leases
            assert not [c for c in changes if isinstance(c, UserOffline)]

            killed_at = wall_clock_ms()
            doomed.kill(signal.SIGKILL)
            await eventually(lambda: any(isinstance(c, UserOffline) for c in changes))
            await trio.sleep(FAST.lease_ttl_ms / 1000)  # anything else would show up by now
            offline = [c for c in changes if isinstance(c, UserOffline)]
            assert [c.user_id for c in offline] == [alice]  # once; bob is still on r2
            assert offline[0].at_ms - killed_at <= FAST.offline_bound_ms + SLACK_MS
            assert offline[0].last_seen_ms <= offline[0].at_ms

            # Both instances answer the same.
            for port in ports:
                async with open_presence_client(
                    "127.0.0.1", port, token=ServiceTokens(JWT, "checker")
                ) as client:
                    seen = await client.get_online_status_for(carol, [alice, bob, carol])
                assert [p.status for p in seen] == [Status.OFFLINE, Status.ONLINE, Status.ONLINE]
                assert seen[0].last_seen_ms == offline[0].last_seen_ms
    finally:
        doomed.kill()
        survivor.kill()
    nursery.cancel_scope.cancel()
