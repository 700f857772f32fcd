"""The use cases end to end on every store: the rules a user of the chat relies on."""

from __future__ import annotations

import uuid

import attrs
import pytest
import trio

from cellchat.chat.app.ports import ChatStore
from cellchat.chat.app.service import ChatApp, NewMessage
from cellchat.chat.domain.content import Limits
from cellchat.chat.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PermissionDenied,
)
from cellchat.chat.domain.events import ChatEvent, MessageCreated
from cellchat.chat.domain.model import (
    MUTED_FOREVER,
    Context,
    DeliveryStatus,
    Image,
    MessageKind,
    Money,
    ProductCard,
    Role,
)


@attrs.define
class FakeClock:
    now: int = 1_700_000_000_000

    def now_ms(self) -> int:
        return self.now


@attrs.define
class Recorder:
    events: list[ChatEvent] = attrs.field(factory=list)

    async def publish(self, event: ChatEvent) -> None:
        self.events.append(event)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def app(store: ChatStore, clock: FakeClock, recorder: Recorder) -> ChatApp:
    return ChatApp(store, clock=clock, events_sink=recorder,
                   limits=Limits(max_group_participants=5))


def text(cid: str, body: str, client_id: str | None = None, reply_to: int = 0) -> NewMessage:
    return NewMessage(cid, client_id or uuid.uuid4().hex, MessageKind.TEXT, body,
                      reply_to_seq=reply_to)


async def test_direct_conversation_is_unique_per_pair_and_context(app: ChatApp, uid: str) -> None:
    buyer, seller = f"buyer-{uid}", f"seller-{uid}"
    view, created = await app.create_direct(buyer, seller, context=Context(product_id="p1"))
    assert created
    roles = {p.user_id: p.role for p in view.participants}
    assert roles == {buyer: Role.BUYER, seller: Role.SELLER}
    again, created_again = await app.create_direct(
        seller, buyer, counterpart_role=Role.BUYER, context=Context(product_id="p1")
    )
    assert not created_again
    assert again.conversation.conversation_id == view.conversation.conversation_id
    other, created_other = await app.create_direct(buyer, seller, context=Context(product_id="p2"))
    assert created_other
    assert other.conversation.conversation_id != view.conversation.conversation_id


