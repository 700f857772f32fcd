"""JSON Schemas (draft 2020-12) of every WebSocket frame, one per `type`.

They are the contract: the codec validates every client frame against its schema before it
builds a typed frame, docs/websocket.md shows each schema next to an example, and the tests
check that every documented example passes both the schema and the codec, and that every frame
the server encodes passes its schema.
"""

from __future__ import annotations

from typing import Any

PROTOCOL_VERSION = 1
#: Compatible additions within PROTOCOL_VERSION (docs/websocket.md#versions): 2 added
#: `presence.status` and `hello.revision`, and presence / lapsed typing frames are sent;
#: 3 added `product.updated` and `block.changed`; 4 added `conversation.participant_count` and
#: `conversation.participants_complete` (large groups' frames do not list every participant).
PROTOCOL_REVISION = 4

Schema = dict[str, Any]

_ID = {"type": "string", "minLength": 1, "maxLength": 128}
_SEQ = {"type": "integer", "minimum": 0}
_MS = {"type": "integer", "minimum": 0}
_REF = {"type": "string", "maxLength": 64, "description": "echoed in the answer"}

_MONEY: Schema = {
    "type": ["object", "null"],
    "required": ["amount_minor", "currency"],
    "additionalProperties": False,
    "properties": {"amount_minor": {"type": "integer"}, "currency": {"type": "string"}},
}

ATTACHMENT: Schema = {
    "oneOf": [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "url", "mime", "size", "width", "height"],
            "properties": {
                "type": {"const": "image"},
                "url": {"type": "string"},
                "mime": {"type": "string"},
                "size": {"type": "integer"},
                "width": {"type": "integer"},
                "height": {"type": "integer"},
            },
        },
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "url", "name", "mime", "size"],
            "properties": {
                "type": {"const": "file"},
                "url": {"type": "string"},
                "name": {"type": "string"},
                "mime": {"type": "string"},
                "size": {"type": "integer"},
            },
        },
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "product_id"],
            "properties": {
                "type": {"const": "product"},
                "product_id": {"type": "string"},
                "title": {"type": "string"},
                "price": _MONEY,
                "image_url": {"type": "string"},
                "available": {"type": "boolean"},
            },
        },
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "order_id"],
            "properties": {
                "type": {"const": "order"},
                "order_id": {"type": "string"},
                "status": {"type": "string"},
                "total": _MONEY,
                "item_count": {"type": "integer"},
            },
        },
    ]
}

_KINDS = ["text", "image", "file", "product", "order", "system"]

MESSAGE: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "conversation_id", "seq", "message_id", "sender_id", "kind", "text", "attachment",
        "client_message_id", "created_at_ms", "edited_at_ms", "version", "deleted",
        "reply_to_seq", "thread_root_seq",
    ],
    "properties": {
        "conversation_id": _ID,
        "seq": {"type": "integer", "minimum": 1},
        "message_id": _ID,
        "sender_id": _ID,
        "kind": {"enum": _KINDS},
        "text": {"type": "string"},
        "attachment": {"anyOf": [{"type": "null"}, ATTACHMENT]},
        "client_message_id": {"type": "string"},
        "created_at_ms": _MS,
        "edited_at_ms": _MS,
        "version": {"type": "integer", "minimum": 1},
        "deleted": {"type": "boolean"},
        "reply_to_seq": _SEQ,
        "thread_root_seq": _SEQ,
    },
}

CONVERSATION: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["conversation_id", "kind", "title", "created_by", "created_at_ms",
                 "context", "participants", "participant_count", "participants_complete"],
    "properties": {
        "conversation_id": _ID,
        "kind": {"enum": ["direct", "group"]},
        "title": {"type": "string"},
        "created_by": _ID,
        "created_at_ms": _MS,
        "context": {
            "type": "object",
            "additionalProperties": False,
            "required": ["product_id", "order_id"],
            "properties": {"product_id": {"type": "string"}, "order_id": {"type": "string"}},
        },
        "participants": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["user_id", "role", "joined_at_ms"],
                "properties": {
                    "user_id": _ID,
                    "role": {"enum": ["member", "admin", "buyer", "seller"]},
                    "joined_at_ms": _MS,
                },
            },
        },
        "participant_count": {"type": "integer", "minimum": 0},
        "participants_complete": {
            "type": "boolean",
            "description": "false when `participants` is left empty because the conversation "
                           "has more participants than a frame lists (revision 4): read them "
                           "with GetConversation",
        },
    },
}


def _frame(type_: str, description: str, properties: Schema, required: list[str]) -> Schema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": type_,
        "description": description,
        "type": "object",
        "additionalProperties": False,
        "required": ["type", *required],
        "properties": {"type": {"const": type_}, **properties},
    }


