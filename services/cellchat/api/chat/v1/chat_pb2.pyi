from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConversationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONVERSATION_KIND_UNSPECIFIED: _ClassVar[ConversationKind]
    CONVERSATION_KIND_DIRECT: _ClassVar[ConversationKind]
    CONVERSATION_KIND_GROUP: _ClassVar[ConversationKind]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_MEMBER: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]
    ROLE_BUYER: _ClassVar[Role]
    ROLE_SELLER: _ClassVar[Role]

class MessageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_KIND_UNSPECIFIED: _ClassVar[MessageKind]
    MESSAGE_KIND_TEXT: _ClassVar[MessageKind]
    MESSAGE_KIND_IMAGE: _ClassVar[MessageKind]
    MESSAGE_KIND_FILE: _ClassVar[MessageKind]
    MESSAGE_KIND_PRODUCT: _ClassVar[MessageKind]
    MESSAGE_KIND_ORDER: _ClassVar[MessageKind]
    MESSAGE_KIND_SYSTEM: _ClassVar[MessageKind]

class DeliveryStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATUS_UNSPECIFIED: _ClassVar[DeliveryStatus]
    DELIVERY_STATUS_SENT: _ClassVar[DeliveryStatus]
    DELIVERY_STATUS_DELIVERED: _ClassVar[DeliveryStatus]
    DELIVERY_STATUS_READ: _ClassVar[DeliveryStatus]
CONVERSATION_KIND_UNSPECIFIED: ConversationKind
CONVERSATION_KIND_DIRECT: ConversationKind
CONVERSATION_KIND_GROUP: ConversationKind
ROLE_UNSPECIFIED: Role
ROLE_MEMBER: Role
ROLE_ADMIN: Role
ROLE_BUYER: Role
ROLE_SELLER: Role
MESSAGE_KIND_UNSPECIFIED: MessageKind
MESSAGE_KIND_TEXT: MessageKind
MESSAGE_KIND_IMAGE: MessageKind
MESSAGE_KIND_FILE: MessageKind
MESSAGE_KIND_PRODUCT: MessageKind
MESSAGE_KIND_ORDER: MessageKind
MESSAGE_KIND_SYSTEM: MessageKind
DELIVERY_STATUS_UNSPECIFIED: DeliveryStatus
DELIVERY_STATUS_SENT: DeliveryStatus
DELIVERY_STATUS_DELIVERED: DeliveryStatus
DELIVERY_STATUS_READ: DeliveryStatus

class Context(_message.Message):
    __slots__ = ("product_id", "order_id")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    order_id: str
    def __init__(self, product_id: _Optional[str] = ..., order_id: _Optional[str] = ...) -> None: ...

