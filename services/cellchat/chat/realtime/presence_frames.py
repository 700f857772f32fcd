"""Presence changes → WebSocket frames: the `ChangeSink` that tells clients who came online,
went away or offline, and whose typing indicator lapsed.

It runs wherever the presence service runs (inside `cellchat run` on the embedded default, in
the `cellchat presence` process otherwise) and publishes through the real-time broker, so the
frames reach the recipients' connections on every replica exactly like chat events do.

Rules:
- `UserOnline` / `UserOffline` become one `presence` frame (encoded once), addressed to the
  subject's **audience**: everyone who shares a conversation with them and is not in a blocked
  pair with them. That is the presence API's visibility rule (`ChatDirectory`: a viewer sees a
  user iff they share a conversation and neither blocked the other), computed from the
  subject's side, so a frame never tells anyone more than `GetOnlineStatus` would.
- `TypingStopped` becomes a `typing.stopped` frame to the conversation's other participants
  **only when the indicator lapsed** (the sweeper stopped it). Starts and explicit stops came
  in as WebSocket `typing` frames, which the receiving replica already fanned out itself:
  pushing them again would duplicate them.
- `publish` never waits: presence calls it inline, in the call or sweep that caused the change.
  Changes go to one of `lanes` bounded queues (by user, so one user's changes stay in order)
  whose workers compute audiences and publish. A full queue drops the change and counts it
  (`statistics().dropped`): at most once, like the rest of the fan-out; readers of the
  presence API still see the truth.

Cost of one presence change (store reads): 1 (`conversation_ids_of`) + 1 per conversation
(participants) + 2 per distinct peer (`is_blocked` looks both ways), at most `concurrency` at a
time. Users in more than `max_conversations` conversations are bounded to their
`max_conversations` most recently active ones (one more read: the inbox page); peers only in
older conversations get no push and see the change on their next `GetOnlineStatus`. A lapsed
typing indicator costs one read (the participants).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import attrs
import trio

from cellchat.chat.app.ports import ChatStore
from cellchat.chat.realtime.fanout import RealtimeEvents
from cellchat.presence.model import Change, TypingStopped, UserOffline, UserOnline

log = logging.getLogger(__name__)


class PresenceAudience:
    """Who may see a user's presence, from the user's side (the rule of `ChatDirectory`)."""

    def __init__(self, store: ChatStore, *, max_conversations: int = 100,
                 concurrency: int = 16) -> None:
        if max_conversations < 1 or concurrency < 1:
            raise ValueError("max_conversations and concurrency must be positive")
        self._store = store
        self.max_conversations = max_conversations
        self._limiter = trio.CapacityLimiter(concurrency)

    async def conversations_of(self, user_id: str) -> list[str]:
        ids = await self._store.conversation_ids_of(user_id)
        if len(ids) <= self.max_conversations:
            return sorted(ids)
        entries, _ = await self._store.list_inbox(user_id, limit=self.max_conversations)
        return [e.conversation.conversation_id for e in entries]

    async def of(self, user_id: str) -> frozenset[str]:
        """Everyone who shares a conversation with `user_id` and is not in a blocked pair with
        them (`user_id` excluded)."""
        peers: set[str] = set()

        async def participants(conversation_id: str) -> None:
            async with self._limiter:
                found = await self._store.get_participants(conversation_id)
            peers.update(p.user_id for p in found)

        async with trio.open_nursery() as nursery:
            for conversation_id in await self.conversations_of(user_id):
                nursery.start_soon(participants, conversation_id)
        peers.discard(user_id)
        blocked: set[str] = set()

        async def check(peer: str) -> None:
            async with self._limiter:
                if await self._store.is_blocked(user_id, peer):
                    blocked.add(peer)

        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(check, peer)
        return frozenset(peers - blocked)

    async def typing_recipients(self, conversation_id: str, user_id: str) -> list[str]:
        """The conversation's other participants (as WebSocket typing frames go)."""
        async with self._limiter:
            found = await self._store.get_participants(conversation_id)
        return [p.user_id for p in found if p.user_id != user_id]


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