# ---------------------------------------------------------------- client -> server

CLIENT: dict[str, Schema] = {
    "subscribe": _frame(
        "subscribe",
        "Start (or restart) the live stream. `positions` maps a conversation id to the last "
        "seq the client has; the server replays what came after, then streams live. Until the "
        "first subscribe, live events are held (not lost).",
        {
            "ref": _REF,
            "positions": {
                "type": "object",
                "maxProperties": 500,
                "propertyNames": {"maxLength": 128},
                "additionalProperties": _SEQ,
            },
        },
        [],
    ),
    "send": _frame(
        "send",
        "Send a message. Answered by `ack` with the stored message (or `error`). Retrying "
        "with the same client_message_id is safe: the ack says duplicate=true.",
        {
            "ref": _REF,
            "conversation_id": _ID,
            "client_message_id": _ID,
            "kind": {"enum": ["text", "image", "file", "product", "order"]},
            "text": {"type": "string"},
            "attachment": {"anyOf": [{"type": "null"}, ATTACHMENT]},
            "reply_to_seq": _SEQ,
        },
        ["conversation_id", "client_message_id"],
    ),
    "read": _frame(
        "read",
        "The user read the conversation up to `seq` (0: everything). Everyone in the "
        "conversation, this user's devices included, gets a `status` frame.",
        {"ref": _REF, "conversation_id": _ID, "seq": _SEQ},
        ["conversation_id", "seq"],
    ),
    "delivered": _frame(
        "delivered",
        "The device received the conversation up to `seq`; moves the delivered horizon.",
        {"ref": _REF, "conversation_id": _ID, "seq": _SEQ},
        ["conversation_id", "seq"],
    ),
    "typing": _frame(
        "typing",
        "The user started or stopped typing. Re-send `started` every few seconds while "
        "typing: it expires `expires_in_ms` after the last one.",
        {"ref": _REF, "conversation_id": _ID, "state": {"enum": ["started", "stopped"]}},
        ["conversation_id", "state"],
    ),
    "ping": _frame("ping", "Application-level liveness check; answered by `pong`.",
                   {"ref": _REF}, []),
    "open": _frame(
        "open",
        "Open (find or create) the direct conversation with `counterpart_id`, optionally "
        "about a product or order. Answered by `opened`.",
        {
            "ref": _REF,
            "counterpart_id": _ID,
            "counterpart_role": {"enum": ["buyer", "seller"]},
            "product_id": {"type": "string", "maxLength": 128},
            "order_id": {"type": "string", "maxLength": 128},
        },
        ["counterpart_id"],
    ),
    "edit": _frame(
        "edit",
        "Edit the text of one of your messages; everyone gets `message.edited`.",
        {"ref": _REF, "conversation_id": _ID, "seq": {"type": "integer", "minimum": 1},
         "text": {"type": "string"}},
        ["conversation_id", "seq", "text"],
    ),
    "delete": _frame(
        "delete",
        "Delete a message; everyone gets `message.deleted` (a tombstone keeps its seq).",
        {"ref": _REF, "conversation_id": _ID, "seq": {"type": "integer", "minimum": 1}},
        ["conversation_id", "seq"],
    ),
}

# ---------------------------------------------------------------- server -> client

_MESSAGE_FRAME = {"message": MESSAGE}
_CONVERSATION_FRAME = {
    "conversation": CONVERSATION,
    "added": {"type": "array", "items": _ID},
    "removed": {"type": "array", "items": _ID},
}

