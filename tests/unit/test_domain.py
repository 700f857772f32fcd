"""Domain rules without I/O: ids, content validation, edit/delete rules, statuses."""

from __future__ import annotations

import uuid

import pytest

from cellchat.chat.domain import rules
from cellchat.chat.domain.content import (
    Limits,
    attachment_from_json,
    attachment_to_json,
    validate_content,
)
from cellchat.chat.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PermissionDenied,
)
from cellchat.chat.domain.ids import direct_conversation_id, is_uuid, uuid7
from cellchat.chat.domain.model import (
    DeliveryStatus,
    File,
    Horizons,
    Image,
    Message,
    MessageKind,
    Money,
    OrderCard,
    Participant,
    ProductCard,
    Role,
)

LIMITS = Limits()


def msg(seq: int = 1, sender: str = "a", created: int = 0, kind: MessageKind = MessageKind.TEXT,
        deleted: bool = False) -> Message:
    return Message("c", seq, "m", sender, kind, "hi", None, "cid", created, deleted=deleted)


def test_uuid7_sorts_by_time_and_has_version_7() -> None:
    early = uuid7(1_000, bytes(10))
    late = uuid7(2_000, b"\xff" * 10)
    assert early < late
    assert uuid.UUID(early).version == 7
    assert uuid.UUID(late).variant == uuid.RFC_4122
    with pytest.raises(ValueError, match="10 random bytes"):
        uuid7(1, b"short")


def test_direct_ids_ignore_order_but_not_context() -> None:
    assert direct_conversation_id("a", "b", "p", "") == direct_conversation_id("b", "a", "p", "")
    assert direct_conversation_id("a", "b", "p", "") != direct_conversation_id("a", "b", "q", "")
    assert direct_conversation_id("a", "b", "", "o") != direct_conversation_id("a", "b", "o", "")
    assert is_uuid(direct_conversation_id("a", "b", "", ""))
    assert not is_uuid("x")


@pytest.mark.parametrize(
    ("kind", "text", "attachment", "field"),
    [
        (MessageKind.TEXT, "", None, "text"),
        (MessageKind.TEXT, "hi", File("https://f", "n", "a/b", 1), "attachment"),
        (MessageKind.IMAGE, "", None, "image"),
        (MessageKind.IMAGE, "", File("https://f", "n", "a/b", 1), "image"),
        (MessageKind.IMAGE, "", Image("https://i", "image/png", 0, 1, 1), "image.size"),
        (MessageKind.IMAGE, "", Image("https://i", "image/png", 5, 0, 1), "image.width"),
        (MessageKind.FILE, "", File("https://f", "", "a/b", 1), "file.name"),
        (MessageKind.FILE, "", File("https://f", "n", "nope", 1), "file.mime"),
        (MessageKind.PRODUCT, "", ProductCard(""), "product.product_id"),
        (MessageKind.PRODUCT, "", ProductCard("p", price=Money(5, "eur")),
         "product.price.currency"),
        (MessageKind.PRODUCT, "", ProductCard("p", price=Money(-5, "EUR")),
         "product.price.amount_minor"),
        (MessageKind.ORDER, "", OrderCard("o", item_count=-1), "order.item_count"),
        (MessageKind.SYSTEM, "x", None, "kind"),
    ],
)
def test_bad_content_names_its_field(kind: MessageKind, text: str, attachment: object,
                                     field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_content(kind, text, attachment, LIMITS, system=False)  # type: ignore[arg-type]
    assert info.value.field == field


def test_good_content_round_trips_through_json() -> None:
    for kind, attachment in [
        (MessageKind.IMAGE, Image("https://i/x.png", "image/png", 10, 640, 480)),
        (MessageKind.FILE, File("https://f/x.pdf", "x.pdf", "application/pdf", 10)),
        (MessageKind.PRODUCT, ProductCard("p", "Lamp", Money(1999, "EUR"), "https://i", False)),
        (MessageKind.ORDER, OrderCard("o", "paid", Money(5000, "USD"), 2)),
    ]:
        validate_content(kind, "", attachment, LIMITS, system=False)
        assert attachment_from_json(attachment_to_json(attachment)) == attachment
    assert attachment_from_json(attachment_to_json(None)) is None
    validate_content(MessageKind.SYSTEM, "order placed", None, LIMITS, system=True)


def test_edit_rules() -> None:
    window = LIMITS.edit_window_ms
    rules.validate_edit(msg(created=0), "a", "new", window, LIMITS)
    with pytest.raises(PermissionDenied):
        rules.validate_edit(msg(), "b", "new", 0, LIMITS)
    with pytest.raises(FailedPrecondition):
        rules.validate_edit(msg(created=0), "a", "new", window + 1, LIMITS)
    with pytest.raises(FailedPrecondition):
        rules.validate_edit(msg(deleted=True), "a", "new", 0, LIMITS)
    with pytest.raises(InvalidArgument):
        rules.validate_edit(msg(), "a", " ", 0, LIMITS)


def test_delete_rules() -> None:
    rules.validate_delete(msg(sender="a"), Participant("a", Role.MEMBER, 0))
    rules.validate_delete(msg(sender="a"), Participant("boss", Role.ADMIN, 0))
    with pytest.raises(PermissionDenied):
        rules.validate_delete(msg(sender="a"), Participant("b", Role.MEMBER, 0))


def test_status_is_decided_by_the_least_advanced_recipient() -> None:
    m = msg(seq=5, sender="a")
    assert rules.delivery_status(m, [Horizons("a"), Horizons("b", 5, 5), Horizons("c", 4, 5)]) \
        is DeliveryStatus.DELIVERED
    assert rules.delivery_status(m, [Horizons("b", 5, 5), Horizons("c", 6, 6)]) \
        is DeliveryStatus.READ
    assert rules.delivery_status(m, [Horizons("b", 0, 4)]) is DeliveryStatus.SENT
    assert rules.unread_count(10, 4) == 6
    assert rules.unread_count(3, 4) == 0


def test_participants_and_groups() -> None:
    people = [Participant("a", Role.ADMIN, 0)]
    assert rules.require_participant(people, "a").role is Role.ADMIN
    with pytest.raises(NotFound):
        rules.require_participant(people, "z")
    assert rules.validate_group_members("a", ["b", "a", "b", "c"], "T", LIMITS) == ["b", "c"]
    with pytest.raises(LimitExceeded):
        rules.validate_group_members("a", [f"u{i}" for i in range(100)], "T", LIMITS)
    with pytest.raises(InvalidArgument) as info:
        rules.validate_group_members("a", ["system"], "T", LIMITS)
    assert info.value.field == "member_ids[0]"
    with pytest.raises(InvalidArgument):
        rules.clamp_page_size("page_size", 0 - 1, 20, LIMITS)
    assert rules.clamp_page_size("page_size", 0, 20, LIMITS) == 20
