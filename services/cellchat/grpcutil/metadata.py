"""Request metadata for handlers: how a purerpc handler sees it, and the bearer token in it.

purerpc has no per-call context object. What it has: a handler method whose *second* parameter
is named exactly `request` is called with the call's `RequestReceived` event, which holds the
request headers (purerpc's `Service.add_method` checks the parameter's name; the generated
servicers use it unchanged)::

    class ChatServicer(chat_grpc.ChatServiceServicer):
        async def SendMessage(self, message: SendMessageRequest, request: CallInfo) -> ...:
            token = bearer_token(request.custom_metadata)

This works for every cardinality, with purerpc's own server and with ours. `CallInfo` below
types the part of `RequestReceived` we rely on. Header names arrive lower-cased (HTTP/2);
`-bin` headers arrive base64-decoded, as bytes.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeAlias

__all__ = ["CallInfo", "Metadata", "bearer_token"]

#: Custom metadata as purerpc delivers it: (lower-case name, value) pairs, names may repeat.
Metadata: TypeAlias = Sequence[tuple[str, "str | bytes"]]


class CallInfo(Protocol):
    """What a handler's `request` parameter offers (purerpc's `RequestReceived`)."""

    service_name: str
    method_name: str
    #: The client's deadline as sent in `grpc-timeout`, if any (the server enforces it).
    timeout: datetime.timedelta | None
    authority: str | None
    user_agent: str | None
    custom_metadata: Metadata


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The token of the one `authorization: Bearer <token>` header, if there is exactly one.

    Absent, empty, another scheme, or several `authorization` headers (ambiguous: which one did
    the proxy check?) all give None; verifying the token is the caller's job.
    """
    values = [value for name, value in metadata if name.lower() == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token
