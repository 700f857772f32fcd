"""What happened in the chat, as values. The app emits them after the change is stored;
real-time fan-out and the marketplace event outbox are both fed from here, so there is one
description of each change.
"""

from __future__ import annotations

import attrs

from cellchat.chat.domain.model import Conversation, Message, Participant, ProductCard


@attrs.frozen
class ConversationCreated:
    conversation: Conversation
    participants: tuple[Participant, ...]


@attrs.frozen
class ParticipantsChanged:
    conversation: Conversation
    participants: tuple[Participant, ...]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@attrs.frozen
class MessageCreated:
    message: Message
    recipients: tuple[str, ...]


@attrs.frozen
class MessageEdited:
    message: Message
    recipients: tuple[str, ...]


@attrs.frozen
class MessageDeleted:
    message: Message
    recipients: tuple[str, ...]


@attrs.frozen
class HorizonsAdvanced:
    """A participant's read or delivered horizon moved; the others see new statuses."""

    conversation_id: str
    user_id: str
    read_seq: int
    delivered_seq: int
    recipients: tuple[str, ...]


@attrs.frozen
class ProductCardsUpdated:
    """A product shown in cards changed; clients re-render the cards in these conversations."""

    product: ProductCard
    version: int
    conversation_ids: tuple[str, ...]
    recipients: tuple[str, ...]


@attrs.frozen
class BlockChanged:
    """One user blocked (or unblocked) another; both are told on their open connections."""

    blocker_id: str
    blocked_id: str
    blocked: bool
    recipients: tuple[str, ...]


ChatEvent = (
    ConversationCreated
    | ParticipantsChanged
    | MessageCreated
    | MessageEdited
    | MessageDeleted
    | HorizonsAdvanced
    | ProductCardsUpdated
    | BlockChanged
)
