import purerpc
import cellchat.api.chat.v1.chat_pb2 as cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2


class ChatServiceServicer(purerpc.Servicer):
    async def CreateConversation(self, input_message):
        raise NotImplementedError()

    async def AddParticipants(self, input_message):
        raise NotImplementedError()

    async def RemoveParticipant(self, input_message):
        raise NotImplementedError()

    async def SendMessage(self, input_message):
        raise NotImplementedError()

    async def EditMessage(self, input_message):
        raise NotImplementedError()

    async def DeleteMessage(self, input_message):
        raise NotImplementedError()

    async def MarkMessagesAsRead(self, input_message):
        raise NotImplementedError()

    async def MarkMessagesAsDelivered(self, input_message):
        raise NotImplementedError()

    async def SetMute(self, input_message):
        raise NotImplementedError()

    async def GetConversation(self, input_message):
        raise NotImplementedError()

    async def GetUserConversations(self, input_message):
        raise NotImplementedError()

    async def GetMessages(self, input_message):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "cellchat.chat.v1.ChatService"
        )
        service_obj.add_method(
            "CreateConversation",
            self.CreateConversation,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.CreateConversationRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.CreateConversationResponse,
            )
        )
        service_obj.add_method(
            "AddParticipants",
            self.AddParticipants,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.AddParticipantsRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.AddParticipantsResponse,
            )
        )
        service_obj.add_method(
            "RemoveParticipant",
            self.RemoveParticipant,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.RemoveParticipantRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.RemoveParticipantResponse,
            )
        )
        service_obj.add_method(
            "SendMessage",
            self.SendMessage,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.SendMessageRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.SendMessageResponse,
            )
        )
        service_obj.add_method(
            "EditMessage",
            self.EditMessage,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.EditMessageRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.EditMessageResponse,
            )
        )
        service_obj.add_method(
            "DeleteMessage",
            self.DeleteMessage,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.DeleteMessageRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.DeleteMessageResponse,
            )
        )
        service_obj.add_method(
            "MarkMessagesAsRead",
            self.MarkMessagesAsRead,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.MarkMessagesAsReadRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.MarkMessagesAsReadResponse,
            )
        )
        service_obj.add_method(
            "MarkMessagesAsDelivered",
            self.MarkMessagesAsDelivered,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.MarkMessagesAsDeliveredRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.MarkMessagesAsDeliveredResponse,
            )
        )
        service_obj.add_method(
            "SetMute",
            self.SetMute,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.SetMuteRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.SetMuteResponse,
            )
        )
        service_obj.add_method(
            "GetConversation",
            self.GetConversation,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.GetConversationRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.GetConversationResponse,
            )
        )
        service_obj.add_method(
            "GetUserConversations",
            self.GetUserConversations,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.GetUserConversationsRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.GetUserConversationsResponse,
            )
        )
        service_obj.add_method(
            "GetMessages",
            self.GetMessages,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.GetMessagesRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.GetMessagesResponse,
            )
        )
        return service_obj


class ChatServiceStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "cellchat.chat.v1.ChatService",
            channel
        )
        self.CreateConversation = self._client.get_method_stub(
            "CreateConversation",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.CreateConversationRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.CreateConversationResponse,
            )
        )
        self.AddParticipants = self._client.get_method_stub(
            "AddParticipants",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.AddParticipantsRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.AddParticipantsResponse,
            )
        )
        self.RemoveParticipant = self._client.get_method_stub(
            "RemoveParticipant",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.RemoveParticipantRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.RemoveParticipantResponse,
            )
        )
        self.SendMessage = self._client.get_method_stub(
            "SendMessage",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.SendMessageRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.SendMessageResponse,
            )
        )
        self.EditMessage = self._client.get_method_stub(
            "EditMessage",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.EditMessageRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.EditMessageResponse,
            )
        )
        self.DeleteMessage = self._client.get_method_stub(
            "DeleteMessage",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.DeleteMessageRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.DeleteMessageResponse,
            )
        )
        self.MarkMessagesAsRead = self._client.get_method_stub(
            "MarkMessagesAsRead",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.MarkMessagesAsReadRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.MarkMessagesAsReadResponse,
            )
        )
        self.MarkMessagesAsDelivered = self._client.get_method_stub(
            "MarkMessagesAsDelivered",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.MarkMessagesAsDeliveredRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.MarkMessagesAsDeliveredResponse,
            )
        )
        self.SetMute = self._client.get_method_stub(
            "SetMute",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.SetMuteRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.SetMuteResponse,
            )
        )
        self.GetConversation = self._client.get_method_stub(
            "GetConversation",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.GetConversationRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.GetConversationResponse,
            )
        )
        self.GetUserConversations = self._client.get_method_stub(
            "GetUserConversations",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.GetUserConversationsRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.GetUserConversationsResponse,
            )
        )
        self.GetMessages = self._client.get_method_stub(
            "GetMessages",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.GetMessagesRequest,
                cellchat_dot_api_dot_chat_dot_v1_dot_chat__pb2.GetMessagesResponse,
            )
        )