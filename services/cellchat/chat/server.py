"""The chat service's composition root: builds the objects, owns the task tree.

    serve_chat(settings)
      └─ store (embedded SQLite, or CQL with migrations on start), timed for the metrics
          └─ broker (in-process, or Redis Pub/Sub when REDIS_URL is set) → hub
              └─ nursery
                  ├─ gRPC server (ChatService + health + reflection)  → ChatPorts.grpc
                  ├─ WebSocket /ws/chat                               → ChatPorts.ws
                  │   └─ presence link: the embedded presence service (its user API on the
                  │      gRPC port), or PresenceClient with PRESENCE_ADDR (presence_link.py)
                  ├─ event relay (outbox → Redis stream) and marketplace consumer
                  │   (only with REDIS_URL; see event_plumbing.py)
                  └─ ops HTTP: /metrics /healthz /readyz              → ChatPorts.ops

`task_status.started(ChatPorts)` is reported once every listener is bound, so tests and the
CLI bind port 0 and learn the real ports. Cancelling the caller's scope stops the listeners
gracefully (in-flight calls get `settings.grace_s` to finish; WebSocket clients are told to
reconnect elsewhere with 1001).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from cellchat.auth import TokenVerifier
from cellchat.chat.app.announcements import Announcer
from cellchat.chat.app.ports import ChatStore, EventSink
from cellchat.chat.app.service import ChatApp
from cellchat.chat.domain.content import Limits
from cellchat.chat.event_plumbing import open_event_plumbing
from cellchat.chat.realtime.broker import open_broker
from cellchat.chat.realtime.fanout import RealtimeEvents
from cellchat.chat.realtime.hub import Hub
from cellchat.chat.realtime.presence_link import open_chat_presence
from cellchat.chat.realtime.websocket import ChatSocketServer, SocketConfig, serve_chat_socket
from cellchat.chat.transport.grpc_api import CHAT_ERRORS, ChatServicer
from cellchat.grpcutil.health import HealthServicer, ServingStatus
from cellchat.grpcutil.server import serve_grpc
from cellchat.ops import InstrumentedStore, Metrics, serve_ops, store_and_broker_checks
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


def build_app(settings: Settings, store: ChatStore, events: EventSink | None = None,
              announcer: Announcer | None = None) -> ChatApp:
    limits = Limits(
        edit_window_ms=settings.edit_window_s * 1000,
        max_group_participants=settings.max_group_participants,
    )
    return ChatApp(store, limits=limits, events_sink=events, announcer=announcer)


def socket_config(settings: Settings) -> SocketConfig:
    return SocketConfig(
        allowed_origins=settings.ws_allowed_origins,
        max_frame_bytes=settings.ws_max_frame_bytes,
        rate_per_s=settings.ws_rate_per_s,
        burst=settings.ws_burst,
        flood_strikes=settings.ws_flood_strikes,
        idle_timeout_s=settings.ws_idle_timeout_s,
        queue_size=settings.ws_queue_size,
        replay_max=settings.ws_replay_max,
        close_timeout_s=settings.ws_close_timeout_s,
        typing_ttl_s=settings.typing_ttl_s,
    )


async def serve_chat(
    settings: Settings, *, task_status: trio.TaskStatus[ChatPorts] = trio.TASK_STATUS_IGNORED
) -> None:
    verifier = TokenVerifier(settings.jwt)
    if settings.dev_jwt:
        log.warning("using the development JWT secret: fine for trying cellchat out, never "
                    "for production (set JWT_SECRET or JWT_PUBLIC_KEY)")
    metrics = Metrics()
    hub = Hub(settings.cell_id, metrics)
    async with (
        open_store(settings) as raw_store,
        open_broker(settings.redis_url, hub, standing=(hub.cell_subject,)) as broker,
        open_chat_presence(settings, InstrumentedStore(raw_store, metrics), broker, hub,
                           metrics) as presence,
        open_event_plumbing(settings, raw_store) as marketplace,
    ):
        store: ChatStore = InstrumentedStore(raw_store, metrics)
        hub.broker = broker
        events = RealtimeEvents(hub, broker, metrics)
        app = build_app(settings, store, events, marketplace.announcer)
        presence_events = marketplace.presence_sink()
        if presence.sinks is not None and presence_events is not None:
            presence.sinks.add(presence_events)  # embedded presence: UserOnline/UserOffline
        sockets = ChatSocketServer(app, verifier, hub, events, metrics, socket_config(settings),
                                   presence.hook)

        checks = {**store_and_broker_checks(raw_store, broker, metrics),
                  "accepting": lambda: sockets.accepting}
        health = HealthServicer()
        health.set(CHAT_SERVICE, ServingStatus.SERVING)
        presence.set_health(health)
        async with trio.open_nursery() as nursery:
            grpc_port: int = await nursery.start(
                functools.partial(
                    serve_grpc,
                    [ChatServicer(app, verifier), *presence.servicers(verifier)],
                    host=settings.host,
                    port=settings.grpc_port,
                    errors=CHAT_ERRORS,
                    grace_s=settings.grace_s,
                    health=health,
                )
            )
            ws_port: int = await nursery.start(
                lambda task_status: serve_chat_socket(
                    sockets, settings.host, settings.ws_port, grace_s=settings.grace_s,
                    task_status=task_status,
                )
            )
            await marketplace.start(nursery, app)
            ops_port: int = await nursery.start(
                serve_ops, settings.host, settings.ops_port, metrics, checks)
            log.info("chat listening: gRPC %s:%d, WebSocket %d, ops %d", settings.host,
                     grpc_port, ws_port, ops_port)
            task_status.started(ChatPorts(grpc=grpc_port, ws=ws_port, ops=ops_port))
