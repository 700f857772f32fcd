"""Presence changes → WebSocket frames: the `ChangeSink` that tells clients who came online,
went away or offline, and whose typing indicator lapsed.

It runs wherever the presence service runs (inside `cellchat run` on the embedded default, in
the `cellchat presence` process otherwise) and publishes through the real-time broker, so the
frames reach the recipients' connections on every replica exactly like chat events do.

Rules:
- `UserOnline` / `UserOffline` become one `presence` frame (encoded once), addressed to the
  subject's **live audience**: everyone who shares a conversation of at most
  `live_group_limit` participants with them (direct conversations always count) and is not in
  a blocked pair with them. It is a subset of who the presence API shows the subject to
  (`ChatDirectory`: a shared conversation of any size, no block), so a frame never tells anyone
  more than `GetOnlineStatus` would. Members of larger groups learn presence on demand.
- `TypingStopped` becomes a `typing.stopped` frame to the conversation's other participants
  **only when the indicator lapsed** (the sweeper stopped it). Starts and explicit stops came
  in as WebSocket `typing` frames, which the receiving replica already fanned out itself:
  pushing them again would duplicate them.
- `publish` never waits: presence calls it inline, in the call or sweep that caused the change.
  Changes go to one of `lanes` bounded queues (by user, so one user's changes stay in order)
  whose workers compute audiences and publish. A full queue drops the change and counts it
  (`statistics().dropped`): at most once, like the rest of the fan-out; readers of the
  presence API still see the truth.

Cost of one presence change (store reads): 1 (`conversation_ids_of`) + 1 per conversation whose
participants are not cached (`ParticipantsCache`) + 2 per 100 distinct peers (`blocked_among`
looks both ways, batched), at most `concurrency` at a time. Users in more than
`max_conversations` conversations are bounded to their `max_conversations` most recently active
ones (one more read: the inbox page); peers only in older conversations get no push. A lapsed
typing indicator costs one read (the participants, never cached: it is one read per lapse).

Staleness: a participant list is reused for at most `cache_s` after it was read, on this
process only; blocks are never cached. So a frame may still reach someone removed from a
conversation up to `cache_s` ago (and miss someone added since), besides the time the change
waited in its lane. docs/presence.md states the bound.
"""

from __future__ import annotations

import logging
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

import attrs
import trio

from cellchat.chat.app.ports import ChatStore
from cellchat.chat.realtime.fanout import RealtimeEvents
from cellchat.presence.config import PresenceConfig
from cellchat.presence.model import Change, TypingStopped, UserOffline, UserOnline

log = logging.getLogger(__name__)


@attrs.frozen
class Members:
    """A conversation's participants as the audience needs them: everyone's id when there are
    at most `limit` of them, only the count otherwise (a large group pushes nothing)."""

    count: int
    user_ids: tuple[str, ...] | None


@attrs.frozen
class CacheStatistics:
    entries: int
    hits: int
    #: Store reads (a read shared by concurrent callers counts once).
    reads: int
    #: Callers that waited for a read another caller had started.
    shared: int


class ParticipantsCache:
    """Conversation → `Members`, reused for `ttl_s` after the read (trio's clock), at most
    `max_entries` conversations (the least recently read is forgotten first). Concurrent misses
    for one conversation share one read. `ttl_s == 0` reads every time."""

    def __init__(self, store: ChatStore, *, limit: int, ttl_s: float,
                 max_entries: int = 10_000, clock: Callable[[], float] = trio.current_time,
                 ) -> None:
        if limit < 2 or ttl_s < 0 or max_entries < 1:
            raise ValueError("limit must be at least 2, ttl_s at least 0, max_entries positive")
        self._store = store
        self.limit = limit
        self.ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Members]] = OrderedDict()
        self._reading: dict[str, trio.Event] = {}
        self._hits = 0
        self._reads = 0
        self._shared = 0

    async def members(self, conversation_id: str) -> Members:
        waited = False
        while True:
            if self.ttl_s:
                cached = self._entries.get(conversation_id)
                if cached is not None and self._clock() < cached[0]:
                    if not waited:
                        self._hits += 1
                    return cached[1]
            reading = self._reading.get(conversation_id)
            if reading is None or waited:
                return await self._read(conversation_id)
            # A read is under way: its answer is younger than any cached one we would accept.
            self._shared += 1
            waited = True
            await reading.wait()
            # Cached now, unless that read failed or was cancelled: then we read ourselves.

    async def _read(self, conversation_id: str) -> Members:
        done = trio.Event()
        if self.ttl_s:
            self._reading[conversation_id] = done
        try:
            read_at = self._clock()
            found = await self._store.get_participants(conversation_id)
            self._reads += 1
            ids = tuple(p.user_id for p in found)
            members = Members(len(ids), ids if len(ids) <= self.limit else None)
            if self.ttl_s:
                self._entries.pop(conversation_id, None)
                self._entries[conversation_id] = (read_at + self.ttl_s, members)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
            return members
        finally:
            if self._reading.get(conversation_id) is done:
                del self._reading[conversation_id]
            done.set()

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(len(self._entries), self._hits, self._reads, self._shared)


@attrs.frozen
class AudienceStatistics:
    computed: int
    #: Conversations left out of an audience for having more than `live_group_limit`
    #: participants (their members ask `GetOnlineStatus`).
    large_conversations: int
    participants: CacheStatistics


