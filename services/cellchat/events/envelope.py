"""CloudEvents 1.0 in the structured JSON format: the envelope of every event cellchat publishes
or consumes, sans I/O.

Rules:
- One representation: a JSON object holding the context attributes and `data` as a JSON value
  (CloudEvents JSON format, section 3). `data_base64` and non-JSON `datacontenttype`s are refused:
  every event here carries a JSON object described by a JSON Schema (catalog.py).
- `decode` is strict about what the spec requires (`specversion` "1.0", non-empty `id`, `source`,
  `type`; RFC 3339 `time`; lower-case alphanumeric extension names with string, integer or boolean
  values) and raises only `MalformedEvent` on bad input, whatever the input. A `null` attribute
  means unset, as the spec says.
- `encode` writes what `decode` reads back unchanged (`decode(encode(e)) == e`), always with
  `specversion` "1.0" and `datacontenttype` "application/json", and `time` in UTC with
  millisecond precision.
- The `id` is given by the producer and stable: the same change always gets the same id, so a
  re-published event is recognisable as a duplicate (consumers deduplicate on it).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "JSON_CONTENT_TYPE",
    "SPECVERSION",
    "CloudEvent",
    "MalformedEvent",
    "decode",
    "encode",
    "format_time",
    "from_mapping",
    "parse_time",
]

SPECVERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"

ExtensionValue = str | int | bool

_CORE = frozenset(
    {"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema",
     "data", "data_base64"}
)
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
# RFC 3339 section 5.6 (date-time); fromisoformat alone would also take dates without a time
# or times without an offset.
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_MAX_ATTRIBUTE_CHARS = 1024


class MalformedEvent(ValueError):
    """The input is not a CloudEvents 1.0 JSON event this service can read; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.frozen(eq=True, hash=False)
class CloudEvent:
    """One event. `data` is the JSON value (an object for every type in the catalog)."""

    id: str
    source: str
    type: str
    data: Any
    time: datetime.datetime | None = None
    subject: str | None = None
    dataschema: str | None = None
    extensions: Mapping[str, ExtensionValue] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for name in ("id", "source", "type"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        if self.time is not None and self.time.utcoffset() is None:
            raise ValueError("time must be timezone-aware")
        for name, value in self.extensions.items():
            _check_extension(name, value, ValueError)


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with milliseconds: `2024-05-01T12:00:00.123Z`."""
    utc = moment.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 date-time, as an aware datetime; `ValueError` for anything else."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    date, clock, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]  # datetime keeps microseconds: "." and 6 digits
    offset = "+00:00" if offset in ("Z", "z") else offset
    return datetime.datetime.fromisoformat(f"{date}T{clock}{fraction}{offset}")


def encode(event: CloudEvent) -> str:
    """The structured-mode JSON text of `event` (compact, UTF-8 characters kept as they are)."""
    document: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event.id,
        "source": event.source,
        "type": event.type,
    }
    if event.subject is not None:
        document["subject"] = event.subject
    if event.time is not None:
        document["time"] = format_time(event.time)
    document["datacontenttype"] = JSON_CONTENT_TYPE
    if event.dataschema is not None:
        document["dataschema"] = event.dataschema
    for name, value in event.extensions.items():
        document[name] = value
    document["data"] = event.data
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def decode(text: str | bytes) -> CloudEvent:
    """Parse and check one structured-mode event; `MalformedEvent` says what is wrong."""
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise MalformedEvent(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedEvent("not a JSON object")
    return from_mapping(document)


def from_mapping(document: Mapping[str, Any]) -> CloudEvent:
    """Check an already-parsed JSON object as a structured-mode event (see `decode`)."""
    attributes = {name: value for name, value in document.items() if value is not None}
    if attributes.get("specversion") != SPECVERSION:
        raise MalformedEvent(f"specversion must be {SPECVERSION!r}")
    required = {name: _string(attributes, name, required=True) for name in ("id", "source", "type")}
    content_type = _string(attributes, "datacontenttype")
    if content_type is not None and not _is_json_media_type(content_type):
        raise MalformedEvent(f"datacontenttype {content_type!r} is not JSON")
    if "data_base64" in attributes:
        raise MalformedEvent("data_base64 is not accepted: data must be a JSON value")
    time_text = _string(attributes, "time")
    try:
        moment = None if time_text is None else parse_time(time_text)
    except ValueError as exc:
        raise MalformedEvent(f"time: {exc}") from None
    extensions: dict[str, ExtensionValue] = {}
    for name, value in attributes.items():
        if name not in _CORE:
            _check_extension(name, value, MalformedEvent)
            extensions[name] = value
    return CloudEvent(
        id=required["id"],
        source=required["source"],
        type=required["type"],
        data=attributes.get("data"),
        time=moment,
        subject=_string(attributes, "subject"),
        dataschema=_string(attributes, "dataschema"),
        extensions=extensions,
    )


def _string(attributes: Mapping[str, Any], name: str, *, required: bool = False) -> Any:
    value = attributes.get(name)
    if value is None:
        if required:
            raise MalformedEvent(f"{name} is required")
        return None
    if not isinstance(value, str) or (required and not value):
        raise MalformedEvent(f"{name} must be a {'non-empty ' if required else ''}string")
    if len(value) > _MAX_ATTRIBUTE_CHARS:
        raise MalformedEvent(f"{name} is longer than {_MAX_ATTRIBUTE_CHARS} characters")
    return value


def _check_extension(name: str, value: Any, error: type[ValueError]) -> None:
    if not _EXTENSION_NAME.match(name):
        raise error(f"attribute name {name[:40]!r} is not 1-20 lower-case letters or digits")
    if not isinstance(value, str | int | bool):  # bool is an int; both are allowed
        raise error(f"extension {name} must be a string, integer or boolean")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**31) <= value < 2**31:
        raise error(f"extension {name} is outside the 32-bit range of CloudEvents integers")


def _is_json_media_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    return bool(kind) and (subtype == "json" or subtype.endswith("+json"))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
