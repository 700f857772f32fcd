"""The send sequencer on every store: what it remembers, and what a stuck or cancelled write
does to the senders queued behind it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
import trio

from cellchat.chat.app.ports import Appended, ChatStore
from cellchat.chat.app.sequencer import SendSequencer
from cellchat.chat.domain.errors import StoreTimeout
from cellchat.chat.domain.model import (
    Conversation,
    ConversationKind,
    Draft,
    Message,
    MessageKind,
    Participant,
    Role,
)

T0 = 1_700_000_000_000


class Gated:
    """The real store, except that `append_messages` can be held: before it runs (`hold`), or
    after it has stored the messages (`hold_after`: a write whose answer never comes)."""

    def __init__(self, store: ChatStore) -> None:
        self._store = store
        self.hold: trio.Event | None = None
        self.hold_after = False
        self.entered = trio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def append_messages(self, conversation_id: str, expected_last_seq: int,
                              messages: Sequence[Message], recipients: Sequence[str],
                              *, before: Callable[[], Awaitable[object]] | None = None
                              ) -> Appended:
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        outcome = await self._store.append_messages(conversation_id, expected_last_seq,
                                                    messages, recipients, before=before)
        if self.hold_after:
            await trio.sleep_forever()
        return outcome


async def conversation(store: ChatStore, uid: str) -> str:
    cid = str(uuid.uuid4())
    users = [f"alice-{uid}", f"bob-{uid}"]
    await store.create_conversation(
        Conversation(cid, ConversationKind.GROUP, users[0], T0, "t"),
        [Participant(u, Role.MEMBER, T0) for u in users],
    )
    return cid


def draft(cid: str, uid: str, client_id: str | None = None) -> Draft:
    return Draft(conversation_id=cid, message_id=str(uuid.uuid4()), sender_id=f"alice-{uid}",
                 kind=MessageKind.TEXT, text="hi", attachment=None,
                 client_message_id=client_id or uuid.uuid4().hex, created_at_ms=T0)


def recipients(uid: str) -> list[str]:
    return [f"alice-{uid}", f"bob-{uid}"]


async def test_a_remembered_seq_made_stale_elsewhere_costs_one_retry(store: ChatStore,
                                                                     uid: str) -> None:
    cid = await conversation(store, uid)
    sequencer = SendSequencer(store)
    with trio.fail_after(60):
        assert (await sequencer.submit(draft(cid, uid), recipients(uid))).message.seq == 1
        # another replica sends seq 2 behind this sequencer's back
        other = draft(cid, uid).at(2)
        assert (await store.append_messages(cid, 1, [other], recipients(uid))).applied
        stored = await sequencer.submit(draft(cid, uid), recipients(uid))
        assert stored.message.seq == 3
        assert (await sequencer.submit(draft(cid, uid), recipients(uid))).message.seq == 4
    stats = sequencer.statistics()
    assert stats.cas_conflicts == 1
    assert stats.last_seq_reads == 1  # the lost write said where the conversation was
    assert [m.seq for m in await store.get_messages(cid, limit=10)] == [4, 3, 2, 1]


async def test_a_write_without_an_answer_forgets_the_seq(store: ChatStore, uid: str) -> None:
    cid = await conversation(store, uid)
    gated = Gated(store)
    sequencer = SendSequencer(gated, write_timeout_s=0.5)
    with trio.fail_after(60):
        assert (await sequencer.submit(draft(cid, uid), recipients(uid))).message.seq == 1
        gated.hold_after = True  # stored, but the answer never comes
        with pytest.raises(StoreTimeout):
            await sequencer.submit(draft(cid, uid, "lost-answer"), recipients(uid))
        gated.hold_after = False
        # the retry finds its message; the next send reads where the conversation is
        again = await sequencer.submit(draft(cid, uid, "lost-answer"), recipients(uid))
        assert (again.duplicate, again.message.seq) == (True, 2)
        assert (await sequencer.submit(draft(cid, uid), recipients(uid))).message.seq == 3
    stats = sequencer.statistics()
    assert (stats.last_seq_reads, stats.cas_conflicts) == (2, 0)


async def test_a_cancelled_leader_still_writes_what_was_queued(store: ChatStore,
                                                               uid: str) -> None:
    cid = await conversation(store, uid)
    gated = Gated(store)
    gated.hold = trio.Event()
    sequencer = SendSequencer(gated)
    seqs: list[int] = []
    leader_scope = trio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await sequencer.submit(draft(cid, uid, "leader"), recipients(uid))
            pytest.fail("the leader was cancelled while it wrote")

    async def follower() -> None:
        seqs.append((await sequencer.submit(draft(cid, uid), recipients(uid))).message.seq)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leader)
            await gated.entered.wait()  # the leader's batch is being written
            nursery.start_soon(follower)
            await trio.testing.wait_all_tasks_blocked()
            assert sequencer.statistics().queued == 1
            leader_scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            gated.hold.set()
    assert leader_scope.cancelled_caught
    assert seqs == [2]  # written after the leader's batch, by the cancelled leader
    found = await store.find_by_client_ids(cid, f"alice-{uid}", ["leader"])
    assert found["leader"].seq == 1
    assert sequencer.statistics().active_conversations == 0
