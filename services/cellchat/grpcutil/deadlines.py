"""When a call must end: the client's deadline, capped by the server's own limit.

purerpc parses `grpc-timeout` into `RequestReceived.timeout` but never enforces it. Our server
(`grpcutil.server`) runs each whole call (reading the request, the handler, writing the
response) inside a trio cancel scope whose deadline is `call_deadline(...)`, and answers
DEADLINE_EXCEEDED when it passes. Handlers therefore need nothing: `trio.fail_after` and
`trio.current_effective_deadline()` inside them see the call's deadline, so a storage call
can size its own timeout from it.

The server's limits are a safety net against handlers that hang, not a substitute for client
deadlines: unary-response calls get one by default, streaming-response calls (watches,
subscriptions) none, since they are meant to last.
"""

from __future__ import annotations

import datetime
import math

import attrs

__all__ = ["CallLimits", "Deadline", "call_deadline"]


@attrs.frozen
class CallLimits:
    """Server-side limits on calls."""

    #: Longest time a call with a single response may take, client deadline or not.
    unary_s: float | None = 30.0
    #: Longest time a server-streaming or bidi call may take (None: as long as the client wants).
    streaming_s: float | None = None
    #: Calls in flight on the whole server; more are answered RESOURCE_EXHAUSTED.
    max_concurrent_calls: int = 10_000
    #: Largest message received or sent: a larger one received fails its call only
    #: (RESOURCE_EXHAUSTED). Also sizes the HTTP/2 window advertised per stream (twice this).
    max_message_bytes: int = 4 * 1024 * 1024

    def __attrs_post_init__(self) -> None:
        for name in ("unary_s", "streaming_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"CallLimits.{name} must be positive or None, not {value!r}")
        if self.max_concurrent_calls < 1 or self.max_message_bytes < 1:
            raise ValueError("CallLimits.max_concurrent_calls and max_message_bytes must be >= 1")


@attrs.frozen
class Deadline:
    #: On trio's clock; `math.inf` for none.
    at: float
    #: The status message sent when it passes.
    message: str


def call_deadline(
    now: float, client_timeout: datetime.timedelta | None, server_limit_s: float | None
) -> Deadline:
    """The earlier of the client's deadline (`grpc-timeout`) and the server's limit."""
    client_at = math.inf if client_timeout is None else now + client_timeout.total_seconds()
    server_at = math.inf if server_limit_s is None else now + server_limit_s
    if server_at < client_at:
        return Deadline(server_at, f"call exceeded the server's time limit of {server_limit_s:g} s")
    return Deadline(client_at, "deadline exceeded")
