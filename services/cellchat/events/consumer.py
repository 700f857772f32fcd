"""The consumer: reads a stream through a consumer group and hands each event to its handler.

Rules:
- At least once, idempotently. An entry is acknowledged (XACK) only after its handler succeeded
  and its event id was remembered (`ProcessedIds`), or after it was dead-lettered. An event whose
  id was already remembered is acknowledged without calling the handler (a duplicate). Handlers
  must still be idempotent and tolerate reordering: a crash between handling and remembering
  hands the event over again, and events reach the stream in no guaranteed order (each consumed
  type carries its own ordering key: a product's `version`, a block's `at_ms`).
- Entries left pending by a consumer that crashed (or by a handler that failed) are claimed by
  any consumer of the group once idle for `claim_idle_ms` (XAUTOCLAIM); `handler_timeout_s`
  must be well under it so an entry is not claimed while still being handled.
- One bad event never stops consumption. An entry without an `event` field, or whose event is
  not CloudEvents JSON (`malformed`), has a type with no handler (`unknown_type`), or data that
  does not fit the type's schema (`invalid`) goes to the dead-letter stream at once. A handler
  that raises (or times out) leaves the entry pending: it is retried on redelivery until it has
  been delivered `max_deliveries` times, then dead-lettered (`handler_failed`).
- Dead letters (`<stream>.dead` by default) are entries with the fields `reason`, `detail`,
  `stream`, `entry_id`, `group`, `consumer`, `deliveries`, `dead_at_ms`, `event_id` and
  `event_type` ("" when unknown), and a copy of every original field `f` as `original.f`.
  Dead-lettering is itself at least once: a crash between the XADD and the XACK repeats it.
- Failures of Redis (outage, restart) or of the `ProcessedIds` adapter never end the consumer:
  it backs off exponentially and retries, the entry staying pending. If the group vanished (a
  Redis restart without persistence), it creates it again from the start of the stream. At
  start-up the group is created (with MKSTREAM) at `start_id`: "$" (only events added from now
  on) by default.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

import attrs
import coredis
import coredis.exceptions
import trio

from cellchat.events import catalog
from cellchat.events.catalog import InvalidEventData, SchemaRegistry, UnknownEventType
from cellchat.events.dedupe import ProcessedIds
from cellchat.events.envelope import CloudEvent, MalformedEvent, decode
from cellchat.events.streams import EVENT_FIELD, REDIS_ERRORS

__all__ = ["DEAD_LETTER_FIELDS", "DEAD_LETTER_REASONS", "Consumer", "ConsumerStatistics",
           "Handler"]

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent], Awaitable[None]]

# A dead letter's own fields; the original entry's fields follow as `original.<name>`.
DEAD_LETTER_FIELDS = ("reason", "detail", "stream", "entry_id", "group", "consumer",
                      "deliveries", "dead_at_ms", "event_id", "event_type")
DEAD_LETTER_REASONS = ("malformed", "unknown_type", "invalid", "handler_failed")

_DETAIL_CHARS = 1000
_DEAD_LETTER_MAXLEN = 100_000


@attrs.frozen
class ConsumerStatistics:
    processed: int  # handler succeeded, entry acknowledged
    duplicates: int  # id already processed: acknowledged without calling the handler
    dead_lettered: int  # moved to the dead-letter stream, then acknowledged
    retries: int  # handler failures left pending for redelivery
    claimed: int  # entries taken over from idle consumers (crashed, or failed handlers)
    failures: int  # iterations that failed (Redis, ProcessedIds), each then backed off


@attrs.frozen
class _Entry:
    id: str
    fields: dict[str, str]


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _entries(raw: Any) -> tuple[_Entry, ...]:
    """Stream entries as text, whether or not the client decodes responses."""
    return tuple(
        _Entry(_text(entry.identifier),
               {_text(name): _text(value) for name, value in entry.field_values.items()})
        for entry in raw
    )


class _Retry(Exception):
    """The handler failed; the entry stays pending for redelivery."""


class _Duplicate(Exception):
    """The event id was processed before."""


class _Dead(Exception):
    def __init__(self, reason: str, detail: str, event: CloudEvent | None = None) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail
        self.event = event


class Consumer:
    def __init__(
        self,
        client: coredis.Redis[str],
        *,
        handlers: Mapping[str, Handler],
        processed: ProcessedIds,
        group: str,
        consumer: str,
        stream: str = catalog.MARKETPLACE_STREAM,
        dead_letter_stream: str | None = None,
        schemas: SchemaRegistry | None = None,
        start_id: str = "$",
        batch: int = 16,
        block_ms: int = 1000,
        claim_idle_ms: int = 60_000,
        max_deliveries: int = 5,
        handler_timeout_s: float = 10.0,
        redis_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
    ) -> None:
        if batch < 1 or block_ms < 1 or max_deliveries < 1:
            raise ValueError("batch, block_ms and max_deliveries must be positive")
        if handler_timeout_s * 1000 >= claim_idle_ms:
            raise ValueError("handler_timeout_s must be shorter than claim_idle_ms")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        schemas = schemas if schemas is not None else SchemaRegistry()
        missing = set(handlers) - schemas.types
        if missing:
            raise ValueError(f"no schema for handled types {sorted(missing)}")
        self._client = client
        self._handlers = dict(handlers)
        self._processed = processed
        self._schemas = schemas
        self.group = group
        self.name = consumer
        self.stream = stream
        self.dead_letter_stream = dead_letter_stream or catalog.dead_letter_stream(stream)
        self._start_id = start_id
        self._batch = batch
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._max_deliveries = max_deliveries
        self._handler_timeout_s = handler_timeout_s
        self._redis_timeout_s = redis_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._claim_cursor = "0-0"
        self._group_ready = False
        self._stats = dict.fromkeys(attrs.fields_dict(ConsumerStatistics), 0)

    def statistics(self) -> ConsumerStatistics:
        return ConsumerStatistics(**self._stats)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        """Consume until cancelled. Reports started at once; Redis may still be away then."""
        task_status.started()
        backoff = self._backoff_initial_s
        while True:
            try:
                await self.consume_once()
            except Exception as exc:  # Redis, or the ProcessedIds adapter: never fatal
                self._stats["failures"] += 1
                if _is_missing_group(exc):
                    # Redis lost the group (restart without persistence): whatever the
                    # stream holds now was added since, so read it all.
                    self._group_ready = False
                    self._start_id = "0"
                log.warning("consuming %s failed (%s); retrying in %.1fs", self.stream,
                            type(exc).__name__, backoff, exc_info=not isinstance(
                                exc, REDIS_ERRORS))
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max_s)
                continue
            backoff = self._backoff_initial_s

    async def consume_once(self) -> int:
        """Claim idle entries, else read new ones (blocking up to `block_ms`), and handle them.
        Returns how many entries were handed over; raises on Redis failures."""
        if not self._group_ready:
            await self._create_group()
        claimed = await self._claim()
        for entry in claimed:
            await self._consume(entry, await self._deliveries(entry.id))
        if claimed:
            return len(claimed)
        entries = await self._read_new()
        for entry in entries:
            await self._consume(entry, 1)
        return len(entries)

    async def _create_group(self) -> None:
        try:
            with trio.fail_after(self._redis_timeout_s):
                await self._client.xgroup_create(
                    self.stream, self.group, identifier=self._start_id, mkstream=True
                )
        except coredis.exceptions.StreamDuplicateConsumerGroupError:
            pass  # another consumer (or an earlier run) created it
        self._group_ready = True

    async def _claim(self) -> tuple[_Entry, ...]:
        with trio.fail_after(self._redis_timeout_s):
            answer: Any = await self._client.xautoclaim(
                self.stream, self.group, self.name, self._claim_idle_ms, self._claim_cursor,
                count=self._batch,
            )
        self._claim_cursor = _text(answer[0])
        entries = _entries(answer[1])
        if answer[2:] and answer[2]:
            log.warning("%d pending entries of %s were trimmed before anyone handled them",
                        len(answer[2]), self.stream)
        self._stats["claimed"] += len(entries)
        return entries

    async def _deliveries(self, entry_id: str) -> int:
        with trio.fail_after(self._redis_timeout_s):
            pending: Any = await self._client.xpending(
                self.stream, self.group, start=entry_id, end=entry_id, count=1
            )
        return int(pending[0].delivered) if pending else self._max_deliveries

    async def _read_new(self) -> tuple[_Entry, ...]:
        with trio.fail_after(self._redis_timeout_s + self._block_ms / 1000):
            answer = await self._client.xreadgroup(
                self.group, self.name, {self.stream: ">"}, count=self._batch,
                block=self._block_ms,
            )
        if not answer:
            return ()
        return tuple(entry for entries in answer.values() for entry in _entries(entries))

    async def _consume(self, entry: _Entry, deliveries: int) -> None:
        try:
            event = self._accept(entry.fields)
            await self._handle(event, deliveries)
        except _Dead as dead:
            await self._dead_letter(entry, deliveries, dead)
            await self._ack(entry.id)
            self._stats["dead_lettered"] += 1
            return
        except _Retry:
            self._stats["retries"] += 1
            return
        except _Duplicate:
            await self._ack(entry.id)
            self._stats["duplicates"] += 1
            return
        await self._ack(entry.id)
        self._stats["processed"] += 1

    def _accept(self, fields: Mapping[str, str]) -> CloudEvent:
        """The entry's event, checked; `_Dead` with the reason otherwise. Pure."""
        text = fields.get(EVENT_FIELD)
        if text is None:
            raise _Dead("malformed", f"no {EVENT_FIELD!r} field in the entry")
        try:
            event = decode(text)
        except MalformedEvent as exc:
            raise _Dead("malformed", exc.reason) from None
        if event.type not in self._handlers:
            raise _Dead("unknown_type", f"no handler for type {event.type!r}", event)
        try:
            self._schemas.validate(event)
        except (InvalidEventData, UnknownEventType) as exc:
            raise _Dead("invalid", str(exc), event) from None
        return event

    async def _handle(self, event: CloudEvent, deliveries: int) -> None:
        with trio.fail_after(self._redis_timeout_s):
            if await self._processed.seen(event.id):
                raise _Duplicate
        try:
            with trio.fail_after(self._handler_timeout_s):
                await self._handlers[event.type](event)
        except Exception as exc:  # a handler's failure is the event's, not the consumer's
            detail = f"{type(exc).__name__}: {exc}"
            if deliveries >= self._max_deliveries:
                raise _Dead("handler_failed", f"after {deliveries} deliveries: {detail}",
                            event) from None
            log.warning("handler for %s (%s) failed on delivery %d of %d: %s", event.id,
                        event.type, deliveries, self._max_deliveries, detail)
            raise _Retry from None
        with trio.fail_after(self._redis_timeout_s):
            await self._processed.remember(event.id)

    async def _dead_letter(self, entry: _Entry, deliveries: int, dead: _Dead) -> None:
        fields = {
            "reason": dead.reason,
            "detail": dead.detail[:_DETAIL_CHARS],
            "stream": self.stream,
            "entry_id": entry.id,
            "group": self.group,
            "consumer": self.name,
            "deliveries": str(deliveries),
            "dead_at_ms": str(time.time_ns() // 1_000_000),
            "event_id": dead.event.id if dead.event else "",
            "event_type": dead.event.type if dead.event else "",
        }
        for name, value in entry.fields.items():
            fields[f"original.{name}"] = value
        log.warning("dead-lettering entry %s of %s: %s (%s)", entry.id, self.stream,
                    dead.reason, fields["detail"][:200])
        with trio.fail_after(self._redis_timeout_s):
            await self._client.xadd(
                self.dead_letter_stream, fields,
                trim_strategy=coredis.PureToken.MAXLEN, threshold=_DEAD_LETTER_MAXLEN,
                trim_operator=coredis.PureToken.APPROXIMATELY,
            )

    async def _ack(self, entry_id: str) -> None:
        with trio.fail_after(self._redis_timeout_s):
            await self._client.xack(self.stream, self.group, [entry_id])


def _is_missing_group(exc: BaseException) -> bool:
    return isinstance(exc, coredis.exceptions.StreamConsumerGroupError) or (
        isinstance(exc, coredis.exceptions.ResponseError) and "NOGROUP" in str(exc)
    )
