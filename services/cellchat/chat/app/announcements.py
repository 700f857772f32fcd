"""What the chat tells the rest of the marketplace, recorded before it happens.

Each use case that changes something other services care about records the event's intent in
the outbox *first*, then makes the change; the relay publishes an intent once `ChatChanges`
confirms the change exists (see cellchat.events.outbox). So an event goes out if and only if
its change happened, whatever crashes in between.

- MessageSent: recorded by the send sequencer once seqs are allocated, before the conditional
  write; a lost race discards its intents at once (the retry records new ones at the new seqs).
- ConversationCreated: before the create (the insert-if-absent makes a repeat harmless: the
  same conversation id gives the same event id).
- MessageRead: before the read horizon moves.
Nothing here blocks on the broker: the outbox is the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cellchat.chat.app.ports import ChatStore
from cellchat.chat.domain.errors import StoreError
from cellchat.chat.domain.ids import is_uuid
from cellchat.chat.domain.model import Conversation, Message, Participant
from cellchat.events import published
from cellchat.events.outbox import Check, Intent, Outbox


class Announcer:
    def __init__(self, outbox: Outbox, cell_id: str, wake: Callable[[], None] = lambda: None
                 ) -> None:
        self._outbox = outbox
        self._cell = cell_id
        self._wake = wake

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    def set_wake(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def wake(self) -> None:
        self._wake()

    async def messages(self, messages: Sequence[Message], recipients: Sequence[str]
                       ) -> list[str]:
        intents = [
            Intent(
                published.message_sent(
                    self._cell, conversation_id=m.conversation_id, seq=m.seq,
                    message_id=m.message_id, sender_id=m.sender_id, kind=m.kind.value,
                    recipients=recipients, created_at_ms=m.created_at_ms,
                ),
                Check.of("message", conversation_id=m.conversation_id, seq=m.seq,
                         message_id=m.message_id),
            )
            for m in messages
        ]
        await self._outbox.record(intents)
        return [intent.id for intent in intents]

    async def discard(self, ids: Sequence[str]) -> None:
        await self._outbox.done(ids)

    async def conversation_created(
        self, conversation: Conversation, participants: Sequence[Participant]
    ) -> None:
        c = conversation
        event = published.conversation_created(
            self._cell, conversation_id=c.conversation_id, kind=c.kind.value,
            participants=[(p.user_id, p.role.value) for p in participants],
            product_id=c.context.product_id or None, order_id=c.context.order_id or None,
            created_at_ms=c.created_at_ms,
        )
        await self._outbox.record(
            [Intent(event, Check.of("conversation", conversation_id=c.conversation_id))]
        )

    async def message_read(self, conversation_id: str, user_id: str, read_seq: int,
                           at_ms: int) -> None:
        event = published.message_read(self._cell, conversation_id=conversation_id,
                                       user_id=user_id, read_seq=read_seq, at_ms=at_ms)
        await self._outbox.record([Intent(event, Check.of(
            "read_horizon", conversation_id=conversation_id, user_id=user_id, read_seq=read_seq
        ))])


class PresenceAnnouncer:
    """A presence `ChangeSink` that announces UserOnline / UserOffline.

    Presence transitions are decided atomically in the presence store before they reach a
    sink, so they are facts by themselves: their intents are unconditional (the relay publishes
    them without a check). UserOnline is announced for every transition to visible, including
    online ↔ away; typing changes are not marketplace events.
    """

    def __init__(self, outbox: Outbox, cell_id: str, wake: Callable[[], None] = lambda: None
                 ) -> None:
        self._outbox = outbox
        self._cell = cell_id
        self._wake = wake

    async def publish(self, changes: Sequence[Any]) -> None:
        from cellchat.presence.model import UserOffline, UserOnline

        intents = []
        for change in changes:
            if isinstance(change, UserOnline):
                event = published.user_online(self._cell, user_id=change.user_id,
                                              at_ms=change.at_ms)
            elif isinstance(change, UserOffline):
                event = published.user_offline(self._cell, user_id=change.user_id,
                                               last_seen_ms=change.last_seen_ms)
            else:
                continue
            intents.append(Intent(event, Check.UNCONDITIONAL))
        if intents:
            await self._outbox.record(intents)
            self._wake()


class ChatChanges:
    """The relay's `ChangeChecker` for chat events: does the announced change exist?

    True: publish. False: not (yet) there: the relay waits, then drops it as never-happened.
    None: the store cannot tell right now: wait, never drop.
    """

    def __init__(self, store: ChatStore) -> None:
        self._store = store

    async def exists(self, intent: Intent) -> bool | None:
        check = intent.check
        try:
            if check.kind == "message":
                cid = str(check["conversation_id"])
                message = await self._store.get_message(cid, int(check["seq"]))
                return message is not None and message.message_id == check["message_id"]
            if check.kind == "conversation":
                cid = str(check["conversation_id"])
                return is_uuid(cid) and await self._store.get_conversation(cid) is not None
            if check.kind == "read_horizon":
                membership = await self._store.get_membership(
                    str(check["conversation_id"]), str(check["user_id"])
                )
                return membership is not None and membership.read_seq >= int(check["read_seq"])
        except StoreError:
            return None
        return False
