"""Several presence instances sharing one real Redis, in real time with short leases.

A "replica" here is a `ConnectionReporter` reporting to one of the instances; killing it
(cancelling its task: no close, no last word) is what a SIGKILLed chat replica looks like from
presence's side. test_presence_replica_kill.py does it with a real process and SIGKILL.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

from cellchat.chat.domain.errors import StoreUnavailable
from cellchat.presence.client import ConnectionReporter
from cellchat.presence.config import PresenceConfig
from cellchat.presence.memory import ChangeFeed, InMemoryDirectory
from cellchat.presence.model import (
    Change,
    Status,
    TypingStarted,
    TypingStopped,
    UserOffline,
    UserOnline,
)
from cellchat.presence.redis_store import open_redis_presence_store
from cellchat.presence.service import LeaseTerms, PresenceService, wall_clock_ms

pytestmark = pytest.mark.redis

FAST = PresenceConfig(
    lease_ttl_ms=1_500, heartbeat_interval_ms=500, typing_ttl_ms=1_000, sweep_interval_ms=200
)
# Scheduling slack on a loaded CI machine, on top of the documented bound.
SLACK_MS = 400


class Instance:
    def __init__(self, service: PresenceService, feed: ChangeFeed) -> None:
        self.service = service
        self.feed = feed
        self.changes: list[Change] = []

    async def record(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                     ) -> None:
        async with self.feed.subscribe() as changes:
            task_status.started()
            async for change in changes:
                self.changes.append(change)


@asynccontextmanager
async def presence_instances(
    url: str, namespace: str, directory: InMemoryDirectory, count: int = 2
) -> AsyncIterator[list[Instance]]:
    """`count` presence instances, each with its own Redis client, sweeper and change feed."""
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        instances = []
        for _ in range(count):
            store = await stack.enter_async_context(
                open_redis_presence_store(url, namespace=namespace, config=FAST)
            )
            feed = ChangeFeed()
            instance = Instance(PresenceService(store, directory, feed, FAST), feed)
            await nursery.start(instance.record)
            await nursery.start(instance.service.run_sweeper)
            instances.append(instance)
        yield instances
        nursery.cancel_scope.cancel()


class Recorded:
    """A ReportTarget that remembers when the replica's last heartbeat went through."""

    def __init__(self, target: PresenceService) -> None:
        self._target = target
        self.last_heartbeat_ms = 0

    async def heartbeat(self, replica_id: str, connections: Mapping[str, str]) -> LeaseTerms:
        before = wall_clock_ms()
        terms = await self._target.heartbeat(replica_id, connections)
        self.last_heartbeat_ms = before
        return terms

    async def connection_opened(
        self, replica_id: str, connection_id: str, user_id: str
    ) -> LeaseTerms:
        return await self._target.connection_opened(replica_id, connection_id, user_id)

    async def connection_closed(self, replica_id: str, connection_id: str) -> None:
        await self._target.connection_closed(replica_id, connection_id)


