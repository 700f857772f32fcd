"""The WebSocket frame codec, sans I/O: text in, typed client frames out; values in, text out.

Rules:
- A client frame is accepted only if it is a JSON object whose `type` names a schema in
  `schemas.CLIENT` and which validates against it; anything else is a `FrameError` whose `code`
  is what the error frame says (`bad_frame`, `unknown_type`). The codec never raises anything
  else on bad input.
- Server frames are built from domain values and encoded once: `encode_*` return the frame text
  that is then handed, unchanged, to every recipient connection.
- No I/O, no clocks: the session decides what to do with a frame.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import jsonschema

from cellchat.chat.domain.content import attachment_to_json
from cellchat.chat.domain.model import (
    Attachment,
    Conversation,
    File,
    Image,
    Message,
    MessageKind,
    Money,
    OrderCard,
    Participant,
    ProductCard,
    Role,
)
from cellchat.chat.realtime import schemas
from cellchat.chat.realtime.schemas import PROTOCOL_REVISION, PROTOCOL_VERSION

__all__ = ["PROTOCOL_REVISION", "PROTOCOL_VERSION", "CloseCode", "FrameError", "decode_client"]


class CloseCode(enum.IntEnum):
    """Close codes the server sends (docs/websocket.md#close-codes)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the replica is shutting down: reconnect (elsewhere) and subscribe
    TOO_BIG = 1009  # a frame larger than WS_MAX_FRAME_BYTES
    INTERNAL = 1011
    SERVICE_RESTART = 1012  # the replica lost the broker: reconnect and subscribe
    IDLE_TIMEOUT = 4000  # no pong within WS_IDLE_TIMEOUT_S
    TOKEN_EXPIRED = 4001  # the token's exp passed while connected: reconnect with a new one
    RATE_LIMITED = 4008  # kept flooding after the rate_limited error frame
    SLOW_CONSUMER = 4009  # the outgoing queue filled up: the client does not keep up


class FrameError(ValueError):
    """A client frame the server refuses; `code` goes into the error frame."""

    def __init__(self, code: str, message: str, *, ref: str = "", field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.field = field


# ---------------------------------------------------------------- client frames


@attrs.frozen
class Subscribe:
    positions: Mapping[str, int]
    ref: str = ""


@attrs.frozen
class Send:
    conversation_id: str
    client_message_id: str
    kind: MessageKind
    text: str = ""
    attachment: Attachment | None = None
    reply_to_seq: int = 0
    ref: str = ""


@attrs.frozen
class Read:
    conversation_id: str
    seq: int
    ref: str = ""


@attrs.frozen
class Delivered:
    conversation_id: str
    seq: int
    ref: str = ""


@attrs.frozen
class Typing:
    conversation_id: str
    started: bool
    ref: str = ""


@attrs.frozen
class Ping:
    ref: str = ""


@attrs.frozen
class Open:
    counterpart_id: str
    counterpart_role: Role = Role.SELLER
    product_id: str = ""
    order_id: str = ""
    ref: str = ""


@attrs.frozen
class Edit:
    conversation_id: str
    seq: int
    text: str
    ref: str = ""


@attrs.frozen
class Delete:
    conversation_id: str
    seq: int
    ref: str = ""


ClientFrame = Subscribe | Send | Read | Delivered | Typing | Ping | Open | Edit | Delete

_VALIDATORS = {
    name: jsonschema.Draft202012Validator(schema) for name, schema in schemas.CLIENT.items()
}


def _money(value: Mapping[str, Any] | None) -> Money | None:
    return None if value is None else Money(value["amount_minor"], value["currency"])


def attachment_from_dict(body: Mapping[str, Any] | None) -> Attachment | None:
    """An attachment from its JSON object (already schema-valid)."""
    if body is None:
        return None
    fields = {k: v for k, v in body.items() if k != "type"}
    match body["type"]:
        case "image":
            return Image(**fields)
        case "file":
            return File(**fields)
        case "product":
            fields["price"] = _money(fields.get("price"))
            return ProductCard(**fields)
        case _:
            fields["total"] = _money(fields.get("total"))
            return OrderCard(**fields)


def _build(kind: str, body: dict[str, Any]) -> ClientFrame:
    ref = body.get("ref", "")
    match kind:
        case "subscribe":
            return Subscribe(dict(body.get("positions", {})), ref)
        case "send":
            return Send(
                conversation_id=body["conversation_id"],
                client_message_id=body["client_message_id"],
                kind=MessageKind(body.get("kind", "text")),
                text=body.get("text", ""),
                attachment=attachment_from_dict(body.get("attachment")),
                reply_to_seq=body.get("reply_to_seq", 0),
                ref=ref,
            )
        case "read":
            return Read(body["conversation_id"], body["seq"], ref)
        case "delivered":
            return Delivered(body["conversation_id"], body["seq"], ref)
        case "typing":
            return Typing(body["conversation_id"], body["state"] == "started", ref)
        case "ping":
            return Ping(ref)
        case "open":
            return Open(
                counterpart_id=body["counterpart_id"],
                counterpart_role=Role(body.get("counterpart_role", "seller")),
                product_id=body.get("product_id", ""),
                order_id=body.get("order_id", ""),
                ref=ref,
            )
        case "edit":
            return Edit(body["conversation_id"], body["seq"], body["text"], ref)
        case _:
            return Delete(body["conversation_id"], body["seq"], ref)


def decode_client(text: str | bytes) -> ClientFrame:
    """Parse and validate one client frame, or raise `FrameError`."""
    if isinstance(text, bytes):
        raise FrameError("bad_frame", "frames are JSON text; binary frames are not accepted")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError("bad_frame", "not valid JSON") from None
    if not isinstance(body, dict):
        raise FrameError("bad_frame", "a frame is a JSON object")
    kind = body.get("type")
    raw_ref = body.get("ref", "")
    ref = raw_ref[:64] if isinstance(raw_ref, str) else ""
    if not isinstance(kind, str):
        raise FrameError("bad_frame", "a frame needs a string `type`", ref=ref)
    validator = _VALIDATORS.get(kind)
    if validator is None:
        raise FrameError("unknown_type", f"unknown frame type {kind[:40]!r}", ref=ref)
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise FrameError(
            "bad_frame", f"{kind}: {where or 'frame'}: {_short(error)}", ref=ref, field=where
        )
    return _build(kind, body)


def _short(error: jsonschema.ValidationError) -> str:
    # jsonschema's messages quote the offending value, which could be a message body; the
    # validator keyword says what is wrong without echoing it.
    return {
        "required": "a required field is missing",
        "additionalProperties": "unexpected field",
        "type": "wrong type",
        "enum": "not one of the allowed values",
        "const": "not the allowed value",
        "minLength": "too short",
        "maxLength": "too long",
        "minimum": "too small",
        "maxProperties": "too many entries",
        "oneOf": "does not match any allowed shape",
        "anyOf": "does not match any allowed shape",
    }.get(str(error.validator), "invalid")


# ---------------------------------------------------------------- server frames


def _dumps(body: Mapping[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def message_body(message: Message) -> dict[str, Any]:
    attachment = attachment_to_json(message.attachment)
    return {
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "message_id": message.message_id,
        "sender_id": message.sender_id,
        "kind": message.kind.value,
        "text": message.text,
        "attachment": json.loads(attachment) if attachment else None,
        "client_message_id": message.client_message_id,
        "created_at_ms": message.created_at_ms,
        "edited_at_ms": message.edited_at_ms,
        "version": message.version,
        "deleted": message.deleted,
        "reply_to_seq": message.reply_to_seq,
        "thread_root_seq": message.thread_root_seq,
    }


#: A `conversation.*` frame lists the participants only up to this many (the default group size
#: limit). Listing 5,000 in a frame sent to each of the 5,000 is 5,000 times the whole list.
FRAME_PARTICIPANTS_MAX = 100


def conversation_body(
    conversation: Conversation, participants: Iterable[Participant], *,
    list_max: int = FRAME_PARTICIPANTS_MAX,
) -> dict[str, Any]:
    everyone = list(participants)
    listed = everyone if len(everyone) <= list_max else []
    return {
        "conversation_id": conversation.conversation_id,
        "kind": conversation.kind.value,
        "title": conversation.title,
        "created_by": conversation.created_by,
        "created_at_ms": conversation.created_at_ms,
        "context": {
            "product_id": conversation.context.product_id,
            "order_id": conversation.context.order_id,
        },
        "participants": [
            {"user_id": p.user_id, "role": p.role.value, "joined_at_ms": p.joined_at_ms}
            for p in listed
        ],
        "participant_count": len(everyone),
        "participants_complete": len(listed) == len(everyone),
    }


def _with_ref(body: dict[str, Any], ref: str) -> dict[str, Any]:
    if ref:
        body["ref"] = ref
    return body


def encode_hello(
    connection_id: str, user_id: str, *, max_frame_bytes: int, rate_per_s: float, burst: int,
    typing_ttl_ms: int,
) -> str:
    return _dumps({
        "type": "hello", "protocol": PROTOCOL_VERSION, "revision": PROTOCOL_REVISION,
        "connection_id": connection_id,
        "user_id": user_id, "max_frame_bytes": max_frame_bytes, "rate_per_s": rate_per_s,
        "burst": burst, "typing_ttl_ms": typing_ttl_ms,
    })


def encode_message(kind: str, message: Message) -> str:
    """`message.created`, `message.edited` or `message.deleted`."""
    return _dumps({"type": kind, "message": message_body(message)})


def encode_status(conversation_id: str, user_id: str, read_seq: int, delivered_seq: int) -> str:
    return _dumps({"type": "status", "conversation_id": conversation_id, "user_id": user_id,
                   "read_seq": read_seq, "delivered_seq": delivered_seq})


def encode_typing(conversation_id: str, user_id: str, *, started: bool,
                  expires_in_ms: int) -> str:
    if started:
        return _dumps({"type": "typing.started", "conversation_id": conversation_id,
                       "user_id": user_id, "expires_in_ms": expires_in_ms})
    return _dumps({"type": "typing.stopped", "conversation_id": conversation_id,
                   "user_id": user_id})


PRESENCE_STATUSES = ("online", "away", "offline")


def encode_presence(user_id: str, *, online: bool, last_seen_ms: int,
                    status: str | None = None) -> str:
    """`status` is online, away or offline (default: from `online`); `online` is true for
    online and away (connected and visible)."""
    if status is None:
        status = "online" if online else "offline"
    if status not in PRESENCE_STATUSES or online != (status != "offline"):
        raise ValueError(f"presence status {status!r} does not agree with online={online}")
    return _dumps({"type": "presence", "user_id": user_id, "online": online,
                   "status": status, "last_seen_ms": last_seen_ms})


def encode_product_updated(product: ProductCard, version: int) -> str:
    return _dumps({"type": "product.updated",
                   "product": json.loads(attachment_to_json(product)), "version": version})


def encode_block_changed(user_a: str, user_b: str, *, blocked: bool) -> str:
    """One frame for both parties; the users are sorted so it does not say who blocked whom."""
    return _dumps({"type": "block.changed", "users": sorted((user_a, user_b)),
                   "blocked": blocked})


def encode_conversation(
    kind: str, conversation: Conversation, participants: Iterable[Participant], *,
    added: Iterable[str] = (), removed: Iterable[str] = (),
) -> str:
    """`conversation.created` or `conversation.updated`. `added` and `removed` are the change
    (for a creation: everyone, hence left out with the participants of a large group)."""
    return _dumps({"type": kind, "conversation": conversation_body(conversation, participants),
                   "added": list(added), "removed": list(removed)})


def encode_opened(conversation: Conversation, participants: Iterable[Participant], *,
                  created: bool, last_seq: int, ref: str = "") -> str:
    return _dumps(_with_ref({"type": "opened",
                             "conversation": conversation_body(conversation, participants),
                             "created": created, "last_seq": last_seq}, ref))


def encode_ack(message: Message, *, duplicate: bool, ref: str = "") -> str:
    return _dumps(_with_ref({"type": "ack", "client_message_id": message.client_message_id,
                             "duplicate": duplicate, "message": message_body(message)}, ref))


def encode_subscribed(replayed: int, ref: str = "") -> str:
    return _dumps(_with_ref({"type": "subscribed", "replayed": replayed}, ref))


def encode_pong(ref: str = "") -> str:
    return _dumps(_with_ref({"type": "pong"}, ref))


def encode_resync(conversation_id: str, from_seq: int, last_seq: int, reason: str) -> str:
    return _dumps({"type": "resync", "conversation_id": conversation_id, "from_seq": from_seq,
                   "last_seq": last_seq, "reason": reason})


def encode_error(code: str, message: str, *, ref: str = "", field: str = "") -> str:
    body: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if field:
        body["field"] = field
    return _dumps(_with_ref(body, ref))
