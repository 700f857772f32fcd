"""One contract for every PresenceStore adapter: the in-process tracker and Redis (Lua).

Time is passed in (`now_ms`), so lapses are tested without waiting, against the real Redis
server the session starts. Each test gets its own key namespace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from cellchat.presence.config import PresenceConfig
from cellchat.presence.memory import InMemoryPresenceStore
from cellchat.presence.model import (
    Presence,
    Status,
    Typing,
    TypingStarted,
    TypingStopped,
    UserOffline,
    UserOnline,
)
from cellchat.presence.ports import PresenceStore
from cellchat.presence.redis_store import open_redis_presence_store
from cellchat.presence.tracker import PresenceTracker

CONFIG = PresenceConfig(sweep_batch=3)
TTL = CONFIG.lease_ttl_ms
TYPING_TTL = CONFIG.typing_ttl_ms
T0 = 1_700_000_000_000


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, uid: str) -> AsyncIterator[PresenceStore]:
    if request.param == "memory":
        yield InMemoryPresenceStore(
            PresenceTracker(lease_ttl_ms=TTL, typing_ttl_ms=TYPING_TTL)
        )
        return
    server: Any = request.getfixturevalue("redis")
    with trio.fail_after(10):
        async with open_redis_presence_store(
            server.url, namespace="{test:" + uid + "}", config=CONFIG
        ) as redis_store:
            yield redis_store


async def test_online_while_any_connection_on_any_replica_is_alive(store: PresenceStore) -> None:
    with trio.fail_after(10):
        assert await store.connection_opened("r1", "c1", "alice", T0) == [
            UserOnline("alice", Status.ONLINE, T0)
        ]
        assert await store.connection_opened("r2", "c1", "alice", T0 + 1) == []
        assert await store.connection_closed("r1", "c1", T0 + 2) == []
        assert await store.presences(["alice"], T0 + 3) == [
            Presence("alice", Status.ONLINE, T0 + 3)
        ]
        assert await store.connection_closed("r2", "c1", T0 + 4) == [
            UserOffline("alice", T0 + 4, T0 + 4)
        ]
        assert await store.connection_closed("r2", "c1", T0 + 5) == []
        assert await store.presences(["alice", "ghost"], T0 + 6) == [
            Presence("alice", Status.OFFLINE, T0 + 4),
            Presence("ghost", Status.OFFLINE, 0),
        ]


async def test_a_silent_replicas_users_go_offline_when_its_leases_lapse(
    store: PresenceStore,
) -> None:
    with trio.fail_after(10):
        await store.heartbeat("r1", {"a1": "alice", "b1": "bob"}, T0)
        await store.heartbeat("r2", {"b2": "bob", "c2": "carol"}, T0)
        # r1 stops reporting; r2 keeps going.
        await store.heartbeat("r2", {"b2": "bob", "c2": "carol"}, T0 + 5_000)
        await store.heartbeat("r2", {"b2": "bob", "c2": "carol"}, T0 + 10_000)
        assert await store.expire(T0 + TTL - 1) == []
        assert await store.expire(T0 + TTL + 300) == [
            UserOffline("alice", T0 + TTL, T0 + TTL + 300)
        ]
        assert [p.status for p in await store.presences(["alice", "bob", "carol"], T0 + TTL)] \
            == [Status.OFFLINE, Status.ONLINE, Status.ONLINE]
        # r2 dies too.
        changes = await store.expire(T0 + 10_000 + TTL)
        assert sorted(changes, key=lambda c: c.user_id) == [
            UserOffline("bob", T0 + 10_000 + TTL, T0 + 10_000 + TTL),
            UserOffline("carol", T0 + 10_000 + TTL, T0 + 10_000 + TTL),
        ]


async def test_a_heartbeat_replaces_the_replicas_set(store: PresenceStore) -> None:
    with trio.fail_after(10):
        await store.heartbeat("r1", {"c1": "alice", "c2": "bob"}, T0)
        await store.connection_opened("r2", "c7", "carol", T0)
        assert await store.heartbeat("r1", {"c2": "bob", "c3": "dave"}, T0 + 5_000) == [
            UserOffline("alice", T0 + 5_000, T0 + 5_000),
            UserOnline("dave", Status.ONLINE, T0 + 5_000),
        ]
        assert [p.status for p in await store.presences(["carol"], T0 + 5_000)] == [
            Status.ONLINE
        ]


async def test_a_reused_connection_id_moves_to_its_new_user(store: PresenceStore) -> None:
    with trio.fail_after(10):
        await store.connection_opened("r1", "c1", "alice", T0)
        assert await store.connection_opened("r1", "c1", "bob", T0 + 1) == [
            UserOffline("alice", T0 + 1, T0 + 1),
            UserOnline("bob", Status.ONLINE, T0 + 1),
        ]


async def test_expire_handles_more_lapses_than_one_batch(store: PresenceStore) -> None:
    with trio.fail_after(10):
        users = [f"user{i}" for i in range(10)]
        await store.heartbeat("r1", {f"c{i}": u for i, u in enumerate(users)}, T0)
        for u in users:
            await store.set_typing("conv", u, True, T0)
        changes = await store.expire(T0 + TTL)
        assert sorted(c.user_id for c in changes if isinstance(c, UserOffline)) == users
        assert sorted(c.user_id for c in changes if isinstance(c, TypingStopped)) == users
        assert await store.expire(T0 + TTL + 1) == []


async def test_chosen_status_away_offline_and_api_leases(store: PresenceStore) -> None:
    with trio.fail_after(10):
        await store.connection_opened("r1", "c1", "alice", T0)
        assert await store.set_status("alice", Status.AWAY, T0 + 1) == [
            UserOnline("alice", Status.AWAY, T0 + 1)
        ]
        assert await store.set_status("alice", Status.OFFLINE, T0 + 2) == [
            UserOffline("alice", T0 + 2, T0 + 2)
        ]
        assert await store.connection_opened("r1", "c2", "alice", T0 + 3) == []
        assert await store.presences(["alice"], T0 + 4) == [
            Presence("alice", Status.OFFLINE, T0 + 2)
        ]
        # API-only user: SetOnlineStatus(ONLINE) is a lease of its own.
        assert await store.set_status("bot", Status.ONLINE, T0) == [
            UserOnline("bot", Status.ONLINE, T0)
        ]
        assert await store.set_status("bot", Status.ONLINE, T0 + 10_000) == []
        # alice's leases lapse silently (she already appears offline); bot's was renewed.
        assert await store.expire(T0 + TTL) == []
        assert [p.status for p in await store.presences(["bot"], T0 + TTL)] == [Status.ONLINE]
        assert await store.expire(T0 + 10_000 + TTL) == [
            UserOffline("bot", T0 + 10_000 + TTL, T0 + 10_000 + TTL)
        ]


async def test_an_invisible_users_lapse_emits_nothing(store: PresenceStore) -> None:
    with trio.fail_after(10):
        await store.connection_opened("r1", "c1", "alice", T0)
        await store.set_status("alice", Status.OFFLINE, T0 + 1)
        assert await store.expire(T0 + TTL) == []
        assert await store.presences(["alice"], T0 + TTL) == [
            Presence("alice", Status.OFFLINE, T0 + 1)
        ]


async def test_typing_lifecycle(store: PresenceStore) -> None:
    with trio.fail_after(10):
        assert await store.set_typing("conv", "alice", True, T0) == [
            TypingStarted("conv", "alice", T0 + TYPING_TTL, T0)
        ]
        assert await store.set_typing("conv", "alice", True, T0 + 2_000) == []
        await store.set_typing("conv", "bob", True, T0 + 2_500)
        await store.set_typing("other", "carol", True, T0)
        assert await store.typing("conv", T0 + 3_000) == [
            Typing("alice", T0 + 2_000 + TYPING_TTL),
            Typing("bob", T0 + 2_500 + TYPING_TTL),
        ]
        # Reads drop a lapsed indicator at its deadline, before any sweep.
        assert await store.typing("conv", T0 + 2_000 + TYPING_TTL) == [
            Typing("bob", T0 + 2_500 + TYPING_TTL)
        ]
        assert await store.set_typing("conv", "bob", False, T0 + 4_000) == [
            TypingStopped("conv", "bob", T0 + 4_000)
        ]
        assert await store.set_typing("conv", "bob", False, T0 + 4_001) == []
        assert await store.expire(T0 + TYPING_TTL) == [
            TypingStopped("other", "carol", T0 + TYPING_TTL)
        ]
        assert await store.expire(T0 + 2_000 + TYPING_TTL) == [
            TypingStopped("conv", "alice", T0 + 2_000 + TYPING_TTL)
        ]
        assert await store.typing("conv", T0 + 2_000 + TYPING_TTL) == []


async def test_typing_refreshed_after_its_deadline_but_before_a_sweep_is_one_indicator(
    store: PresenceStore,
) -> None:
    with trio.fail_after(10):
        await store.set_typing("conv", "alice", True, T0)
        assert await store.set_typing("conv", "alice", True, T0 + TYPING_TTL + 5) == []
        assert await store.expire(T0 + TYPING_TTL + 10) == []
        assert await store.typing("conv", T0 + TYPING_TTL + 10) == [
            Typing("alice", T0 + 2 * TYPING_TTL + 5)
        ]


async def test_ids_with_awkward_characters(store: PresenceStore) -> None:
    with trio.fail_after(10):
        user = "auth0|5f:7{x}*?"
        await store.connection_opened("replica:0", "conn|1", user, T0)
        assert [p.status for p in await store.presences([user], T0)] == [Status.ONLINE]
        assert await store.expire(T0 + TTL) == [UserOffline(user, T0 + TTL, T0 + TTL)]
