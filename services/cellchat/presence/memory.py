"""In-process adapters: the embedded default (one process, no Redis) and the tests.

* `InMemoryPresenceStore` wraps the sans-I/O tracker. Correct for one presence instance only.
* `InMemoryDirectory` is a `ConversationDirectory` over explicit memberships.
* `ChangeFeed` is a `ChangeSink` whose subscribers iterate the changes. Each subscriber has a
  bounded buffer; a subscriber that falls `buffer` changes behind is cut off (its channel
  closes, `statistics().cut_off` counts it) rather than silently missing changes or slowing the
  publisher: it re-subscribes and re-reads the state it needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

from cellchat.presence.model import Change, Presence, Status, Typing
from cellchat.presence.tracker import PresenceTracker


class InMemoryPresenceStore:
    def __init__(self, tracker: PresenceTracker) -> None:
        self.tracker = tracker

    async def connection_opened(
        self, replica_id: str, connection_id: str, user_id: str, now_ms: int
    ) -> list[Change]:
        return self.tracker.connection_opened(replica_id, connection_id, user_id, now_ms)

    async def connection_closed(
        self, replica_id: str, connection_id: str, now_ms: int
    ) -> list[Change]:
        return self.tracker.connection_closed(replica_id, connection_id, now_ms)

    async def heartbeat(
        self, replica_id: str, connections: Mapping[str, str], now_ms: int
    ) -> list[Change]:
        return self.tracker.heartbeat(replica_id, connections, now_ms)

    async def set_status(self, user_id: str, status: Status, now_ms: int) -> list[Change]:
        return self.tracker.set_status(user_id, status, now_ms)

    async def set_typing(
        self, conversation_id: str, user_id: str, typing: bool, now_ms: int
    ) -> list[Change]:
        return self.tracker.set_typing(conversation_id, user_id, typing, now_ms)

    async def expire(self, now_ms: int) -> list[Change]:
        return self.tracker.expire(now_ms)

    async def presences(self, user_ids: Sequence[str], now_ms: int) -> list[Presence]:
        return [self.tracker.presence(user_id, now_ms) for user_id in user_ids]

    async def typing(self, conversation_id: str, now_ms: int) -> list[Typing]:
        return self.tracker.typing(conversation_id, now_ms)


class InMemoryDirectory:
    """Conversation memberships held in memory: `join`/`leave` change them."""

    def __init__(self, memberships: Mapping[str, Collection[str]] | None = None) -> None:
        self._members: dict[str, set[str]] = {}
        for conversation_id, user_ids in (memberships or {}).items():
            for user_id in user_ids:
                self.join(conversation_id, user_id)

    def join(self, conversation_id: str, user_id: str) -> None:
        self._members.setdefault(conversation_id, set()).add(user_id)

    def leave(self, conversation_id: str, user_id: str) -> None:
        self._members.get(conversation_id, set()).discard(user_id)

    async def is_participant(self, user_id: str, conversation_id: str) -> bool:
        return user_id in self._members.get(conversation_id, ())

    async def sharing_a_conversation(
        self, viewer_id: str, user_ids: Collection[str]
    ) -> frozenset[str]:
        shared: set[str] = set()
        for members in self._members.values():
            if viewer_id in members:
                shared |= members
        return frozenset(u for u in user_ids if u in shared)


class NoSharedConversations:
    """A directory in which nobody shares anything: presence of others is UNKNOWN, typing
    NOT_FOUND. The safe default until the composition root provides the chat store's."""

    async def is_participant(self, user_id: str, conversation_id: str) -> bool:
        return False

    async def sharing_a_conversation(
        self, viewer_id: str, user_ids: Collection[str]
    ) -> frozenset[str]:
        return frozenset()


@attrs.frozen
class FeedStatistics:
    subscribers: int
    published: int
    cut_off: int


class ChangeFeed:
    def __init__(self, buffer: int = 1024) -> None:
        if buffer < 1:
            raise ValueError("buffer must be >= 1")
        self._buffer = buffer
        self._subscribers: set[trio.MemorySendChannel[Change]] = set()
        self._published = 0
        self._cut_off = 0

    async def publish(self, changes: Sequence[Change]) -> None:
        self._published += len(changes)
        for channel in list(self._subscribers):
            try:
                for change in changes:
                    channel.send_nowait(change)
            except trio.WouldBlock:
                self._cut_off += 1
                self._subscribers.discard(channel)
                channel.close()
            except trio.BrokenResourceError:
                self._subscribers.discard(channel)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.MemoryReceiveChannel[Change]]:
        """Changes published from now on, until the block exits or the subscriber is cut off."""
        send, receive = trio.open_memory_channel[Change](self._buffer)
        self._subscribers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    def statistics(self) -> FeedStatistics:
        return FeedStatistics(len(self._subscribers), self._published, self._cut_off)
