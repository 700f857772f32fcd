"""What every ChatStore promises (see cellchat.chat.app.ports), checked on every adapter."""

from __future__ import annotations

import uuid

import attrs
import pytest
import trio

from cellchat.chat.app.ports import ChatStore
from cellchat.chat.domain.errors import InvalidArgument
from cellchat.chat.domain.ids import direct_conversation_id
from cellchat.chat.domain.model import (
    Conversation,
    ConversationKind,
    Message,
    MessageKind,
    Money,
    Participant,
    ProductCard,
    Role,
)

T0 = 1_700_000_000_000


def conversation(cid: str | None = None, *, at: int = T0, kind: ConversationKind =
                 ConversationKind.GROUP) -> Conversation:
    return Conversation(
        conversation_id=cid or str(uuid.uuid4()), kind=kind, created_by="u",
        created_at_ms=at, title="t",
    )


def message(cid: str, seq: int, sender: str = "alice", *, at: int = T0, thread: int = 0,
            client_id: str | None = None, text: str | None = None) -> Message:
    return Message(
        conversation_id=cid, seq=seq, message_id=str(uuid.uuid4()), sender_id=sender,
        kind=MessageKind.TEXT, text=text or f"m{seq}", attachment=None,
        client_message_id=client_id or f"c{seq}-{uuid.uuid4().hex[:6]}",
        created_at_ms=at + seq, reply_to_seq=thread, thread_root_seq=thread,
    )


async def new_conversation(store: ChatStore, uid: str, *members: str, at: int = T0) -> str:
    conv = conversation(at=at)
    users = members or ("alice", "bob")
    await store.create_conversation(
        conv, [Participant(f"{u}-{uid}", Role.MEMBER, at) for u in users]
    )
    return conv.conversation_id


async def append_n(store: ChatStore, cid: str, n: int, sender: str, recipients: list[str],
                   *, at: int = T0) -> list[Message]:
    last = await store.get_last_seq(cid)
    batch = [message(cid, last + i + 1, sender, at=at) for i in range(n)]
    assert await store.append_messages(cid, last, batch, recipients)
    return batch


async def test_create_is_insert_if_absent(store: ChatStore, uid: str) -> None:
    cid = direct_conversation_id(f"a-{uid}", f"b-{uid}", "p1", "")
    first = conversation(cid, kind=ConversationKind.DIRECT)
    parts = [Participant(f"a-{uid}", Role.BUYER, T0), Participant(f"b-{uid}", Role.SELLER, T0)]
    stored, created = await store.create_conversation(first, parts)
    assert created
    assert stored == first
    again, created_again = await store.create_conversation(
        attrs.evolve(first, created_at_ms=T0 + 5), parts
    )
    assert not created_again
    assert again.created_at_ms == T0
    assert [p.user_id for p in await store.get_participants(cid)] == sorted(
        [f"a-{uid}", f"b-{uid}"]
    )


async def test_concurrent_creates_have_one_winner(store: ChatStore, uid: str) -> None:
    cid = str(uuid.uuid4())
    parts = [Participant(f"a-{uid}", Role.BUYER, T0), Participant(f"b-{uid}", Role.SELLER, T0)]
    outcomes: list[bool] = []

    async def create() -> None:
        _, created = await store.create_conversation(conversation(cid), parts)
        outcomes.append(created)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(create)
    assert sorted(outcomes) == [False, False, False, True]
    assert len(await store.get_participants(cid)) == 2


async def test_unknown_conversation(store: ChatStore) -> None:
    cid = str(uuid.uuid4())
    assert await store.get_conversation(cid) is None
    assert await store.get_participants(cid) == []
    assert await store.get_last_seq(cid) == 0
    assert await store.get_messages(cid, limit=10) == []


