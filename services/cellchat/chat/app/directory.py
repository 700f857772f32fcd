"""Who may see whose presence and typing: people who share a conversation and have not
blocked each other. Backs the presence service's `ConversationDirectory` port with the chat
store, so presence never owns (or copies) conversations.

Every answer is read fresh (no cache): the API's visibility follows a removal or a block at
once. Cost of `sharing_a_conversation(viewer, users)`: 1 + U reads of conversation ids (at most
16 at a time) and one batched block lookup (`blocked_among`) for those who share one.
"""

from __future__ import annotations

from collections.abc import Collection

import trio

from cellchat.chat.app.ports import ChatStore
from cellchat.chat.domain.ids import is_uuid


class ChatDirectory:
    def __init__(self, store: ChatStore, *, concurrency: int = 16) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be positive")
        self._store = store
        self._concurrency = concurrency

    async def is_participant(self, user_id: str, conversation_id: str) -> bool:
        if not is_uuid(conversation_id):
            return False
        participants = await self._store.get_participants(conversation_id)
        return any(p.user_id == user_id for p in participants)

    async def sharing_a_conversation(
        self, viewer_id: str, user_ids: Collection[str]
    ) -> frozenset[str]:
        others = set(user_ids) - {viewer_id}
        mine = await self._store.conversation_ids_of(viewer_id) if others else set()
        sharing: set[str] = set()
        limiter = trio.CapacityLimiter(self._concurrency)

        async def check(user_id: str) -> None:
            async with limiter:
                if mine & await self._store.conversation_ids_of(user_id):
                    sharing.add(user_id)

        if mine:
            async with trio.open_nursery() as nursery:
                for user_id in others:
                    nursery.start_soon(check, user_id)
        visible = sharing - await self._store.blocked_among(viewer_id, sharing) if sharing \
            else set()
        if viewer_id in user_ids:
            visible.add(viewer_id)
        return frozenset(visible)
