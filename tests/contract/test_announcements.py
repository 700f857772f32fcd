"""Events are recorded before their change and confirmed by the change: on every store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio

from cellchat.chat.app.announcements import Announcer, ChatChanges
from cellchat.chat.app.ports import ChatStore
from cellchat.chat.app.service import ChatApp, NewMessage
from cellchat.chat.domain.errors import StoreUnavailable
from cellchat.chat.domain.model import Message, MessageKind
from cellchat.events import catalog
from cellchat.events.catalog import SchemaRegistry
from cellchat.events.outbox import Intent


async def pending_by_type(outbox: Any) -> dict[str, list[Intent]]:
    found: dict[str, list[Intent]] = {}
    for intent in await outbox.pending(1000):
        found.setdefault(intent.event.type, []).append(intent)
    return found


async def test_use_cases_record_checkable_valid_events(store: ChatStore, store_outbox: Any,
                                                        uid: str) -> None:
    woken: list[int] = []
    announcer = Announcer(store_outbox, "eu-1", wake=lambda: woken.append(1))
    app = ChatApp(store, announcer=announcer)
    checker = ChatChanges(store)
    with trio.fail_after(60):
        view, _ = await app.create_direct(f"b-{uid}", f"s-{uid}")
        cid = view.conversation.conversation_id
        for n in range(3):
            await app.send_message(f"b-{uid}", NewMessage(cid, f"c{n}", MessageKind.TEXT, "hi"))
        await app.mark_read(f"s-{uid}", cid, 2)
        found = await pending_by_type(store_outbox)
        assert {t: len(v) for t, v in found.items()} == {
            catalog.CONVERSATION_CREATED: 1, catalog.MESSAGE_SENT: 3, catalog.MESSAGE_READ: 1}
        registry = SchemaRegistry()
        for intents in found.values():
            for intent in intents:
                registry.validate(intent.event)
                assert await checker.exists(intent) is True
                assert intent.event.source == "cellchat/eu-1"
        sent = sorted(found[catalog.MESSAGE_SENT], key=lambda i: i.event.data["seq"])
        assert [i.event.data["seq"] for i in sent] == [1, 2, 3]
        assert "text" not in sent[0].event.data  # no message bodies in events
        assert woken


async def test_a_lost_race_discards_its_intents(store: ChatStore, store_outbox: Any,
                                                uid: str) -> None:
    announcer = Announcer(store_outbox, "eu-1")
    app = ChatApp(store, announcer=announcer)
    checker = ChatChanges(store)
    with trio.fail_after(60):
        view, _ = await app.create_direct(f"b-{uid}", f"s-{uid}")
        cid = view.conversation.conversation_id
        # another replica takes seq 1 behind this one's back
        other = Message(cid, 1, str(uuid.uuid4()), f"s-{uid}", MessageKind.TEXT, "first",
                        None, "elsewhere", 1)
        real_last_seq = store.get_last_seq
        calls = 0

        async def stale_last_seq(conversation_id: str) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                assert await store.append_messages(cid, 0, [other], [f"b-{uid}", f"s-{uid}"])
                return 0
            return await real_last_seq(conversation_id)

        store.get_last_seq = stale_last_seq  # type: ignore[method-assign]
        try:
            stored = await app.send_message(f"b-{uid}",
                                            NewMessage(cid, "mine", MessageKind.TEXT, "hi"))
        finally:
            del store.get_last_seq  # type: ignore[attr-defined]
        assert stored.message.seq == 2
        sent = (await pending_by_type(store_outbox))[catalog.MESSAGE_SENT]
        assert [i.event.data["seq"] for i in sent] == [2]
        assert await checker.exists(sent[0]) is True


async def test_replicas_taking_turns_stay_dense_and_announce_each_seq_once(
    store: ChatStore, store_outbox: Any, uid: str
) -> None:
    """Two replicas (two apps, each its own sequencer and its remembered last seqs) send into
    one conversation in turns, then all at once: every remembered last seq goes stale and is
    caught by the conditional write; no seq is lost, doubled or announced for a loser."""
    buyer, seller = f"b-{uid}", f"s-{uid}"
    replicas = [ChatApp(store, announcer=Announcer(store_outbox, "eu-1")) for _ in range(2)]
    checker = ChatChanges(store)
    sent: list[tuple[int, str]] = []

    async def send(replica: ChatApp, who: str, client_id: str) -> None:
        stored = await replica.send_message(who, NewMessage(cid, client_id, MessageKind.TEXT,
                                                            "hi"))
        assert not stored.duplicate
        sent.append((stored.message.seq, stored.message.message_id))

    with trio.fail_after(120):
        view, _ = await replicas[0].create_direct(buyer, seller)
        cid = view.conversation.conversation_id
        for turn in range(8):  # A, B, A, B...: each send finds its replica's value stale
            who = buyer if turn % 2 == 0 else seller
            await send(replicas[turn % 2], who, f"turn-{turn}")
        async with trio.open_nursery() as nursery:
            for n in range(6):
                nursery.start_soon(send, replicas[n % 2], (buyer, seller)[n % 2], f"burst-{n}")
        # a retry through the other replica finds the original
        again = await replicas[1].send_message(buyer, NewMessage(cid, "turn-0",
                                                                 MessageKind.TEXT, "hi"))
        assert again.duplicate
        assert again.message.seq == 1
        assert sorted(seq for seq, _ in sent) == list(range(1, 15))
        history = await store.get_messages(cid, limit=100)
        assert [m.seq for m in history] == list(range(14, 0, -1))
        assert {m.message_id for m in history} == {mid for _, mid in sent}
        stats = [replica.sequencer.statistics() for replica in replicas]
        assert sum(s.cas_conflicts for s in stats) >= 6  # turns 2..7 each found theirs stale
        announced = (await pending_by_type(store_outbox))[catalog.MESSAGE_SENT]
        assert sorted(i.event.data["seq"] for i in announced) == list(range(1, 15))
        for intent in announced:
            assert await checker.exists(intent) is True


async def test_a_send_whose_intent_cannot_be_recorded_stores_nothing(
    store: ChatStore, store_outbox: Any, uid: str
) -> None:
    class BrokenOutbox:
        """The real outbox, except that recording fails (its database is away)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(store_outbox, name)

        async def record(self, intents: Any) -> None:
            raise StoreUnavailable("the outbox cannot be written")

    app = ChatApp(store, announcer=Announcer(store_outbox, "eu-1"))
    with trio.fail_after(60):
        view, _ = await app.create_direct(f"b-{uid}", f"s-{uid}")
        cid = view.conversation.conversation_id
        broken = ChatApp(store, announcer=Announcer(BrokenOutbox(), "eu-1"))
        with pytest.raises(StoreUnavailable):
            await broken.send_message(f"b-{uid}", NewMessage(cid, "c1", MessageKind.TEXT, "hi"))
        assert await store.get_last_seq(cid) == 0
        # the same client id goes through once the outbox is back
        stored = await app.send_message(f"b-{uid}", NewMessage(cid, "c1", MessageKind.TEXT,
                                                               "hi"))
        assert (stored.message.seq, stored.duplicate) == (1, False)