class PresenceAudience:
    """Who gets a user's presence frames, from the user's side (see the module doc)."""

    def __init__(self, store: ChatStore, *, max_conversations: int = 100,
                 live_group_limit: int = 100, cache_s: float = 1.0, concurrency: int = 16,
                 clock: Callable[[], float] = trio.current_time) -> None:
        if max_conversations < 1 or concurrency < 1:
            raise ValueError("max_conversations and concurrency must be positive")
        self._store = store
        self.max_conversations = max_conversations
        self.participants = ParticipantsCache(store, limit=live_group_limit, ttl_s=cache_s,
                                              clock=clock)
        self._limiter = trio.CapacityLimiter(concurrency)
        self._computed = 0
        self._large = 0

    @classmethod
    def from_config(cls, store: ChatStore, config: PresenceConfig) -> PresenceAudience:
        return cls(store, live_group_limit=config.live_group_limit,
                   cache_s=config.audience_cache_ms / 1000)

    async def conversations_of(self, user_id: str) -> list[str]:
        ids = await self._store.conversation_ids_of(user_id)
        if len(ids) <= self.max_conversations:
            return sorted(ids)
        entries, _ = await self._store.list_inbox(user_id, limit=self.max_conversations)
        return [e.conversation.conversation_id for e in entries]

    async def of(self, user_id: str) -> frozenset[str]:
        """Everyone who shares a conversation of at most `live_group_limit` participants with
        `user_id` and is not in a blocked pair with them (`user_id` excluded)."""
        peers: set[str] = set()

        async def participants(conversation_id: str) -> None:
            async with self._limiter:
                members = await self.participants.members(conversation_id)
            if members.user_ids is None:
                self._large += 1
            else:
                peers.update(members.user_ids)

        async with trio.open_nursery() as nursery:
            for conversation_id in await self.conversations_of(user_id):
                nursery.start_soon(participants, conversation_id)
        peers.discard(user_id)
        self._computed += 1
        if not peers:
            return frozenset()
        async with self._limiter:
            blocked = await self._store.blocked_among(user_id, peers)
        return frozenset(peers - blocked)

    async def typing_recipients(self, conversation_id: str, user_id: str) -> list[str]:
        """The conversation's other participants (as WebSocket typing frames go)."""
        async with self._limiter:
            found = await self._store.get_participants(conversation_id)
        return [p.user_id for p in found if p.user_id != user_id]

    def statistics(self) -> AudienceStatistics:
        return AudienceStatistics(self._computed, self._large, self.participants.statistics())


@attrs.frozen
class FramesStatistics:
    queued: int
    #: Changes turned into a published frame.
    presence_frames: int
    typing_frames: int
    #: Changes ignored on purpose (typing starts, explicit stops).
    skipped: int
    #: Changes dropped because their lane's queue was full.
    dropped: int
    #: Changes whose audience could not be computed (store errors); no frame was sent.
    failures: int


class PresenceFrames:
    """The real-time `ChangeSink`; `run` (in the owner's nursery) does the work."""

    def __init__(self, audience: PresenceAudience, events: RealtimeEvents, *, lanes: int = 4,
                 queue_size: int = 10_000) -> None:
        if lanes < 1 or queue_size < 1:
            raise ValueError("lanes and queue_size must be positive")
        self._audience = audience
        self._events = events
        channels = [trio.open_memory_channel[Change](queue_size) for _ in range(lanes)]
        self._send = [send for send, _ in channels]
        self._receive = [receive for _, receive in channels]
        self._presence_frames = 0
        self._typing_frames = 0
        self._skipped = 0
        self._dropped = 0
        self._failures = 0
        self._pending = 0  # queued or being handled
        self._idle = trio.Event()
        self._idle.set()

    async def publish(self, changes: Sequence[Change]) -> None:
        for change in changes:
            if (isinstance(change, TypingStopped) and change.lapsed) or isinstance(
                    change, UserOnline | UserOffline):
                lane = self._send[zlib.crc32(change.user_id.encode()) % len(self._send)]
                try:
                    lane.send_nowait(change)
                    self._pending += 1
                    if self._idle.is_set():
                        self._idle = trio.Event()
                except trio.WouldBlock:
                    self._dropped += 1
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    self._dropped += 1  # not running (any more)
            else:
                self._skipped += 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Work the lanes until cancelled."""
        async with trio.open_nursery() as nursery:
            for receive in self._receive:
                nursery.start_soon(self._work, receive)
            task_status.started()

    async def flushed(self) -> None:
        """Until every queued change has been handled (the caller bounds the wait)."""
        await self._idle.wait()

    async def _work(self, receive: trio.MemoryReceiveChannel[Change]) -> None:
        async for change in receive:
            try:
                await self._frame(change)
            except Exception as exc:
                self._failures += 1
                log.warning("presence frame not sent (%s)", type(exc).__name__,
                            extra={"user_id": change.user_id})
            finally:
                self._pending -= 1
                if not self._pending:
                    self._idle.set()

    async def _frame(self, change: Change) -> None:
        match change:
            case UserOnline(user_id=user_id, status=status, at_ms=at_ms):
                await self._events.publish_presence(
                    user_id, await self._audience.of(user_id), online=True,
                    status=status.value, last_seen_ms=at_ms)
                self._presence_frames += 1
            case UserOffline(user_id=user_id, last_seen_ms=last_seen_ms):
                await self._events.publish_presence(
                    user_id, await self._audience.of(user_id), online=False,
                    status="offline", last_seen_ms=last_seen_ms)
                self._presence_frames += 1
            case TypingStopped(conversation_id=conversation_id, user_id=user_id):
                recipients = await self._audience.typing_recipients(conversation_id, user_id)
                await self._events.publish_typing(conversation_id, user_id, recipients,
                                                  started=False, ttl_ms=0)
                self._typing_frames += 1

    def statistics(self) -> FramesStatistics:
        queued = sum(s.statistics().current_buffer_used for s in self._send)
        return FramesStatistics(queued, self._presence_frames, self._typing_frames,
                                self._skipped, self._dropped, self._failures)
