"""Per-conversation send serialization with group commit.

Every message of a conversation gets its seq from one conditional write (see ports.ChatStore).
Conditional writes on one partition run one at a time in the database and colliding ones retry,
so letting every request race would turn a busy group chat into a contention storm. Instead,
inside one replica, sends to the same conversation queue up: the first sender becomes the
leader and writes everything queued (up to `max_batch`) in one conditional batch, then the next
batch, until the queue is empty. Writers on other replicas are fenced by the condition itself;
a lost race tries again at the last seq the failed write reported (or, if it reported none,
at one read from the store).

The last seq each conversation reached through this replica is remembered (bounded, least
recently used first out), so a steady stream of sends reads it only once. The conditional write
stays the only judge: a remembered value that another replica made stale costs one failed
write and a retry, never a duplicate or a gap. A value is remembered only after a write that
was applied, and forgotten when a write's outcome is unknown (a timeout), so it never leads.

Rules:
- The leader's writing is shielded from its own cancellation (bounded by `write_timeout_s`):
  the other senders are waiting on it, and a half-abandoned batch would leave them hanging.
- A waiter cancelled before its message was taken leaves the queue without a trace; one
  cancelled after may or may not have been stored — a retry with the same client id finds out.
- Retries are deduplicated before allocation: by the store's client-id records, and within a
  batch by (sender, client id).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import attrs
import trio

from cellchat.chat.app.announcements import Announcer
from cellchat.chat.app.ports import ChatStore
from cellchat.chat.domain.errors import ChatError, Contention, StoreTimeout
from cellchat.chat.domain.model import Draft, Message

#: Conversations whose last seq a sequencer remembers.
KNOWN_LAST_SEQS = 100_000


@attrs.define(eq=False)
class _Pending:
    draft: Draft
    recipients: Sequence[str]
    done: trio.Event = attrs.field(factory=trio.Event)
    message: Message | None = None
    duplicate: bool = False
    error: ChatError | None = None
    taken: bool = False


@attrs.define(eq=False)
class _Queue:
    pending: list[_Pending] = attrs.field(factory=list)
    busy: bool = False


@attrs.frozen
class SequencerStatistics:
    active_conversations: int
    queued: int
    batches_written: int
    cas_conflicts: int
    last_seq_reads: int  # allocations that had to read the last seq from the store


@attrs.frozen
class Stored:
    """What a send produced: the stored message, and whether it was a retry's original."""

    message: Message
    duplicate: bool