SERVER: dict[str, Schema] = {
    "hello": _frame(
        "hello",
        "First frame on every connection: the protocol version and revision, and this "
        "connection's limits.",
        {
            "protocol": {"const": PROTOCOL_VERSION},
            "revision": {"type": "integer", "minimum": 1},
            "connection_id": {"type": "string"},
            "user_id": _ID,
            "max_frame_bytes": {"type": "integer"},
            "rate_per_s": {"type": "number"},
            "burst": {"type": "integer"},
            "typing_ttl_ms": {"type": "integer"},
        },
        ["protocol", "revision", "connection_id", "user_id", "max_frame_bytes", "rate_per_s",
         "burst", "typing_ttl_ms"],
    ),
    "subscribed": _frame(
        "subscribed",
        "The replay asked for by `subscribe` is done (`replayed` messages); live follows.",
        {"ref": _REF, "replayed": {"type": "integer", "minimum": 0}},
        ["replayed"],
    ),
    "message.created": _frame("message.created", "A new message (live or replayed).",
                              _MESSAGE_FRAME, ["message"]),
    "message.edited": _frame("message.edited", "A message's text changed (version+1).",
                             _MESSAGE_FRAME, ["message"]),
    "message.deleted": _frame("message.deleted", "A message became a tombstone.",
                              _MESSAGE_FRAME, ["message"]),
    "status": _frame(
        "status",
        "A participant's read / delivered horizons moved: every message of the conversation "
        "with seq <= delivered_seq reached that user's device, seq <= read_seq was read.",
        {"conversation_id": _ID, "user_id": _ID, "read_seq": _SEQ, "delivered_seq": _SEQ},
        ["conversation_id", "user_id", "read_seq", "delivered_seq"],
    ),
    "typing.started": _frame(
        "typing.started",
        "Another participant is typing; forget it after `expires_in_ms` unless refreshed.",
        {"conversation_id": _ID, "user_id": _ID, "expires_in_ms": _MS},
        ["conversation_id", "user_id", "expires_in_ms"],
    ),
    "typing.stopped": _frame(
        "typing.stopped",
        "Another participant stopped typing, or their indicator lapsed (no `started` within "
        "`typing_ttl_ms` of the last one).",
        {"conversation_id": _ID, "user_id": _ID}, ["conversation_id", "user_id"],
    ),
    "presence": _frame(
        "presence",
        "A user you share a conversation with (and neither of you blocked the other) came "
        "online, went away or went offline. `online` is true for online and away; `status` "
        "says which (revision 2). `last_seen_ms`: when they went offline, or when the "
        "change happened for online and away.",
        {"user_id": _ID, "online": {"type": "boolean"},
         "status": {"enum": ["online", "away", "offline"]}, "last_seen_ms": _MS},
        ["user_id", "online", "status", "last_seen_ms"],
    ),
    "conversation.created": _frame(
        "conversation.created", "You are in a new conversation.",
        _CONVERSATION_FRAME, ["conversation", "added", "removed"],
    ),
    "conversation.updated": _frame(
        "conversation.updated",
        "Participants were added or removed (a removed user gets this frame too, last).",
        _CONVERSATION_FRAME, ["conversation", "added", "removed"],
    ),
    "opened": _frame(
        "opened", "Answer to `open`: the direct conversation and its last seq.",
        {"ref": _REF, "conversation": CONVERSATION, "created": {"type": "boolean"},
         "last_seq": _SEQ},
        ["conversation", "created", "last_seq"],
    ),
    "ack": _frame(
        "ack", "Answer to `send`: the stored message; duplicate=true for a retried send.",
        {"ref": _REF, "client_message_id": _ID, "duplicate": {"type": "boolean"},
         "message": MESSAGE},
        ["client_message_id", "duplicate", "message"],
    ),
    "pong": _frame("pong", "Answer to `ping`.", {"ref": _REF}, []),
    "resync": _frame(
        "resync",
        "The server will not replay this conversation from `from_seq`: fetch history "
        "(GetMessages) and subscribe again with a newer position. reason is gap_too_large "
        "or position_ahead.",
        {"conversation_id": _ID, "from_seq": _SEQ, "last_seq": _SEQ,
         "reason": {"enum": ["gap_too_large", "position_ahead"]}},
        ["conversation_id", "from_seq", "last_seq", "reason"],
    ),
    "product.updated": _frame(
        "product.updated",
        "A product shown on cards in your conversations changed (revision 3): show `product` "
        "next to what each card showed when it was sent. `version` orders updates: ignore "
        "one older than the last you applied.",
        {"product": ATTACHMENT["oneOf"][2], "version": {"type": "integer", "minimum": 0}},
        ["product", "version"],
    ),
    "block.changed": _frame(
        "block.changed",
        "Messaging between the two `users` was blocked, or the block lifted (revision 3). "
        "While blocked, sends between them fail with `permission_denied` and neither sees "
        "the other's presence or typing; their conversations stay readable.",
        {"users": {"type": "array", "items": _ID, "minItems": 2, "maxItems": 2},
         "blocked": {"type": "boolean"}},
        ["users", "blocked"],
    ),
    "error": _frame(
        "error",
        "A request failed or a frame was refused; the connection stays open unless a close "
        "follows. `ref` is the request's ref when it had one.",
        {
            "ref": _REF,
            "code": {"enum": [
                "bad_frame", "unknown_type", "rate_limited", "invalid_argument", "not_found",
                "permission_denied", "failed_precondition", "resource_exhausted",
                "unavailable", "internal",
            ]},
            "message": {"type": "string"},
            "field": {"type": "string"},
        },
        ["code", "message"],
    ),
}