async def test_append_is_dense_and_conditional(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    who = [f"alice-{uid}", f"bob-{uid}"]
    first = await append_n(store, cid, 3, who[0], who)
    assert [m.seq for m in first] == [1, 2, 3]
    assert await store.get_last_seq(cid) == 3
    stale = [message(cid, 3, who[1])]
    assert not await store.append_messages(cid, 2, stale, who)
    assert (await store.get_message(cid, 3)) == first[2]
    # a batch that crosses bucket edges (the CQL store uses buckets of 4) lands whole
    more = await append_n(store, cid, 7, who[1], who)
    assert [m.seq for m in more] == list(range(4, 11))
    assert await store.get_last_seq(cid) == 10
    got = await store.get_messages(cid, after_seq=0, before_seq=0, limit=100)
    assert [m.seq for m in got] == list(range(10, 0, -1))


async def test_racing_appenders_never_share_a_seq(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    who = [f"alice-{uid}", f"bob-{uid}"]
    wins: list[Message] = []

    async def writer(name: str) -> None:
        for _ in range(6):
            while True:
                last = await store.get_last_seq(cid)
                m = message(cid, last + 1, name)
                if await store.append_messages(cid, last, [m], who):
                    wins.append(m)
                    break

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for name in who:
                nursery.start_soon(writer, name)
    stored = await store.get_messages(cid, limit=100)
    assert sorted(m.seq for m in stored) == list(range(1, 13))
    assert {m.message_id for m in stored} == {m.message_id for m in wins}


async def test_history_pages(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    who = [f"alice-{uid}", f"bob-{uid}"]
    await append_n(store, cid, 13, who[0], who)
    newest = await store.get_messages(cid, limit=5)
    assert [m.seq for m in newest] == [13, 12, 11, 10, 9]
    older = await store.get_messages(cid, before_seq=9, limit=5)
    assert [m.seq for m in older] == [8, 7, 6, 5, 4]
    oldest = await store.get_messages(cid, before_seq=4, limit=5)
    assert [m.seq for m in oldest] == [3, 2, 1]
    forward = await store.get_messages(cid, after_seq=6, limit=4)
    assert [m.seq for m in forward] == [7, 8, 9, 10]
    assert await store.get_messages(cid, after_seq=13, limit=4) == []


async def test_client_ids_find_the_original(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    who = [f"alice-{uid}", f"bob-{uid}"]
    sent = message(cid, 1, who[0], client_id="retry-me")
    assert await store.append_messages(cid, 0, [sent], who)
    found = await store.find_by_client_ids(cid, who[0], ["retry-me", "never-sent"])
    assert found == {"retry-me": sent}
    assert await store.find_by_client_ids(cid, who[1], ["retry-me"]) == {}


async def test_failed_append_leaves_no_client_id(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    who = [f"alice-{uid}", f"bob-{uid}"]
    await append_n(store, cid, 1, who[1], who)
    loser = message(cid, 1, who[0], client_id="lost-race")
    assert not await store.append_messages(cid, 0, [loser], who)
    assert await store.find_by_client_ids(cid, who[0], ["lost-race"]) == {}


async def test_threads_and_reply_counts(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    who = [f"alice-{uid}", f"bob-{uid}"]
    await append_n(store, cid, 2, who[0], who)
    replies = [message(cid, 3, who[1], thread=1), message(cid, 4, who[0]),
               message(cid, 5, who[1], thread=1)]
    assert await store.append_messages(cid, 2, replies, who)
    root = await store.get_message(cid, 1)
    assert root is not None
    assert root.reply_count == 2
    other = await store.get_message(cid, 2)
    assert other is not None
    assert other.reply_count == 0
    thread = await store.get_thread(cid, 1, limit=10)
    assert [m.seq for m in thread] == [3, 5]
    assert [m.seq for m in await store.get_thread(cid, 1, after_seq=3, limit=10)] == [5]
    page = await store.get_messages(cid, limit=10)
    assert {m.seq: m.reply_count for m in page}[1] == 2


async def test_update_rewrites_in_place(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    who = [f"alice-{uid}", f"bob-{uid}"]
    card = attrs.evolve(
        message(cid, 1, who[0]), kind=MessageKind.PRODUCT,
        attachment=ProductCard("p1", "Lamp", Money(1999, "EUR"), "https://x/l.png", True),
    )
    assert await store.append_messages(cid, 0, [card], who)
    assert await store.get_message(cid, 1) == card
    edited = attrs.evolve(card, text="edited", edited_at_ms=T0 + 99, version=2)
    await store.update_message(edited)
    assert await store.get_message(cid, 1) == edited
    tomb = attrs.evolve(edited, text="", attachment=None, deleted=True, version=3)
    await store.update_message(tomb)
    assert await store.get_message(cid, 1) == tomb
    assert await store.get_last_seq(cid) == 1


async def test_written_horizons_move_forward_in_both_copies(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    alice, bob = f"alice-{uid}", f"bob-{uid}"
    await append_n(store, cid, 6, alice, [alice, bob])

    async def both() -> tuple[tuple[int, int], tuple[int, int]]:
        horizons = {h.user_id: h for h in await store.get_horizons(cid)}
        membership = await store.get_membership(cid, bob)
        assert membership is not None
        return ((horizons[bob].read_seq, horizons[bob].delivered_seq),
                (membership.read_seq, membership.delivered_seq))

    await store.write_horizons(cid, bob, read_seq=3)  # reading implies delivery
    assert await both() == ((3, 3), (3, 3))
    await store.write_horizons(cid, bob, delivered_seq=5)
    assert await both() == ((3, 5), (3, 5))
    await store.write_horizons(cid, bob, read_seq=2)  # lower: changes nothing
    assert await both() == ((3, 5), (3, 5))
    await store.write_horizons(cid, bob, read_seq=4, delivered_seq=6)
    assert await both() == ((4, 6), (4, 6))
    await store.write_horizons(cid, bob, read_seq=6)
    assert await both() == ((6, 6), (6, 6))
    assert (await store.advance_horizons(cid, bob, read_seq=1)).read_seq == 6


async def test_a_lost_append_reports_what_it_found(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    who = [f"alice-{uid}", f"bob-{uid}"]
    await append_n(store, cid, 1, who[0], who)
    outcome = await store.append_messages(cid, 0, [message(cid, 1, who[1])], who)
    assert not outcome.applied
    assert outcome.last_seq in (None, 1)  # whatever it learned is exact
    if outcome.last_seq is not None:
        retry = await store.append_messages(cid, outcome.last_seq,
                                            [message(cid, outcome.last_seq + 1, who[1])], who)
        assert retry.applied
        assert await store.get_last_seq(cid) == 2


async def test_horizons_only_move_forward(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    alice, bob = f"alice-{uid}", f"bob-{uid}"
    await append_n(store, cid, 5, alice, [alice, bob])
    m = await store.advance_horizons(cid, bob, delivered_seq=4)
    assert (m.read_seq, m.delivered_seq) == (0, 4)
    m = await store.advance_horizons(cid, bob, read_seq=2)
    assert (m.read_seq, m.delivered_seq) == (2, 4)
    m = await store.advance_horizons(cid, bob, read_seq=1, delivered_seq=3)
    assert (m.read_seq, m.delivered_seq) == (2, 4)
    m = await store.advance_horizons(cid, bob, read_seq=5)
    assert (m.read_seq, m.delivered_seq) == (5, 5)
    horizons = {h.user_id: h for h in await store.get_horizons(cid)}
    assert horizons[bob].read_seq == 5
    assert horizons[alice].read_seq == 0
    membership = await store.get_membership(cid, bob)
    assert membership is not None
    assert membership.read_seq == 5


async def test_joining_late_starts_at_the_current_seq(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    alice, bob, carol = f"alice-{uid}", f"bob-{uid}", f"carol-{uid}"
    await append_n(store, cid, 3, alice, [alice, bob])
    await store.add_participants(cid, [Participant(carol, Role.MEMBER, T0 + 50)])
    membership = await store.get_membership(cid, carol)
    assert membership is not None
    assert membership.read_seq == 3
    entries, _ = await store.list_inbox(carol, limit=10)
    assert [e.conversation.conversation_id for e in entries] == [cid]
    await store.remove_participant(cid, carol)
    assert carol not in [p.user_id for p in await store.get_participants(cid)]
    assert await store.get_membership(cid, carol) is None
    entries, _ = await store.list_inbox(carol, limit=10)
    assert entries == []


async def test_the_roster_read_follows_every_change(store: ChatStore, uid: str) -> None:
    """Read before and after each change: an adapter that keeps rosters must never serve an
    old one, and what it hands out is the caller's to change."""
    cid = await new_conversation(store, uid)
    alice, bob, carol = f"alice-{uid}", f"bob-{uid}", f"carol-{uid}"

    async def roster() -> list[str]:
        return sorted(p.user_id for p in await store.get_participants(cid))

    assert await roster() == sorted([alice, bob])
    handed = await store.get_participants(cid)
    handed.clear()
    assert await roster() == sorted([alice, bob])
    await store.add_participants(cid, [Participant(carol, Role.MEMBER, T0 + 50)])
    assert await roster() == sorted([alice, bob, carol])
    await store.remove_participant(cid, bob)
    assert await roster() == sorted([alice, carol])
    await store.add_participants(cid, [Participant(bob, Role.MEMBER, T0 + 60)])
    assert await roster() == sorted([alice, bob, carol])


async def test_mute(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    bob = f"bob-{uid}"
    await store.set_muted_until(cid, bob, T0 + 1000)
    membership = await store.get_membership(cid, bob)
    assert membership is not None
    assert membership.muted_until_ms == T0 + 1000
    await store.set_muted_until(cid, bob, 0)
    membership = await store.get_membership(cid, bob)
    assert membership is not None
    assert membership.muted_until_ms == 0


async def test_inbox_orders_by_activity_and_pages(store: ChatStore, uid: str) -> None:
    alice, bob = f"alice-{uid}", f"bob-{uid}"
    cids = [await new_conversation(store, uid, at=T0 + i) for i in range(7)]
    # activity order after these sends: cids[2] (newest), cids[5], then by creation
    await append_n(store, cids[5], 2, bob, [alice, bob], at=T0 + 100)
    await append_n(store, cids[2], 3, bob, [alice, bob], at=T0 + 200)
    await store.advance_horizons(cids[2], alice, read_seq=1)
    expected = [cids[2], cids[5], cids[6], cids[4], cids[3], cids[1], cids[0]]
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        entries, cursor = await store.list_inbox(alice, limit=3, cursor=cursor)
        seen += [e.conversation.conversation_id for e in entries]
        pages += 1
        if not cursor:
            break
        assert pages < 10
    assert seen == expected
    first, _ = await store.list_inbox(alice, limit=2)
    top = first[0]
    assert top.last_seq == 3
    assert top.unread == 2
    assert top.last_message is not None
    assert top.last_message.seq == 3
    assert first[1].unread == 2
    assert first[1].last_activity_ms == T0 + 100 + 2


async def test_inbox_rejects_a_malformed_cursor(store: ChatStore, uid: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        await store.list_inbox(f"alice-{uid}", limit=3, cursor="not a cursor")
    assert info.value.field == "cursor"


async def test_products_keep_the_newest_version(store: ChatStore, uid: str) -> None:
    pid = f"lamp-{uid}"
    v2 = ProductCard(pid, "Lamp v2", Money(1500, "EUR"), "https://i/2.png", True)
    v1 = ProductCard(pid, "Lamp v1", Money(1999, "EUR"), "https://i/1.png", True)
    assert await store.get_products([pid]) == {}
    assert await store.upsert_product(v2, 2)
    assert not await store.upsert_product(v1, 1)  # late, older delivery
    assert not await store.upsert_product(v2, 2)  # replay
    assert await store.get_products([pid, "unknown"]) == {pid: v2}


async def test_product_cards_are_located(store: ChatStore, uid: str) -> None:
    cid = await new_conversation(store, uid)
    who = [f"alice-{uid}", f"bob-{uid}"]
    pid = f"lamp-{uid}"
    card = attrs.evolve(message(cid, 1, who[0]), kind=MessageKind.PRODUCT,
                        attachment=ProductCard(pid, "Lamp"))
    assert await store.append_messages(cid, 0, [card, message(cid, 2, who[1])], who)
    assert await store.product_card_locations(pid, limit=10) == [(cid, 1)]
    assert await store.product_card_locations("other", limit=10) == []


async def test_blocks_follow_the_latest_decision(store: ChatStore, uid: str) -> None:
    a, b = f"a-{uid}", f"b-{uid}"
    assert not await store.is_blocked(a, b)
    assert await store.set_block(a, b, blocked=True, at_ms=T0 + 10)
    assert await store.is_blocked(a, b)
    assert await store.is_blocked(b, a)
    assert not await store.set_block(a, b, blocked=False, at_ms=T0 + 5)  # older: ignored
    assert await store.is_blocked(b, a)
    assert await store.set_block(a, b, blocked=False, at_ms=T0 + 20)
    assert not await store.is_blocked(a, b)
    assert not await store.set_block(a, b, blocked=True, at_ms=T0 + 10)  # replayed block
    assert not await store.is_blocked(a, b)


async def test_blocks_among_many_peers_look_both_ways(store: ChatStore, uid: str) -> None:
    me = f"me-{uid}"
    peers = [f"p{i:03}-{uid}" for i in range(250)]  # more than one batch on every adapter
    assert await store.blocked_among(me, peers) == set()
    await store.set_block(me, peers[0], blocked=True, at_ms=T0)
    await store.set_block(peers[120], me, blocked=True, at_ms=T0)
    await store.set_block(peers[249], me, blocked=True, at_ms=T0)
    await store.set_block(peers[249], me, blocked=False, at_ms=T0 + 1)  # lifted
    await store.set_block(peers[7], peers[8], blocked=True, at_ms=T0)  # not involving me
    assert await store.blocked_among(me, [*peers, me, peers[0]]) == {peers[0], peers[120]}
    assert await store.blocked_among(me, []) == set()
    for peer in peers[:10] + peers[115:125] + peers[245:]:
        assert await store.is_blocked(me, peer) == (peer in {peers[0], peers[120]})


async def test_creating_again_leaves_horizons_alone(store: ChatStore, uid: str) -> None:
    conv = conversation()
    alice, bob = f"alice-{uid}", f"bob-{uid}"
    parts = [Participant(alice, Role.BUYER, T0), Participant(bob, Role.SELLER, T0)]
    await store.create_conversation(conv, parts)
    await append_n(store, conv.conversation_id, 3, alice, [alice, bob])
    await store.advance_horizons(conv.conversation_id, bob, read_seq=1)
    _, created = await store.create_conversation(conv, parts)
    assert not created
    membership = await store.get_membership(conv.conversation_id, bob)
    assert membership is not None
    assert membership.read_seq == 1
