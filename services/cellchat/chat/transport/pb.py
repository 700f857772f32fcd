"""Protobuf ↔ domain conversion for the chat API (cellchat.chat.v1). No logic beyond mapping:
enum values, the attachment oneof, and the views the use cases return."""

from __future__ import annotations

from cellchat.api.chat.v1 import chat_pb2 as pb
from cellchat.chat.app.service import ConversationView, InboxPage, MessagePage
from cellchat.chat.domain.errors import InvalidArgument
from cellchat.chat.domain.model import (
    Attachment,
    Context,
    ConversationKind,
    DeliveryStatus,
    File,
    Horizons,
    Image,
    InboxEntry,
    Message,
    MessageKind,
    Money,
    OrderCard,
    Participant,
    ProductCard,
    Role,
)

CONVERSATION_KINDS = {
    ConversationKind.DIRECT: pb.CONVERSATION_KIND_DIRECT,
    ConversationKind.GROUP: pb.CONVERSATION_KIND_GROUP,
}
ROLES = {
    Role.MEMBER: pb.ROLE_MEMBER,
    Role.ADMIN: pb.ROLE_ADMIN,
    Role.BUYER: pb.ROLE_BUYER,
    Role.SELLER: pb.ROLE_SELLER,
}
MESSAGE_KINDS = {
    MessageKind.TEXT: pb.MESSAGE_KIND_TEXT,
    MessageKind.IMAGE: pb.MESSAGE_KIND_IMAGE,
    MessageKind.FILE: pb.MESSAGE_KIND_FILE,
    MessageKind.PRODUCT: pb.MESSAGE_KIND_PRODUCT,
    MessageKind.ORDER: pb.MESSAGE_KIND_ORDER,
    MessageKind.SYSTEM: pb.MESSAGE_KIND_SYSTEM,
}
STATUSES = {
    DeliveryStatus.SENT: pb.DELIVERY_STATUS_SENT,
    DeliveryStatus.DELIVERED: pb.DELIVERY_STATUS_DELIVERED,
    DeliveryStatus.READ: pb.DELIVERY_STATUS_READ,
}
_KIND_FROM_PB: dict[int, MessageKind] = {v: k for k, v in MESSAGE_KINDS.items()}
_ROLE_FROM_PB: dict[int, Role] = {v: k for k, v in ROLES.items()}


def message_kind(value: int) -> MessageKind:
    try:
        return _KIND_FROM_PB[value]
    except KeyError:
        raise InvalidArgument("kind", f"unknown message kind {value}") from None


def role(value: int, default: Role) -> Role:
    if value == pb.ROLE_UNSPECIFIED:
        return default
    try:
        return _ROLE_FROM_PB[value]
    except KeyError:
        raise InvalidArgument("counterpart_role", f"unknown role {value}") from None


def _money_in(msg: pb.Money, present: bool) -> Money | None:
    return Money(msg.amount_minor, msg.currency) if present else None


def _money_out(money: Money | None, target: pb.Money) -> None:
    if money is not None:
        target.amount_minor = money.amount_minor
        target.currency = money.currency


def attachment_in(request: pb.SendMessageRequest) -> Attachment | None:
    which = request.WhichOneof("attachment")
    if which == "image":
        i = request.image
        return Image(i.url, i.mime, i.size, i.width, i.height)
    if which == "file":
        f = request.file
        return File(f.url, f.name, f.mime, f.size)
    if which == "product":
        return product_in(request.product)
    if which == "order":
        o = request.order
        return OrderCard(o.order_id, o.status, _money_in(o.total, o.HasField("total")),
                         o.item_count)
    return None


def product_in(p: pb.ProductCard) -> ProductCard:
    return ProductCard(p.product_id, p.title, _money_in(p.price, p.HasField("price")),
                       p.image_url, p.available)


def product_out(card: ProductCard, target: pb.ProductCard) -> None:
    target.product_id = card.product_id
    target.title = card.title
    _money_out(card.price, target.price)
    target.image_url = card.image_url
    target.available = card.available


