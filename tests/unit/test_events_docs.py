"""docs/events.md is the contract other teams integrate against: its examples, field tables,
schema links and dead-letter format must be what the code does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cellchat.events import catalog, published
from cellchat.events.catalog import InvalidEventData, SchemaRegistry
from cellchat.events.consumer import DEAD_LETTER_FIELDS, DEAD_LETTER_REASONS
from cellchat.events.envelope import CloudEvent, decode

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
TEXT = DOC.read_text(encoding="utf-8")
CODE_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
TABLE_ROW = re.compile(r"^\| `([a-z_]+)` \| [^|]+ \| (yes|no) \|", re.MULTILINE)


def _sections() -> dict[str, str]:
    """Event type → its `### Name — \\`type\\`` section."""
    sections = {}
    for chunk in re.split(r"^### ", TEXT, flags=re.MULTILINE)[1:]:
        header = chunk.splitlines()[0]
        match = re.search(r"`(com\.[a-z0-9.]+)`", header)
        if match:
            sections[match.group(1)] = chunk.split("\n## ", 1)[0]
    return sections


SECTIONS = _sections()
ALL_TYPES = catalog.PUBLISHED + catalog.CONSUMED


def _json_blocks(text: str) -> list[Any]:
    return [json.loads(body) for language, body in CODE_BLOCK.findall(text) if language == "json"]


def test_every_type_has_a_section_and_nothing_else_does() -> None:
    assert sorted(SECTIONS) == sorted(ALL_TYPES)


def test_every_json_example_in_the_page_parses() -> None:
    blocks = _json_blocks(TEXT)
    events = [block for block in blocks if "specversion" in block]
    assert len(events) == len(ALL_TYPES)
    assert len(blocks) == len(events) + 1  # and the dead letter


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_the_example_is_a_valid_event_of_its_type(event_type: str) -> None:
    [example] = _json_blocks(SECTIONS[event_type])
    event = decode(json.dumps(example))
    assert event.type == event_type
    SchemaRegistry().validate(event)
    assert event.time is not None
    assert example["datacontenttype"] == "application/json"


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_the_linked_schema_is_the_shipped_one_and_valid(event_type: str) -> None:
    links = re.findall(r"\]\((\.\./services/cellchat/events/schemas/[^)]+)\)",
                       SECTIONS[event_type])
    assert links == [f"../services/cellchat/events/schemas/{event_type}.json"]
    schema = json.loads((DOC.parent / links[0]).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == catalog.load_schema(event_type)


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_the_field_table_matches_the_schema(event_type: str) -> None:
    rows = TABLE_ROW.findall(SECTIONS[event_type])
    schema = catalog.load_schema(event_type)
    assert [name for name, _ in rows] == list(schema["properties"])
    assert {name for name, required in rows if required == "yes"} == set(schema["required"])


def _built(example: dict[str, Any]) -> CloudEvent:
    """What cellchat's own builders make of the example's values."""
    cell = example["source"].removeprefix("cellchat/")
    data = example["data"]
    at_ms = int(decode(json.dumps(example)).time.timestamp() * 1000)  # type: ignore[union-attr]
    match example["type"]:
        case catalog.MESSAGE_SENT:
            return published.message_sent(cell, **data)
        case catalog.MESSAGE_READ:
            return published.message_read(cell, at_ms=at_ms, **data)
        case catalog.CONVERSATION_CREATED:
            return published.conversation_created(
                cell, conversation_id=data["conversation_id"], kind=data["kind"],
                participants=[(p["user_id"], p["role"]) for p in data["participants"]],
                product_id=data["context"]["product_id"], order_id=data["context"]["order_id"],
                created_at_ms=at_ms,
            )
        case catalog.USER_ONLINE:
            return published.user_online(cell, user_id=data["user_id"],
                                         at_ms=data["last_seen_ms"])
        case catalog.USER_OFFLINE:
            return published.user_offline(cell, **data)
    raise AssertionError(example["type"])


@pytest.mark.parametrize("event_type", catalog.PUBLISHED)
def test_published_examples_are_exactly_what_cellchat_emits(event_type: str) -> None:
    [example] = _json_blocks(SECTIONS[event_type])
    assert decode(json.dumps(example)) == _built(example)


def test_the_dead_letter_example_matches_the_consumer() -> None:
    [letter] = [block for block in _json_blocks(TEXT) if "reason" in block]
    own = [name for name in letter if not name.startswith("original.")]
    assert own == list(DEAD_LETTER_FIELDS)
    assert letter["reason"] in DEAD_LETTER_REASONS
    assert letter["stream"] == catalog.MARKETPLACE_STREAM
    assert letter["group"] == catalog.consumer_group("eu-west-1a")
    original = decode(letter["original.event"])
    assert (original.id, original.type) == (letter["event_id"], letter["event_type"])
    with pytest.raises(InvalidEventData) as caught:
        SchemaRegistry().validate(original)
    assert str(caught.value) == letter["detail"]


def test_the_reason_table_lists_every_reason() -> None:
    dead_section = TEXT.split("## Dead letters", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| `([a-z_]+)` \|", dead_section, re.MULTILINE) == list(
        DEAD_LETTER_REASONS)


def test_stream_names_are_the_catalogs() -> None:
    assert f"`{catalog.events_stream('<cell>')}`" in TEXT
    assert f"`{catalog.MARKETPLACE_STREAM}`" in TEXT
    assert f"`{catalog.dead_letter_stream(catalog.MARKETPLACE_STREAM)}`" in TEXT
    assert f"`{catalog.consumer_group('<cell>')}`" in TEXT
    overview = re.findall(r"^\| (published|consumed) \| \w+ \| `([^`]+)` \|", TEXT, re.MULTILINE)
    assert [event_type for _, event_type in overview] == list(ALL_TYPES)
