"""The chat's use cases. gRPC and WebSocket transports call these and nothing else.

Each method takes the authenticated caller's id first. Every access to a conversation starts
with the participant check, and a non-participant gets the same `NotFound` as for a
conversation that does not exist.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Sequence

import attrs

from cellchat.chat.app.announcements import Announcer
from cellchat.chat.app.ports import ChatStore, Clock, EventSink
from cellchat.chat.app.sequencer import SendSequencer, Stored
from cellchat.chat.domain import events, rules
from cellchat.chat.domain.content import Limits, validate_content
from cellchat.chat.domain.errors import (
    Blocked,
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    NotFound,
)
from cellchat.chat.domain.ids import direct_conversation_id, is_uuid, uuid7
from cellchat.chat.domain.model import (
    MUTED_FOREVER,
    Attachment,
    Context,
    Conversation,
    ConversationKind,
    DeliveryStatus,
    Draft,
    Horizons,
    InboxEntry,
    Membership,
    Message,
    MessageKind,
    OrderCard,
    Participant,
    ProductCard,
    Role,
)

_KIND_CACHE_SIZE = 100_000
#: Direct conversations whose pair is kept (about 300 bytes each).
_PAIR_CACHE_SIZE = 50_000
NO_CONTEXT = Context()
PRODUCT_FANOUT_LIMIT = 1000


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class NoEvents:
    async def publish(self, event: events.ChatEvent) -> None:
        return None


@attrs.frozen
class ConversationView:
    conversation: Conversation
    participants: tuple[Participant, ...]
    horizons: tuple[Horizons, ...]
    last_seq: int


@attrs.frozen
class MessagePage:
    messages: tuple[Message, ...]
    statuses: dict[int, DeliveryStatus]  # for the caller's own messages, by seq
    has_more: bool
    last_seq: int
    read_seq: int
    products: dict[str, ProductCard] = attrs.field(factory=dict)  # current data of cards shown


@attrs.frozen
class InboxPage:
    entries: tuple[InboxEntry, ...]
    participants: dict[str, tuple[Participant, ...]]
    next_cursor: str


@attrs.frozen
class NewMessage:
    """A send request as the transports decode it."""

    conversation_id: str
    client_message_id: str
    kind: MessageKind
    text: str = ""
    attachment: Attachment | None = None
    reply_to_seq: int = 0


class ChatApp:
    def __init__(
        self,
        store: ChatStore,
        *,
        events_sink: EventSink | None = None,
        clock: Clock | None = None,
        limits: Limits | None = None,
        sequencer: SendSequencer | None = None,
        announcer: Announcer | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or Limits()
        self._events: EventSink = events_sink or NoEvents()
        self._clock: Clock = clock or SystemClock()
        self._announcer = announcer
        self.sequencer = sequencer or SendSequencer(store, announcer=announcer)
        # Conversation kinds never change, so a small cache saves a read per send.
        self._kinds: OrderedDict[str, ConversationKind] = OrderedDict()
        # Nor does a direct conversation's pair (never added to, never left): once both are
        # stored, a send to it reads no roster. A group's roster is read every time.
        self._pairs: OrderedDict[str, tuple[Participant, ...]] = OrderedDict()

    def now_ms(self) -> int:
        return self._clock.now_ms()

    # ------------------------------------------------------------ helpers

    def _check_conversation_id(self, conversation_id: str) -> None:
        if not is_uuid(conversation_id):
            raise InvalidArgument("conversation_id", "not a conversation id")

    async def _participants_of(
        self, conversation_id: str, user_id: str
    ) -> tuple[list[Participant], Participant]:
        self._check_conversation_id(conversation_id)
        pair = self._pairs.get(conversation_id)
        if pair is not None:
            participants = list(pair)
        else:
            participants = await self.store.get_participants(conversation_id)
            if self._kinds.get(conversation_id) is ConversationKind.DIRECT:
                self._keep_pair(conversation_id, participants)
        me = rules.require_participant(participants, user_id)
        return participants, me

    def _keep_pair(self, conversation_id: str, participants: Sequence[Participant]) -> None:
        """Remember a direct conversation's pair; only a complete one (a creation still
        under way may show one participant)."""
        if len(participants) == 2 and conversation_id not in self._pairs:
            self._pairs[conversation_id] = tuple(participants)
            if len(self._pairs) > _PAIR_CACHE_SIZE:
                self._pairs.popitem(last=False)

    async def _conversation(self, conversation_id: str) -> Conversation:
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            raise NotFound("conversation not found")
        return conversation

    async def _kind(self, conversation_id: str) -> ConversationKind:
        kind = self._kinds.get(conversation_id)
        if kind is None:
            kind = (await self._conversation(conversation_id)).kind
            self._kinds[conversation_id] = kind
            if len(self._kinds) > _KIND_CACHE_SIZE:
                self._kinds.popitem(last=False)
        return kind

    async def _check_not_blocked(
        self, sender_id: str, conversation_id: str, participants: Sequence[Participant]
    ) -> None:
        if await self._kind(conversation_id) is not ConversationKind.DIRECT:
            return
        self._keep_pair(conversation_id, participants)
        for other in participants:
            if other.user_id != sender_id and await self.store.is_blocked(sender_id,
                                                                         other.user_id):
                raise Blocked("messaging between these users is blocked")

    def _check_seq(self, field: str, seq: int) -> None:
        if seq < 0:
            raise InvalidArgument(field, "must not be negative")
        if seq > self.limits.max_seq:
            raise InvalidArgument(field, f"must be at most {self.limits.max_seq}")

    # ------------------------------------------------------------ conversations

    async def create_direct(
        self,
        user_id: str,
        counterpart_id: str,
        *,
        counterpart_role: Role = Role.SELLER,
        context: Context = NO_CONTEXT,
    ) -> tuple[ConversationView, bool]:
        rules.validate_user_id("counterpart_id", counterpart_id, self.limits)
        if counterpart_id == user_id:
            raise InvalidArgument("counterpart_id", "cannot start a conversation with yourself")
        if counterpart_role not in (Role.BUYER, Role.SELLER):
            raise InvalidArgument("counterpart_role", "must be BUYER or SELLER")
        for field, value in (("context.product_id", context.product_id),
                             ("context.order_id", context.order_id)):
            if len(value) > self.limits.max_id_chars:
                raise InvalidArgument(field, f"longer than {self.limits.max_id_chars} characters")
        my_role = Role.BUYER if counterpart_role is Role.SELLER else Role.SELLER
        now = self._clock.now_ms()
        conversation = Conversation(
            conversation_id=direct_conversation_id(
                user_id, counterpart_id, context.product_id, context.order_id
            ),
            kind=ConversationKind.DIRECT,
            created_by=user_id,
            created_at_ms=now,
            context=context,
        )
        participants = [
            Participant(user_id, my_role, now),
            Participant(counterpart_id, counterpart_role, now),
        ]
        if self._announcer is not None:
            await self._announcer.conversation_created(conversation, participants)
        stored, created = await self.store.create_conversation(conversation, participants)
        view = await self._view(stored)
        if self._announcer is not None:
            self._announcer.wake()
        if created:
            await self._events.publish(events.ConversationCreated(stored, view.participants))
        return view, created

    async def create_group(
        self, user_id: str, title: str, member_ids: Sequence[str]
    ) -> ConversationView:
        members = rules.validate_group_members(user_id, member_ids, title, self.limits)
        now = self._clock.now_ms()
        conversation = Conversation(
            conversation_id=uuid7(now, os.urandom(10)),
            kind=ConversationKind.GROUP,
            created_by=user_id,
            created_at_ms=now,
            title=title.strip(),
        )
        participants = [Participant(user_id, Role.ADMIN, now)] + [
            Participant(member, Role.MEMBER, now) for member in members
        ]
        if self._announcer is not None:
            await self._announcer.conversation_created(conversation, participants)
        stored, _ = await self.store.create_conversation(conversation, participants)
        view = await self._view(stored)
        if self._announcer is not None:
            self._announcer.wake()
        await self._events.publish(events.ConversationCreated(stored, view.participants))
        return view

    async def add_participants(
        self, user_id: str, conversation_id: str, user_ids: Sequence[str]
    ) -> ConversationView:
        participants, me = await self._participants_of(conversation_id, user_id)
        conversation = await self._conversation(conversation_id)
        if conversation.kind is ConversationKind.DIRECT:
            raise FailedPrecondition("direct conversations have exactly two participants")
        rules.require_admin(me)
        present = {p.user_id for p in participants}
        new: list[str] = []
        for index, uid in enumerate(user_ids):
            rules.validate_user_id(f"user_ids[{index}]", uid, self.limits)
            if uid not in present and uid not in new:
                new.append(uid)
        if not user_ids:
            raise InvalidArgument("user_ids", "at least one user is required")
        if len(present) + len(new) > self.limits.max_group_participants:
            raise LimitExceeded(
                f"a group has at most {self.limits.max_group_participants} participants"
            )
        if new:
            now = self._clock.now_ms()
            await self.store.add_participants(
                conversation_id, [Participant(uid, Role.MEMBER, now) for uid in new]
            )
        view = await self._view(conversation)
        if new:
            await self._events.publish(
                events.ParticipantsChanged(conversation, view.participants, added=tuple(new))
            )
        return view

    async def remove_participant(
        self, user_id: str, conversation_id: str, target_id: str
    ) -> ConversationView:
        participants, me = await self._participants_of(conversation_id, user_id)
        conversation = await self._conversation(conversation_id)
        if conversation.kind is ConversationKind.DIRECT:
            raise FailedPrecondition("direct conversations have exactly two participants")
        if target_id != user_id:
            rules.require_admin(me)
        if target_id not in {p.user_id for p in participants}:
            raise NotFound("no such participant")
        await self.store.remove_participant(conversation_id, target_id)
        view = await self._view(conversation)
        await self._events.publish(
            events.ParticipantsChanged(
                conversation,
                view.participants,
                removed=(target_id,),
            )
        )
        return view

    async def get_conversation(self, user_id: str, conversation_id: str) -> ConversationView:
        await self._participants_of(conversation_id, user_id)
        return await self._view(await self._conversation(conversation_id))

    async def _view(self, conversation: Conversation) -> ConversationView:
        cid = conversation.conversation_id
        participants = await self.store.get_participants(cid)
        horizons = await self.store.get_horizons(cid)
        last_seq = await self.store.get_last_seq(cid)
        return ConversationView(conversation, tuple(participants), tuple(horizons), last_seq)

    async def get_user_conversations(
        self, user_id: str, *, page_size: int = 0, cursor: str = ""
    ) -> InboxPage:
        limit = rules.clamp_page_size("page_size", page_size, 20, self.limits)
        entries, next_cursor = await self.store.list_inbox(user_id, limit=limit, cursor=cursor)
        participants = {
            e.conversation.conversation_id: tuple(
                await self.store.get_participants(e.conversation.conversation_id)
            )
            for e in entries
        }
        return InboxPage(tuple(entries), participants, next_cursor)

    # ------------------------------------------------------------ messages

    async def send_message(self, user_id: str, request: NewMessage) -> Stored:
        cid = request.conversation_id
        client_id = request.client_message_id
        if not client_id or len(client_id) > self.limits.max_id_chars:
            raise InvalidArgument(
                "client_message_id", f"required, at most {self.limits.max_id_chars} characters"
            )
        validate_content(request.kind, request.text, request.attachment, self.limits, system=False)
        self._check_seq("reply_to_seq", request.reply_to_seq)
        participants, _ = await self._participants_of(cid, user_id)
        await self._check_not_blocked(user_id, cid, participants)
        return await self._send(user_id, request, participants)

    async def post_system_message(
        self, conversation_id: str, request: NewMessage
    ) -> Stored:
        """Messages written by the service itself (order cards): no participant check."""
        validate_content(request.kind, request.text, request.attachment, self.limits, system=True)
        participants = await self.store.get_participants(conversation_id)
        return await self._send(rules.SYSTEM_SENDER, request, participants)

    async def _send(
        self, sender_id: str, request: NewMessage, participants: Sequence[Participant]
    ) -> Stored:
        cid = request.conversation_id
        thread_root = 0
        if request.reply_to_seq:
            parent = await self.store.get_message(cid, request.reply_to_seq)
            if parent is None:
                raise InvalidArgument("reply_to_seq", "no such message in this conversation")
            thread_root = rules.thread_root_of(parent)
        now = self._clock.now_ms()
        draft = Draft(
            conversation_id=cid,
            message_id=uuid7(now, os.urandom(10)),
            sender_id=sender_id,
            kind=request.kind,
            text=request.text,
            attachment=request.attachment,
            client_message_id=request.client_message_id,
            created_at_ms=now,
            reply_to_seq=request.reply_to_seq,
            thread_root_seq=thread_root,
        )
        recipients = tuple(p.user_id for p in participants)
        stored = await self.sequencer.submit(draft, recipients)
        if not stored.duplicate:
            # The message is stored: recipients hear of it first, then the sender's own read
            # horizon moves past it (a write the delivery need not wait for).
            await self._events.publish(events.MessageCreated(stored.message, recipients))
            if sender_id != rules.SYSTEM_SENDER:
                await self.store.write_horizons(cid, sender_id, read_seq=stored.message.seq)
        return stored

    async def edit_message(
        self, user_id: str, conversation_id: str, seq: int, text: str
    ) -> Message:
        participants, _ = await self._participants_of(conversation_id, user_id)
        message = await self._message(conversation_id, seq)
        now = self._clock.now_ms()
        rules.validate_edit(message, user_id, text, now, self.limits)
        edited = attrs.evolve(message, text=text, edited_at_ms=now, version=message.version + 1)
        await self.store.update_message(edited)
        await self._events.publish(
            events.MessageEdited(edited, tuple(p.user_id for p in participants))
        )
        return edited

    async def delete_message(self, user_id: str, conversation_id: str, seq: int) -> Message:
        participants, me = await self._participants_of(conversation_id, user_id)
        message = await self._message(conversation_id, seq)
        rules.validate_delete(message, me)
        if message.deleted:
            return message
        tombstone = attrs.evolve(
            message,
            text="",
            attachment=None,
            deleted=True,
            edited_at_ms=self._clock.now_ms(),
            version=message.version + 1,
        )
        await self.store.update_message(tombstone)
        await self._events.publish(
            events.MessageDeleted(tombstone, tuple(p.user_id for p in participants))
        )
        return tombstone

    async def _message(self, conversation_id: str, seq: int) -> Message:
        if seq <= 0:
            raise InvalidArgument("seq", "must be positive")
        self._check_seq("seq", seq)
        message = await self.store.get_message(conversation_id, seq)
        if message is None:
            raise NotFound("message not found")
        return message

    async def get_messages(
        self,
        user_id: str,
        conversation_id: str,
        *,
        page_size: int = 0,
        before_seq: int = 0,
        after_seq: int = 0,
        thread_root_seq: int = 0,
    ) -> MessagePage:
        limit = rules.clamp_page_size("page_size", page_size, 50, self.limits)
        for field, value in (("before_seq", before_seq), ("after_seq", after_seq),
                             ("thread_root_seq", thread_root_seq)):
            self._check_seq(field, value)
        if before_seq and after_seq:
            raise InvalidArgument("after_seq", "give before_seq or after_seq, not both")
        await self._participants_of(conversation_id, user_id)
        if thread_root_seq:
            await self._message(conversation_id, thread_root_seq)
            if before_seq:
                raise InvalidArgument("before_seq", "threads page forwards with after_seq")
            found = await self.store.get_thread(
                conversation_id, thread_root_seq, after_seq=after_seq, limit=limit + 1
            )
        else:
            found = await self.store.get_messages(
                conversation_id, before_seq=before_seq, after_seq=after_seq, limit=limit + 1
            )
        has_more = len(found) > limit
        page = tuple(found[:limit])
        horizons = await self.store.get_horizons(conversation_id)
        statuses = {
            m.seq: rules.delivery_status(m, horizons) for m in page if m.sender_id == user_id
        }
        mine = next((h for h in horizons if h.user_id == user_id), Horizons(user_id))
        last_seq = await self.store.get_last_seq(conversation_id)
        product_ids = [m.attachment.product_id for m in page
                       if isinstance(m.attachment, ProductCard)]
        products = await self.store.get_products(product_ids) if product_ids else {}
        return MessagePage(page, statuses, has_more, last_seq, mine.read_seq, products)

    # ------------------------------------------------------------ horizons, mute

    async def mark_read(self, user_id: str, conversation_id: str, up_to_seq: int) -> Membership:
        return await self._advance(user_id, conversation_id, up_to_seq, read=True)

    async def mark_delivered(
        self, user_id: str, conversation_id: str, up_to_seq: int
    ) -> Membership:
        return await self._advance(user_id, conversation_id, up_to_seq, read=False)

    async def _advance(
        self, user_id: str, conversation_id: str, up_to_seq: int, *, read: bool
    ) -> Membership:
        self._check_seq("up_to_seq", up_to_seq)
        participants, _ = await self._participants_of(conversation_id, user_id)
        last_seq = await self.store.get_last_seq(conversation_id)
        target = last_seq if up_to_seq == 0 else min(up_to_seq, last_seq)
        if read:
            if self._announcer is not None and target > 0:
                await self._announcer.message_read(conversation_id, user_id, target,
                                                   self._clock.now_ms())
            membership = await self.store.advance_horizons(
                conversation_id, user_id, read_seq=target
            )
            if self._announcer is not None:
                self._announcer.wake()
        else:
            membership = await self.store.advance_horizons(
                conversation_id, user_id, delivered_seq=target
            )
        await self._events.publish(
            events.HorizonsAdvanced(
                conversation_id,
                user_id,
                membership.read_seq,
                membership.delivered_seq,
                tuple(p.user_id for p in participants),
            )
        )
        return membership

    async def unread_count(self, user_id: str, conversation_id: str) -> int:
        await self._participants_of(conversation_id, user_id)
        membership = await self.store.get_membership(conversation_id, user_id)
        last_seq = await self.store.get_last_seq(conversation_id)
        return rules.unread_count(last_seq, membership.read_seq if membership else 0)

    async def set_mute(
        self, user_id: str, conversation_id: str, *, muted: bool, until_ms: int = 0
    ) -> int:
        await self._participants_of(conversation_id, user_id)
        if until_ms < 0:
            raise InvalidArgument("until_ms", "must not be negative")
        if muted and until_ms and until_ms <= self._clock.now_ms():
            raise InvalidArgument("until_ms", "must be in the future")
        value = (until_ms or MUTED_FOREVER) if muted else 0
        await self.store.set_muted_until(conversation_id, user_id, value)
        return value

    # ------------------------------------------------------------ marketplace events

    async def link_order(
        self, order_id: str, buyer_id: str, seller_id: str, card: OrderCard
    ) -> Stored:
        """OrderCreated: the buyer-seller conversation about this order exists, with the order's
        card posted by the system. Replays find both (the card's client id is the order id)."""
        view, _ = await self.create_direct(
            buyer_id, seller_id, counterpart_role=Role.SELLER, context=Context(order_id=order_id)
        )
        return await self.post_system_message(
            view.conversation.conversation_id,
            NewMessage(
                conversation_id=view.conversation.conversation_id,
                client_message_id=f"order-created:{order_id}",
                kind=MessageKind.ORDER,
                attachment=card,
            ),
        )

    async def update_product(self, product: ProductCard, version: int) -> bool:
        """ProductUpdated: cards already sent show the product's current data from now on,
        and the participants of conversations showing it are told (newest cards first, up to
        `PRODUCT_FANOUT_LIMIT` conversations)."""
        validate_content(MessageKind.PRODUCT, "", product, self.limits, system=True)
        if not await self.store.upsert_product(product, version):
            return False  # a replay or an older version: nothing to tell anyone
        locations = await self.store.product_card_locations(
            product.product_id, limit=PRODUCT_FANOUT_LIMIT
        )
        conversation_ids = tuple(dict.fromkeys(cid for cid, _ in locations))
        recipients: dict[str, None] = {}
        for cid in conversation_ids:
            for participant in await self.store.get_participants(cid):
                recipients[participant.user_id] = None
        await self._events.publish(
            events.ProductCardsUpdated(product, version, conversation_ids, tuple(recipients))
        )
        return True

    async def set_block(
        self, blocker_id: str, blocked_id: str, *, blocked: bool, at_ms: int
    ) -> bool:
        """UserBlocked / UserUnblocked, ordered by the time the user decided (`at_ms`)."""
        rules.validate_user_id("blocker_id", blocker_id, self.limits)
        rules.validate_user_id("blocked_id", blocked_id, self.limits)
        changed = await self.store.set_block(blocker_id, blocked_id, blocked=blocked,
                                             at_ms=at_ms)
        if changed:
            await self._events.publish(
                events.BlockChanged(blocker_id, blocked_id, blocked, (blocker_id, blocked_id))
            )
        return changed

    async def is_blocked(self, user_a: str, user_b: str) -> bool:
        return await self.store.is_blocked(user_a, user_b)