class SendSequencer:
    def __init__(
        self,
        store: ChatStore,
        *,
        max_batch: int = 32,
        max_attempts: int = 50,
        write_timeout_s: float = 10.0,
        announcer: Announcer | None = None,
    ) -> None:
        self._store = store
        self._announcer = announcer
        self._max_batch = max_batch
        self._max_attempts = max_attempts
        self._write_timeout_s = write_timeout_s
        self._queues: dict[str, _Queue] = {}
        self._batches = 0
        self._conflicts = 0
        self._reads = 0
        self._known: OrderedDict[str, int] = OrderedDict()  # conversation -> last seq

    def statistics(self) -> SequencerStatistics:
        return SequencerStatistics(
            active_conversations=len(self._queues),
            queued=sum(len(q.pending) for q in self._queues.values()),
            batches_written=self._batches,
            cas_conflicts=self._conflicts,
            last_seq_reads=self._reads,
        )

    async def submit(self, draft: Draft, recipients: Sequence[str]) -> Stored:
        conversation_id = draft.conversation_id
        queue = self._queues.setdefault(conversation_id, _Queue())
        item = _Pending(draft, recipients)
        queue.pending.append(item)
        if not queue.busy:
            queue.busy = True
            try:
                await self._drain(conversation_id, queue)  # shielded batch by batch
            finally:
                queue.busy = False
                if not queue.pending:
                    del self._queues[conversation_id]
        try:
            await item.done.wait()
        except trio.Cancelled:
            if not item.taken:
                queue.pending.remove(item)
            raise
        if item.error is not None:
            raise item.error
        assert item.message is not None
        return Stored(item.message, item.duplicate)

    async def _drain(self, conversation_id: str, queue: _Queue) -> None:
        while queue.pending:
            batch = queue.pending[: self._max_batch]
            del queue.pending[: self._max_batch]
            for item in batch:
                item.taken = True
            # Shielded from the leader's own cancellation, bounded by the write timeout; there
            # is no checkpoint between batches, so a cancelled leader still drains the queue.
            deadline = trio.current_time() + self._write_timeout_s
            with trio.CancelScope(shield=True, deadline=deadline) as scope:
                try:
                    await self._write(conversation_id, batch)
                except ChatError as exc:
                    for item in batch:
                        if not item.done.is_set():
                            item.error = exc
            if scope.cancelled_caught:
                timeout = StoreTimeout("the database did not store the message in time")
                for item in batch:
                    if not item.done.is_set():
                        item.error = timeout
            for item in batch:
                item.done.set()

    async def _write(self, conversation_id: str, batch: list[_Pending]) -> None:
        # Taken out while writing: if this write's outcome stays unknown, it stays out.
        known = self._known.pop(conversation_id, None)
        for attempt in range(self._max_attempts):
            fresh = await self._deduplicate(conversation_id, batch)
            if not fresh:
                if known is not None:
                    self._remember(conversation_id, known)
                return
            if known is None:
                self._reads += 1
                last_seq = await self._store.get_last_seq(conversation_id)
            else:
                last_seq, known = known, None
            messages = [item.draft.at(last_seq + i + 1) for i, item in enumerate(fresh)]
            recipients = sorted({r for item in fresh for r in item.recipients})
            intents: list[str] = []
            # The intents are recorded alongside the store's write-ahead records, before the
            # conditional write.
            announce = (None if self._announcer is None
                        else partial(self._announce, self._announcer, messages, recipients,
                                     intents))
            outcome = await self._store.append_messages(conversation_id, last_seq, messages,
                                                        recipients, before=announce)
            if outcome.applied:
                self._remember(conversation_id, messages[-1].seq)
                if self._announcer is not None:
                    self._announcer.wake()
                self._batches += 1
                for item, message in zip(fresh, messages, strict=True):
                    item.message = message
                self._resolve_in_batch_duplicates(batch)
                return
            known = outcome.last_seq
            self._conflicts += 1
            if intents and self._announcer is not None:
                # These seqs went to another writer: the intents can never come true.
                await self._announcer.discard(intents)
            # Another replica won the race; back off a little, jittered, before trying again.
            await trio.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))
        raise Contention("too many concurrent senders in this conversation; retry")

    @staticmethod
    async def _announce(announcer: Announcer, messages: Sequence[Message],
                        recipients: Sequence[str], intents: list[str]) -> None:
        intents.extend(await announcer.messages(messages, recipients))

    def _remember(self, conversation_id: str, last_seq: int) -> None:
        self._known[conversation_id] = last_seq
        self._known.move_to_end(conversation_id)
        if len(self._known) > KNOWN_LAST_SEQS:
            self._known.popitem(last=False)

    async def _deduplicate(self, conversation_id: str, batch: list[_Pending]) -> list[_Pending]:
        """Resolve retries of stored messages; return the items that still need a seq."""
        by_sender: dict[str, list[_Pending]] = {}
        for item in batch:
            if item.message is None:
                by_sender.setdefault(item.draft.sender_id, []).append(item)
        fresh: list[_Pending] = []
        for sender, items in by_sender.items():
            ids = sorted({item.draft.client_message_id for item in items})
            found = await self._store.find_by_client_ids(conversation_id, sender, ids)
            first_of: dict[str, _Pending] = {}
            for item in items:
                stored = found.get(item.draft.client_message_id)
                if stored is not None:
                    item.message, item.duplicate = stored, True
                elif item.draft.client_message_id in first_of:
                    continue  # resolved from its twin after the write
                else:
                    first_of[item.draft.client_message_id] = item
                    fresh.append(item)
        return fresh

    @staticmethod
    def _resolve_in_batch_duplicates(batch: list[_Pending]) -> None:
        originals = {
            (item.draft.sender_id, item.draft.client_message_id): item.message
            for item in batch
            if item.message is not None and not item.duplicate
        }
        for item in batch:
            if item.message is None:
                item.message = originals[(item.draft.sender_id, item.draft.client_message_id)]
                item.duplicate = True