def message_out(
    message: Message, status: DeliveryStatus | None = None,
    product_current: ProductCard | None = None,
) -> pb.Message:
    out = pb.Message(
        conversation_id=message.conversation_id,
        seq=message.seq,
        message_id=message.message_id,
        sender_id=message.sender_id,
        kind=MESSAGE_KINDS[message.kind],
        text=message.text,
        client_message_id=message.client_message_id,
        created_at_ms=message.created_at_ms,
        edited_at_ms=message.edited_at_ms,
        version=message.version,
        deleted=message.deleted,
        reply_to_seq=message.reply_to_seq,
        thread_root_seq=message.thread_root_seq,
        reply_count=message.reply_count,
    )
    if status is not None:
        out.status = STATUSES[status]
    a = message.attachment
    match a:
        case Image():
            out.image.CopyFrom(pb.ImageAttachment(url=a.url, mime=a.mime, size=a.size,
                                                  width=a.width, height=a.height))
        case File():
            out.file.CopyFrom(pb.FileAttachment(url=a.url, name=a.name, mime=a.mime,
                                                size=a.size))
        case ProductCard():
            product_out(a, out.product)
        case OrderCard():
            out.order.order_id = a.order_id
            out.order.status = a.status
            _money_out(a.total, out.order.total)
            out.order.item_count = a.item_count
    if product_current is not None:
        product_out(product_current, out.product_current)
    return out


def context_in(ctx: pb.Context) -> Context:
    return Context(ctx.product_id, ctx.order_id)


def _participants_out(participants: tuple[Participant, ...],
                      horizons: tuple[Horizons, ...]) -> list[pb.Participant]:
    by_user = {h.user_id: h for h in horizons}
    out = []
    for p in participants:
        h = by_user.get(p.user_id, Horizons(p.user_id))
        out.append(pb.Participant(user_id=p.user_id, role=ROLES[p.role],
                                  joined_at_ms=p.joined_at_ms, read_seq=h.read_seq,
                                  delivered_seq=h.delivered_seq))
    return out


def conversation_out(view: ConversationView) -> pb.Conversation:
    c = view.conversation
    return pb.Conversation(
        conversation_id=c.conversation_id,
        kind=CONVERSATION_KINDS[c.kind],
        title=c.title,
        context=pb.Context(product_id=c.context.product_id, order_id=c.context.order_id),
        created_by=c.created_by,
        created_at_ms=c.created_at_ms,
        participants=_participants_out(view.participants, view.horizons),
        last_seq=view.last_seq,
    )


def summary_out(entry: InboxEntry, participants: tuple[Participant, ...],
                now_ms: int) -> pb.ConversationSummary:
    c = entry.conversation
    conversation = pb.Conversation(
        conversation_id=c.conversation_id,
        kind=CONVERSATION_KINDS[c.kind],
        title=c.title,
        context=pb.Context(product_id=c.context.product_id, order_id=c.context.order_id),
        created_by=c.created_by,
        created_at_ms=c.created_at_ms,
        participants=_participants_out(participants, ()),
        last_seq=entry.last_seq,
        last_activity_ms=entry.last_activity_ms,
    )
    summary = pb.ConversationSummary(
        conversation=conversation,
        unread_count=entry.unread,
        muted=entry.membership.muted_until_ms > now_ms,
        muted_until_ms=entry.membership.muted_until_ms,
    )
    if entry.last_message is not None:
        summary.last_message.CopyFrom(message_out(entry.last_message))
    return summary


def inbox_out(page: InboxPage, now_ms: int) -> pb.GetUserConversationsResponse:
    return pb.GetUserConversationsResponse(
        conversations=[
            summary_out(e, page.participants[e.conversation.conversation_id], now_ms)
            for e in page.entries
        ],
        next_cursor=page.next_cursor,
    )


def messages_out(page: MessagePage) -> pb.GetMessagesResponse:
    return pb.GetMessagesResponse(
        messages=[
            message_out(
                m,
                page.statuses.get(m.seq),
                page.products.get(m.attachment.product_id)
                if isinstance(m.attachment, ProductCard) else None,
            )
            for m in page.messages
        ],
        has_more=page.has_more,
        last_seq=page.last_seq,
        read_seq=page.read_seq,
    )
