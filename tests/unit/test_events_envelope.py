"""The CloudEvents 1.0 JSON envelope: what decode accepts, what it refuses, and the round trip."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from cellchat.events.envelope import (
    CloudEvent,
    MalformedEvent,
    decode,
    encode,
    format_time,
    parse_time,
)

UTC = datetime.UTC


def _document(**changes: Any) -> str:
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": "3f1e2d4c-0000-4000-8000-000000000001",
        "source": "marketplace/orders",
        "type": "com.marketplace.order.created.v1",
        "time": "2025-03-01T10:15:30.250Z",
        "datacontenttype": "application/json",
        "data": {"order_id": "o1"},
    }
    for name, value in changes.items():
        if value is ...:
            document.pop(name, None)
        else:
            document[name] = value
    return json.dumps(document)


def test_round_trip_keeps_every_attribute() -> None:
    event = CloudEvent(
        id="e1",
        source="cellchat/eu-1",
        type="com.cellchat.message.sent.v1",
        data={"seq": 3, "text": "é✓"},
        time=datetime.datetime(2025, 3, 1, 10, 15, 30, 250_000, tzinfo=UTC),
        subject="conversations/c1",
        dataschema="urn:cellchat:events:com.cellchat.message.sent.v1",
        extensions={"traceparent": "00-ab-cd-01", "partitionkey": "c1", "attempt": 2,
                    "replayed": False},
    )
    text = encode(event)
    assert decode(text) == event
    assert decode(text.encode()) == event
    document = json.loads(text)
    assert document["specversion"] == "1.0"
    assert document["datacontenttype"] == "application/json"
    assert document["time"] == "2025-03-01T10:15:30.250Z"
    assert document["traceparent"] == "00-ab-cd-01"  # extensions are top-level members
    assert "é✓" in text  # UTF-8 kept, not \\u-escaped


def test_decode_reads_a_valid_event() -> None:
    event = decode(_document(subject="orders/o1"))
    assert event.id == "3f1e2d4c-0000-4000-8000-000000000001"
    assert event.type == "com.marketplace.order.created.v1"
    assert event.time == datetime.datetime(2025, 3, 1, 10, 15, 30, 250_000, tzinfo=UTC)
    assert event.subject == "orders/o1"
    assert event.data == {"order_id": "o1"}


@pytest.mark.parametrize(
    "changes",
    [
        {"time": ...},  # time is optional in CloudEvents
        {"datacontenttype": ...},  # absent means application/json
        {"datacontenttype": "application/cloudevents+json; charset=utf-8"},
        {"datacontenttype": "text/json"},
        {"subject": None, "time": None, "dataschema": None},  # null means unset
        {"time": "2025-03-01T11:15:30+01:00"},
        {"time": "2025-03-01t10:15:30.123456789z"},  # lower case and nanoseconds are RFC 3339
        {"data": None},
        {"data": ...},
    ],
)
def test_decode_accepts_what_the_spec_allows(changes: dict[str, Any]) -> None:
    decode(_document(**changes))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not JSON"),
        ("{not json", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('"event"', "not a JSON object"),
        ('{"specversion": "1.0", "id": "x", "source": "s", "type": "t", "data": NaN}',
         "not JSON"),
        ("[" * 100_000, "not JSON"),
        (_document(specversion="0.3"), "specversion"),
        (_document(specversion=...), "specversion"),
        (_document(id=...), "id is required"),
        (_document(id=""), "id must be a non-empty string"),
        (_document(id=7), "id must be"),
        (_document(source=None), "source is required"),
        (_document(type=["x"]), "type must be"),
        (_document(id="x" * 2000), "longer than"),
        (_document(time="2025-03-01"), "time"),
        (_document(time="2025-03-01T10:15:30"), "time"),  # no offset
        (_document(time="yesterday"), "time"),
        (_document(time="2025-13-01T10:15:30Z"), "time"),
        (_document(time=1740824130), "time must be a string"),
        (_document(subject=5), "subject must be a string"),
        (_document(datacontenttype="application/xml"), "not JSON"),
        (_document(data=..., data_base64="e30="), "data_base64"),
        (_document(BadName="x"), "attribute name"),
        (_document(**{"has-dash": "x"}), "attribute name"),
        (_document(averyveryverylongextensionname="x"), "attribute name"),
        (_document(comexample={"nested": 1}), "extension comexample"),
        (_document(comexample=1.5), "extension comexample"),
    ],
)
def test_decode_refuses_malformed_input_with_a_reason(text: str | bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent) as caught:
        decode(text)
    assert reason in caught.value.reason


def test_an_event_cannot_be_built_without_its_required_attributes() -> None:
    with pytest.raises(ValueError, match="id"):
        CloudEvent(id="", source="s", type="t", data={})
    with pytest.raises(ValueError, match="timezone"):
        CloudEvent(id="i", source="s", type="t", data={},
                   time=datetime.datetime(2025, 1, 1))  # naive: refused
    with pytest.raises(ValueError, match="attribute name"):
        CloudEvent(id="i", source="s", type="t", data={}, extensions={"Trace": "x"})


def test_time_is_written_in_utc_with_milliseconds() -> None:
    moment = datetime.datetime(2025, 3, 1, 12, 0, 0, 987_654,
                               tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert format_time(moment) == "2025-03-01T10:00:00.987Z"
    assert parse_time("2025-03-01T10:00:00.987Z") == datetime.datetime(
        2025, 3, 1, 10, 0, 0, 987_000, tzinfo=UTC)
    assert parse_time("2025-03-01 12:00:00-02:00") == datetime.datetime(
        2025, 3, 1, 14, 0, tzinfo=UTC)


def test_integer_extensions_stay_in_the_32_bit_range() -> None:
    decode(_document(comexample=2**31 - 1))
    with pytest.raises(MalformedEvent, match="32-bit"):
        decode(_document(comexample=2**31))
