"""The ports the use cases need. Adapters implement them; the contract suite in
tests/contract checks every adapter against the same expectations.

Rules every `ChatStore` adapter keeps:
- Messages of a conversation have dense sequences 1, 2, 3... `append_messages` is the only way
  to add one and it is all-or-nothing: either every message in the call is stored at
  `expected_last_seq + 1 ...` or nothing is, and it answers False when another writer got there
  first.
- Horizons only move forward: advancing to a lower value leaves the higher one.
- Nothing is ever physically removed from a conversation's history: edits and deletes rewrite
  the row in place (a tombstone keeps its seq).
- Errors from the backend surface as `StoreUnavailable` / `StoreTimeout` / `Contention`, never as
  driver exceptions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Protocol

import attrs

from cellchat.chat.domain.events import ChatEvent
from cellchat.chat.domain.model import (
    Conversation,
    Horizons,
    InboxEntry,
    Membership,
    Message,
    Participant,
    ProductCard,
)


@attrs.frozen
class Appended:
    """What `ChatStore.append_messages` did.

    `last_seq`: after a lost race, the conversation's last seq as the store saw it when the
    write failed, if it learned that in passing (a conditional write's answer), else None. It
    is exact as of then and may be stale by the time it is used: writing at it is a new attempt
    like any other, which fails again if the conversation moved on meanwhile.
    """

    applied: bool
    last_seq: int | None = None

    def __bool__(self) -> bool:
        return self.applied


class ChatStore(Protocol):
    # ------------------------------------------------------------ conversations

    async def create_conversation(
        self, conversation: Conversation, participants: Sequence[Participant]
    ) -> tuple[Conversation, bool]:
        """Store `conversation` unless one with its id exists.

        Returns the stored conversation (the existing one if there was one) and whether this call
        created it. Either way, on return every participant given is a participant: the missing
        ones are added (existing participant rows are left as they are), each with a membership
        and a place in their inbox at the conversation's creation time. Safe to call twice and
        concurrently: exactly one caller sees `created=True`.
        """
        ...

    async def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    async def get_participants(self, conversation_id: str) -> list[Participant]:
        """Current participants, ordered by user id."""
        ...

    async def add_participants(
        self, conversation_id: str, participants: Sequence[Participant]
    ) -> None:
        """Upsert participants; each gets a membership (horizons at the current last seq, so
        history before joining does not count as unread) and an inbox entry at the
        conversation's last activity."""
        ...

    async def remove_participant(self, conversation_id: str, user_id: str) -> None:
        """The user is no longer a participant and the conversation leaves their inbox."""
        ...

    # ------------------------------------------------------------ messages

    async def get_last_seq(self, conversation_id: str) -> int:
        """The exact highest stored seq (0 for an empty conversation)."""
        ...

    async def find_by_client_ids(
        self, conversation_id: str, sender_id: str, client_message_ids: Sequence[str]
    ) -> dict[str, Message]:
        """Messages this sender already stored with any of these client ids (kept at least
        24 hours after sending); ids not found are absent from the answer."""
        ...

    async def append_messages(
        self,
        conversation_id: str,
        expected_last_seq: int,
        messages: Sequence[Message],
        recipients: Sequence[str],
        *,
        before: Callable[[], Awaitable[object]] | None = None,
    ) -> Appended:
        """Store `messages` (their seqs are expected_last_seq+1, +2, ... in order) if and only
        if the conversation's last seq is still `expected_last_seq`.

        `before` (the outbox intents of these messages) runs to completion before the
        conditional write, alongside whatever the store writes ahead of it; if it fails,
        nothing is written and its error is raised.

        On success also: records each message's client id for `find_by_client_ids`; counts each
        reply towards its thread root's `reply_count`; moves the conversation to the top of every
        recipient's inbox (last activity = the last message's created_at_ms). Answers
        `applied=False`, having written nothing visible, when the last seq moved, with the last
        seq it found instead when it learned that in passing.
        """
        ...

    async def get_message(self, conversation_id: str, seq: int) -> Message | None: ...

    async def get_messages(
        self,
        conversation_id: str,
        *,
        before_seq: int = 0,
        after_seq: int = 0,
        limit: int,
    ) -> list[Message]:
        """A page of history. With `after_seq` > 0: seqs greater than it, oldest first.
        Otherwise: seqs lower than `before_seq` (0 = from the newest), newest first."""
        ...

    async def get_thread(
        self, conversation_id: str, root_seq: int, *, after_seq: int = 0, limit: int
    ) -> list[Message]:
        """Replies in the thread rooted at `root_seq` with seq > after_seq, oldest first."""
        ...

    async def update_message(self, message: Message) -> None:
        """Rewrite an existing message's content fields (text, attachment, edited_at_ms,
        version, deleted) in place; its seq, id, sender and creation time never change."""
        ...

    # ------------------------------------------------------------ horizons, inbox

    async def advance_horizons(
        self,
        conversation_id: str,
        user_id: str,
        *,
        read_seq: int = 0,
        delivered_seq: int = 0,
    ) -> Membership:
        """Move the user's horizons forward (a lower value than stored changes nothing;
        reading implies delivery). Returns the membership as stored afterwards."""
        ...

    async def write_horizons(
        self,
        conversation_id: str,
        user_id: str,
        *,
        read_seq: int = 0,
        delivered_seq: int = 0,
    ) -> None:
        """`advance_horizons` without reading the membership back (a sender's own horizons
        after a send: nobody needs the answer)."""
        ...

    async def get_horizons(self, conversation_id: str) -> list[Horizons]:
        """Every current participant's horizons."""
        ...

    async def get_membership(self, conversation_id: str, user_id: str) -> Membership | None: ...

    async def set_muted_until(
        self, conversation_id: str, user_id: str, muted_until_ms: int
    ) -> None: ...

    async def list_inbox(
        self, user_id: str, *, limit: int, cursor: str = ""
    ) -> tuple[list[InboxEntry], str]:
        """The user's conversations, most recent activity first, each once, with the last
        message, the exact last seq and the user's membership. Returns the page and the cursor
        of the next one ("" when there is none). The cursor is adapter-defined and opaque; a
        malformed one raises `InvalidArgument("cursor", ...)`. Cost depends on the page, not on
        how many conversations the user has."""
        ...

    async def conversation_ids_of(self, user_id: str) -> set[str]:
        """Every conversation the user currently takes part in (one partition read; used to
        decide who may see whose presence)."""
        ...

    # ------------------------------------------------------------ marketplace state

    async def upsert_product(self, product: ProductCard, version: int) -> bool:
        """Keep the product's current data if `version` is newer than the stored one (replays
        and out-of-order deliveries never move it backwards). Answers whether it changed."""
        ...

    async def get_products(self, product_ids: Sequence[str]) -> dict[str, ProductCard]:
        """Current data of the products known; unknown ids are absent."""
        ...

    async def product_card_locations(
        self, product_id: str, *, limit: int
    ) -> list[tuple[str, int]]:
        """(conversation_id, seq) of product cards showing this product, newest first.
        `append_messages` records them for every PRODUCT message it stores."""
        ...

    async def set_block(self, blocker_id: str, blocked_id: str, *, blocked: bool,
                        at_ms: int) -> bool:
        """Record a block (or its lifting) decided at `at_ms`; an older decision than the one
        stored changes nothing, so replays in any order end in the latest state. Answers
        whether the state changed."""
        ...

    async def is_blocked(self, user_a: str, user_b: str) -> bool:
        """Whether either of the two blocks the other."""
        ...

    async def blocked_among(self, user_id: str, others: Collection[str]) -> set[str]:
        """The members of `others` in a blocked pair with `user_id` (either blocks the other):
        `is_blocked` for many peers at once, in a few batched reads instead of two per peer
        (presence audiences)."""
        ...

    async def aclose(self) -> None: ...


class EventSink(Protocol):
    """Where the app reports what it changed (real-time fan-out, the event outbox).

    `publish` is called after the change is stored and must not block on slow consumers.
    """

    async def publish(self, event: ChatEvent) -> None: ...


class Clock(Protocol):
    def now_ms(self) -> int: ...
