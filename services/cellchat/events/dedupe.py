"""Which consumed events were already handled: the `ProcessedIds` port and its two adapters.

Rules:
- An id is remembered only *after* its handler succeeded, so a crash in between means the event
  is handled again on redelivery, never lost. That is why every handler must be idempotent as
  well: this port saves repeated work in the common case, the handlers make repeats harmless in
  the rare one (crash between handling and remembering, or an id that expired).
- Ids are remembered for `ttl_s` (7 days by default): longer than any redelivery (pending
  entries are claimed within seconds to minutes) and than a producer's retries.
- Keys: `cellchat:<cell>:seen:<event id>`. Event ids must therefore be unique across every
  producer on the consumed stream (docs/events.md asks for UUIDs).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Protocol

import coredis
import trio

__all__ = ["InMemoryProcessedIds", "ProcessedIds", "RedisProcessedIds", "seen_key"]

DEFAULT_TTL_S = 7 * 24 * 3600


class ProcessedIds(Protocol):
    async def seen(self, event_id: str) -> bool:
        """True if a handler already succeeded for this id (within the TTL)."""
        ...

    async def remember(self, event_id: str) -> None:
        """Record that a handler succeeded for this id."""
        ...


def seen_key(cell_id: str, event_id: str) -> str:
    return f"cellchat:{cell_id}:seen:{event_id}"


class RedisProcessedIds:
    """`SET <key> 1 NX EX <ttl>` after success, `EXISTS <key>` before handling.

    Redis errors propagate as coredis errors: the consumer treats them like any Redis failure
    (backs off and leaves the entry pending).
    """

    def __init__(self, client: coredis.Redis[str], *, cell_id: str,
                 ttl_s: int = DEFAULT_TTL_S) -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be positive")
        self._client = client
        self._cell_id = cell_id
        self._ttl_s = ttl_s

    async def seen(self, event_id: str) -> bool:
        return bool(await self._client.exists([seen_key(self._cell_id, event_id)]))

    async def remember(self, event_id: str) -> None:
        await self._client.set(
            seen_key(self._cell_id, event_id), "1", condition=coredis.PureToken.NX, ex=self._ttl_s
        )


class InMemoryProcessedIds:
    """One process's memory of handled ids (the embedded service, tests).

    Bounded: beyond `capacity` ids the oldest are forgotten first, as if their TTL had passed;
    handlers are idempotent, so forgetting costs a repeat, not a wrong result.
    """

    def __init__(self, *, ttl_s: int = DEFAULT_TTL_S, capacity: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s < 1 or capacity < 1:
            raise ValueError("ttl_s and capacity must be positive")
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._clock = clock
        self._expiry: collections.OrderedDict[str, float] = collections.OrderedDict()

    async def seen(self, event_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        expiry = self._expiry.get(event_id)
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._expiry[event_id]
            return False
        return True

    async def remember(self, event_id: str) -> None:
        await trio.lowlevel.checkpoint()
        if event_id in self._expiry and self._expiry[event_id] > self._clock():
            return  # NX: the first success's expiry stands
        self._expiry[event_id] = self._clock() + self._ttl_s
        self._expiry.move_to_end(event_id)
        while len(self._expiry) > self._capacity:
            self._expiry.popitem(last=False)

    def __len__(self) -> int:
        return len(self._expiry)
