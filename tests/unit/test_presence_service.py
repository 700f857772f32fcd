"""Presence use cases over the in-process store, on trio's mock clock (autojump_clock).

The service's clock follows trio's, so the sweeper, the replica reporter and the leases all run
on virtual time: a 15 s lease takes no real time to lapse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

import pytest
import trio

from cellchat.chat.domain.errors import InvalidArgument, NotFound, StoreUnavailable
from cellchat.presence.client import ConnectionReporter, ReplicaPresence
from cellchat.presence.config import PresenceConfig
from cellchat.presence.memory import ChangeFeed, InMemoryDirectory, InMemoryPresenceStore
from cellchat.presence.model import (
    Change,
    Presence,
    Status,
    TypingStarted,
    TypingStopped,
    UserOffline,
    UserOnline,
)
from cellchat.presence.service import LeaseTerms, PresenceService
from cellchat.presence.tracker import PresenceTracker

T0 = 1_700_000_000_000
CONFIG = PresenceConfig()


def now_ms() -> int:
    return T0 + int(trio.current_time() * 1000)


@pytest.fixture
def directory() -> InMemoryDirectory:
    return InMemoryDirectory({"deal": ["alice", "bob"], "group": ["bob", "carol", "dave"]})


@pytest.fixture
def feed() -> ChangeFeed:
    return ChangeFeed()


@pytest.fixture
async def service(
    directory: InMemoryDirectory, feed: ChangeFeed
) -> AsyncIterator[PresenceService]:
    store = InMemoryPresenceStore(
        PresenceTracker(lease_ttl_ms=CONFIG.lease_ttl_ms, typing_ttl_ms=CONFIG.typing_ttl_ms)
    )
    service = PresenceService(store, directory, feed, CONFIG, clock=now_ms)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run_sweeper)
        yield service
        nursery.cancel_scope.cancel()


async def next_change(changes: trio.MemoryReceiveChannel[Change]) -> Change:
    with trio.fail_after(60):
        return await changes.receive()


async def test_a_killed_replicas_users_go_offline_within_the_bound(
    autojump_clock: trio.testing.MockClock, service: PresenceService, feed: ChangeFeed
) -> None:
    async with feed.subscribe() as changes, trio.open_nursery() as replica:
        reporter = ConnectionReporter(service, "r1", heartbeat_interval_s=5)
        reporter.opened("c1", "alice")
        await replica.start(reporter.run)
        assert await next_change(changes) == UserOnline("alice", Status.ONLINE, now_ms())
        await trio.sleep(62)  # heartbeats (at 0, 5, ... 60 s) keep alice online
        assert (await service.get_online_status("alice", ["alice"]))[0].status is Status.ONLINE
        assert reporter.statistics().heartbeats == 13
        last_heartbeat = T0 + 60_000
        replica.cancel_scope.cancel()  # the replica dies without a word
    async with feed.subscribe() as changes:
        offline = await next_change(changes)
    assert isinstance(offline, UserOffline)
    assert offline.user_id == "alice"
    assert offline.last_seen_ms == last_heartbeat + CONFIG.lease_ttl_ms
    assert offline.at_ms - last_heartbeat <= CONFIG.offline_bound_ms
    [seen] = await service.get_online_status("bob", ["alice"])
    assert seen == Presence("alice", Status.OFFLINE, offline.last_seen_ms)


async def test_typing_stops_on_its_own_a_few_seconds_after_the_last_refresh(
    autojump_clock: trio.testing.MockClock, service: PresenceService, feed: ChangeFeed
) -> None:
    async with feed.subscribe() as changes:
        expires = await service.set_typing("alice", "deal", True)
        assert expires == now_ms() + CONFIG.typing_ttl_ms
        assert isinstance(await next_change(changes), TypingStarted)
        await trio.sleep(3)
        await service.set_typing("alice", "deal", True)  # refresh: no new change
        refreshed = now_ms()
        assert [t.user_id for t in await service.get_typing("bob", "deal")] == ["alice"]
        stopped = await next_change(changes)
    assert stopped == TypingStopped("deal", "alice", stopped.at_ms)
    assert CONFIG.typing_ttl_ms <= stopped.at_ms - refreshed <= CONFIG.typing_bound_ms
    assert await service.get_typing("bob", "deal") == []


async def test_presence_is_visible_only_to_those_who_share_a_conversation(
    service: PresenceService, directory: InMemoryDirectory
) -> None:
    for user in ("alice", "bob", "carol", "erin"):
        await service.connection_opened("r1", f"conn-{user}", user)
    answers = await service.get_online_status("alice", ["bob", "carol", "alice", "erin", "bob"])
    assert [(p.user_id, p.status) for p in answers] == [
        ("bob", Status.ONLINE),
        ("carol", Status.UNKNOWN),
        ("alice", Status.ONLINE),  # oneself, always
        ("erin", Status.UNKNOWN),
        ("bob", Status.ONLINE),
    ]
    assert answers[1].last_seen_ms == 0
    directory.join("group", "alice")
    [carol] = await service.get_online_status("alice", ["carol"])
    assert carol.status is Status.ONLINE


async def test_typing_is_for_participants_only(service: PresenceService) -> None:
    with pytest.raises(NotFound):
        await service.set_typing("carol", "deal", True)
    with pytest.raises(NotFound):
        await service.get_typing("carol", "deal")
    with pytest.raises(NotFound):
        await service.get_typing("alice", "no-such-conversation")


async def test_typing_answers_exclude_the_viewer(service: PresenceService) -> None:
    await service.set_typing("alice", "deal", True)
    await service.set_typing("bob", "deal", True)
    assert [t.user_id for t in await service.get_typing("alice", "deal")] == ["bob"]


async def test_set_online_status_answers_how_others_see_the_caller(
    autojump_clock: trio.testing.MockClock, service: PresenceService, feed: ChangeFeed
) -> None:
    async with feed.subscribe() as changes:
        presence = await service.set_online_status("alice", Status.AWAY)
        assert presence.status is Status.AWAY
        assert await changes.receive() == UserOnline("alice", Status.AWAY, now_ms())
        presence = await service.set_online_status("alice", Status.OFFLINE)
        assert presence == Presence("alice", Status.OFFLINE, now_ms())
    with pytest.raises(InvalidArgument, match="status"):
        await service.set_online_status("alice", Status.UNKNOWN)


@pytest.mark.parametrize(
    ("user_ids", "field"),
    [
        (["ok"] * 101, "user_ids"),
        (["with space"], "user_ids"),
        ([""], "user_ids"),
        (["x" * 129], "user_ids"),
        (["tab\there"], "user_ids"),
    ],
)
async def test_bad_user_ids_are_invalid_arguments(
    service: PresenceService, user_ids: list[str], field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await service.get_online_status("alice", user_ids)
    assert caught.value.field == field


async def test_replica_ids_starting_with_tilde_are_reserved(service: PresenceService) -> None:
    with pytest.raises(InvalidArgument, match="reserved"):
        await service.heartbeat("~api", {"c": "alice"})


async def test_a_failing_sink_does_not_fail_the_call(
    directory: InMemoryDirectory,
) -> None:
    class Broken:
        async def publish(self, changes: Sequence[Change]) -> None:
            raise RuntimeError("fan-out is down")

    store = InMemoryPresenceStore(PresenceTracker(lease_ttl_ms=1000, typing_ttl_ms=1000))
    service = PresenceService(store, directory, Broken(), CONFIG, clock=now_ms)
    await service.connection_opened("r1", "c1", "alice")
    [alice] = await service.get_online_status("alice", ["alice"])
    assert alice.status is Status.ONLINE
    assert service.statistics().sink_failures == 1


class FlakyTarget:
    """A ReportTarget that records calls and can be switched off (presence unreachable)."""

    def __init__(self) -> None:
        self.down = False
        self.calls: list[tuple[str, object]] = []

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("presence unreachable")

    async def heartbeat(self, replica_id: str, connections: Mapping[str, str]) -> LeaseTerms:
        self._check()
        self.calls.append(("heartbeat", dict(connections)))
        return LeaseTerms(15_000, 5_000)

    async def connection_opened(
        self, replica_id: str, connection_id: str, user_id: str
    ) -> LeaseTerms:
        self._check()
        self.calls.append(("opened", connection_id))
        return LeaseTerms(15_000, 0)

    async def connection_closed(self, replica_id: str, connection_id: str) -> None:
        self._check()
        self.calls.append(("closed", connection_id))


async def test_the_reporter_sends_deltas_in_order_between_heartbeats(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FlakyTarget()
    reporter = ConnectionReporter(target, "r1", heartbeat_interval_s=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(reporter.run)
        assert target.calls == [("heartbeat", {})]
        reporter.opened("c1", "alice")
        reporter.opened("c2", "bob")
        reporter.closed("c1")
        reporter.closed("never-opened")  # ignored
        await trio.sleep(1)
        assert target.calls[1:] == [("opened", "c1"), ("opened", "c2"), ("closed", "c1")]
        await trio.sleep(5)
        assert target.calls[-1] == ("heartbeat", {"c2": "bob"})
        nursery.cancel_scope.cancel()


async def test_the_reporter_resyncs_with_a_full_heartbeat_after_an_outage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FlakyTarget()
    reporter = ConnectionReporter(target, "r1", heartbeat_interval_s=5, retry_s=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(reporter.run)
        target.down = True
        reporter.opened("c1", "alice")
        reporter.opened("c2", "bob")
        await trio.sleep(3)
        reporter.closed("c2")
        target.down = False
        target.calls.clear()
        await trio.sleep(1)
        assert target.calls == [("heartbeat", {"c1": "alice"})]
        assert reporter.statistics().failures >= 1
        nursery.cancel_scope.cancel()


async def test_the_reporter_drops_deltas_beyond_its_queue_and_resyncs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FlakyTarget()
    reporter = ConnectionReporter(target, "r1", heartbeat_interval_s=5, max_pending=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(reporter.run)
        target.calls.clear()
        for i in range(5):  # no checkpoint in between: the queue overflows
            reporter.opened(f"c{i}", f"user{i}")
        await trio.sleep(1)
        stats = reporter.statistics()
        assert stats.deltas_dropped == 3
        assert target.calls[0] == ("heartbeat", {f"c{i}": f"user{i}" for i in range(5)})
        nursery.cancel_scope.cancel()


async def test_a_change_feed_cuts_off_a_subscriber_that_falls_behind() -> None:
    feed = ChangeFeed(buffer=2)
    async with feed.subscribe() as slow, feed.subscribe() as fast:
        changes = [UserOnline(f"u{i}", Status.ONLINE, i) for i in range(3)]
        await feed.publish(changes[:2])
        assert [await fast.receive(), await fast.receive()] == changes[:2]
        await feed.publish(changes[2:])
        assert await fast.receive() == changes[2]
        assert [c async for c in slow] == changes[:2]  # then its iteration ends
        assert feed.statistics().cut_off == 1


async def test_the_replica_hook_reports_sockets_and_typing_in_process(
    autojump_clock: trio.testing.MockClock, service: PresenceService, feed: ChangeFeed
) -> None:
    reporter = ConnectionReporter(service, "r1")
    hook = ReplicaPresence(reporter, service)
    async with feed.subscribe() as changes, trio.open_nursery() as nursery:
        await nursery.start(reporter.run)
        await hook.connected("alice", "ws-1")
        assert await next_change(changes) == UserOnline("alice", Status.ONLINE, now_ms())
        await hook.typing("alice", "deal", True)
        assert isinstance(await next_change(changes), TypingStarted)
        await hook.typing("alice", "deal", False)
        assert isinstance(await next_change(changes), TypingStopped)
        await hook.disconnected("alice", "ws-1")
        assert await next_change(changes) == UserOffline("alice", now_ms(), now_ms())
        [bob_sees] = await service.get_online_status_for("bob", ["alice"])
        assert bob_sees.status is Status.OFFLINE
        nursery.cancel_scope.cancel()
