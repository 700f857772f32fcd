"""The presence gRPC API (cellchat.presence.v1) on purerpc: authenticate, decode, call, encode.

Per call: the `authorization: Bearer <jwt>` metadata is verified (`TokenVerifier`); the token's
subject is the caller. `PresenceReportService` is for chat replicas only: its callers must be
service principals (`is_service`, by default subjects starting with `svc:`), anyone else gets
PERMISSION_DENIED. Errors leave as domain exceptions and `PRESENCE_ERRORS` decides their
statuses; deadlines are enforced by the server (grpcutil).
"""

# purerpc handlers take a second parameter, `request` (the call's metadata), that the generated
# servicer bases do not declare.
# mypy: disable-error-code="override"

from __future__ import annotations

from collections.abc import Callable

from cellchat.api.presence.v1 import presence_grpc
from cellchat.api.presence.v1 import presence_pb2 as pb
from cellchat.auth import Principal, TokenVerifier
from cellchat.chat.domain import errors
from cellchat.grpcutil.metadata import CallInfo, bearer_token
from cellchat.grpcutil.statuses import ErrorMap, StatusCode
from cellchat.presence.model import Presence, Status
from cellchat.presence.service import LeaseTerms, PresenceService

PRESENCE_ERRORS = ErrorMap(
    {
        errors.InvalidArgument: StatusCode.INVALID_ARGUMENT,
        errors.NotFound: StatusCode.NOT_FOUND,
        errors.PermissionDenied: StatusCode.PERMISSION_DENIED,
        errors.Unauthenticated: StatusCode.UNAUTHENTICATED,
        errors.StoreUnavailable: (
            StatusCode.UNAVAILABLE, "the presence store is unavailable; retry"
        ),
        errors.StoreTimeout: (StatusCode.UNAVAILABLE, "the presence store timed out; retry"),
        errors.StoreError: (StatusCode.UNAVAILABLE, "presence store error; retry"),
    }
)

SERVICE_SUBJECT_PREFIX = "svc:"

STATUS_TO_PB = {
    Status.ONLINE: pb.PRESENCE_STATUS_ONLINE,
    Status.AWAY: pb.PRESENCE_STATUS_AWAY,
    Status.OFFLINE: pb.PRESENCE_STATUS_OFFLINE,
    Status.UNKNOWN: pb.PRESENCE_STATUS_UNKNOWN,
}
STATUS_FROM_PB: dict[int, Status] = {int(v): k for k, v in STATUS_TO_PB.items()}


def is_service_subject(principal: Principal) -> bool:
    return principal.user_id.startswith(SERVICE_SUBJECT_PREFIX)


def status_in(value: int) -> Status:
    status = STATUS_FROM_PB.get(value)
    if status is None or status is Status.UNKNOWN:
        raise errors.InvalidArgument("status", "must be ONLINE, AWAY or OFFLINE")
    return status


def presence_out(presence: Presence) -> pb.UserPresence:
    return pb.UserPresence(
        user_id=presence.user_id,
        status=STATUS_TO_PB[presence.status],
        last_seen_ms=presence.last_seen_ms,
    )


def _statuses_out(presences: list[Presence]) -> pb.GetOnlineStatusResponse:
    return pb.GetOnlineStatusResponse(presences=[presence_out(p) for p in presences])


