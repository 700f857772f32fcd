"""Events on Redis Streams: how an event sits in a stream entry, and the relay's publisher.

Rules:
- One stream entry holds one event in the structured JSON format, in the field `event`
  (CloudEvents has no Redis binding; this is the structured mode of its other bindings). Nothing
  else in the entry is read, so producers may add fields of their own (a trace id, say).
- Streams are capped with `MAXLEN ~ <cap>` on every XADD: Redis trims whole nodes, so a stream
  holds at least `cap` entries and a little more. The cap bounds memory if no one consumes; size
  it for the longest consumer outage to ride out (100,000 by default).
- Every Redis call has a deadline; failures of any kind become `PublishFailed`, which the relay
  answers with backoff and a retry. A retry may repeat an XADD that had in fact succeeded: the
  event then appears twice with the same id, which consumers drop.
"""

from __future__ import annotations

from collections.abc import Sequence

import coredis
import coredis.exceptions
import trio

from cellchat.events import envelope
from cellchat.events.envelope import CloudEvent

__all__ = [
    "DEFAULT_MAXLEN",
    "EVENT_FIELD",
    "REDIS_ERRORS",
    "PublishFailed",
    "RedisStreamPublisher",
    "entry_fields",
]

EVENT_FIELD = "event"
DEFAULT_MAXLEN = 100_000

# What a Redis call can fail with when the server is away, slow or refuses the command.
REDIS_ERRORS = (coredis.exceptions.RedisError, OSError, TimeoutError, trio.TooSlowError)


class PublishFailed(Exception):
    """The events may or may not have reached the stream; publish them again later."""


def entry_fields(event: CloudEvent) -> dict[str, str]:
    """The stream entry carrying `event`."""
    return {EVENT_FIELD: envelope.encode(event)}


class RedisStreamPublisher:
    """Appends events to one stream, in order, one pipelined round trip per batch."""

    def __init__(self, client: coredis.Redis[str], stream: str, *, maxlen: int = DEFAULT_MAXLEN,
                 timeout_s: float = 5.0) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be positive")
        self._client = client
        self.stream = stream
        self._maxlen = maxlen
        self._timeout_s = timeout_s

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        if not events:
            return
        try:
            with trio.fail_after(self._timeout_s):
                async with self._client.pipeline(transaction=False) as pipe:
                    for event in events:
                        pipe.xadd(
                            self.stream,
                            entry_fields(event),
                            trim_strategy=coredis.PureToken.MAXLEN,
                            threshold=self._maxlen,
                            trim_operator=coredis.PureToken.APPROXIMATELY,
                        )
        except REDIS_ERRORS as exc:
            raise PublishFailed(f"XADD to {self.stream} failed: {type(exc).__name__}") from exc
