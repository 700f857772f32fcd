"""What the presence use cases need from the outside world, as Protocols.

* `PresenceStore`: where presence state lives and where transitions are decided. Adapters:
  `memory.InMemoryPresenceStore` (the tracker, one process: the embedded default) and
  `redis_store.RedisPresenceStore` (shared by every presence instance of a cell). Every
  mutation returns the changes it caused, decided atomically by the store, so that with several
  presence instances each change is returned to exactly one of them.
* `ConversationDirectory`: who shares a conversation with whom. Presence does not own
  conversations; the composition root backs this with the chat store.
* `ChangeSink`: where changes go once committed (real-time fan-out, event outbox).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from cellchat.presence.model import Change, Presence, Status, Typing


class PresenceStore(Protocol):
    async def connection_opened(
        self, replica_id: str, connection_id: str, user_id: str, now_ms: int
    ) -> list[Change]: ...

    async def connection_closed(
        self, replica_id: str, connection_id: str, now_ms: int
    ) -> list[Change]: ...

    async def heartbeat(
        self, replica_id: str, connections: Mapping[str, str], now_ms: int
    ) -> list[Change]: ...

    async def set_status(self, user_id: str, status: Status, now_ms: int) -> list[Change]: ...

    async def set_typing(
        self, conversation_id: str, user_id: str, typing: bool, now_ms: int
    ) -> list[Change]: ...

    async def expire(self, now_ms: int) -> list[Change]:
        """Everything lapsed at `now_ms`: leases closed, indicators stopped."""
        ...

    async def presences(self, user_ids: Sequence[str], now_ms: int) -> list[Presence]:
        """One answer per id, in order; users never seen are OFFLINE with last_seen 0."""
        ...

    async def typing(self, conversation_id: str, now_ms: int) -> list[Typing]:
        """Live indicators (deadline > now_ms), ordered by user id."""
        ...


class ConversationDirectory(Protocol):
    async def is_participant(self, user_id: str, conversation_id: str) -> bool: ...

    async def sharing_a_conversation(
        self, viewer_id: str, user_ids: Collection[str]
    ) -> frozenset[str]:
        """The members of `user_ids` who share at least one conversation with `viewer_id`."""
        ...


class ChangeSink(Protocol):
    async def publish(self, changes: Sequence[Change]) -> None:
        """Called once per committed transition batch, in commit order per instance. Raising
        loses the notification, never the state: readers still see the truth."""
        ...
