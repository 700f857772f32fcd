"""The chat gRPC API (cellchat.chat.v1.ChatService) on purerpc: decode, call a use case, encode.

Authentication happens here, per call, from the `authorization` metadata; errors leave as
domain exceptions and `CHAT_ERRORS` decides their statuses (the server closes every failed
call through it). Deadlines are enforced by the server (grpcutil).
"""

# purerpc passes a handler's request headers through a second parameter named `request`
# (grpcutil.metadata); the generated base class declares one parameter, hence the overrides.
# mypy: disable-error-code="override"
from __future__ import annotations

from cellchat.api.chat.v1 import chat_grpc
from cellchat.api.chat.v1 import chat_pb2 as pb
from cellchat.auth import TokenVerifier
from cellchat.chat.app.service import ChatApp, NewMessage
from cellchat.chat.domain import errors
from cellchat.chat.domain.model import Role
from cellchat.chat.transport import pb as codec
from cellchat.grpcutil.metadata import CallInfo, bearer_token
from cellchat.grpcutil.statuses import ErrorMap, StatusCode

CHAT_ERRORS = ErrorMap(
    {
        errors.InvalidArgument: StatusCode.INVALID_ARGUMENT,
        errors.NotFound: StatusCode.NOT_FOUND,
        errors.PermissionDenied: StatusCode.PERMISSION_DENIED,
        errors.Blocked: StatusCode.PERMISSION_DENIED,
        errors.FailedPrecondition: StatusCode.FAILED_PRECONDITION,
        errors.LimitExceeded: StatusCode.RESOURCE_EXHAUSTED,
        errors.Unauthenticated: StatusCode.UNAUTHENTICATED,
        errors.StoreUnavailable: (StatusCode.UNAVAILABLE, "the database is unavailable; retry"),
        errors.StoreTimeout: (StatusCode.UNAVAILABLE, "the database timed out; retry"),
        errors.Contention: StatusCode.UNAVAILABLE,
        errors.StoreError: (StatusCode.UNAVAILABLE, "storage error; retry"),
    }
)


class ChatServicer(chat_grpc.ChatServiceServicer):
    def __init__(self, app: ChatApp, verifier: TokenVerifier) -> None:
        self._app = app
        self._verifier = verifier

    def _caller(self, request: CallInfo) -> str:
        return self._verifier.verify(bearer_token(request.custom_metadata)).user_id

    async def CreateConversation(
        self, message: pb.CreateConversationRequest, request: CallInfo
    ) -> pb.CreateConversationResponse:
        me = self._caller(request)
        if message.kind == pb.CONVERSATION_KIND_DIRECT:
            view, created = await self._app.create_direct(
                me,
                message.counterpart_id,
                counterpart_role=codec.role(message.counterpart_role, Role.SELLER),
                context=codec.context_in(message.context),
            )
            return pb.CreateConversationResponse(
                conversation=codec.conversation_out(view), created=created
            )
        if message.kind == pb.CONVERSATION_KIND_GROUP:
            view = await self._app.create_group(me, message.title, list(message.member_ids))
            return pb.CreateConversationResponse(
                conversation=codec.conversation_out(view), created=True
            )
        raise errors.InvalidArgument("kind", "must be DIRECT or GROUP")

    async def AddParticipants(
        self, message: pb.AddParticipantsRequest, request: CallInfo
    ) -> pb.AddParticipantsResponse:
        me = self._caller(request)
        view = await self._app.add_participants(
            me, message.conversation_id, list(message.user_ids)
        )
        return pb.AddParticipantsResponse(conversation=codec.conversation_out(view))

    async def RemoveParticipant(
        self, message: pb.RemoveParticipantRequest, request: CallInfo
    ) -> pb.RemoveParticipantResponse:
        me = self._caller(request)
        view = await self._app.remove_participant(me, message.conversation_id, message.user_id)
        return pb.RemoveParticipantResponse(conversation=codec.conversation_out(view))

    async def SendMessage(
        self, message: pb.SendMessageRequest, request: CallInfo
    ) -> pb.SendMessageResponse:
        me = self._caller(request)
        stored = await self._app.send_message(
            me,
            NewMessage(
                conversation_id=message.conversation_id,
                client_message_id=message.client_message_id,
                kind=codec.message_kind(message.kind),
                text=message.text,
                attachment=codec.attachment_in(message),
                reply_to_seq=message.reply_to_seq,
            ),
        )
        return pb.SendMessageResponse(
            message=codec.message_out(stored.message), duplicate=stored.duplicate
        )

    async def EditMessage(
        self, message: pb.EditMessageRequest, request: CallInfo
    ) -> pb.EditMessageResponse:
        me = self._caller(request)
        edited = await self._app.edit_message(
            me, message.conversation_id, message.seq, message.text
        )
        return pb.EditMessageResponse(message=codec.message_out(edited))

    async def DeleteMessage(
        self, message: pb.DeleteMessageRequest, request: CallInfo
    ) -> pb.DeleteMessageResponse:
        me = self._caller(request)
        tomb = await self._app.delete_message(me, message.conversation_id, message.seq)
        return pb.DeleteMessageResponse(message=codec.message_out(tomb))

    async def MarkMessagesAsRead(
        self, message: pb.MarkMessagesAsReadRequest, request: CallInfo
    ) -> pb.MarkMessagesAsReadResponse:
        me = self._caller(request)
        membership = await self._app.mark_read(me, message.conversation_id, message.up_to_seq)
        unread = await self._app.unread_count(me, message.conversation_id)
        return pb.MarkMessagesAsReadResponse(read_seq=membership.read_seq, unread_count=unread)

    async def MarkMessagesAsDelivered(
        self, message: pb.MarkMessagesAsDeliveredRequest, request: CallInfo
    ) -> pb.MarkMessagesAsDeliveredResponse:
        me = self._caller(request)
        membership = await self._app.mark_delivered(
            me, message.conversation_id, message.up_to_seq
        )
        return pb.MarkMessagesAsDeliveredResponse(delivered_seq=membership.delivered_seq)

    async def SetMute(self, message: pb.SetMuteRequest, request: CallInfo) -> pb.SetMuteResponse:
        me = self._caller(request)
        until = await self._app.set_mute(
            me, message.conversation_id, muted=message.muted, until_ms=message.until_ms
        )
        return pb.SetMuteResponse(muted_until_ms=until)

    async def GetConversation(
        self, message: pb.GetConversationRequest, request: CallInfo
    ) -> pb.GetConversationResponse:
        me = self._caller(request)
        view = await self._app.get_conversation(me, message.conversation_id)
        return pb.GetConversationResponse(conversation=codec.conversation_out(view))

    async def GetUserConversations(
        self, message: pb.GetUserConversationsRequest, request: CallInfo
    ) -> pb.GetUserConversationsResponse:
        me = self._caller(request)
        page = await self._app.get_user_conversations(
            me, page_size=message.page_size, cursor=message.cursor
        )
        return codec.inbox_out(page, self._app.now_ms())

    async def GetMessages(
        self, message: pb.GetMessagesRequest, request: CallInfo
    ) -> pb.GetMessagesResponse:
        me = self._caller(request)
        page = await self._app.get_messages(
            me,
            message.conversation_id,
            page_size=message.page_size,
            before_seq=message.before_seq,
            after_seq=message.after_seq,
            thread_root_seq=message.thread_root_seq,
        )
        return codec.messages_out(page)
