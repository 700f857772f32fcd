"""Composing `ChangeSink`s: presence hands every committed change batch to one sink, and the
composition root decides what that sink fans out to.

    sinks = ChangeSinks(frames)          # real-time presence / typing.stopped frames
    sinks.add(events_sink)               # the marketplace event outbox (UserOnline/UserOffline)

Each sink is called in order with the same batch. A sink that raises is logged and counted
(`statistics().failures`) and the others are still called: one broken consumer never silences
another. Sinks must not block for long, since presence calls them inline (in the replica's
report, the API call or the sweep that caused the change): a sink with slow work queues it
(see `cellchat.chat.realtime.presence_frames.PresenceFrames`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import attrs

from cellchat.presence.model import Change
from cellchat.presence.ports import ChangeSink

log = logging.getLogger(__name__)


@attrs.frozen
class SinksStatistics:
    sinks: int
    batches: int
    #: Calls to a sink that raised (its batch was lost for that sink only).
    failures: int


class ChangeSinks:
    """A `ChangeSink` that forwards every batch to each of its sinks, isolating failures."""

    def __init__(self, sinks: Iterable[ChangeSink] = ()) -> None:
        self._sinks: list[ChangeSink] = list(sinks)
        self._batches = 0
        self._failures = 0

    def add(self, sink: ChangeSink) -> None:
        """One more sink, called after the ones already there (e.g. the event outbox)."""
        self._sinks.append(sink)

    @property
    def sinks(self) -> tuple[ChangeSink, ...]:
        return tuple(self._sinks)

    async def publish(self, changes: Sequence[Change]) -> None:
        self._batches += 1
        for sink in tuple(self._sinks):
            try:
                await sink.publish(changes)
            except Exception:
                self._failures += 1
                log.exception("presence change sink %s failed; %d change(s) lost for it",
                              type(sink).__name__, len(changes))

    def statistics(self) -> SinksStatistics:
        return SinksStatistics(len(self._sinks), self._batches, self._failures)
