"""Who gets a user's presence frames, and what it costs to find out: blocks read in one batch
per audience (never per peer), participant lists reused for a bounded time only, groups above
the live limit left to the presence API. Over the real embedded chat store; `Counting` wraps it
to count the calls each computation makes."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from cellchat.chat.app.directory import ChatDirectory
from cellchat.chat.app.service import ChatApp
from cellchat.chat.domain.model import Role
from cellchat.chat.realtime.presence_frames import ParticipantsCache, PresenceAudience
from cellchat.chat.storage.embedded import EmbeddedStore, open_embedded_store
from cellchat.presence.config import PresenceConfig, from_env
from cellchat.settings import SettingsError


class Counting:
    """The store it wraps, counting every call by method name."""

    def __init__(self, store: EmbeddedStore) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await target(*args, **kwargs)

        return counted


@pytest.fixture
async def store() -> AsyncIterator[EmbeddedStore]:
    async with open_embedded_store() as opened:
        yield opened


def audience_over(counting: Counting, **options: Any) -> PresenceAudience:
    return PresenceAudience(counting, **options)


async def test_blocks_are_read_in_one_batch_whatever_the_group_size(
        store: EmbeddedStore) -> None:
    app = ChatApp(store)
    for size in (5, 60):
        members = [f"m{i}-{size}" for i in range(size)]
        await app.create_group(f"admin-{size}", "team", members)
        await store.set_block(members[1], f"admin-{size}", blocked=True, at_ms=1)
        await store.set_block(f"admin-{size}", members[2], blocked=True, at_ms=1)
        counting = Counting(store)
        audience = audience_over(counting)
        assert await audience.of(f"admin-{size}") == set(members) - {members[1], members[2]}
        # 1 + 1 + 1 reads for 5 peers or 60: conversation ids, participants, blocks.
        assert counting.calls == {"conversation_ids_of": 1, "get_participants": 1,
                                  "blocked_among": 1}, size


async def test_groups_above_the_live_limit_push_nothing_yet_the_api_shows_them(
        store: EmbeddedStore) -> None:
    app = ChatApp(store)
    await app.create_direct("alice", "bob", counterpart_role=Role.SELLER)
    await app.create_group("alice", "big", ["g1", "g2", "g3"])    # 4 participants: over 3
    await app.create_group("alice", "small", ["s1", "s2"])        # 3: at the limit
    await app.create_direct("alice", "g3", counterpart_role=Role.SELLER)
    counting = Counting(store)
    audience = audience_over(counting, live_group_limit=3)
    assert await audience.of("alice") == {"bob", "s1", "s2", "g3"}  # g3: their direct chat
    assert await audience.of("g1") == set()
    assert await audience.of("g3") == {"alice"}
    assert await audience.of("s1") == {"alice", "s2"}
    stats = audience.statistics()
    assert (stats.computed, stats.large_conversations) == (4, 3)
    # Members of the big group still see each other on demand (GetOnlineStatus).
    directory = ChatDirectory(store)
    assert await directory.sharing_a_conversation("g1", ["alice", "g2", "s1"]) == {
        "alice", "g2"}
    # A large group's member list is not kept, only its size.
    assert counting.calls["blocked_among"] == 3  # g1 had no peer left: no block read


async def test_participants_are_reused_within_the_cache_time_only(
        autojump_clock: trio.testing.MockClock, store: EmbeddedStore) -> None:
    app = ChatApp(store)
    view = await app.create_group("alice", "team", ["bob", "carol"])
    cid = view.conversation.conversation_id
    counting = Counting(store)
    audience = audience_over(counting, cache_s=1.0)
    for user in ("alice", "bob", "carol"):
        await audience.of(user)
    assert counting.calls["get_participants"] == 1

    await app.remove_participant("alice", cid, "carol")
    await trio.sleep(0.5)
    # The documented staleness: within the cache time, carol may still get alice's frames...
    assert await audience.of("alice") == {"bob", "carol"}
    await trio.sleep(0.5)
    # ...and never after it.
    assert await audience.of("alice") == {"bob"}
    assert counting.calls["get_participants"] == 2
    stats = audience.statistics().participants
    assert (stats.reads, stats.hits, stats.entries) == (2, 3, 1)


async def test_without_a_cache_every_audience_reads_the_participants(
        store: EmbeddedStore) -> None:
    app = ChatApp(store)
    view = await app.create_group("alice", "team", ["bob", "carol"])
    counting = Counting(store)
    audience = audience_over(counting, cache_s=0)
    assert await audience.of("alice") == {"bob", "carol"}
    await app.remove_participant("alice", view.conversation.conversation_id, "carol")
    assert await audience.of("alice") == {"bob"}
    assert counting.calls["get_participants"] == 2
    assert audience.statistics().participants.entries == 0


async def test_blocks_are_never_cached(store: EmbeddedStore) -> None:
    app = ChatApp(store)
    await app.create_group("alice", "team", ["bob", "carol"])
    audience = PresenceAudience(store, cache_s=60.0)
    assert await audience.of("alice") == {"bob", "carol"}
    await store.set_block("carol", "alice", blocked=True, at_ms=1)
    assert await audience.of("alice") == {"bob"}
    assert await audience.of("carol") == {"bob"}


async def test_concurrent_audiences_share_one_participants_read(store: EmbeddedStore) -> None:
    app = ChatApp(store)
    members = [f"m{i}" for i in range(9)]
    await app.create_group("admin", "team", members)
    counting = Counting(store)
    audience = audience_over(counting, cache_s=5.0)
    results: dict[str, frozenset[str]] = {}

    async def compute(user: str) -> None:
        results[user] = await audience.of(user)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for user in ["admin", *members]:
                nursery.start_soon(compute, user)
    everyone = {"admin", *members}
    assert results == {user: frozenset(everyone - {user}) for user in everyone}
    stats = audience.statistics().participants
    assert counting.calls["get_participants"] == stats.reads == 1
    assert stats.hits + stats.shared == 9


async def test_the_cache_holds_a_bounded_number_of_conversations(store: EmbeddedStore) -> None:
    app = ChatApp(store)
    ids = [(await app.create_group("admin", f"g{i}", [f"u{i}"])).conversation.conversation_id
           for i in range(3)]
    cache = ParticipantsCache(store, limit=2, ttl_s=60.0, max_entries=2)
    for cid in ids:
        assert (await cache.members(cid)).user_ids is not None
    assert cache.statistics().entries == 2
    await cache.members(ids[0])  # the oldest was forgotten: read again
    assert cache.statistics().reads == 4
    with pytest.raises(ValueError, match="limit must be at least 2"):
        ParticipantsCache(store, limit=1, ttl_s=1.0)


async def test_a_failed_shared_read_is_retried_by_the_callers_waiting_for_it(
        store: EmbeddedStore) -> None:
    app = ChatApp(store)
    cid = (await app.create_group("admin", "team", ["bob"])).conversation.conversation_id

    class FailingOnce:
        def __init__(self) -> None:
            self.calls = 0
            self.release = trio.Event()

        async def get_participants(self, conversation_id: str) -> Any:
            self.calls += 1
            if self.calls == 1:
                await self.release.wait()
                raise OSError("store down")
            return await store.get_participants(conversation_id)

    failing = FailingOnce()
    cache = ParticipantsCache(failing, limit=10, ttl_s=5.0)  # type: ignore[arg-type]
    got: list[tuple[str, ...] | None] = []

    async def first() -> None:
        with pytest.raises(OSError, match="store down"):
            await cache.members(cid)

    async def second() -> None:
        got.append((await cache.members(cid)).user_ids)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            assert cache.statistics().shared == 1
            failing.release.set()
    assert got == [("admin", "bob")]
    assert failing.calls == 2


def test_the_live_limit_and_the_cache_time_are_settings() -> None:
    assert (PresenceConfig().live_group_limit, PresenceConfig().audience_cache_ms) == (100, 1000)
    config = from_env({"PRESENCE_LIVE_GROUP_LIMIT": "250", "PRESENCE_AUDIENCE_CACHE_MS": "0"})
    assert (config.live_group_limit, config.audience_cache_ms) == (250, 0)
    audience = PresenceAudience.from_config(None, config)  # type: ignore[arg-type]
    assert (audience.participants.limit, audience.participants.ttl_s) == (250, 0.0)
    with pytest.raises(SettingsError, match="PRESENCE_LIVE_GROUP_LIMIT must be at least 2"):
        from_env({"PRESENCE_LIVE_GROUP_LIMIT": "1"})
    with pytest.raises(SettingsError, match=r"PRESENCE_LIVE_GROUP_LIMIT must be an integer "
                                            r"\(participants\)"):
        from_env({"PRESENCE_LIVE_GROUP_LIMIT": "many"})
    with pytest.raises(SettingsError, match="PRESENCE_AUDIENCE_CACHE_MS must be at least 0"):
        from_env({"PRESENCE_AUDIENCE_CACHE_MS": "-1"})
    with pytest.raises(SettingsError, match="PRESENCE_LIVE_GROUP_LIMIT must be at least 2"):
        PresenceConfig(live_group_limit=1)


async def test_the_directory_reads_blocks_in_one_batch(store: EmbeddedStore) -> None:
    app = ChatApp(store)
    members = [f"m{i}" for i in range(30)]
    await app.create_group("viewer", "team", members)
    await store.set_block(members[3], "viewer", blocked=True, at_ms=1)
    counting = Counting(store)
    directory = ChatDirectory(counting)
    asked = [*members, "stranger", "viewer"]
    assert await directory.sharing_a_conversation("viewer", asked) == (
        {*members, "viewer"} - {members[3]})
    assert counting.calls == {"conversation_ids_of": 1 + 31, "blocked_among": 1}
