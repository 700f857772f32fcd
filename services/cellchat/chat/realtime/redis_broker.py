"""The broker port on Redis Pub/Sub through coredis (native on Trio, no asyncio bridge).

Rules:
- One publish is one round trip carrying the payload once: a small Lua script PUBLISHes the
  same envelope to every recipient's subject. (Subjects travel as arguments, not keys, so the
  script stays valid on Redis Cluster, where PUBLISH reaches every node anyway.)
- One Pub/Sub connection per replica, subscribed to the standing subjects (the cell's) and to
  the subjects of the users connected here. Subscribes from a burst of connecting clients are
  pipelined on it (coredis writes each SUBSCRIBE at once and waits for its own acknowledgement);
  each waits up to `subscribe_timeout_s` (coredis's own default of 1 s refused half of a
  1,000-client connect burst with 503).
- coredis would reconnect and resubscribe silently; here its retries are off on purpose. A lost
  connection is a possible gap, so the receiver is told (`interrupted`: local clients reconnect
  and resume from storage), then this adapter reconnects with backoff. While it is down, `ready`
  is false, `subscribe` raises `BrokerUnavailable` and /readyz answers 503.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import coredis
import trio
from coredis.retry import NoRetryPolicy

from cellchat.chat.realtime.broker import BrokerUnavailable, Envelope, Receiver

#: What coredis raises when the Pub/Sub connection was closed under a call (at shutdown, the
#: broker's own task closes it while handlers still unsubscribe).
_CLOSED = (anyio.ClosedResourceError, anyio.BrokenResourceError)

log = logging.getLogger(__name__)

_PUBLISH_ALL = """
for i = 2, #ARGV do
  redis.call('PUBLISH', ARGV[i], ARGV[1])
end
return #ARGV - 1
"""


class RedisBroker:
    def __init__(self, client: coredis.Redis[str], receiver: Receiver, *,
                 standing: Sequence[str] = (), subscribe_timeout_s: float = 5.0) -> None:
        self._client = client
        self._receiver = receiver
        self._script = client.register_script(_PUBLISH_ALL)
        self._subjects: set[str] = set(standing)
        self._pubsub: Any = None
        self._ready = False
        self._subscribe_timeout_s = subscribe_timeout_s
        self.reconnects = 0

    @property
    def ready(self) -> bool:
        return self._ready

    async def publish(self, subjects: Sequence[str], envelope: Envelope) -> None:
        if not subjects:
            return
        try:
            await self._script(args=[envelope.to_wire(), *subjects])
        except (coredis.exceptions.RedisError, OSError) as exc:
            raise BrokerUnavailable(f"publish failed: {type(exc).__name__}") from exc

    async def subscribe(self, subject: str) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self._ready:
            raise BrokerUnavailable("not connected to Redis")
        self._subjects.add(subject)
        try:
            with trio.fail_after(self._subscribe_timeout_s):
                await pubsub.subscribe(subject)
        except (coredis.exceptions.RedisError, OSError, TimeoutError, trio.TooSlowError,
                *_CLOSED) as exc:
            self._subjects.discard(subject)
            raise BrokerUnavailable(f"subscribe failed: {type(exc).__name__}") from exc

    async def unsubscribe(self, subject: str) -> None:
        self._subjects.discard(subject)
        pubsub = self._pubsub
        if pubsub is None or not self._ready:
            return
        try:
            with trio.move_on_after(self._subscribe_timeout_s):
                await pubsub.unsubscribe(subject)
        except (coredis.exceptions.RedisError, OSError, TimeoutError, *_CLOSED):
            # The connection is going away (or the replica is stopping and closed it first);
            # its subscriptions go with it.
            pass

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the Pub/Sub connection up; report `started` once the first one is."""
        delay = 0.1
        started = False
        while True:
            failure: BaseException = BrokerUnavailable("the subscriber connection ended")
            try:
                try:
                    async with self._client.pubsub(
                        retry_policy=NoRetryPolicy(),
                        ignore_subscribe_messages=True,
                        channels=sorted(self._subjects) or None,
                        subscription_timeout=self._subscribe_timeout_s,
                    ) as pubsub:
                        self._pubsub = pubsub
                        self._ready = True
                        delay = 0.1
                        if started:
                            log.info("broker connection restored")
                        else:
                            started = True
                            task_status.started()
                        await self._consume(pubsub)
                except* _CLOSED as closed:
                    # coredis's cleanup UNSUBSCRIBEs on a connection that may already be
                    # closed under it (Redis gone, or the replica stopping, while the cell
                    # subject is always subscribed). When stopping, the Cancelled in the same
                    # group goes on after this clause; otherwise it is a lost connection.
                    failure = closed
            except Exception as exc:  # any failure means: lost, reconnect
                failure = exc
            was_ready = self._ready
            self._ready = False
            self._pubsub = None
            if was_ready:
                self.reconnects += 1
                log.warning("broker connection lost (%s); local clients will resume",
                            type(failure).__name__)
                self._receiver.interrupted()
            if not started and delay >= 1.6:
                raise BrokerUnavailable(
                    f"cannot reach Redis: {type(failure).__name__}") from failure
            await trio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _consume(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(timeout=math.inf)
            if message is None or message.get("type") != "message":
                continue
            try:
                envelope = Envelope.from_wire(message["data"])
            except (ValueError, TypeError):
                log.warning("dropped a malformed broker message")
                continue
            self._receiver.deliver(message["channel"], envelope)


@asynccontextmanager
async def open_redis_broker(url: str, receiver: Receiver, standing: Sequence[str] = ()
                            ) -> AsyncIterator[RedisBroker]:
    client: coredis.Redis[str] = coredis.Redis.from_url(
        url, decode_responses=True, connect_timeout=2.0, stream_timeout=5.0
    )
    async with client:
        broker = RedisBroker(client, receiver, standing=standing)
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            try:
                yield broker
            finally:
                nursery.cancel_scope.cancel()
