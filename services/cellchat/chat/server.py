"""The chat service's composition root: builds the objects, owns the task tree.

    serve_chat(settings)
      └─ store (embedded SQLite, or CQL with migrations on start)
          └─ nursery
              ├─ gRPC server (ChatService + health + reflection)      → ChatPorts.grpc
              └─ (real time and ops listeners are added beside it)

`task_status.started(ChatPorts)` is reported once every listener is bound, so tests and the
CLI bind port 0 and learn the real ports. Cancelling the caller's scope stops the listeners
gracefully (in-flight calls get `settings.grace_s` to finish).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from cellchat.auth import TokenVerifier
from cellchat.chat.app.ports import ChatStore
from cellchat.chat.app.service import ChatApp
from cellchat.chat.domain.content import Limits
from cellchat.chat.transport.grpc_api import CHAT_ERRORS, ChatServicer
from cellchat.grpcutil.health import HealthServicer, ServingStatus
from cellchat.grpcutil.server import serve_grpc
from cellchat.settings import Settings

log = logging.getLogger(__name__)

CHAT_SERVICE = "cellchat.chat.v1.ChatService"


@attrs.frozen
class ChatPorts:
    grpc: int
    ws: int = 0
    ops: int = 0


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[ChatStore]:
    if settings.uses_embedded_store:
        from cellchat.chat.storage.embedded import open_embedded_store

        log.info("using the embedded store (%s)", settings.embedded_db)
        async with open_embedded_store(settings.embedded_db) as embedded:
            yield embedded
        return
    from cellchat.chat.storage.cql import open_cql_store

    if settings.migrate_on_start:
        from cellchat.migrate import run_migrations

        applied = await trio.to_thread.run_sync(run_migrations, settings)
        log.info("keyspace %s migrations applied: %s", settings.keyspace, applied or "none")
    async with open_cql_store(
        list(settings.scylla_hosts),
        settings.scylla_port,
        settings.keyspace,
        username=settings.scylla_username or None,
        password=settings.scylla_password or None,
    ) as cql:
        yield cql


def build_app(settings: Settings, store: ChatStore) -> ChatApp:
    limits = Limits(
        edit_window_ms=settings.edit_window_s * 1000,
        max_group_participants=settings.max_group_participants,
    )
    return ChatApp(store, limits=limits)


async def serve_chat(
    settings: Settings, *, task_status: trio.TaskStatus[ChatPorts] = trio.TASK_STATUS_IGNORED
) -> None:
    verifier = TokenVerifier(settings.jwt)
    if settings.dev_jwt:
        log.warning("using the development JWT secret: fine for trying cellchat out, never "
                    "for production (set JWT_SECRET or JWT_PUBLIC_KEY)")
    async with open_store(settings) as store:
        app = build_app(settings, store)
        health = HealthServicer()
        health.set(CHAT_SERVICE, ServingStatus.SERVING)
        async with trio.open_nursery() as nursery:
            grpc_port: int = await nursery.start(
                functools.partial(
                    serve_grpc,
                    [ChatServicer(app, verifier)],
                    host=settings.host,
                    port=settings.grpc_port,
                    errors=CHAT_ERRORS,
                    grace_s=settings.grace_s,
                    health=health,
                )
            )
            log.info("chat gRPC listening on %s:%d", settings.host, grpc_port)
            task_status.started(ChatPorts(grpc=grpc_port))
