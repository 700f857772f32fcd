"""The chat's values: conversations, participants, messages and the horizons that count them.

All classes are frozen; a change is a new value. Sequences (`seq`) are dense per conversation
and start at 1; a horizon of 0 means "nothing yet".
"""

from __future__ import annotations

import enum

import attrs


class ConversationKind(enum.Enum):
    DIRECT = "direct"
    GROUP = "group"


class Role(enum.Enum):
    MEMBER = "member"
    ADMIN = "admin"
    BUYER = "buyer"
    SELLER = "seller"


class MessageKind(enum.Enum):
    TEXT = "text"
    IMAGE = "image"
    FILE = "file"
    PRODUCT = "product"
    ORDER = "order"
    SYSTEM = "system"


class DeliveryStatus(enum.Enum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"


@attrs.frozen
class Money:
    amount_minor: int
    currency: str


@attrs.frozen
class Image:
    url: str
    mime: str
    size: int
    width: int
    height: int


@attrs.frozen
class File:
    url: str
    name: str
    mime: str
    size: int


@attrs.frozen
class ProductCard:
    product_id: str
    title: str = ""
    price: Money | None = None
    image_url: str = ""
    available: bool = True


@attrs.frozen
class OrderCard:
    order_id: str
    status: str = ""
    total: Money | None = None
    item_count: int = 0


Attachment = Image | File | ProductCard | OrderCard


@attrs.frozen
class Context:
    """What a direct conversation is about; part of its identity."""

    product_id: str = ""
    order_id: str = ""


@attrs.frozen
class Conversation:
    conversation_id: str
    kind: ConversationKind
    created_by: str
    created_at_ms: int
    title: str = ""
    context: Context = Context()


@attrs.frozen
class Participant:
    user_id: str
    role: Role
    joined_at_ms: int


@attrs.frozen
class Horizons:
    """How far one participant has received and read a conversation."""

    user_id: str
    read_seq: int = 0
    delivered_seq: int = 0


@attrs.frozen
class Membership:
    """One user's own view of a conversation: their horizons and mute state."""

    conversation_id: str
    user_id: str
    read_seq: int = 0
    delivered_seq: int = 0
    muted_until_ms: int = 0  # 0: not muted; MUTED_FOREVER: until unmuted


MUTED_FOREVER = 2**62


@attrs.frozen
class Message:
    conversation_id: str
    seq: int
    message_id: str
    sender_id: str
    kind: MessageKind
    text: str
    attachment: Attachment | None
    client_message_id: str
    created_at_ms: int
    edited_at_ms: int = 0
    version: int = 1
    deleted: bool = False
    reply_to_seq: int = 0
    thread_root_seq: int = 0
    reply_count: int = 0


@attrs.frozen
class Draft:
    """A validated message that has no sequence number yet."""

    conversation_id: str
    message_id: str
    sender_id: str
    kind: MessageKind
    text: str
    attachment: Attachment | None
    client_message_id: str
    created_at_ms: int
    reply_to_seq: int = 0
    thread_root_seq: int = 0

    def at(self, seq: int) -> Message:
        return Message(
            conversation_id=self.conversation_id,
            seq=seq,
            message_id=self.message_id,
            sender_id=self.sender_id,
            kind=self.kind,
            text=self.text,
            attachment=self.attachment,
            client_message_id=self.client_message_id,
            created_at_ms=self.created_at_ms,
            reply_to_seq=self.reply_to_seq,
            thread_root_seq=self.thread_root_seq,
        )


@attrs.frozen
class InboxEntry:
    """One row of a user's conversation list."""

    conversation: Conversation
    last_seq: int
    last_activity_ms: int
    last_message: Message | None
    membership: Membership

    @property
    def unread(self) -> int:
        return max(0, self.last_seq - self.membership.read_seq)
