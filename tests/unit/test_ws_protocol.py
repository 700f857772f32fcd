"""The WebSocket protocol as documented: every example in docs/websocket.md matches its schema,
the codec accepts every client example, and every frame the server encodes matches its schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cellchat.chat.domain import events
from cellchat.chat.domain.model import (
    Context,
    Conversation,
    ConversationKind,
    Image,
    Message,
    MessageKind,
    Money,
    Participant,
    ProductCard,
    Role,
)
from cellchat.chat.realtime import frames, schemas
from cellchat.chat.realtime.fanout import envelope_for
from cellchat.chat.realtime.frames import FrameError, decode_client

DOC = Path(__file__).resolve().parents[2] / "docs" / "websocket.md"
_SECTION = re.compile(r"^### `([a-z.]+)`\n(.*?)(?=^### |^## |\Z)", re.S | re.M)
_BLOCK = re.compile(r"```json (example|schema)\n(.*?)\n```", re.S)


def documented() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, body in _SECTION.findall(DOC.read_text()):
        found[name] = {kind: json.loads(text) for kind, text in _BLOCK.findall(body)}
    return found


DOCS = documented()
ALL = {**{k: ("client", v) for k, v in schemas.CLIENT.items()},
       **{k: ("server", v) for k, v in schemas.SERVER.items()}}


def test_every_frame_is_documented_with_schema_and_example() -> None:
    assert set(DOCS) == set(ALL)
    assert "version 1" in DOC.read_text().splitlines()[0]
    assert schemas.PROTOCOL_VERSION == 1


@pytest.mark.parametrize("name", sorted(ALL))
def test_documented_schema_is_the_code_schema_and_example_validates(name: str) -> None:
    direction, schema = ALL[name]
    section = DOCS[name]
    assert section["schema"] == schema
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(section["example"], schema)
    assert section["example"]["type"] == name
    if direction == "client":
        frame = decode_client(json.dumps(section["example"]))
        assert frame.ref == section["example"].get("ref", "")


CID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", "bad_frame"),
        ("[1, 2]", "bad_frame"),
        ('"send"', "bad_frame"),
        ("{}", "bad_frame"),
        ('{"type": 5}', "bad_frame"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": "send", "conversation_id": "x"}', "bad_frame"),
        ('{"type": "read", "conversation_id": "x", "seq": -1}', "bad_frame"),
        ('{"type": "read", "conversation_id": "x", "seq": "1"}', "bad_frame"),
        ('{"type": "ping", "extra": 1}', "bad_frame"),
        ('{"type": "typing", "conversation_id": "x", "state": "maybe"}', "bad_frame"),
        ('{"type": "send", "conversation_id": "x", "client_message_id": "c", '
         '"kind": "image", "attachment": {"type": "image", "url": 1}}', "bad_frame"),
        ("[" * 100_000 + "]" * 100_000, "bad_frame"),
    ],
)
def test_bad_client_frames_are_frame_errors(text: str, code: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_client(text)
    assert info.value.code == code


def test_binary_frames_are_refused() -> None:
    with pytest.raises(FrameError) as info:
        decode_client(b'{"type": "ping"}')
    assert info.value.code == "bad_frame"


def test_error_messages_never_echo_the_offending_value() -> None:
    secret = "do-not-echo-" + "x" * 20
    with pytest.raises(FrameError) as info:
        decode_client(json.dumps({"type": "read", "conversation_id": CID, "seq": secret}))
    assert secret not in info.value.message
    assert info.value.field == "seq"


def test_ref_is_kept_on_errors_so_clients_can_match_them() -> None:
    with pytest.raises(FrameError) as info:
        decode_client(json.dumps({"type": "send", "ref": "r-9"}))
    assert info.value.ref == "r-9"


def test_send_with_attachment_decodes_to_domain_values() -> None:
    frame = decode_client(json.dumps({
        "type": "send", "conversation_id": CID, "client_message_id": "c1", "kind": "product",
        "attachment": {"type": "product", "product_id": "lamp-1", "title": "Lamp",
                       "price": {"amount_minor": 1999, "currency": "EUR"}},
    }))
    assert isinstance(frame, frames.Send)
    assert frame.kind is MessageKind.PRODUCT
    assert frame.attachment == ProductCard("lamp-1", "Lamp", Money(1999, "EUR"))


def _message(**changes: Any) -> Message:
    base = dict(conversation_id=CID, seq=3, message_id="m-3", sender_id="alice",
                kind=MessageKind.IMAGE, text="look", client_message_id="c-3",
                attachment=Image("https://img.example/1.png", "image/png", 10, 2, 2),
                created_at_ms=1)
    base.update(changes)
    return Message(**base)  # type: ignore[arg-type]


CONV = Conversation(CID, ConversationKind.GROUP, "alice", 1, "Team", Context("p", ""))
PARTS = (Participant("alice", Role.ADMIN, 1), Participant("bob", Role.MEMBER, 1))


@pytest.mark.parametrize(
    "event",
    [
        events.MessageCreated(_message(), ("alice", "bob")),
        events.MessageEdited(_message(version=2, edited_at_ms=5), ("alice", "bob")),
        events.MessageDeleted(_message(deleted=True, text="", attachment=None), ("alice",)),
        events.HorizonsAdvanced(CID, "bob", 2, 3, ("alice", "bob")),
        events.ConversationCreated(CONV, PARTS),
        events.ParticipantsChanged(CONV, PARTS[:1], removed=("bob",)),
    ],
)
def test_every_event_becomes_one_schema_valid_frame(event: events.ChatEvent) -> None:
    kind, envelope, recipients = envelope_for(event)
    body = json.loads(envelope.frame)
    assert body["type"] == kind
    jsonschema.validate(body, schemas.SERVER[kind])
    assert envelope.conversation_id == CID
    assert envelope.seq == (3 if kind == "message.created" else 0)
    if isinstance(event, events.ParticipantsChanged):
        assert set(recipients) == {"alice", "bob"}  # the removed user learns it too


def test_marketplace_events_become_schema_valid_frames() -> None:
    from cellchat.chat.domain.model import Money, ProductCard

    card = ProductCard("lamp-1", "Lamp", Money(1499, "EUR"), "https://i/l.png", False)
    kind, envelope, recipients = envelope_for(
        events.ProductCardsUpdated(card, 7, (CID,), ("alice", "bob")))
    body = json.loads(envelope.frame)
    jsonschema.validate(body, schemas.SERVER[kind])
    assert kind == "product.updated"
    assert body["product"]["available"] is False
    assert CID not in envelope.frame  # no conversation ids: recipients differ in theirs
    assert recipients == ("alice", "bob")
    kind, envelope, recipients = envelope_for(
        events.BlockChanged("bob", "alice", True, ("bob", "alice")))
    body = json.loads(envelope.frame)
    jsonschema.validate(body, schemas.SERVER[kind])
    assert body == {"type": "block.changed", "users": ["alice", "bob"], "blocked": True}
    assert set(recipients) == {"alice", "bob"}


def test_answer_frames_match_their_schemas() -> None:
    encoded = [
        frames.encode_hello("c1", "alice", max_frame_bytes=1, rate_per_s=1.0, burst=1,
                            typing_ttl_ms=1),
        frames.encode_ack(_message(), duplicate=True, ref="r"),
        frames.encode_pong(),
        frames.encode_subscribed(3, "s"),
        frames.encode_resync(CID, 1, 9000, "gap_too_large"),
        frames.encode_error("not_found", "conversation not found", ref="r"),
        frames.encode_typing(CID, "bob", started=True, expires_in_ms=6000),
        frames.encode_typing(CID, "bob", started=False, expires_in_ms=6000),
        frames.encode_presence("bob", online=True, last_seen_ms=0),
        frames.encode_opened(CONV, PARTS, created=True, last_seq=0, ref="o"),
    ]
    for text in encoded:
        body = json.loads(text)
        jsonschema.validate(body, schemas.SERVER[body["type"]])
