"""Builders of the five events a cell publishes, from plain values (no domain imports).

Rules:
- Ids are stable: a UUID 5 of the cell and the change's natural key (a message's conversation,
  seq and message id; a read's reader and horizon...). Building the same event twice gives the
  same id, so a use case that records it again after a retry, or a relay that publishes it twice,
  produces a duplicate that consumers drop by id. The message id is part of the key because a
  seq whose first writer died is taken by the next message: that is another event.
- The `subject` names the entity the event is about: `conversations/<id>` or `users/<id>`.
- MessageSent never carries the message's content (privacy: the stream is readable by every
  marketplace service); consumers that need it ask the chat API with their own authorisation.
- Each builder returns a `CloudEvent` whose data validates against the type's schema; the unit
  tests hold them to it.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable

from cellchat.events import catalog
from cellchat.events.envelope import CloudEvent

__all__ = [
    "conversation_created",
    "event_id",
    "message_read",
    "message_sent",
    "user_offline",
    "user_online",
]

# Fixed namespace of cellchat's event ids; changing it would change every id.
_ID_NAMESPACE = uuid.UUID("6f1c3a52-5b0e-4f57-9a8e-3e1d2c7b9a40")


def event_id(cell_id: str, event_type: str, *key: str | int) -> str:
    """The stable id of the `event_type` event about `key` in `cell_id`."""
    name = "\x1f".join([cell_id, event_type, *(str(part) for part in key)])
    return str(uuid.uuid5(_ID_NAMESPACE, name))


def _time(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)


def _event(
    cell_id: str, event_type: str, key: tuple[str | int, ...], subject: str, at_ms: int,
    data: dict[str, object],
) -> CloudEvent:
    return CloudEvent(
        id=event_id(cell_id, event_type, *key),
        source=catalog.source_for(cell_id),
        type=event_type,
        subject=subject,
        time=_time(at_ms),
        data=data,
    )


def message_sent(
    cell_id: str, *, conversation_id: str, seq: int, message_id: str, sender_id: str, kind: str,
    recipients: Iterable[str], created_at_ms: int,
) -> CloudEvent:
    return _event(
        cell_id, catalog.MESSAGE_SENT, (conversation_id, seq, message_id),
        f"conversations/{conversation_id}", created_at_ms,
        {
            "conversation_id": conversation_id,
            "seq": seq,
            "message_id": message_id,
            "sender_id": sender_id,
            "kind": kind,
            "recipients": list(dict.fromkeys(recipients)),
            "created_at_ms": created_at_ms,
        },
    )


def message_read(
    cell_id: str, *, conversation_id: str, user_id: str, read_seq: int, at_ms: int
) -> CloudEvent:
    return _event(
        cell_id, catalog.MESSAGE_READ, (conversation_id, user_id, read_seq),
        f"conversations/{conversation_id}", at_ms,
        {"conversation_id": conversation_id, "user_id": user_id, "read_seq": read_seq},
    )


def conversation_created(
    cell_id: str, *, conversation_id: str, kind: str, participants: Iterable[tuple[str, str]],
    product_id: str | None = None, order_id: str | None = None, created_at_ms: int,
) -> CloudEvent:
    """`participants` are (user_id, role) pairs; an empty product or order id means none."""
    return _event(
        cell_id, catalog.CONVERSATION_CREATED, (conversation_id,),
        f"conversations/{conversation_id}", created_at_ms,
        {
            "conversation_id": conversation_id,
            "kind": kind,
            "participants": [{"user_id": user, "role": role} for user, role in participants],
            "context": {"product_id": product_id or None, "order_id": order_id or None},
        },
    )


def user_online(cell_id: str, *, user_id: str, at_ms: int) -> CloudEvent:
    return _event(
        cell_id, catalog.USER_ONLINE, (user_id, at_ms), f"users/{user_id}", at_ms,
        {"user_id": user_id, "last_seen_ms": at_ms},
    )


def user_offline(cell_id: str, *, user_id: str, last_seen_ms: int) -> CloudEvent:
    return _event(
        cell_id, catalog.USER_OFFLINE, (user_id, last_seen_ms), f"users/{user_id}", last_seen_ms,
        {"user_id": user_id, "last_seen_ms": last_seen_ms},
    )