class Money(_message.Message):
    __slots__ = ("amount_minor", "currency")
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    amount_minor: int
    currency: str
    def __init__(self, amount_minor: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class ImageAttachment(_message.Message):
    __slots__ = ("url", "mime", "size", "width", "height")
    URL_FIELD_NUMBER: _ClassVar[int]
    MIME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    url: str
    mime: str
    size: int
    width: int
    height: int
    def __init__(self, url: _Optional[str] = ..., mime: _Optional[str] = ..., size: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class FileAttachment(_message.Message):
    __slots__ = ("url", "name", "mime", "size")
    URL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    url: str
    name: str
    mime: str
    size: int
    def __init__(self, url: _Optional[str] = ..., name: _Optional[str] = ..., mime: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class ProductCard(_message.Message):
    __slots__ = ("product_id", "title", "price", "image_url", "available")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    title: str
    price: Money
    image_url: str
    available: bool
    def __init__(self, product_id: _Optional[str] = ..., title: _Optional[str] = ..., price: _Optional[_Union[Money, _Mapping]] = ..., image_url: _Optional[str] = ..., available: _Optional[bool] = ...) -> None: ...

class OrderCard(_message.Message):
    __slots__ = ("order_id", "status", "total", "item_count")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    status: str
    total: Money
    item_count: int
    def __init__(self, order_id: _Optional[str] = ..., status: _Optional[str] = ..., total: _Optional[_Union[Money, _Mapping]] = ..., item_count: _Optional[int] = ...) -> None: ...

class Participant(_message.Message):
    __slots__ = ("user_id", "role", "joined_at_ms", "read_seq", "delivered_seq")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    JOINED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    READ_SEQ_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_SEQ_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    role: Role
    joined_at_ms: int
    read_seq: int
    delivered_seq: int
    def __init__(self, user_id: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., joined_at_ms: _Optional[int] = ..., read_seq: _Optional[int] = ..., delivered_seq: _Optional[int] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("conversation_id", "kind", "title", "context", "created_by", "created_at_ms", "participants", "last_seq", "last_activity_ms")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_MS_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    kind: ConversationKind
    title: str
    context: Context
    created_by: str
    created_at_ms: int
    participants: _containers.RepeatedCompositeFieldContainer[Participant]
    last_seq: int
    last_activity_ms: int
    def __init__(self, conversation_id: _Optional[str] = ..., kind: _Optional[_Union[ConversationKind, str]] = ..., title: _Optional[str] = ..., context: _Optional[_Union[Context, _Mapping]] = ..., created_by: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., participants: _Optional[_Iterable[_Union[Participant, _Mapping]]] = ..., last_seq: _Optional[int] = ..., last_activity_ms: _Optional[int] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("conversation_id", "seq", "message_id", "sender_id", "kind", "text", "image", "file", "product", "order", "client_message_id", "created_at_ms", "edited_at_ms", "version", "deleted", "reply_to_seq", "thread_root_seq", "reply_count", "status", "product_current")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EDITED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    THREAD_ROOT_SEQ_FIELD_NUMBER: _ClassVar[int]
    REPLY_COUNT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_CURRENT_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    seq: int
    message_id: str
    sender_id: str
    kind: MessageKind
    text: str
    image: ImageAttachment
    file: FileAttachment
    product: ProductCard
    order: OrderCard
    client_message_id: str
    created_at_ms: int
    edited_at_ms: int
    version: int
    deleted: bool
    reply_to_seq: int
    thread_root_seq: int
    reply_count: int
    status: DeliveryStatus
    product_current: ProductCard
    def __init__(self, conversation_id: _Optional[str] = ..., seq: _Optional[int] = ..., message_id: _Optional[str] = ..., sender_id: _Optional[str] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., text: _Optional[str] = ..., image: _Optional[_Union[ImageAttachment, _Mapping]] = ..., file: _Optional[_Union[FileAttachment, _Mapping]] = ..., product: _Optional[_Union[ProductCard, _Mapping]] = ..., order: _Optional[_Union[OrderCard, _Mapping]] = ..., client_message_id: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., edited_at_ms: _Optional[int] = ..., version: _Optional[int] = ..., deleted: _Optional[bool] = ..., reply_to_seq: _Optional[int] = ..., thread_root_seq: _Optional[int] = ..., reply_count: _Optional[int] = ..., status: _Optional[_Union[DeliveryStatus, str]] = ..., product_current: _Optional[_Union[ProductCard, _Mapping]] = ...) -> None: ...

class CreateConversationRequest(_message.Message):
    __slots__ = ("kind", "counterpart_id", "counterpart_role", "context", "title", "member_ids")
    KIND_FIELD_NUMBER: _ClassVar[int]
    COUNTERPART_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTERPART_ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    MEMBER_IDS_FIELD_NUMBER: _ClassVar[int]
    kind: ConversationKind
    counterpart_id: str
    counterpart_role: Role
    context: Context
    title: str
    member_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[_Union[ConversationKind, str]] = ..., counterpart_id: _Optional[str] = ..., counterpart_role: _Optional[_Union[Role, str]] = ..., context: _Optional[_Union[Context, _Mapping]] = ..., title: _Optional[str] = ..., member_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateConversationResponse(_message.Message):
    __slots__ = ("conversation", "created")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    conversation: Conversation
    created: bool
    def __init__(self, conversation: _Optional[_Union[Conversation, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class AddParticipantsRequest(_message.Message):
    __slots__ = ("conversation_id", "user_ids")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, conversation_id: _Optional[str] = ..., user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AddParticipantsResponse(_message.Message):
    __slots__ = ("conversation",)
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    conversation: Conversation
    def __init__(self, conversation: _Optional[_Union[Conversation, _Mapping]] = ...) -> None: ...

class RemoveParticipantRequest(_message.Message):
    __slots__ = ("conversation_id", "user_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    user_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class RemoveParticipantResponse(_message.Message):
    __slots__ = ("conversation",)
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    conversation: Conversation
    def __init__(self, conversation: _Optional[_Union[Conversation, _Mapping]] = ...) -> None: ...

class SendMessageRequest(_message.Message):
    __slots__ = ("conversation_id", "client_message_id", "kind", "text", "image", "file", "product", "order", "reply_to_seq")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    client_message_id: str
    kind: MessageKind
    text: str
    image: ImageAttachment
    file: FileAttachment
    product: ProductCard
    order: OrderCard
    reply_to_seq: int
    def __init__(self, conversation_id: _Optional[str] = ..., client_message_id: _Optional[str] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., text: _Optional[str] = ..., image: _Optional[_Union[ImageAttachment, _Mapping]] = ..., file: _Optional[_Union[FileAttachment, _Mapping]] = ..., product: _Optional[_Union[ProductCard, _Mapping]] = ..., order: _Optional[_Union[OrderCard, _Mapping]] = ..., reply_to_seq: _Optional[int] = ...) -> None: ...

class SendMessageResponse(_message.Message):
    __slots__ = ("message", "duplicate")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    message: Message
    duplicate: bool
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class EditMessageRequest(_message.Message):
    __slots__ = ("conversation_id", "seq", "text")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    seq: int
    text: str
    def __init__(self, conversation_id: _Optional[str] = ..., seq: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class EditMessageResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: Message
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class DeleteMessageRequest(_message.Message):
    __slots__ = ("conversation_id", "seq")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    seq: int
    def __init__(self, conversation_id: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class DeleteMessageResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: Message
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class MarkMessagesAsReadRequest(_message.Message):
    __slots__ = ("conversation_id", "up_to_seq")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    UP_TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    up_to_seq: int
    def __init__(self, conversation_id: _Optional[str] = ..., up_to_seq: _Optional[int] = ...) -> None: ...

class MarkMessagesAsReadResponse(_message.Message):
    __slots__ = ("read_seq", "unread_count")
    READ_SEQ_FIELD_NUMBER: _ClassVar[int]
    UNREAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    read_seq: int
    unread_count: int
    def __init__(self, read_seq: _Optional[int] = ..., unread_count: _Optional[int] = ...) -> None: ...

class MarkMessagesAsDeliveredRequest(_message.Message):
    __slots__ = ("conversation_id", "up_to_seq")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    UP_TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    up_to_seq: int
    def __init__(self, conversation_id: _Optional[str] = ..., up_to_seq: _Optional[int] = ...) -> None: ...

class MarkMessagesAsDeliveredResponse(_message.Message):
    __slots__ = ("delivered_seq",)
    DELIVERED_SEQ_FIELD_NUMBER: _ClassVar[int]
    delivered_seq: int
    def __init__(self, delivered_seq: _Optional[int] = ...) -> None: ...

class SetMuteRequest(_message.Message):
    __slots__ = ("conversation_id", "muted", "until_ms")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    MUTED_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    muted: bool
    until_ms: int
    def __init__(self, conversation_id: _Optional[str] = ..., muted: _Optional[bool] = ..., until_ms: _Optional[int] = ...) -> None: ...

class SetMuteResponse(_message.Message):
    __slots__ = ("muted_until_ms",)
    MUTED_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    muted_until_ms: int
    def __init__(self, muted_until_ms: _Optional[int] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("conversation_id",)
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    def __init__(self, conversation_id: _Optional[str] = ...) -> None: ...

class GetConversationResponse(_message.Message):
    __slots__ = ("conversation",)
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    conversation: Conversation
    def __init__(self, conversation: _Optional[_Union[Conversation, _Mapping]] = ...) -> None: ...

class GetUserConversationsRequest(_message.Message):
    __slots__ = ("page_size", "cursor")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    cursor: str
    def __init__(self, page_size: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ConversationSummary(_message.Message):
    __slots__ = ("conversation", "last_message", "unread_count", "muted", "muted_until_ms")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    LAST_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UNREAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    MUTED_FIELD_NUMBER: _ClassVar[int]
    MUTED_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    conversation: Conversation
    last_message: Message
    unread_count: int
    muted: bool
    muted_until_ms: int
    def __init__(self, conversation: _Optional[_Union[Conversation, _Mapping]] = ..., last_message: _Optional[_Union[Message, _Mapping]] = ..., unread_count: _Optional[int] = ..., muted: _Optional[bool] = ..., muted_until_ms: _Optional[int] = ...) -> None: ...

class GetUserConversationsResponse(_message.Message):
    __slots__ = ("conversations", "next_cursor")
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    conversations: _containers.RepeatedCompositeFieldContainer[ConversationSummary]
    next_cursor: str
    def __init__(self, conversations: _Optional[_Iterable[_Union[ConversationSummary, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class GetMessagesRequest(_message.Message):
    __slots__ = ("conversation_id", "page_size", "before_seq", "after_seq", "thread_root_seq")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    THREAD_ROOT_SEQ_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    page_size: int
    before_seq: int
    after_seq: int
    thread_root_seq: int
    def __init__(self, conversation_id: _Optional[str] = ..., page_size: _Optional[int] = ..., before_seq: _Optional[int] = ..., after_seq: _Optional[int] = ..., thread_root_seq: _Optional[int] = ...) -> None: ...

class GetMessagesResponse(_message.Message):
    __slots__ = ("messages", "has_more", "last_seq", "read_seq")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    READ_SEQ_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    has_more: bool
    last_seq: int
    read_seq: int
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., has_more: _Optional[bool] = ..., last_seq: _Optional[int] = ..., read_seq: _Optional[int] = ...) -> None: ...
