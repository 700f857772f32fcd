"""Event types and their schemas; the builders of published events hold to them."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

from cellchat.events import catalog, published
from cellchat.events.catalog import InvalidEventData, SchemaRegistry, UnknownEventType
from cellchat.events.envelope import CloudEvent, decode, encode

CELL = "eu-1"


def _published_examples() -> list[CloudEvent]:
    return [
        published.message_sent(
            CELL, conversation_id="c1", seq=7, message_id="01HZX3", sender_id="u1",
            kind="text", recipients=["u2", "u2", "u3"], created_at_ms=1_740_824_130_250,
        ),
        published.message_read(CELL, conversation_id="c1", user_id="u2", read_seq=7,
                               at_ms=1_740_824_131_000),
        published.conversation_created(
            CELL, conversation_id="c1", kind="direct",
            participants=[("u1", "buyer"), ("u2", "seller")], product_id="p1",
            created_at_ms=1_740_824_100_000,
        ),
        published.user_online(CELL, user_id="u1", at_ms=1_740_824_000_000),
        published.user_offline(CELL, user_id="u1", last_seen_ms=1_740_824_999_000),
    ]


def test_every_schema_file_is_a_valid_draft_2020_12_schema() -> None:
    files = {
        entry.name.removesuffix(".json")
        for entry in (resources.files("cellchat.events") / "schemas").iterdir()
        if entry.name.endswith(".json")
    }
    assert files == set(catalog.PUBLISHED + catalog.CONSUMED)
    for event_type in files:
        schema = catalog.load_schema(event_type)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"urn:cellchat:events:{event_type}"


def test_published_schemas_are_closed_and_consumed_ones_open() -> None:
    for event_type in catalog.PUBLISHED:
        assert catalog.load_schema(event_type)["additionalProperties"] is False
    for event_type in catalog.CONSUMED:
        assert "additionalProperties" not in catalog.load_schema(event_type)


def test_every_published_builder_makes_a_valid_event() -> None:
    registry = SchemaRegistry()
    events = _published_examples()
    assert [event.type for event in events] == list(catalog.PUBLISHED)
    for event in events:
        registry.validate(event)
        assert event.source == "cellchat/eu-1"
        assert event.time is not None
        assert decode(encode(event)) == event


def test_message_sent_carries_no_content_and_cannot_be_given_any() -> None:
    event = _published_examples()[0]
    assert set(event.data) == {"conversation_id", "seq", "message_id", "sender_id", "kind",
                               "recipients", "created_at_ms"}
    assert event.data["recipients"] == ["u2", "u3"]
    leaky = CloudEvent(id=event.id, source=event.source, type=event.type,
                       data={**event.data, "text": "hello"})
    with pytest.raises(InvalidEventData, match="text"):
        SchemaRegistry().validate(leaky)


def test_ids_are_stable_and_distinct() -> None:
    assert [e.id for e in _published_examples()] == [e.id for e in _published_examples()]
    assert len({e.id for e in _published_examples()}) == 5
    sent = _published_examples()[0]
    again = published.message_sent(
        CELL, conversation_id="c1", seq=7, message_id="01HZX3", sender_id="u1", kind="text",
        recipients=[], created_at_ms=0,
    )
    other_message_same_seq = published.message_sent(
        CELL, conversation_id="c1", seq=7, message_id="01HZX4", sender_id="u1", kind="text",
        recipients=[], created_at_ms=0,
    )
    other_cell = published.message_sent(
        "us-1", conversation_id="c1", seq=7, message_id="01HZX3", sender_id="u1", kind="text",
        recipients=[], created_at_ms=0,
    )
    assert again.id == sent.id
    assert other_message_same_seq.id != sent.id
    assert other_cell.id != sent.id


def test_subjects_name_the_entity() -> None:
    subjects = [event.subject for event in _published_examples()]
    assert subjects == ["conversations/c1"] * 3 + ["users/u1"] * 2


@pytest.mark.parametrize(
    ("event_type", "data", "where"),
    [
        (catalog.ORDER_CREATED, {"order_id": "o1"}, "buyer_id"),
        (catalog.ORDER_CREATED,
         {"order_id": "o1", "buyer_id": "b", "seller_id": "s", "status": "new",
          "total": {"amount_minor": 100, "currency": "eur"}, "item_count": 1}, "total/currency"),
        (catalog.PRODUCT_UPDATED,
         {"product_id": "p1", "title": "t", "price": {"amount_minor": 1, "currency": "EUR"},
          "image_url": "", "available": "yes", "version": 1}, "available"),
        (catalog.USER_BLOCKED, {"blocker_id": "a", "blocked_id": "b", "at_ms": -1}, "at_ms"),
        (catalog.USER_UNBLOCKED, ["a", "b"], "(data)"),
    ],
)
def test_invalid_data_is_refused_with_where(event_type: str, data: Any, where: str) -> None:
    event = CloudEvent(id="i", source="s", type=event_type, data=data)
    with pytest.raises(InvalidEventData) as caught:
        SchemaRegistry().validate(event)
    assert where in str(caught.value)


def test_consumed_events_may_carry_fields_this_service_does_not_know() -> None:
    data = {"blocker_id": "a", "blocked_id": "b", "at_ms": 5, "reason": "spam"}
    SchemaRegistry().validate(CloudEvent(id="i", source="s", type=catalog.USER_BLOCKED,
                                         data=data))


def test_unknown_types_are_refused() -> None:
    registry = SchemaRegistry({catalog.USER_BLOCKED: catalog.load_schema(catalog.USER_BLOCKED)})
    assert registry.types == {catalog.USER_BLOCKED}
    with pytest.raises(UnknownEventType):
        registry.validate(CloudEvent(id="i", source="s", type=catalog.ORDER_CREATED, data={}))
    with pytest.raises(UnknownEventType):
        catalog.load_schema("com.example.nothing.v1")


def test_a_broken_schema_is_refused_when_the_registry_is_built() -> None:
    with pytest.raises(jsonschema.SchemaError):
        SchemaRegistry({"x": {"type": "no-such-type"}})


def test_stream_and_group_names() -> None:
    assert catalog.events_stream("eu-1") == "cellchat.eu-1.events"
    assert catalog.consumer_group("eu-1") == "cellchat.eu-1"
    assert catalog.dead_letter_stream(catalog.MARKETPLACE_STREAM) == "marketplace.events.dead"
    assert catalog.source_for("eu-1") == "cellchat/eu-1"
    assert json.loads(json.dumps(catalog.PUBLISHED)) == list(catalog.PUBLISHED)
