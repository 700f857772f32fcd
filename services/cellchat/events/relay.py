"""The relay: moves events from the outbox to the stream once their change exists.

Rules:
- At least once, never for a change that did not happen. Each pass reads the oldest pending
  intents and asks the `ChangeChecker` about each: True → publish; False → wait, and once the
  event is older than `grace_ms` drop it as never-happened (its writer died between recording
  the intent and making the change); None → wait, never drop. An intent is `done` only after the
  publisher returned, so a crash or a broker outage in between means a later re-publish (same
  id, dropped by consumers), never a loss.
- Order: events go out in the order they were recorded, except that an event waiting for its
  change holds back the later events with the same `subject` (a conversation, a user): a
  conversation's MessageSent events reach the stream in seq order unless one was dropped.
  Waiting intents keep their place in the `batch` oldest ones a pass looks at, so more than
  `batch` of them stall the relay until the grace period drops them or their changes land.
- A failing collaborator (outbox, publisher) never ends the relay: it logs, backs off
  exponentially (`backoff_initial_s` doubling up to `backoff_max_s`) and retries. A Redis outage
  therefore delays events and loses none; the outbox holds them meanwhile.
- It runs until cancelled, owned by a nursery (`await nursery.start(relay.run)`). It polls the
  outbox every `poll_interval_s` when idle; `wake()` makes it look at once (call it after a use
  case recorded an intent and made its change).
- Wall-clock time (`clock`, Unix ms) decides the grace period, because it is compared with the
  events' `time`, which another replica may have stamped: clocks are assumed NTP-close, which
  is seconds against a grace period of a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import NoReturn, Protocol

import attrs
import trio

from cellchat.events.envelope import CloudEvent
from cellchat.events.outbox import ChangeChecker, Check, Intent, Outbox
from cellchat.events.streams import PublishFailed

__all__ = ["PublishFailed", "Publisher", "Relay", "RelayStatistics"]

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def publish(self, events: Sequence[CloudEvent]) -> None:
        """Append the events in order, or raise `PublishFailed` (some may have gone out)."""
        ...


@attrs.frozen
class RelayStatistics:
    published: int  # events handed to the publisher successfully (re-publishes included)
    dropped: int  # intents whose change never happened
    waiting: int  # intents left waiting by the last pass
    failures: int  # passes that failed (outbox or publisher), each followed by a backoff
    check_failures: int  # checker calls that raised (treated as "cannot tell now")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Relay:
    def __init__(
        self,
        outbox: Outbox,
        checker: ChangeChecker,
        publisher: Publisher,
        *,
        batch: int = 100,
        grace_ms: int = 60_000,
        poll_interval_s: float = 1.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        clock: Callable[[], int] = _wall_ms,
    ) -> None:
        if batch < 1 or grace_ms < 0 or poll_interval_s <= 0:
            raise ValueError("batch and poll_interval_s must be positive, grace_ms not negative")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        self._outbox = outbox
        self._checker = checker
        self._publisher = publisher
        self._batch = batch
        self._grace_ms = grace_ms
        self._poll_interval_s = poll_interval_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._wakeup = trio.Event()
        self._published = 0
        self._dropped = 0
        self._waiting = 0
        self._failures = 0
        self._check_failures = 0

    def wake(self) -> None:
        """Look at the outbox now instead of at the next poll. Never blocks."""
        self._wakeup.set()

    def statistics(self) -> RelayStatistics:
        return RelayStatistics(
            published=self._published,
            dropped=self._dropped,
            waiting=self._waiting,
            failures=self._failures,
            check_failures=self._check_failures,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        task_status.started()
        backoff = self._backoff_initial_s
        while True:
            # A fresh event before looking, so a wake() during the pass is not lost.
            self._wakeup = trio.Event()
            try:
                settled = await self.relay_once()
            except Exception:  # any collaborator failure: the relay must outlive it
                self._failures += 1
                log.warning("event relay pass failed; retrying in %.1fs", backoff,
                            exc_info=True)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max_s)
                continue
            backoff = self._backoff_initial_s
            if settled == 0:
                with trio.move_on_after(self._poll_interval_s):
                    await self._wakeup.wait()

    async def relay_once(self) -> int:
        """One pass over the oldest pending intents; returns how many were settled (published or
        dropped). Raises what the outbox or the publisher raised."""
        intents = await self._outbox.pending(self._batch)
        ready: list[Intent] = []
        dropped: list[Intent] = []
        held: set[str] = set()
        waiting = 0
        for intent in intents:
            subject = intent.event.subject
            if subject is not None and subject in held:
                waiting += 1
                continue
            verdict = await self._exists(intent)
            if verdict is True:
                ready.append(intent)
            elif verdict is False and self._clock() - intent.recorded_at_ms >= self._grace_ms:
                dropped.append(intent)
            else:
                waiting += 1
                if subject is not None:
                    held.add(subject)
        self._waiting = waiting
        if ready:
            await self._publisher.publish([intent.event for intent in ready])
            self._published += len(ready)
            await self._outbox.done([intent.id for intent in ready])
        if dropped:
            for intent in dropped:
                log.warning("dropping event %s (%s): its change never happened",
                            intent.id, intent.event.type)
            await self._outbox.done([intent.id for intent in dropped])
            self._dropped += len(dropped)
        return len(ready) + len(dropped)

    async def _exists(self, intent: Intent) -> bool | None:
        if intent.check == Check.UNCONDITIONAL:
            return True
        try:
            return await self._checker.exists(intent)
        except Exception:
            self._check_failures += 1
            log.warning("checking the change of event %s failed; it waits", intent.id,
                        exc_info=True)
            return None
