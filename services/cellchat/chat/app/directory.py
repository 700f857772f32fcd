"""Who may see whose presence and typing: people who share a conversation and have not
blocked each other. Backs the presence service's `ConversationDirectory` port with the chat
store, so presence never owns (or copies) conversations."""

from __future__ import annotations

from collections.abc import Collection

from cellchat.chat.app.ports import ChatStore
from cellchat.chat.domain.ids import is_uuid


class ChatDirectory:
    def __init__(self, store: ChatStore) -> None:
        self._store = store

    async def is_participant(self, user_id: str, conversation_id: str) -> bool:
        if not is_uuid(conversation_id):
            return False
        participants = await self._store.get_participants(conversation_id)
        return any(p.user_id == user_id for p in participants)

    async def sharing_a_conversation(
        self, viewer_id: str, user_ids: Collection[str]
    ) -> frozenset[str]:
        mine = await self._store.conversation_ids_of(viewer_id)
        visible: set[str] = set()
        for user_id in set(user_ids):
            if user_id == viewer_id:
                visible.add(user_id)
            elif mine & await self._store.conversation_ids_of(user_id) and not (
                await self._store.is_blocked(viewer_id, user_id)
            ):
                visible.add(user_id)
        return frozenset(visible)
