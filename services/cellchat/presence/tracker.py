"""The presence and typing rules as a state machine: no I/O, no clock, time passed in (`now_ms`).

Two rules hold the design together:

1. **A user is online while at least one of their connections holds a lease.** A connection is
   identified by (replica id, connection id) and leased for `lease_ttl_ms` from its last report
   (opened, or listed in its replica's heartbeat). A replica's heartbeat is the complete set of
   its live connections: listed ones are renewed (or opened), unlisted ones of that replica are
   closed. A replica that stops reporting loses all its connections when their leases lapse.
2. **Every transition is an explicit change.** Each method returns the changes it caused, in
   order; `expire(now_ms)` returns those caused by the passage of time. Nothing else changes
   state, so a caller that forwards every returned change misses none.

A lease or indicator lapses at its deadline (`deadline <= now_ms` counts as lapsed). A lapsed
connection's user is last seen at the lease's deadline, not at the time `expire` noticed it, so
the answer does not depend on how often the owner sweeps. Reads (`presence`, `typing`) filter
lapsed indicators exactly; lapsed leases count until the next `expire`.

The Redis store (`redis_store.py`) implements the same rules in Lua; the contract tests hold
both to them. Times are assumed non-decreasing across calls.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import TypeVar

import attrs

from cellchat.presence.model import (
    API_REPLICA,
    Change,
    Presence,
    Status,
    Typing,
    TypingStarted,
    TypingStopped,
    UserOffline,
    UserOnline,
)

ConnectionKey = tuple[str, str]  # (replica_id, connection_id)
_K = TypeVar("_K")
_V = TypeVar("_V")


@attrs.define
class _Lease:
    user_id: str
    deadline_ms: int


@attrs.define
class _User:
    chosen: Status = Status.ONLINE
    visible: Status = Status.OFFLINE
    last_seen_ms: int = 0


@attrs.frozen
class TrackerStatistics:
    connections: int
    users_connected: int
    users_known: int
    typing: int


class PresenceTracker:
    def __init__(self, *, lease_ttl_ms: int, typing_ttl_ms: int) -> None:
        if lease_ttl_ms <= 0 or typing_ttl_ms <= 0:
            raise ValueError("lease_ttl_ms and typing_ttl_ms must be positive")
        self.lease_ttl_ms = lease_ttl_ms
        self.typing_ttl_ms = typing_ttl_ms
        self._leases: dict[ConnectionKey, _Lease] = {}
        # Leases per user: a count, not a set of keys (`_leases` has those), since a replica
        # holds one entry per connected user and only whether there is any is ever asked.
        self._by_user: dict[str, int] = {}
        self._by_replica: dict[str, set[str]] = {}
        self._users: dict[str, _User] = {}
        self._typing: dict[str, dict[str, int]] = {}
        # Min-heaps of deadlines. An entry is stale (skipped) when the lease or indicator was
        # renewed or removed since: renewing pushes a new entry instead of searching the heap.
        self._lease_heap: list[tuple[int, str, str]] = []
        self._typing_heap: list[tuple[int, str, str]] = []

    # ------------------------------------------------------------------ connections

    def connection_opened(
        self, replica_id: str, connection_id: str, user_id: str, now_ms: int
    ) -> list[Change]:
        """Open (or renew) a connection. Reusing a connection id for another user closes the
        old one first."""
        out: list[Change] = []
        self._open((replica_id, connection_id), user_id, now_ms, out)
        return out

    def connection_closed(self, replica_id: str, connection_id: str, now_ms: int) -> list[Change]:
        """Close a connection; unknown ones are ignored (a close may follow a lapse)."""
        out: list[Change] = []
        self._close((replica_id, connection_id), now_ms, now_ms, out)
        return out

    def heartbeat(
        self, replica_id: str, connections: Mapping[str, str], now_ms: int
    ) -> list[Change]:
        """`connections` (connection id → user id) is everything alive on the replica."""
        out: list[Change] = []
        known = self._by_replica.get(replica_id, set())
        for connection_id in sorted(known - connections.keys()):
            self._close((replica_id, connection_id), now_ms, now_ms, out)
        for connection_id, user_id in connections.items():
            self._open((replica_id, connection_id), user_id, now_ms, out)
        return out

    def set_status(self, user_id: str, status: Status, now_ms: int) -> list[Change]:
        """The user's chosen status. ONLINE and AWAY also lease an API connection for the user
        (see API_REPLICA), OFFLINE releases it: appear offline, whatever is connected."""
        if status not in (Status.ONLINE, Status.AWAY, Status.OFFLINE):
            raise ValueError(f"cannot choose {status}")
        out: list[Change] = []
        self._user(user_id).chosen = status
        key = (API_REPLICA, user_id)
        if status is Status.OFFLINE:
            self._close(key, now_ms, now_ms, out)
        else:
            self._open(key, user_id, now_ms, out)
        self._settle(user_id, now_ms, now_ms, out)
        return out

    # ------------------------------------------------------------------ typing

    def set_typing(
        self, conversation_id: str, user_id: str, typing: bool, now_ms: int
    ) -> list[Change]:
        out: list[Change] = []
        entries = self._typing.get(conversation_id)
        previous = entries.get(user_id) if entries is not None else None
        if typing:
            deadline = now_ms + self.typing_ttl_ms
            self._typing.setdefault(conversation_id, {})[user_id] = deadline
            heapq.heappush(self._typing_heap, (deadline, conversation_id, user_id))
            if previous is None:
                out.append(TypingStarted(conversation_id, user_id, deadline, now_ms))
        elif previous is not None:
            self._drop_typing(conversation_id, user_id)
            out.append(TypingStopped(conversation_id, user_id, now_ms))
        return out

    # ------------------------------------------------------------------ time

    def expire(self, now_ms: int) -> list[Change]:
        """Close every lease and stop every indicator whose deadline is <= now_ms."""
        out: list[Change] = []
        heap = self._lease_heap
        while heap and heap[0][0] <= now_ms:
            deadline, replica_id, connection_id = heapq.heappop(heap)
            lease = self._leases.get((replica_id, connection_id))
            if lease is not None and lease.deadline_ms == deadline:
                self._close((replica_id, connection_id), deadline, now_ms, out)
        heap = self._typing_heap
        while heap and heap[0][0] <= now_ms:
            deadline, conversation_id, user_id = heapq.heappop(heap)
            entries = self._typing.get(conversation_id)
            if entries is not None and entries.get(user_id) == deadline:
                self._drop_typing(conversation_id, user_id)
                out.append(TypingStopped(conversation_id, user_id, now_ms, lapsed=True))
        return out

    def next_deadline(self) -> int | None:
        """The earliest deadline `expire` may act on (possibly a stale one), if any."""
        candidates = [h[0][0] for h in (self._lease_heap, self._typing_heap) if h]
        return min(candidates) if candidates else None

    # ------------------------------------------------------------------ reads

    def presence(self, user_id: str, now_ms: int) -> Presence:
        user = self._users.get(user_id)
        if user is None:
            return Presence(user_id, Status.OFFLINE, 0)
        if user.visible is Status.OFFLINE:
            return Presence(user_id, Status.OFFLINE, user.last_seen_ms)
        return Presence(user_id, user.visible, now_ms)

    def typing(self, conversation_id: str, now_ms: int) -> list[Typing]:
        entries = self._typing.get(conversation_id, {})
        return sorted(
            (Typing(user_id, deadline) for user_id, deadline in entries.items()
             if deadline > now_ms),
            key=lambda t: t.user_id,
        )

    def connections_of(self, replica_id: str) -> frozenset[str]:
        return frozenset(self._by_replica.get(replica_id, ()))

    def statistics(self) -> TrackerStatistics:
        return TrackerStatistics(
            connections=len(self._leases),
            users_connected=len(self._by_user),
            users_known=len(self._users),
            typing=sum(len(e) for e in self._typing.values()),
        )

    # ------------------------------------------------------------------ internals

    def _user(self, user_id: str) -> _User:
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User()
        return user

    def _open(self, key: ConnectionKey, user_id: str, now_ms: int, out: list[Change]) -> None:
        lease = self._leases.get(key)
        if lease is not None and lease.user_id != user_id:
            self._close(key, now_ms, now_ms, out)
            lease = None
        deadline = now_ms + self.lease_ttl_ms
        heapq.heappush(self._lease_heap, (deadline, key[0], key[1]))
        if lease is not None:
            lease.deadline_ms = deadline
            return
        self._leases[key] = _Lease(user_id, deadline)
        self._by_user[user_id] = self._by_user.get(user_id, 0) + 1
        self._by_replica.setdefault(key[0], set()).add(key[1])
        self._settle(user_id, now_ms, now_ms, out)

    def _close(self, key: ConnectionKey, seen_ms: int, now_ms: int, out: list[Change]) -> None:
        lease = self._leases.pop(key, None)
        if lease is None:
            return
        user_id = lease.user_id
        left = self._by_user.pop(user_id) - 1
        if left:
            self._by_user[user_id] = left
        _discard(self._by_replica, key[0], key[1])
        self._settle(user_id, seen_ms, now_ms, out)

    def _settle(self, user_id: str, seen_ms: int, now_ms: int, out: list[Change]) -> None:
        """Emit the change, if any, between what others saw and what they should see now."""
        user = self._user(user_id)
        effective = user.chosen if user_id in self._by_user else Status.OFFLINE
        if effective is user.visible:
            return
        user.visible = effective
        if effective is Status.OFFLINE:
            user.last_seen_ms = max(user.last_seen_ms, seen_ms)
            out.append(UserOffline(user_id, user.last_seen_ms, now_ms))
        else:
            out.append(UserOnline(user_id, effective, now_ms))

    def _drop_typing(self, conversation_id: str, user_id: str) -> None:
        entries = self._typing[conversation_id]
        del entries[user_id]
        if not entries:
            del self._typing[conversation_id]


def _discard(index: dict[_K, set[_V]], key: _K, value: _V) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(value)
        if not members:
            del index[key]
