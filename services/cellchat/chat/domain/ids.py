"""Identifiers: time-sortable message ids and deterministic direct-conversation ids.

Message ids follow the UUIDv7 layout (48-bit Unix milliseconds, then random bits) so they sort
by creation time and never collide across replicas. Direct conversations get a name-based id
(UUIDv5) derived from the pair and its context, which makes "one conversation per pair" a
property of the id itself: two concurrent creates compute the same id and the store's
insert-if-absent picks one winner.
"""

from __future__ import annotations

import uuid

_DIRECT_NAMESPACE = uuid.UUID("6f1c1e0a-3b7d-4c55-9a51-2f8d0c1e7a10")


def uuid7(now_ms: int, random_bits: bytes) -> str:
    """A UUIDv7 string from a millisecond timestamp and at least 10 random bytes."""
    if len(random_bits) < 10:
        raise ValueError("uuid7 needs 10 random bytes")
    value = (now_ms & ((1 << 48) - 1)) << 80
    rand = int.from_bytes(random_bits[:10], "big")
    rand_a = rand >> 68 & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value |= 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def direct_conversation_id(user_a: str, user_b: str, product_id: str, order_id: str) -> str:
    """The one id a direct conversation between two users in a context can have."""
    low, high = sorted((user_a, user_b))
    name = "\x1f".join(("direct", low, high, product_id, order_id))
    return str(uuid.uuid5(_DIRECT_NAMESPACE, name))


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True