def all_changes(instances: list[Instance]) -> list[Change]:
    return [c for i in instances for c in i.changes]


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds (the caller's fail_after bounds the wait)."""
    for _ in itertools.count():
        if condition():
            return
        await trio.sleep(0.02)


async def collect(into: list[Change], call: Awaitable[list[Change]]) -> None:
    into.extend(await call)


async def test_two_instances_decide_each_transition_exactly_once(redis: Any, uid: str) -> None:
    namespace = "{presence-race:" + uid + "}"
    with trio.fail_after(30):
        async with (
            open_redis_presence_store(redis.url, namespace=namespace, config=FAST) as a,
            open_redis_presence_store(redis.url, namespace=namespace, config=FAST) as b,
        ):
            now = wall_clock_ms()
            for round_ in range(40):
                user = f"user{round_}"
                results: list[Change] = []
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(collect, results, a.connection_opened("rA", "c", user, now))
                    nursery.start_soon(collect, results, b.connection_opened("rB", "c", user, now))
                assert results == [UserOnline(user, Status.ONLINE, now)]
                results.clear()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(collect, results, a.connection_closed("rA", "c", now + 1))
                    nursery.start_soon(collect, results, b.connection_closed("rB", "c", now + 1))
                assert results == [UserOffline(user, now + 1, now + 1)]


async def test_a_dead_replicas_users_go_offline_within_the_bound_on_both_instances(
    redis: Any, uid: str
) -> None:
    directory = InMemoryDirectory({"deal": [f"alice-{uid}", f"bob-{uid}", f"carol-{uid}"]})
    alice, bob, carol = f"alice-{uid}", f"bob-{uid}", f"carol-{uid}"
    with trio.fail_after(30):
        async with (
            presence_instances(redis.url, "{presence:" + uid + "}", directory) as (one, two),
            trio.open_nursery() as replicas,
        ):
            # Replica r1 reports to instance one, r2 to instance two (as behind a load balancer).
            r1_target = Recorded(one.service)
            r1 = ConnectionReporter(r1_target, f"r1-{uid}", heartbeat_interval_s=0.5)
            r2 = ConnectionReporter(two.service, f"r2-{uid}", heartbeat_interval_s=0.5)
            r1.opened("a1", alice)
            r1.opened("b1", bob)
            r2.opened("b2", bob)
            r2.opened("c2", carol)
            r1_scope = trio.CancelScope()

            async def run_r1(task_status: trio.TaskStatus[None]) -> None:
                with r1_scope:
                    await r1.run(task_status=task_status)

            await replicas.start(run_r1)
            await replicas.start(r2.run)
            for instance in (one, two):
                answers = await instance.service.get_online_status(carol, [alice, bob, carol])
                assert [p.status for p in answers] == [Status.ONLINE] * 3
            await trio.sleep(2 * FAST.lease_ttl_ms / 1000)  # heartbeats hold the leases

            r1_scope.cancel()  # SIGKILL, as far as presence can tell
            await eventually(
                lambda: any(isinstance(c, UserOffline) for c in all_changes([one, two]))
            )
            offline = [c for c in all_changes([one, two]) if isinstance(c, UserOffline)]
            assert [c.user_id for c in offline] == [alice]  # once, on one instance; bob stays
            [gone] = offline
            assert gone.at_ms - r1_target.last_heartbeat_ms <= FAST.offline_bound_ms + SLACK_MS
            assert r1_target.last_heartbeat_ms < gone.last_seen_ms <= gone.at_ms
            for instance in (one, two):
                answers = await instance.service.get_online_status(carol, [alice, bob])
                assert [(p.status, p.last_seen_ms) for p in answers] == [
                    (Status.OFFLINE, gone.last_seen_ms),
                    (Status.ONLINE, answers[1].last_seen_ms),
                ]
            replicas.cancel_scope.cancel()


async def test_typing_lapses_once_across_instances(redis: Any, uid: str) -> None:
    alice, bob = f"alice-{uid}", f"bob-{uid}"
    directory = InMemoryDirectory({"deal": [alice, bob]})
    with trio.fail_after(30):
        async with presence_instances(redis.url, "{typing:" + uid + "}", directory) as (one, two):
            await one.service.set_typing(alice, "deal", True)
            await trio.sleep(0.5)
            refreshed = wall_clock_ms()  # no later than the refresh's own clock reading
            await two.service.set_typing(alice, "deal", True)  # a refresh through the other
            assert [t.user_id for t in await one.service.get_typing(bob, "deal")] == [alice]
            await eventually(
                lambda: any(isinstance(c, TypingStopped) for c in all_changes([one, two]))
            )
            changes = all_changes([one, two])
            assert [type(c) for c in changes] == [TypingStarted, TypingStopped]
            stopped = changes[1]
            assert FAST.typing_ttl_ms <= stopped.at_ms - refreshed
            assert stopped.at_ms - refreshed <= FAST.typing_bound_ms + SLACK_MS
            assert await two.service.get_typing(bob, "deal") == []


async def test_a_redis_outage_fails_calls_cleanly_and_presence_recovers(
    redis: Any, uid: str
) -> None:
    alice = f"alice-{uid}"
    directory = InMemoryDirectory()
    with trio.fail_after(60):
        async with presence_instances(redis.url, "{outage:" + uid + "}", directory, 1) as [one]:
            await one.service.connection_opened("r1", "c1", alice)
            redis.kill()
            try:
                with pytest.raises(StoreUnavailable):
                    await one.service.get_online_status(alice, [alice])
                await eventually(lambda: one.service.statistics().sweep_failures > 0)
            finally:
                await trio.to_thread.run_sync(redis.restart)
            # The data is gone with the crash (no persistence): the next heartbeat restores it.
            await one.service.heartbeat("r1", {"c1": alice})
            [answer] = await one.service.get_online_status(alice, [alice])
            assert answer.status is Status.ONLINE
