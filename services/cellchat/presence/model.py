"""Presence values and the changes the service emits. No I/O, no clock.

Rules:

* A user's *effective* status (what others see) is OFFLINE while they have no live connection;
  otherwise it is their chosen status (ONLINE by default, AWAY, or OFFLINE to appear offline).
* A change is emitted only when the effective status changes: `UserOnline` (ONLINE or AWAY) or
  `UserOffline`. `last_seen_ms` is set when a user goes (effectively) offline, never moved back.
* A typing indicator emits `TypingStarted` when it appears and exactly one `TypingStopped` when
  it goes (stopped by the user or lapsed): a refresh of a live indicator emits nothing.

Ids are opaque strings of 1-128 printable characters without whitespace. The ASCII unit
separator joins ids into compound keys in the stores, which is why control characters are
refused here.
"""

from __future__ import annotations

import enum
import re
from typing import TypeAlias

import attrs

from cellchat.chat.domain.errors import InvalidArgument

MAX_ID_LENGTH = 128
_ID = re.compile(r"^[^\s\x00-\x1f\x7f]{1,128}$")

#: The replica id of the leases `SetOnlineStatus` takes on behalf of API-only clients. Real
#: replica ids may not start with "~", so it cannot collide with one.
API_REPLICA = "~api"


class Status(enum.Enum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"
    #: Only in answers: the viewer shares no conversation with the user.
    UNKNOWN = "unknown"


#: What a user may choose with SetOnlineStatus.
CHOOSABLE = frozenset({Status.ONLINE, Status.AWAY, Status.OFFLINE})


@attrs.frozen
class Presence:
    user_id: str
    status: Status
    #: ONLINE/AWAY: the time of the answer; OFFLINE: when last seen (0: never); UNKNOWN: 0.
    last_seen_ms: int


@attrs.frozen
class Typing:
    user_id: str
    expires_at_ms: int


@attrs.frozen
class UserOnline:
    """The user became visible: ONLINE or AWAY (also emitted on ONLINE ↔ AWAY)."""

    user_id: str
    status: Status
    at_ms: int


@attrs.frozen
class UserOffline:
    user_id: str
    last_seen_ms: int
    #: When the service noticed; later than `last_seen_ms` when a lease lapsed.
    at_ms: int


@attrs.frozen
class TypingStarted:
    conversation_id: str
    user_id: str
    expires_at_ms: int
    at_ms: int


@attrs.frozen
class TypingStopped:
    conversation_id: str
    user_id: str
    at_ms: int
    #: True when the indicator lapsed (no refresh within the typing TTL), False when the user
    #: stopped it. Real-time fan-out pushes only lapsed stops: the chat replica already fanned
    #: out the explicit stop it received. Not part of equality (same transition either way).
    lapsed: bool = attrs.field(default=False, eq=False)


Change: TypeAlias = UserOnline | UserOffline | TypingStarted | TypingStopped


def check_id(field: str, value: str) -> str:
    if not _ID.match(value):
        raise InvalidArgument(
            field, f"must be 1-{MAX_ID_LENGTH} characters without whitespace or control characters"
        )
    return value


def check_replica_id(field: str, value: str) -> str:
    check_id(field, value)
    if value.startswith("~"):
        raise InvalidArgument(field, "must not start with '~' (reserved)")
    return value
