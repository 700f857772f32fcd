"""A chat replica's link to presence: the WebSocket server's `PresenceHook`, and where presence
changes turn into frames.

    open_chat_presence(settings, store, broker, hub, metrics, verifier)
      ├─ embedded (no PRESENCE_ADDR): the presence service runs in this process
      │    open_presence_service(directory=ChatDirectory(store), sink=ChangeSinks([frames]))
      │    ConnectionReporter → the service itself;  PresenceFrames → the broker
      │    the end-user PresenceService API is served on the chat gRPC port (`servicers`)
      └─ PRESENCE_ADDR=host:port: a separate `cellchat presence` process (which owns the frames)
           PresenceClient (service token svc:<replica id>) ← ConnectionReporter

Either way the hook is a `ReplicaPresence`: connects and disconnects never block a socket (the
reporter queues them and reports in order, with a complete heartbeat every
PRESENCE_HEARTBEAT_INTERVAL_MS), typing goes straight to presence.

Lifetime: the link's tasks run under their own shielded scope, so that while the chat servers
drain (SHUTDOWN_GRACE_S) disconnects are still reported. When the block exits, the replica says
goodbye: one empty heartbeat (this replica has no connections any more), so its users go
offline at once instead of when their leases lapse, and the embedded frames are flushed;
then the link stops. A replica that dies without a goodbye is covered by the leases.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from cellchat.auth import TokenVerifier
from cellchat.chat.app.directory import ChatDirectory
from cellchat.chat.app.ports import ChatStore
from cellchat.chat.realtime.broker import Broker
from cellchat.chat.realtime.fanout import RealtimeEvents
from cellchat.chat.realtime.hub import Hub
from cellchat.chat.realtime.presence_frames import PresenceAudience, PresenceFrames
from cellchat.chat.realtime.websocket import PresenceHook
from cellchat.grpcutil.health import HealthServicer, ServingStatus
from cellchat.ops import Metrics
from cellchat.presence.client import (
    ConnectionReporter,
    ReplicaPresence,
    ReplicaTarget,
    ServiceTokens,
    open_presence_client,
)
from cellchat.presence.server import open_presence_service
from cellchat.presence.service import PresenceService
from cellchat.presence.sinks import ChangeSinks
from cellchat.settings import Settings

log = logging.getLogger(__name__)

PRESENCE_USER_SERVICE = "cellchat.presence.v1.PresenceService"
_GOODBYE_S = 3.0


def replica_id_for(service_name: str) -> str:
    """`<service>-<host>-<pid>`: unique among live processes, and the same for a container
    restarted in place (whose first heartbeat then closes the dead one's connections)."""
    raw = f"{service_name}-{socket.gethostname()}-{os.getpid()}"
    return re.sub(r"[\s\x00-\x1f\x7f]", "_", raw).lstrip("~")[-128:] or f"chat-{os.getpid()}"


@attrs.define(eq=False)
class ChatPresence:
    """What the composition root gets: the hook for the WebSocket server, and more."""

    replica_id: str
    hook: PresenceHook
    reporter: ConnectionReporter
    target: ReplicaTarget
    #: Embedded only: the in-process service, its sinks (add the event outbox here: the
    #: lead's `UserOnline`/`UserOffline` events sink) and the frames sink. None with
    #: PRESENCE_ADDR, where the `cellchat presence` process owns them.
    service: PresenceService | None = None
    sinks: ChangeSinks | None = None
    frames: PresenceFrames | None = None

    def servicers(self, verifier: TokenVerifier) -> list[Any]:
        """gRPC servicers for the chat port: the end-user presence API when embedded."""
        if self.service is None:
            return []
        from cellchat.presence.transport import PresenceServicer

        return [PresenceServicer(self.service, verifier)]

    def set_health(self, health: HealthServicer) -> None:
        """Report the embedded presence API as serving beside the chat service."""
        if self.service is not None:
            health.set(PRESENCE_USER_SERVICE, ServingStatus.SERVING)

    async def goodbye(self) -> None:
        """This replica has no connections any more; flush the frames they cause."""
        try:
            await self.target.heartbeat(self.replica_id, {})
        except Exception as exc:
            log.warning("presence goodbye not delivered (%s): this replica's users go offline "
                        "when their leases lapse", type(exc).__name__)
            return
        if self.frames is not None:
            await self.frames.flushed()


@asynccontextmanager
async def open_chat_presence(
    settings: Settings, store: ChatStore, broker: Broker, hub: Hub, metrics: Metrics,
    *, replica_id: str | None = None,
) -> AsyncIterator[ChatPresence]:
    """The replica's presence link, running for the block's duration (see the module doc)."""
    replica_id = replica_id or replica_id_for(settings.service_name)
    background = trio.CancelScope(shield=True)
    raised: BaseException | None = None  # re-raised outside the nursery: no group
    async with trio.open_nursery() as nursery:
        link: ChatPresence = await nursery.start(
            _run_link, settings, store, broker, hub, metrics, replica_id, background)
        try:
            yield link
        except BaseException as exc:
            raised = exc
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(_GOODBYE_S):
                await link.goodbye()
            background.cancel()
    if raised is not None:
        raise raised


async def _run_link(
    settings: Settings, store: ChatStore, broker: Broker, hub: Hub, metrics: Metrics,
    replica_id: str, background: trio.CancelScope,
    *, task_status: trio.TaskStatus[ChatPresence],
) -> None:
    with background:
        target = settings.presence_target
        if target is None:
            await _embedded(settings, store, broker, hub, metrics, replica_id, task_status)
        else:
            await _remote(settings, target, replica_id, task_status)


async def _embedded(
    settings: Settings, store: ChatStore, broker: Broker, hub: Hub, metrics: Metrics,
    replica_id: str, task_status: trio.TaskStatus[ChatPresence],
) -> None:
    frames = PresenceFrames(PresenceAudience.from_config(store, settings.presence),
                            RealtimeEvents(hub, broker, metrics))
    sinks = ChangeSinks([frames])
    async with open_presence_service(
        settings, directory=ChatDirectory(store), sink=sinks
    ) as service, trio.open_nursery() as nursery:
        await nursery.start(frames.run)
        reporter = ConnectionReporter(
            service, replica_id,
            heartbeat_interval_s=service.config.heartbeat_interval_ms / 1000)
        await nursery.start(reporter.run)
        log.info("presence embedded (replica %s; state %s)", replica_id,
                 "in Redis" if settings.redis_url else "in process")
        task_status.started(ChatPresence(
            replica_id, ReplicaPresence(reporter, service), reporter, service,
            service=service, sinks=sinks, frames=frames))
        await trio.sleep_forever()


async def _remote(
    settings: Settings, address: tuple[str, int], replica_id: str,
    task_status: trio.TaskStatus[ChatPresence],
) -> None:
    host, port = address
    tokens = ServiceTokens(settings.jwt, replica_id)
    async with open_presence_client(host, port, token=tokens) as client, \
            trio.open_nursery() as nursery:
        reporter = ConnectionReporter(
            client, replica_id,
            heartbeat_interval_s=settings.presence.heartbeat_interval_ms / 1000)
        # Not `start`: a presence service that is down must not hold up the chat.
        nursery.start_soon(reporter.run)
        log.info("presence at %s:%d (replica %s)", host, port, replica_id)
        task_status.started(ChatPresence(
            replica_id, ReplicaPresence(reporter, client), reporter, client))
        await trio.sleep_forever()
