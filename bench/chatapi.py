"""The chat API as the load generator uses it: tokens, stock grpcio stubs, WebSocket paths."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import grpc

from bench.common import HOST, JWT_SECRET
from cellchat.api.chat.v1 import chat_pb2 as pb
from cellchat.api.chat.v1 import chat_pb2_grpc
from cellchat.auth import JwtSettings, mint_token

_JWT = JwtSettings(verify_key=JWT_SECRET)


@lru_cache(maxsize=100_000)
def token(user: str, ttl_s: int = 6 * 3600) -> str:
    return mint_token(_JWT, user, ttl_s=ttl_s)


def auth(user: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token(user)}")]


def ws_path(user: str) -> str:
    return f"/ws/chat?token={quote(token(user))}&user_id={quote(user)}"


def stub(port: int) -> Any:
    channel = grpc.insecure_channel(
        f"{HOST}:{port}", options=[("grpc.max_receive_message_length", 64 * 1024 * 1024),
                                   ("grpc.max_send_message_length", 64 * 1024 * 1024)])
    return chat_pb2_grpc.ChatServiceStub(channel)


def create_group(port: int, admin: str, members: Sequence[str], title: str) -> str:
    response = stub(port).CreateConversation(
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_GROUP, title=title,
                                     member_ids=list(members)),
        metadata=auth(admin), timeout=300)
    return str(response.conversation.conversation_id)


def create_direct(port: int, buyer: str, seller: str, product: str = "") -> str:
    response = stub(port).CreateConversation(
        pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_DIRECT, counterpart_id=seller,
                                     context=pb.Context(product_id=product)),
        metadata=auth(buyer), timeout=60)
    return str(response.conversation.conversation_id)


def text_of(index: int, sent_ns: int, size: int = 150) -> str:
    """A message text of exactly `size` bytes carrying its index and send time (monotonic)."""
    head = f"bm{index}-{sent_ns}e"
    return head + "." * max(0, size - len(head))
