"""The chat's rules as pure functions: who may do what, and what follows from the horizons.

Authorization answers "not found" to non-participants on purpose: a stranger must not learn
that a conversation exists by probing ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cellchat.chat.domain.content import Limits, validate_text
from cellchat.chat.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PermissionDenied,
)
from cellchat.chat.domain.model import (
    DeliveryStatus,
    Horizons,
    Message,
    MessageKind,
    Participant,
    Role,
)

SYSTEM_SENDER = "system"


def require_participant(participants: Sequence[Participant], user_id: str) -> Participant:
    for participant in participants:
        if participant.user_id == user_id:
            return participant
    raise NotFound("conversation not found")


def validate_user_id(field: str, user_id: str, limits: Limits) -> str:
    if not user_id or user_id != user_id.strip():
        raise InvalidArgument(field, "required, without surrounding spaces")
    if len(user_id) > limits.max_id_chars:
        raise InvalidArgument(field, f"longer than {limits.max_id_chars} characters")
    if user_id == SYSTEM_SENDER:
        raise InvalidArgument(field, f"{SYSTEM_SENDER!r} is reserved")
    return user_id


def validate_group_members(
    creator: str, members: Iterable[str], title: str, limits: Limits
) -> list[str]:
    """The distinct other members of a new group, in the order given."""
    if not title.strip():
        raise InvalidArgument("title", "required for group conversations")
    if len(title) > limits.max_title_chars:
        raise InvalidArgument("title", f"longer than {limits.max_title_chars} characters")
    distinct: list[str] = []
    for index, member in enumerate(members):
        validate_user_id(f"member_ids[{index}]", member, limits)
        if member != creator and member not in distinct:
            distinct.append(member)
    if len(distinct) + 1 > limits.max_group_participants:
        raise LimitExceeded(
            f"a group has at most {limits.max_group_participants} participants"
        )
    return distinct


def require_admin(participant: Participant) -> None:
    if participant.role is not Role.ADMIN:
        raise PermissionDenied("only a group admin may do this")


def validate_edit(
    message: Message, editor_id: str, new_text: str, now_ms: int, limits: Limits
) -> None:
    if message.deleted:
        raise FailedPrecondition("message was deleted")
    if message.sender_id != editor_id:
        raise PermissionDenied("only the author may edit a message")
    if message.kind is not MessageKind.TEXT and not new_text.strip():
        validate_text("text", new_text, limits, required=False)
    else:
        validate_text("text", new_text, limits, required=message.kind is MessageKind.TEXT)
    if now_ms - message.created_at_ms > limits.edit_window_ms:
        raise FailedPrecondition(
            f"messages can be edited for {limits.edit_window_ms // 1000} seconds after sending"
        )


def validate_delete(message: Message, actor: Participant) -> None:
    if message.deleted:
        return  # deleting twice is a no-op, not an error
    if message.sender_id == actor.user_id or actor.role is Role.ADMIN:
        return
    raise PermissionDenied("only the author or a group admin may delete a message")


def thread_root_of(parent: Message) -> int:
    """Replying to a message joins its thread, or starts one rooted at it."""
    return parent.thread_root_seq or parent.seq


def delivery_status(
    message: Message, horizons: Sequence[Horizons]
) -> DeliveryStatus:
    """Sent → delivered → read, as the sender sees it: the least advanced recipient decides."""
    others = [h for h in horizons if h.user_id != message.sender_id]
    if not others:
        return DeliveryStatus.READ
    if all(h.read_seq >= message.seq for h in others):
        return DeliveryStatus.READ
    if all(max(h.delivered_seq, h.read_seq) >= message.seq for h in others):
        return DeliveryStatus.DELIVERED
    return DeliveryStatus.SENT


def unread_count(last_seq: int, read_seq: int) -> int:
    return max(0, last_seq - read_seq)


def clamp_page_size(field: str, requested: int, default: int, limits: Limits) -> int:
    if requested == 0:
        return default
    if not 1 <= requested <= limits.max_page_size:
        raise InvalidArgument(field, f"must be between 1 and {limits.max_page_size}")
    return requested


def is_muted(muted_until_ms: int, now_ms: int) -> bool:
    return muted_until_ms > now_ms