async def test_concurrent_direct_creates_yield_one_conversation(app: ChatApp, uid: str) -> None:
    results: list[tuple[str, bool]] = []

    async def create(me: str, other: str) -> None:
        view, created = await app.create_direct(me, other)
        results.append((view.conversation.conversation_id, created))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(create, f"b-{uid}", f"s-{uid}")
                nursery.start_soon(create, f"s-{uid}", f"b-{uid}")
    assert len({cid for cid, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_group_rules(app: ChatApp, uid: str) -> None:
    admin = f"admin-{uid}"
    view = await app.create_group(admin, "Support", [f"m1-{uid}", f"m2-{uid}", f"m1-{uid}"])
    cid = view.conversation.conversation_id
    assert {p.user_id: p.role for p in view.participants} == {
        admin: Role.ADMIN, f"m1-{uid}": Role.MEMBER, f"m2-{uid}": Role.MEMBER}
    with pytest.raises(PermissionDenied):
        await app.add_participants(f"m1-{uid}", cid, [f"m3-{uid}"])
    await app.add_participants(admin, cid, [f"m3-{uid}", f"m4-{uid}"])
    with pytest.raises(LimitExceeded):
        await app.add_participants(admin, cid, [f"m5-{uid}"])
    with pytest.raises(PermissionDenied):
        await app.remove_participant(f"m1-{uid}", cid, f"m2-{uid}")
    await app.remove_participant(f"m1-{uid}", cid, f"m1-{uid}")  # leaving is always allowed
    with pytest.raises(NotFound):
        await app.get_conversation(f"m1-{uid}", cid)
    with pytest.raises(InvalidArgument) as info:
        await app.create_group(admin, "  ", [f"x-{uid}"])
    assert info.value.field == "title"


async def test_strangers_see_not_found(app: ChatApp, uid: str) -> None:
    view, _ = await app.create_direct(f"b-{uid}", f"s-{uid}")
    cid = view.conversation.conversation_id
    stranger = f"eve-{uid}"
    missing = str(uuid.uuid4())
    for target in (cid, missing):
        with pytest.raises(NotFound) as info:
            await app.get_messages(stranger, target)
        assert str(info.value) == "conversation not found"
        with pytest.raises(NotFound):
            await app.send_message(stranger, text(target, "hi"))
        with pytest.raises(NotFound):
            await app.mark_read(stranger, target, 0)
    assert await app.store.get_last_seq(cid) == 0


class RosterReads:
    """Passes everything to the store, counting the roster reads."""

    def __init__(self, store: ChatStore) -> None:
        self._store = store
        self.roster_reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def get_participants(self, conversation_id: str) -> object:
        self.roster_reads += 1
        return await self._store.get_participants(conversation_id)


async def test_a_direct_pair_is_read_once_and_still_guards(store: ChatStore, clock: FakeClock,
                                                           uid: str) -> None:
    from cellchat.chat.domain.errors import Blocked

    counting = RosterReads(store)
    app = ChatApp(counting, clock=clock)  # type: ignore[arg-type]
    buyer, seller, stranger = f"b-{uid}", f"s-{uid}", f"eve-{uid}"
    view, _ = await app.create_direct(buyer, seller)
    cid = view.conversation.conversation_id
    await app.send_message(buyer, text(cid, "first"))
    reads = counting.roster_reads
    for n in range(3):
        await app.send_message(seller if n % 2 else buyer, text(cid, f"reply {n}"))
    assert counting.roster_reads == reads  # the pair never changes: not read again
    with pytest.raises(NotFound):
        await app.send_message(stranger, text(cid, "let me in"))
    await app.set_block(seller, buyer, blocked=True, at_ms=100)
    with pytest.raises(Blocked):
        await app.send_message(buyer, text(cid, "still there?"))
    group = await app.create_group(buyer, "g", [seller])
    gid = group.conversation.conversation_id
    await app.send_message(buyer, text(gid, "one"))
    before = counting.roster_reads
    await app.send_message(buyer, text(gid, "two"))
    assert counting.roster_reads == before + 1  # a group's roster can change: read each time
    assert await store.get_last_seq(cid) == 4


async def test_send_is_idempotent_by_client_id(app: ChatApp, recorder: Recorder,
                                               uid: str) -> None:
    view, _ = await app.create_direct(f"b-{uid}", f"s-{uid}")
    cid = view.conversation.conversation_id
    first = await app.send_message(f"b-{uid}", text(cid, "hello", "client-1"))
    retry = await app.send_message(f"b-{uid}", text(cid, "hello", "client-1"))
    assert not first.duplicate
    assert retry.duplicate
    assert retry.message == first.message
    assert await app.store.get_last_seq(cid) == 1
    assert sum(isinstance(e, MessageCreated) for e in recorder.events) == 1
    # the same client id from the other participant is a different message
    theirs = await app.send_message(f"s-{uid}", text(cid, "hello", "client-1"))
    assert theirs.message.seq == 2


async def test_concurrent_retries_store_one_message(app: ChatApp, uid: str) -> None:
    view, _ = await app.create_direct(f"b-{uid}", f"s-{uid}")
    cid = view.conversation.conversation_id
    seqs: list[int] = []

    async def send() -> None:
        stored = await app.send_message(f"b-{uid}", text(cid, "once", "same-id"))
        seqs.append(stored.message.seq)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(send)
    assert seqs == [1] * 5
    assert await app.store.get_last_seq(cid) == 1


async def test_a_burst_of_senders_gets_dense_seqs(app: ChatApp, uid: str) -> None:
    admin = f"admin-{uid}"
    view = await app.create_group(admin, "Burst", [f"m{i}-{uid}" for i in range(4)])
    cid = view.conversation.conversation_id
    senders = [admin] + [f"m{i}-{uid}" for i in range(4)]
    got: list[int] = []

    async def sender(who: str) -> None:
        for n in range(8):
            stored = await app.send_message(who, text(cid, f"{who} {n}"))
            got.append(stored.message.seq)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for who in senders:
                nursery.start_soon(sender, who)
    assert sorted(got) == list(range(1, 41))
    page = await app.get_messages(admin, cid, page_size=100)
    assert [m.seq for m in page.messages] == list(range(40, 0, -1))


async def test_content_validation_writes_nothing(app: ChatApp, uid: str) -> None:
    view, _ = await app.create_direct(f"b-{uid}", f"s-{uid}")
    cid = view.conversation.conversation_id
    me = f"b-{uid}"
    bad = [
        (text(cid, "x" * 4001), "text"),
        (text(cid, "   "), "text"),
        (NewMessage(cid, "c1", MessageKind.IMAGE, "caption"), "image"),
        (NewMessage(cid, "c2", MessageKind.IMAGE, "",
                    Image("ftp://x", "image/png", 10, 1, 1)), "image.url"),
        (NewMessage(cid, "c3", MessageKind.IMAGE, "",
                    Image("https://x/a.png", "text/plain", 10, 1, 1)), "image.mime"),
        (NewMessage(cid, "c4", MessageKind.SYSTEM, "I am the system"), "kind"),
        (NewMessage(cid, "", MessageKind.TEXT, "hi"), "client_message_id"),
        (text(cid, "reply", reply_to=7), "reply_to_seq"),
        (text("not-a-uuid", "hi"), "conversation_id"),
    ]
    for request, field in bad:
        with pytest.raises(InvalidArgument) as info:
            await app.send_message(me, request)
        assert info.value.field == field, request
    assert await app.store.get_last_seq(cid) == 0


async def test_edit_rules(app: ChatApp, clock: FakeClock, uid: str) -> None:
    view, _ = await app.create_direct(f"b-{uid}", f"s-{uid}")
    cid = view.conversation.conversation_id
    sent = await app.send_message(f"b-{uid}", text(cid, "helo"))
    with pytest.raises(PermissionDenied):
        await app.edit_message(f"s-{uid}", cid, 1, "hacked")
    clock.now += 1000
    edited = await app.edit_message(f"b-{uid}", cid, 1, "hello")
    assert (edited.text, edited.version, edited.edited_at_ms) == ("hello", 2, clock.now)
    assert edited.message_id == sent.message.message_id
    clock.now += app.limits.edit_window_ms
    with pytest.raises(FailedPrecondition):
        await app.edit_message(f"b-{uid}", cid, 1, "too late")
    with pytest.raises(NotFound):
        await app.edit_message(f"b-{uid}", cid, 99, "nothing there")
    stored = await app.store.get_message(cid, 1)
    assert stored is not None
    assert stored.text == "hello"


async def test_delete_keeps_the_sequence_dense(app: ChatApp, uid: str) -> None:
    admin, member = f"admin-{uid}", f"m-{uid}"
    view = await app.create_group(admin, "G", [member, f"o-{uid}"])
    cid = view.conversation.conversation_id
    for n in range(3):
        await app.send_message(member, text(cid, f"m{n}"))
    with pytest.raises(PermissionDenied):
        await app.delete_message(f"o-{uid}", cid, 2)
    tomb = await app.delete_message(admin, cid, 2)
    assert tomb.deleted
    assert tomb.text == ""
    assert tomb.seq == 2
    own = await app.delete_message(member, cid, 3)
    assert own.deleted
    page = await app.get_messages(member, cid)
    assert [(m.seq, m.deleted) for m in page.messages] == [(3, True), (2, True), (1, False)]
    with pytest.raises(FailedPrecondition):
        await app.edit_message(member, cid, 3, "revive")


async def test_statuses_and_unread_counts(app: ChatApp, uid: str) -> None:
    buyer, seller = f"b-{uid}", f"s-{uid}"
    view, _ = await app.create_direct(buyer, seller)
    cid = view.conversation.conversation_id
    for n in range(4):
        await app.send_message(buyer, text(cid, f"m{n}"))
    assert await app.unread_count(buyer, cid) == 0  # own sends count as read
    assert await app.unread_count(seller, cid) == 4
    await app.mark_delivered(seller, cid, 3)
    await app.mark_read(seller, cid, 2)
    page = await app.get_messages(buyer, cid)
    assert page.statuses == {1: DeliveryStatus.READ, 2: DeliveryStatus.READ,
                             3: DeliveryStatus.DELIVERED, 4: DeliveryStatus.SENT}
    assert (await app.get_messages(seller, cid)).statuses == {}
    assert await app.unread_count(seller, cid) == 2
    membership = await app.mark_read(seller, cid, 1)  # never backwards
    assert membership.read_seq == 2
    membership = await app.mark_read(seller, cid, 999)  # capped at what exists
    assert membership.read_seq == 4
    assert await app.unread_count(seller, cid) == 0
    await app.send_message(seller, text(cid, "reply"))
    assert await app.unread_count(buyer, cid) == 1


async def test_threads(app: ChatApp, uid: str) -> None:
    view, _ = await app.create_direct(f"b-{uid}", f"s-{uid}")
    cid = view.conversation.conversation_id
    await app.send_message(f"b-{uid}", text(cid, "root"))
    await app.send_message(f"s-{uid}", text(cid, "reply 1", reply_to=1))
    await app.send_message(f"b-{uid}", text(cid, "unrelated"))
    nested = await app.send_message(f"b-{uid}", text(cid, "reply to reply", reply_to=2))
    assert nested.message.thread_root_seq == 1
    assert nested.message.reply_to_seq == 2
    thread = await app.get_messages(f"b-{uid}", cid, thread_root_seq=1)
    assert [m.seq for m in thread.messages] == [2, 4]
    root = (await app.get_messages(f"b-{uid}", cid, after_seq=0, page_size=1)).messages[0]
    assert root.seq == 4
    history = await app.get_messages(f"b-{uid}", cid)
    assert {m.seq: m.reply_count for m in history.messages}[1] == 2


async def test_history_paging_validation(app: ChatApp, uid: str) -> None:
    view, _ = await app.create_direct(f"b-{uid}", f"s-{uid}")
    cid = view.conversation.conversation_id
    for n in range(5):
        await app.send_message(f"b-{uid}", text(cid, f"m{n}"))
    page = await app.get_messages(f"b-{uid}", cid, page_size=2)
    assert [m.seq for m in page.messages] == [5, 4]
    assert page.has_more
    page = await app.get_messages(f"b-{uid}", cid, page_size=2, before_seq=2)
    assert [m.seq for m in page.messages] == [1]
    assert not page.has_more
    for kwargs, field in (({"page_size": 101}, "page_size"), ({"page_size": -1}, "page_size"),
                          ({"before_seq": -3}, "before_seq"),
                          ({"before_seq": 3, "after_seq": 1}, "after_seq")):
        with pytest.raises(InvalidArgument) as info:
            await app.get_messages(f"b-{uid}", cid, **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field


async def test_inbox_shows_previews_unread_and_mute(app: ChatApp, clock: FakeClock,
                                                     uid: str) -> None:
    me = f"me-{uid}"
    cids = []
    for n in range(3):
        clock.now += 10
        view, _ = await app.create_direct(me, f"seller{n}-{uid}")
        cids.append(view.conversation.conversation_id)
    clock.now += 10
    await app.send_message(f"seller0-{uid}", text(cids[0], "is it available?"))
    await app.set_mute(me, cids[1], muted=True)
    page = await app.get_user_conversations(me, page_size=2)
    assert [e.conversation.conversation_id for e in page.entries] == [cids[0], cids[2]]
    top = page.entries[0]
    assert top.unread == 1
    assert top.last_message is not None
    assert top.last_message.text == "is it available?"
    assert page.participants[cids[0]][0].user_id in (me, f"seller0-{uid}")
    rest = await app.get_user_conversations(me, page_size=2, cursor=page.next_cursor)
    assert [e.conversation.conversation_id for e in rest.entries] == [cids[1]]
    assert rest.entries[0].membership.muted_until_ms == MUTED_FOREVER
    assert rest.next_cursor == ""
    await app.set_mute(me, cids[1], muted=False)
    with pytest.raises(InvalidArgument):
        await app.get_user_conversations(me, page_size=500)


async def test_blocked_pairs_cannot_message(app: ChatApp, recorder: Recorder,
                                            uid: str) -> None:
    from cellchat.chat.domain.errors import Blocked
    from cellchat.chat.domain.events import BlockChanged

    buyer, seller = f"b-{uid}", f"s-{uid}"
    view, _ = await app.create_direct(buyer, seller)
    cid = view.conversation.conversation_id
    await app.send_message(buyer, text(cid, "hi"))
    assert await app.set_block(seller, buyer, blocked=True, at_ms=100)
    assert [e for e in recorder.events if isinstance(e, BlockChanged)] == [
        BlockChanged(seller, buyer, True, (seller, buyer))]
    for who in (buyer, seller):
        with pytest.raises(Blocked):
            await app.send_message(who, text(cid, "still there?"))
    history = await app.get_messages(buyer, cid)  # the conversation stays readable
    assert [m.seq for m in history.messages] == [1]
    # replayed, out of order: the unblock at 200 wins over the block at 100 whatever the order
    assert await app.set_block(seller, buyer, blocked=False, at_ms=200)
    assert not await app.set_block(seller, buyer, blocked=True, at_ms=100)
    stored = await app.send_message(buyer, text(cid, "thanks"))
    assert stored.message.seq == 2


async def test_order_created_links_a_conversation_once(app: ChatApp, uid: str) -> None:
    from cellchat.chat.domain.model import OrderCard

    buyer, seller = f"b-{uid}", f"s-{uid}"
    card = OrderCard(f"o-{uid}", "paid", Money(4200, "EUR"), 2)
    first = await app.link_order(f"o-{uid}", buyer, seller, card)
    again = await app.link_order(f"o-{uid}", buyer, seller, card)
    assert again.duplicate
    assert again.message == first.message
    assert first.message.sender_id == "system"
    assert first.message.attachment == card
    view = await app.get_conversation(seller, first.message.conversation_id)
    assert view.conversation.context.order_id == f"o-{uid}"
    assert {p.user_id: p.role for p in view.participants} == {buyer: Role.BUYER,
                                                             seller: Role.SELLER}
    assert await app.unread_count(buyer, first.message.conversation_id) == 1


async def test_product_updates_reach_cards_already_sent(app: ChatApp, recorder: Recorder,
                                                        uid: str) -> None:
    from cellchat.chat.domain.events import ProductCardsUpdated

    buyer, seller = f"b-{uid}", f"s-{uid}"
    view, _ = await app.create_direct(buyer, seller)
    cid = view.conversation.conversation_id
    pid = f"lamp-{uid}"
    shown = ProductCard(pid, "Lamp", Money(1999, "EUR"), "https://i/l.png", True)
    await app.send_message(seller, NewMessage(cid, "card", MessageKind.PRODUCT, "",
                                              attachment=shown))
    page = await app.get_messages(buyer, cid)
    assert page.products == {}
    now = attrs.evolve(shown, price=Money(1499, "EUR"), available=False)
    assert await app.update_product(now, version=7)
    assert not await app.update_product(shown, version=3)  # stale delivery
    page = await app.get_messages(buyer, cid)
    assert page.messages[0].attachment == shown  # what was shown when sent...
    assert page.products == {pid: now}           # ...next to what it is now
    updates = [e for e in recorder.events if isinstance(e, ProductCardsUpdated)]
    assert len(updates) == 1
    assert updates[0].conversation_ids == (cid,)
    assert set(updates[0].recipients) == {buyer, seller}


async def test_presence_visibility_follows_conversations_and_blocks(app: ChatApp,
                                                                    uid: str) -> None:
    from cellchat.chat.app.directory import ChatDirectory

    a, b, c = f"a-{uid}", f"b-{uid}", f"c-{uid}"
    view, _ = await app.create_direct(a, b)
    directory = ChatDirectory(app.store)
    assert await app.store.conversation_ids_of(a) == {view.conversation.conversation_id}
    assert await directory.sharing_a_conversation(a, [a, b, c]) == frozenset({a, b})
    assert await directory.is_participant(b, view.conversation.conversation_id)
    assert not await directory.is_participant(c, view.conversation.conversation_id)
    assert not await directory.is_participant(c, "not-an-id")
    await app.set_block(b, a, blocked=True, at_ms=1)
    assert await directory.sharing_a_conversation(a, [b]) == frozenset()


async def test_absurd_positions_are_invalid_arguments(app: ChatApp, uid: str) -> None:
    view, _ = await app.create_direct(f"b-{uid}", f"s-{uid}")
    cid = view.conversation.conversation_id
    huge = 2**70
    attempts = [
        app.edit_message(f"b-{uid}", cid, huge, "x"),
        app.delete_message(f"b-{uid}", cid, 2**63 - 1),
        app.send_message(f"b-{uid}", text(cid, "x", reply_to=huge)),
        app.get_messages(f"b-{uid}", cid, before_seq=huge),
        app.get_messages(f"b-{uid}", cid, thread_root_seq=huge),
        app.mark_read(f"b-{uid}", cid, huge),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidArgument):
            await attempt
