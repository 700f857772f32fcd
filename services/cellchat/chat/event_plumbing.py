"""The marketplace event plumbing of a chat replica: outbox → relay → Redis stream out, and
the marketplace stream → consumer group → use cases in.

Only with a broker (`REDIS_URL`): the embedded default has no one to talk to, so it records
no events at all rather than piling them up. The outbox lives in the chat's own database
(embedded or CQL), next to the changes it announces.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import coredis
import trio

from cellchat.chat.app.announcements import Announcer, ChatChanges, PresenceAnnouncer
from cellchat.chat.app.marketplace import marketplace_handlers
from cellchat.chat.app.ports import ChatStore
from cellchat.chat.app.service import ChatApp
from cellchat.events import catalog
from cellchat.events.consumer import Consumer
from cellchat.events.dedupe import RedisProcessedIds
from cellchat.events.outbox import Outbox
from cellchat.events.relay import Relay
from cellchat.events.streams import RedisStreamPublisher
from cellchat.settings import Settings

log = logging.getLogger(__name__)

OUTBOX_NAME = "chat"


class EventPlumbing:
    """The announcer the use cases record into, and the relay and consumer that run beside
    them. Without a broker everything is off (`announcer` is None)."""

    def __init__(self, announcer: Announcer | None = None, relay: Relay | None = None,
                 client: coredis.Redis[str] | None = None, *, cell_id: str = "",
                 stream: str = catalog.MARKETPLACE_STREAM) -> None:
        self.announcer = announcer
        self.relay = relay
        self.consumer: Consumer | None = None
        self._client = client
        self._cell = cell_id
        self._stream = stream

    def presence_sink(self) -> PresenceAnnouncer | None:
        """A presence change sink that announces UserOnline/UserOffline through this outbox."""
        if self.announcer is None or self.relay is None:
            return None
        return PresenceAnnouncer(self.announcer.outbox, self._cell, self.relay.wake)

    async def start(self, nursery: trio.Nursery, app: ChatApp) -> None:
        """Start the relay and the consumer in the replica's nursery (no-op without a broker)."""
        if self.relay is None or self._client is None:
            return
        await nursery.start(self.relay.run)
        self.consumer = Consumer(
            self._client,
            handlers=marketplace_handlers(app),
            processed=RedisProcessedIds(self._client, cell_id=self._cell),
            group=catalog.consumer_group(self._cell),
            consumer=_replica_name(),
            stream=self._stream,
        )
        await nursery.start(self.consumer.run)


def _replica_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def _outbox_for(store: ChatStore, settings: Settings, name: str) -> Outbox:
    from cellchat.chat.storage.embedded import EmbeddedStore

    if isinstance(store, EmbeddedStore):
        return store.outbox()
    from cellchat.chat.storage.cql import CqlStore
    from cellchat.chat.storage.cql_outbox import CqlOutbox

    assert isinstance(store, CqlStore)
    return await CqlOutbox.open(store.trio_session, settings.keyspace, name)


@asynccontextmanager
async def open_event_plumbing(settings: Settings, store: ChatStore, *,
                              outbox_name: str = OUTBOX_NAME) -> AsyncIterator[EventPlumbing]:
    if not settings.redis_url:
        yield EventPlumbing()
        return
    outbox = await _outbox_for(store, settings, outbox_name)
    client: coredis.Redis[str] = coredis.Redis.from_url(settings.redis_url,
                                                         decode_responses=True)
    async with client:
        announcer = Announcer(outbox, settings.cell_id)
        relay = Relay(outbox, ChatChanges(store),
                      RedisStreamPublisher(client, catalog.events_stream(settings.cell_id)))
        announcer.set_wake(relay.wake)
        plumbing = EventPlumbing(announcer, relay, client, cell_id=settings.cell_id,
                                 stream=settings.marketplace_stream)
        log.info("events: publishing to %s, consuming %s",
                 catalog.events_stream(settings.cell_id), settings.marketplace_stream)
        yield plumbing
