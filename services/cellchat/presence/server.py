"""The presence service's composition root: builds the objects, owns the task tree.

    serve_presence(settings)
      └─ open_presence_service: store (Redis if REDIS_URL, else in-process)
          ├─ sweeper (lapsed leases and typing indicators, every sweep_interval_ms)
          └─ gRPC server: PresenceService + PresenceReportService + health + reflection

`task_status.started(port)` is reported once the gRPC port is bound (tests bind port 0).
Cancelling the caller's scope stops the server gracefully (`settings.grace_s`).

The embedded default (`cellchat run`: chat and presence in one process) needs no gRPC between
them: it uses `open_presence_service` and hands the `PresenceService` to the chat side, which
reports connections to it through a `ConnectionReporter` exactly as it would to a
`PresenceClient`.

The composition root passes in what presence does not own: a `ConversationDirectory` backed by
the chat store (visibility), and a `ChangeSink` towards fan-out and the event outbox. Without
them presence still runs, showing nobody's presence to anybody else, and changes go nowhere.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from cellchat.auth import TokenVerifier
from cellchat.grpcutil.health import HealthServicer, ServingStatus
from cellchat.grpcutil.server import serve_grpc
from cellchat.presence.config import PresenceConfig
from cellchat.presence.memory import ChangeFeed, InMemoryPresenceStore, NoSharedConversations
from cellchat.presence.ports import ChangeSink, ConversationDirectory, PresenceStore
from cellchat.presence.service import PresenceService, wall_clock_ms
from cellchat.presence.tracker import PresenceTracker
from cellchat.presence.transport import (
    PRESENCE_ERRORS,
    PresenceReportServicer,
    PresenceServicer,
)
from cellchat.settings import Settings

log = logging.getLogger(__name__)

PRESENCE_SERVICES = ("cellchat.presence.v1.PresenceService",
                     "cellchat.presence.v1.PresenceReportService")


@asynccontextmanager
async def open_presence_store(
    settings: Settings, config: PresenceConfig
) -> AsyncIterator[PresenceStore]:
    if not settings.redis_url:
        log.info("presence state in process (no REDIS_URL): one presence instance only")
        yield InMemoryPresenceStore(
            PresenceTracker(lease_ttl_ms=config.lease_ttl_ms, typing_ttl_ms=config.typing_ttl_ms)
        )
        return
    from cellchat.presence.redis_store import namespace_for, open_redis_presence_store

    async with open_redis_presence_store(
        settings.redis_url, namespace=namespace_for(settings.cell_id), config=config
    ) as store:
        yield store


@asynccontextmanager
async def open_presence_service(
    settings: Settings,
    *,
    config: PresenceConfig | None = None,
    directory: ConversationDirectory | None = None,
    sink: ChangeSink | None = None,
    clock: Callable[[], int] = wall_clock_ms,
) -> AsyncIterator[PresenceService]:
    """A running PresenceService (store open, sweeper running) for the block's duration."""
    config = config if config is not None else settings.presence
    if directory is None:
        log.warning("presence has no conversation directory: nobody sees anybody's presence")
        directory = NoSharedConversations()
    async with open_presence_store(settings, config) as store:
        service = PresenceService(
            store, directory, sink if sink is not None else ChangeFeed(), config, clock=clock
        )
        raised: BaseException | None = None  # re-raised outside the nursery: no group
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run_sweeper)
            try:
                yield service
            except BaseException as exc:
                raised = exc
            finally:
                nursery.cancel_scope.cancel()
        if raised is not None:
            raise raised


async def serve_presence(
    settings: Settings,
    *,
    config: PresenceConfig | None = None,
    directory: ConversationDirectory | None = None,
    sink: ChangeSink | None = None,
    clock: Callable[[], int] = wall_clock_ms,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    verifier = TokenVerifier(settings.jwt)
    if settings.dev_jwt:
        log.warning("using the development JWT secret: fine for trying cellchat out, never "
                    "for production (set JWT_SECRET or JWT_PUBLIC_KEY)")
    async with open_presence_service(
        settings, config=config, directory=directory, sink=sink, clock=clock
    ) as service:
        health = HealthServicer()
        for name in PRESENCE_SERVICES:
            health.set(name, ServingStatus.SERVING)
        async with trio.open_nursery() as nursery:
            port: int = await nursery.start(
                functools.partial(
                    serve_grpc,
                    [
                        PresenceServicer(service, verifier),
                        PresenceReportServicer(service, verifier),
                    ],
                    host=settings.host,
                    port=settings.presence_port,
                    errors=PRESENCE_ERRORS,
                    grace_s=settings.grace_s,
                    health=health,
                )
            )
            c = service.config
            log.info(
                "presence gRPC listening on %s:%d (lease %d ms, heartbeat %d ms, typing %d ms)",
                settings.host, port, c.lease_ttl_ms, c.heartbeat_interval_ms, c.typing_ttl_ms,
            )
            task_status.started(port)
