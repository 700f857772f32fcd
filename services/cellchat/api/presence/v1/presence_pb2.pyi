from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PresenceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRESENCE_STATUS_UNSPECIFIED: _ClassVar[PresenceStatus]
    PRESENCE_STATUS_ONLINE: _ClassVar[PresenceStatus]
    PRESENCE_STATUS_AWAY: _ClassVar[PresenceStatus]
    PRESENCE_STATUS_OFFLINE: _ClassVar[PresenceStatus]
    PRESENCE_STATUS_UNKNOWN: _ClassVar[PresenceStatus]
PRESENCE_STATUS_UNSPECIFIED: PresenceStatus
PRESENCE_STATUS_ONLINE: PresenceStatus
PRESENCE_STATUS_AWAY: PresenceStatus
PRESENCE_STATUS_OFFLINE: PresenceStatus
PRESENCE_STATUS_UNKNOWN: PresenceStatus

class UserPresence(_message.Message):
    __slots__ = ("user_id", "status", "last_seen_ms")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    status: PresenceStatus
    last_seen_ms: int
    def __init__(self, user_id: _Optional[str] = ..., status: _Optional[_Union[PresenceStatus, str]] = ..., last_seen_ms: _Optional[int] = ...) -> None: ...

class TypingUser(_message.Message):
    __slots__ = ("user_id", "expires_at_ms")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    expires_at_ms: int
    def __init__(self, user_id: _Optional[str] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class SetOnlineStatusRequest(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: PresenceStatus
    def __init__(self, status: _Optional[_Union[PresenceStatus, str]] = ...) -> None: ...

class SetOnlineStatusResponse(_message.Message):
    __slots__ = ("presence", "lease_ttl_ms")
    PRESENCE_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    presence: UserPresence
    lease_ttl_ms: int
    def __init__(self, presence: _Optional[_Union[UserPresence, _Mapping]] = ..., lease_ttl_ms: _Optional[int] = ...) -> None: ...

class GetOnlineStatusRequest(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetOnlineStatusResponse(_message.Message):
    __slots__ = ("presences",)
    PRESENCES_FIELD_NUMBER: _ClassVar[int]
    presences: _containers.RepeatedCompositeFieldContainer[UserPresence]
    def __init__(self, presences: _Optional[_Iterable[_Union[UserPresence, _Mapping]]] = ...) -> None: ...

class SetTypingIndicatorRequest(_message.Message):
    __slots__ = ("conversation_id", "typing")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPING_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    typing: bool
    def __init__(self, conversation_id: _Optional[str] = ..., typing: _Optional[bool] = ...) -> None: ...

class SetTypingIndicatorResponse(_message.Message):
    __slots__ = ("expires_at_ms",)
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    expires_at_ms: int
    def __init__(self, expires_at_ms: _Optional[int] = ...) -> None: ...

class GetTypingIndicatorsRequest(_message.Message):
    __slots__ = ("conversation_id",)
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    def __init__(self, conversation_id: _Optional[str] = ...) -> None: ...

class GetTypingIndicatorsResponse(_message.Message):
    __slots__ = ("conversation_id", "typing")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPING_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    typing: _containers.RepeatedCompositeFieldContainer[TypingUser]
    def __init__(self, conversation_id: _Optional[str] = ..., typing: _Optional[_Iterable[_Union[TypingUser, _Mapping]]] = ...) -> None: ...

class Connection(_message.Message):
    __slots__ = ("connection_id", "user_id")
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    connection_id: str
    user_id: str
    def __init__(self, connection_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("replica_id", "connections")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    connections: _containers.RepeatedCompositeFieldContainer[Connection]
    def __init__(self, replica_id: _Optional[str] = ..., connections: _Optional[_Iterable[_Union[Connection, _Mapping]]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("lease_ttl_ms", "heartbeat_interval_ms")
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    lease_ttl_ms: int
    heartbeat_interval_ms: int
    def __init__(self, lease_ttl_ms: _Optional[int] = ..., heartbeat_interval_ms: _Optional[int] = ...) -> None: ...

class ConnectionOpenedRequest(_message.Message):
    __slots__ = ("replica_id", "connection")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    connection: Connection
    def __init__(self, replica_id: _Optional[str] = ..., connection: _Optional[_Union[Connection, _Mapping]] = ...) -> None: ...

class ConnectionOpenedResponse(_message.Message):
    __slots__ = ("lease_ttl_ms",)
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    lease_ttl_ms: int
    def __init__(self, lease_ttl_ms: _Optional[int] = ...) -> None: ...

class ConnectionClosedRequest(_message.Message):
    __slots__ = ("replica_id", "connection_id")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    connection_id: str
    def __init__(self, replica_id: _Optional[str] = ..., connection_id: _Optional[str] = ...) -> None: ...

class ConnectionClosedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReportTypingRequest(_message.Message):
    __slots__ = ("user_id", "conversation_id", "typing")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPING_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    conversation_id: str
    typing: bool
    def __init__(self, user_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., typing: _Optional[bool] = ...) -> None: ...

class GetOnlineStatusForRequest(_message.Message):
    __slots__ = ("viewer_id", "user_ids")
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    viewer_id: str
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, viewer_id: _Optional[str] = ..., user_ids: _Optional[_Iterable[str]] = ...) -> None: ...
