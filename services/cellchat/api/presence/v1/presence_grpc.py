import purerpc
import cellchat.api.presence.v1.presence_pb2 as cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2


class PresenceServiceServicer(purerpc.Servicer):
    async def SetOnlineStatus(self, input_message):
        raise NotImplementedError()

    async def GetOnlineStatus(self, input_message):
        raise NotImplementedError()

    async def SetTypingIndicator(self, input_message):
        raise NotImplementedError()

    async def GetTypingIndicators(self, input_message):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "cellchat.presence.v1.PresenceService"
        )
        service_obj.add_method(
            "SetOnlineStatus",
            self.SetOnlineStatus,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.SetOnlineStatusRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.SetOnlineStatusResponse,
            )
        )
        service_obj.add_method(
            "GetOnlineStatus",
            self.GetOnlineStatus,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.GetOnlineStatusRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.GetOnlineStatusResponse,
            )
        )
        service_obj.add_method(
            "SetTypingIndicator",
            self.SetTypingIndicator,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.SetTypingIndicatorRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.SetTypingIndicatorResponse,
            )
        )
        service_obj.add_method(
            "GetTypingIndicators",
            self.GetTypingIndicators,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.GetTypingIndicatorsRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.GetTypingIndicatorsResponse,
            )
        )
        return service_obj


class PresenceServiceStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "cellchat.presence.v1.PresenceService",
            channel
        )
        self.SetOnlineStatus = self._client.get_method_stub(
            "SetOnlineStatus",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.SetOnlineStatusRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.SetOnlineStatusResponse,
            )
        )
        self.GetOnlineStatus = self._client.get_method_stub(
            "GetOnlineStatus",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.GetOnlineStatusRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.GetOnlineStatusResponse,
            )
        )
        self.SetTypingIndicator = self._client.get_method_stub(
            "SetTypingIndicator",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.SetTypingIndicatorRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.SetTypingIndicatorResponse,
            )
        )
        self.GetTypingIndicators = self._client.get_method_stub(
            "GetTypingIndicators",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.GetTypingIndicatorsRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.GetTypingIndicatorsResponse,
            )
        )


class PresenceReportServiceServicer(purerpc.Servicer):
    async def Heartbeat(self, input_message):
        raise NotImplementedError()

    async def ConnectionOpened(self, input_message):
        raise NotImplementedError()

    async def ConnectionClosed(self, input_message):
        raise NotImplementedError()

    async def ReportTyping(self, input_message):
        raise NotImplementedError()

    async def GetOnlineStatusFor(self, input_message):
        raise NotImplementedError()

    @property
    def service(self) -> purerpc.Service:
        service_obj = purerpc.Service(
            "cellchat.presence.v1.PresenceReportService"
        )
        service_obj.add_method(
            "Heartbeat",
            self.Heartbeat,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.HeartbeatRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.HeartbeatResponse,
            )
        )
        service_obj.add_method(
            "ConnectionOpened",
            self.ConnectionOpened,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.ConnectionOpenedRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.ConnectionOpenedResponse,
            )
        )
        service_obj.add_method(
            "ConnectionClosed",
            self.ConnectionClosed,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.ConnectionClosedRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.ConnectionClosedResponse,
            )
        )
        service_obj.add_method(
            "ReportTyping",
            self.ReportTyping,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.ReportTypingRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.SetTypingIndicatorResponse,
            )
        )
        service_obj.add_method(
            "GetOnlineStatusFor",
            self.GetOnlineStatusFor,
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.GetOnlineStatusForRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.GetOnlineStatusResponse,
            )
        )
        return service_obj


class PresenceReportServiceStub:
    def __init__(self, channel):
        self._client = purerpc.Client(
            "cellchat.presence.v1.PresenceReportService",
            channel
        )
        self.Heartbeat = self._client.get_method_stub(
            "Heartbeat",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.HeartbeatRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.HeartbeatResponse,
            )
        )
        self.ConnectionOpened = self._client.get_method_stub(
            "ConnectionOpened",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.ConnectionOpenedRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.ConnectionOpenedResponse,
            )
        )
        self.ConnectionClosed = self._client.get_method_stub(
            "ConnectionClosed",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.ConnectionClosedRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.ConnectionClosedResponse,
            )
        )
        self.ReportTyping = self._client.get_method_stub(
            "ReportTyping",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.ReportTypingRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.SetTypingIndicatorResponse,
            )
        )
        self.GetOnlineStatusFor = self._client.get_method_stub(
            "GetOnlineStatusFor",
            purerpc.RPCSignature(
                purerpc.Cardinality.UNARY_UNARY,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.GetOnlineStatusForRequest,
                cellchat_dot_api_dot_presence_dot_v1_dot_presence__pb2.GetOnlineStatusResponse,
            )
        )