class PresenceServicer(presence_grpc.PresenceServiceServicer):
    def __init__(self, service: PresenceService, verifier: TokenVerifier) -> None:
        self._service = service
        self._verifier = verifier

    def _caller(self, request: CallInfo) -> str:
        return self._verifier.verify(bearer_token(request.custom_metadata)).user_id

    async def SetOnlineStatus(
        self, message: pb.SetOnlineStatusRequest, request: CallInfo
    ) -> pb.SetOnlineStatusResponse:
        me = self._caller(request)
        presence = await self._service.set_online_status(me, status_in(message.status))
        return pb.SetOnlineStatusResponse(
            presence=presence_out(presence), lease_ttl_ms=self._service.config.lease_ttl_ms
        )

    async def GetOnlineStatus(
        self, message: pb.GetOnlineStatusRequest, request: CallInfo
    ) -> pb.GetOnlineStatusResponse:
        me = self._caller(request)
        return _statuses_out(await self._service.get_online_status(me, list(message.user_ids)))

    async def SetTypingIndicator(
        self, message: pb.SetTypingIndicatorRequest, request: CallInfo
    ) -> pb.SetTypingIndicatorResponse:
        me = self._caller(request)
        expires = await self._service.set_typing(me, message.conversation_id, message.typing)
        return pb.SetTypingIndicatorResponse(expires_at_ms=expires)

    async def GetTypingIndicators(
        self, message: pb.GetTypingIndicatorsRequest, request: CallInfo
    ) -> pb.GetTypingIndicatorsResponse:
        me = self._caller(request)
        typing = await self._service.get_typing(me, message.conversation_id)
        return pb.GetTypingIndicatorsResponse(
            conversation_id=message.conversation_id,
            typing=[pb.TypingUser(user_id=t.user_id, expires_at_ms=t.expires_at_ms)
                    for t in typing],
        )


class PresenceReportServicer(presence_grpc.PresenceReportServiceServicer):
    def __init__(
        self,
        service: PresenceService,
        verifier: TokenVerifier,
        *,
        is_service: Callable[[Principal], bool] = is_service_subject,
    ) -> None:
        self._service = service
        self._verifier = verifier
        self._is_service = is_service

    def _authorize(self, request: CallInfo) -> None:
        principal = self._verifier.verify(bearer_token(request.custom_metadata))
        if not self._is_service(principal):
            raise errors.PermissionDenied("only chat replicas may call PresenceReportService")

    async def Heartbeat(
        self, message: pb.HeartbeatRequest, request: CallInfo
    ) -> pb.HeartbeatResponse:
        self._authorize(request)
        connections: dict[str, str] = {}
        for connection in message.connections:
            if connections.setdefault(connection.connection_id, connection.user_id) \
                    != connection.user_id:
                raise errors.InvalidArgument(
                    "connections", "a connection id is listed twice with different users"
                )
        terms = await self._service.heartbeat(message.replica_id, connections)
        return pb.HeartbeatResponse(**_terms_out(terms))

    async def ConnectionOpened(
        self, message: pb.ConnectionOpenedRequest, request: CallInfo
    ) -> pb.ConnectionOpenedResponse:
        self._authorize(request)
        terms = await self._service.connection_opened(
            message.replica_id, message.connection.connection_id, message.connection.user_id
        )
        return pb.ConnectionOpenedResponse(lease_ttl_ms=terms.lease_ttl_ms)

    async def ConnectionClosed(
        self, message: pb.ConnectionClosedRequest, request: CallInfo
    ) -> pb.ConnectionClosedResponse:
        self._authorize(request)
        await self._service.connection_closed(message.replica_id, message.connection_id)
        return pb.ConnectionClosedResponse()

    async def ReportTyping(
        self, message: pb.ReportTypingRequest, request: CallInfo
    ) -> pb.SetTypingIndicatorResponse:
        self._authorize(request)
        expires = await self._service.set_typing(
            message.user_id, message.conversation_id, message.typing
        )
        return pb.SetTypingIndicatorResponse(expires_at_ms=expires)

    async def GetOnlineStatusFor(
        self, message: pb.GetOnlineStatusForRequest, request: CallInfo
    ) -> pb.GetOnlineStatusResponse:
        self._authorize(request)
        return _statuses_out(
            await self._service.get_online_status(message.viewer_id, list(message.user_ids))
        )


def _terms_out(terms: LeaseTerms) -> dict[str, int]:
    return {
        "lease_ttl_ms": terms.lease_ttl_ms,
        "heartbeat_interval_ms": terms.heartbeat_interval_ms,
    }
