"""The presence use cases: what each call means, whoever transports it.

Transports (purerpc here, or the chat process calling in directly on the embedded default) call
only these methods. Rules enforced here, not in the stores:

* **Visibility.** A viewer sees the presence of users who share at least one conversation with
  them, and their own; anyone else is answered UNKNOWN with last_seen 0 (not an error: a batch
  may mix both, and the viewer learns nothing they could not learn from their inbox). Typing is
  read and written only by participants of the conversation; others get NOT_FOUND, as from
  the chat API, whether or not the conversation exists.
* **Changes** returned by the store are handed to the `ChangeSink` after the store committed
  them. A sink failure is logged and counted; the state stays correct.
* **Time** comes from one clock (`clock()`, Unix epoch ms); tests pass trio's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import attrs
import trio

from cellchat.chat.domain.errors import InvalidArgument, NotFound, StoreError
from cellchat.presence.config import PresenceConfig
from cellchat.presence.model import (
    CHOOSABLE,
    Change,
    Presence,
    Status,
    Typing,
    check_id,
    check_replica_id,
)
from cellchat.presence.ports import ChangeSink, ConversationDirectory, PresenceStore

log = logging.getLogger(__name__)

#: Connections one heartbeat may list (a few MB of protobuf at most).
MAX_HEARTBEAT_CONNECTIONS = 50_000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@attrs.frozen
class LeaseTerms:
    """What a replica needs to know to keep its connections alive."""

    lease_ttl_ms: int
    heartbeat_interval_ms: int


@attrs.frozen
class ServiceStatistics:
    changes_published: int
    sink_failures: int
    sweeps: int
    sweep_failures: int


class PresenceService:
    def __init__(
        self,
        store: PresenceStore,
        directory: ConversationDirectory,
        sink: ChangeSink,
        config: PresenceConfig,
        *,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._store = store
        self._directory = directory
        self._sink = sink
        self.config = config
        self._clock = clock
        self._published = 0
        self._sink_failures = 0
        self._sweeps = 0
        self._sweep_failures = 0

    @property
    def lease_terms(self) -> LeaseTerms:
        return LeaseTerms(self.config.lease_ttl_ms, self.config.heartbeat_interval_ms)

    # ------------------------------------------------------------------ end users

    async def set_online_status(self, caller: str, status: Status) -> Presence:
        """The caller's chosen status; answers how others now see them."""
        if status not in CHOOSABLE:
            raise InvalidArgument("status", "must be ONLINE, AWAY or OFFLINE")
        now = self._clock()
        await self._emit(await self._store.set_status(caller, status, now))
        [presence] = await self._store.presences([caller], now)
        return presence

    async def get_online_status(self, viewer: str, user_ids: Sequence[str]) -> list[Presence]:
        if len(user_ids) > self.config.max_batch:
            raise InvalidArgument("user_ids", f"at most {self.config.max_batch} per call")
        check_id("viewer_id", viewer)
        for user_id in user_ids:
            check_id("user_ids", user_id)
        others = {u for u in user_ids if u != viewer}
        visible = set(await self._directory.sharing_a_conversation(viewer, others)) if others \
            else set()
        if viewer in user_ids:
            visible.add(viewer)
        wanted = sorted(visible)
        known = {p.user_id: p for p in await self._store.presences(wanted, self._clock())}
        return [known.get(u) or Presence(u, Status.UNKNOWN, 0) for u in user_ids]

    async def set_typing(self, caller: str, conversation_id: str, typing: bool) -> int:
        """Start, refresh or stop the caller's indicator; its expiry (0 when stopped)."""
        check_id("user_id", caller)
        check_id("conversation_id", conversation_id)
        await self._require_participant(caller, conversation_id)
        now = self._clock()
        await self._emit(await self._store.set_typing(conversation_id, caller, typing, now))
        return now + self.config.typing_ttl_ms if typing else 0

    async def get_typing(self, viewer: str, conversation_id: str) -> list[Typing]:
        """Who is typing in the conversation, the viewer excluded."""
        check_id("conversation_id", conversation_id)
        await self._require_participant(viewer, conversation_id)
        typing = await self._store.typing(conversation_id, self._clock())
        return [t for t in typing if t.user_id != viewer]

    # ------------------------------------------------------------------ chat replicas

    async def heartbeat(self, replica_id: str, connections: Mapping[str, str]) -> LeaseTerms:
        check_replica_id("replica_id", replica_id)
        if len(connections) > MAX_HEARTBEAT_CONNECTIONS:
            raise InvalidArgument(
                "connections", f"at most {MAX_HEARTBEAT_CONNECTIONS} per heartbeat"
            )
        for connection_id, user_id in connections.items():
            check_id("connections.connection_id", connection_id)
            check_id("connections.user_id", user_id)
        await self._emit(await self._store.heartbeat(replica_id, connections, self._clock()))
        return self.lease_terms

    async def connection_opened(
        self, replica_id: str, connection_id: str, user_id: str
    ) -> LeaseTerms:
        check_replica_id("replica_id", replica_id)
        check_id("connection.connection_id", connection_id)
        check_id("connection.user_id", user_id)
        await self._emit(
            await self._store.connection_opened(replica_id, connection_id, user_id, self._clock())
        )
        return self.lease_terms

    async def connection_closed(self, replica_id: str, connection_id: str) -> None:
        check_replica_id("replica_id", replica_id)
        check_id("connection_id", connection_id)
        await self._emit(
            await self._store.connection_closed(replica_id, connection_id, self._clock())
        )

    async def report_typing(self, user_id: str, conversation_id: str, typing: bool) -> int:
        """`set_typing` on behalf of a user connected to a replica (WebSocket `typing`)."""
        return await self.set_typing(user_id, conversation_id, typing)

    async def get_online_status_for(
        self, viewer_id: str, user_ids: Sequence[str]
    ) -> list[Presence]:
        """`get_online_status` as `viewer_id` would see it."""
        return await self.get_online_status(viewer_id, user_ids)

    # ------------------------------------------------------------------ time

    async def sweep(self) -> list[Change]:
        """Close lapsed leases and stop lapsed indicators now; publish and return the changes."""
        changes = await self._store.expire(self._clock())
        self._sweeps += 1
        await self._emit(changes)
        return changes

    async def run_sweeper(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                          ) -> None:
        """Sweep every `sweep_interval_ms` until cancelled. A failing store is retried at the
        next interval: the bound on going offline stretches by the outage, nothing is lost."""
        interval = self.config.sweep_interval_ms / 1000
        task_status.started()
        while True:
            try:
                await self.sweep()
            except StoreError as exc:
                self._sweep_failures += 1
                log.warning("presence sweep failed: %s", exc)
            await trio.sleep(interval)

    def statistics(self) -> ServiceStatistics:
        return ServiceStatistics(
            self._published, self._sink_failures, self._sweeps, self._sweep_failures
        )

    # ------------------------------------------------------------------ internals

    async def _require_participant(self, user_id: str, conversation_id: str) -> None:
        if not await self._directory.is_participant(user_id, conversation_id):
            raise NotFound("conversation not found")

    async def _emit(self, changes: list[Change]) -> None:
        if not changes:
            return
        try:
            await self._sink.publish(changes)
        except Exception:
            # The transition is committed; losing its notification must not fail the call that
            # caused it (readers still see the truth). Fan-out is at-most-once anyway.
            self._sink_failures += 1
            log.exception("presence change sink failed; %d change(s) not delivered", len(changes))
            return
        self._published += len(changes)
