"""`cellchat presence`: the presence service as its own process, beside chat replicas that set
PRESENCE_ADDR. Its composition root:

    serve_presence_process(settings)
      ├─ chat store (CQL, read only: conversations, participants, blocks; no migrations)
      │    └─ ChatDirectory: who may see whom (the presence API's visibility)
      ├─ broker (Redis Pub/Sub, the chat replicas' one)
      │    └─ PresenceFrames: presence / typing.stopped frames to the clients, on any replica
      └─ nursery
          ├─ serve_presence: gRPC PresenceService + PresenceReportService on PRESENCE_PORT,
          │   state in Redis (REDIS_URL), sinks = ChangeSinks([frames, presence events])
          ├─ event relay: UserOnline / UserOffline from the "presence" outbox to the stream
          └─ ops HTTP on OPS_PORT: /metrics /healthz /readyz

It needs both SCYLLA_HOSTS and REDIS_URL (`check_settings` says which is missing and why):
without the chat store it cannot know who shares a conversation with whom, so it would show
nobody's presence to anybody; without Redis, its changes could not reach the chat replicas'
clients and several instances could not share state. For one process with everything, run
`cellchat run` without PRESENCE_ADDR: it embeds presence.
"""

from __future__ import annotations

import functools
import logging

import attrs
import trio

from cellchat.chat.app.directory import ChatDirectory
from cellchat.chat.event_plumbing import open_event_plumbing
from cellchat.chat.realtime.broker import open_broker
from cellchat.chat.realtime.fanout import RealtimeEvents
from cellchat.chat.realtime.hub import Hub
from cellchat.chat.realtime.presence_frames import PresenceAudience, PresenceFrames
from cellchat.ops import InstrumentedStore, Metrics, serve_ops, store_and_broker_checks
from cellchat.presence.server import serve_presence
from cellchat.presence.sinks import ChangeSinks
from cellchat.settings import Settings, SettingsError

log = logging.getLogger(__name__)

#: The presence process's own outbox (in the chat keyspace) for UserOnline / UserOffline.
PRESENCE_OUTBOX = "presence"


@attrs.frozen
class PresencePorts:
    grpc: int
    ops: int


def check_settings(settings: Settings) -> None:
    """Raise `SettingsError` unless this process can do its job (see the module doc)."""
    if settings.uses_embedded_store:
        raise SettingsError(
            "cellchat presence needs SCYLLA_HOSTS: it reads conversations and blocks from the "
            "chat store to decide who may see whose presence (for one process with chat and "
            "presence, run `cellchat run` without PRESENCE_ADDR)"
        )
    if not settings.redis_url:
        raise SettingsError(
            "cellchat presence needs REDIS_URL: its state lives there, shared by every presence "
            "instance, and its changes reach the chat replicas' clients through it"
        )


async def serve_presence_process(
    settings: Settings, *, task_status: trio.TaskStatus[PresencePorts] = trio.TASK_STATUS_IGNORED
) -> None:
    check_settings(settings)
    from cellchat.chat.storage.cql import open_cql_store

    metrics = Metrics()
    hub = Hub(settings.cell_id, metrics)  # never has connections: only names subjects
    async with open_cql_store(
        list(settings.scylla_hosts),
        settings.scylla_port,
        settings.keyspace,
        username=settings.scylla_username or None,
        password=settings.scylla_password or None,
    ) as raw_store, open_broker(settings.redis_url, hub) as broker, open_event_plumbing(
        settings, raw_store, outbox_name=PRESENCE_OUTBOX
    ) as marketplace:
        store = InstrumentedStore(raw_store, metrics)
        frames = PresenceFrames(PresenceAudience.from_config(store, settings.presence),
                                RealtimeEvents(hub, broker, metrics))
        sinks = ChangeSinks([frames])
        presence_events = marketplace.presence_sink()
        if presence_events is not None:
            sinks.add(presence_events)  # UserOnline / UserOffline for the marketplace

        async with trio.open_nursery() as nursery:
            await nursery.start(frames.run)
            if marketplace.relay is not None:
                await nursery.start(marketplace.relay.run)
            grpc_port: int = await nursery.start(functools.partial(
                serve_presence, settings, directory=ChatDirectory(store), sink=sinks))
            ops_port: int = await nursery.start(
                serve_ops, settings.host, settings.ops_port, metrics,
                store_and_broker_checks(raw_store, broker, metrics))
            log.info("presence process ready: gRPC %d, ops %d", grpc_port, ops_port)
            task_status.started(PresencePorts(grpc_port, ops_port))
