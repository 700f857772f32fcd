"""Which event types exist, what their `data` must look like, and where they travel.

Rules:
- A type name is `com.<producer>.<entity>.<past-tense verb>.v<major>`; the JSON Schema of its
  `data` is `schemas/<type>.json` (draft 2020-12). A breaking change is a new type (`.v2`),
  published next to the old one until its consumers have moved; an additive change keeps the name.
- Published schemas forbid unknown properties (`additionalProperties: false`): a field, a message
  body above all, cannot leak into an event without a schema change someone reviews. Consumed
  schemas allow them: other teams may add fields, and this service ignores what it does not know.
- Stream names: a cell publishes on `cellchat.<cell>.events`; the marketplace's services publish
  on `marketplace.events`; each consumer group is `cellchat.<cell>`; a consumed stream's dead
  letters go to `<stream>.dead`. docs/events.md is the contract built on these names.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

import jsonschema

from cellchat.events.envelope import CloudEvent

__all__ = [
    "CONSUMED",
    "CONVERSATION_CREATED",
    "MARKETPLACE_STREAM",
    "MESSAGE_READ",
    "MESSAGE_SENT",
    "ORDER_CREATED",
    "PRODUCT_UPDATED",
    "PUBLISHED",
    "USER_BLOCKED",
    "USER_OFFLINE",
    "USER_ONLINE",
    "USER_UNBLOCKED",
    "InvalidEventData",
    "SchemaRegistry",
    "UnknownEventType",
    "consumer_group",
    "dead_letter_stream",
    "events_stream",
    "load_schema",
    "source_for",
]

MESSAGE_SENT = "com.cellchat.message.sent.v1"
MESSAGE_READ = "com.cellchat.message.read.v1"
CONVERSATION_CREATED = "com.cellchat.conversation.created.v1"
USER_ONLINE = "com.cellchat.user.online.v1"
USER_OFFLINE = "com.cellchat.user.offline.v1"

ORDER_CREATED = "com.marketplace.order.created.v1"
PRODUCT_UPDATED = "com.marketplace.product.updated.v1"
USER_BLOCKED = "com.marketplace.user.blocked.v1"
USER_UNBLOCKED = "com.marketplace.user.unblocked.v1"

PUBLISHED = (MESSAGE_SENT, MESSAGE_READ, CONVERSATION_CREATED, USER_ONLINE, USER_OFFLINE)
CONSUMED = (ORDER_CREATED, PRODUCT_UPDATED, USER_BLOCKED, USER_UNBLOCKED)

MARKETPLACE_STREAM = "marketplace.events"


def source_for(cell_id: str) -> str:
    """The CloudEvents `source` of everything a cell publishes."""
    return f"cellchat/{cell_id}"


def events_stream(cell_id: str) -> str:
    """The Redis stream a cell publishes on."""
    return f"cellchat.{cell_id}.events"


def consumer_group(cell_id: str) -> str:
    """The consumer group a cell reads the marketplace stream through."""
    return f"cellchat.{cell_id}"


def dead_letter_stream(stream: str) -> str:
    """Where a consumer of `stream` puts the entries it cannot process."""
    return f"{stream}.dead"


class UnknownEventType(ValueError):
    """No schema (or no handler) for the event's type."""


class InvalidEventData(ValueError):
    """The event's `data` does not match its type's schema; the message says where."""


def load_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of `event_type`'s data, as shipped in `schemas/`."""
    if event_type not in PUBLISHED + CONSUMED:
        raise UnknownEventType(event_type)
    return _load(event_type)


@functools.cache
def _load(event_type: str) -> dict[str, Any]:
    text = (resources.files("cellchat.events") / "schemas" / f"{event_type}.json").read_text(
        encoding="utf-8"
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


class SchemaRegistry:
    """Validates events' data against the schemas of a set of types (all known ones by default).

    Validators are built once; validation is pure and safe to share between tasks.
    """

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        if schemas is None:
            schemas = {event_type: load_schema(event_type) for event_type in PUBLISHED + CONSUMED}
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        for event_type, schema in schemas.items():
            jsonschema.Draft202012Validator.check_schema(schema)
            self._validators[event_type] = jsonschema.Draft202012Validator(schema)

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._validators)

    def validate(self, event: CloudEvent) -> None:
        """Raise `UnknownEventType` or `InvalidEventData` unless `event.data` fits its schema."""
        validator = self._validators.get(event.type)
        if validator is None:
            raise UnknownEventType(event.type)
        error = jsonschema.exceptions.best_match(validator.iter_errors(event.data))
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path) or "(data)"
            raise InvalidEventData(f"{where}: {error.message}")
