"""What chat replicas use to talk to presence: `PresenceClient` (purerpc) and `ConnectionReporter`.

* `PresenceClient` calls both presence services over one HTTP/2 connection that it keeps open
  in a task it owns (`open_presence_client`), reconnecting with backoff when it breaks. Replica
  calls carry the service token from `token()`; end-user calls take the user's token. Failed
  calls raise the same domain errors the in-process `PresenceService` raises, plus
  `PresenceUnavailable` (a `StoreUnavailable`) when presence cannot be reached in time.
* `ConnectionReporter` keeps presence told about a replica's connections. `opened`/`closed`
  never block (the WebSocket handlers call them); one task reports in order, so presence never
  sees a close before its open; every heartbeat carries the complete set of live connections,
  so anything lost during an outage (or dropped when too many deltas queue up) is repaired by
  the next heartbeat, which is sent first thing after every failure. It reports to any
  `ReportTarget`: a `PresenceClient`, or the `PresenceService` itself in the embedded process.
* `ReplicaPresence` is what the WebSocket server calls (its `PresenceHook`): connect and
  disconnect go to the reporter, typing to presence.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
import attrs
import h2.exceptions
import purerpc
import trio

from cellchat.api.presence.v1 import presence_grpc
from cellchat.api.presence.v1 import presence_pb2 as pb
from cellchat.auth import JwtSettings, mint_token
from cellchat.chat.domain import errors
from cellchat.presence.model import Presence, Status, Typing
from cellchat.presence.service import LeaseTerms
from cellchat.presence.transport import SERVICE_SUBJECT_PREFIX, STATUS_FROM_PB, STATUS_TO_PB

log = logging.getLogger(__name__)

_TRANSPORT_ERRORS = (
    purerpc.GRPCError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    h2.exceptions.H2Error,
    OSError,
)


class PresenceUnavailable(errors.StoreUnavailable):
    """Presence could not be reached, or did not answer in time."""


def _error_from_status(status: purerpc.Status) -> errors.ChatError:
    code, message = status.status_code, status.status_message
    if code is purerpc.StatusCode.INVALID_ARGUMENT:
        field, _, reason = message.partition(": ")
        return errors.InvalidArgument(field, reason) if reason else \
            errors.InvalidArgument("request", message)
    if code is purerpc.StatusCode.NOT_FOUND:
        return errors.NotFound(message)
    if code is purerpc.StatusCode.PERMISSION_DENIED:
        return errors.PermissionDenied(message)
    if code is purerpc.StatusCode.UNAUTHENTICATED:
        return errors.Unauthenticated(message)
    return PresenceUnavailable(f"presence answered {code.name}: {message}")


class ServiceTokens:
    """Service tokens (`svc:<name>`) minted with the cell's JWT signing key, renewed before they
    expire. For HMAC setups, or wherever the replica holds a signing key."""

    def __init__(self, jwt: JwtSettings, name: str, *, ttl_s: int = 3600) -> None:
        self._jwt = jwt
        self._subject = SERVICE_SUBJECT_PREFIX + name
        self._ttl_s = ttl_s
        self._token = ""
        self._renew_at = 0.0

    def __call__(self) -> str:
        now = time.time()
        if now >= self._renew_at:
            self._token = mint_token(self._jwt, self._subject, ttl_s=self._ttl_s, now=now)
            self._renew_at = now + self._ttl_s / 2
        return self._token


class _Stubs:
    def __init__(self, channel: Any) -> None:
        self.users = presence_grpc.PresenceServiceStub(channel)  # type: ignore[no-untyped-call]
        self.replicas = presence_grpc.PresenceReportServiceStub(  # type: ignore[no-untyped-call]
            channel
        )


class PresenceClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: Callable[[], str],
        call_timeout_s: float = 5.0,
    ) -> None:
        self._host = host
        self._port = port
        self._token = token
        self._call_timeout_s = call_timeout_s
        self._stubs: _Stubs | None = None
        self._ready = trio.Event()
        self._broken = trio.Event()

    # ------------------------------------------------------------------ replica calls

    async def heartbeat(self, replica_id: str, connections: Mapping[str, str]) -> LeaseTerms:
        reply = await self._call(
            "replicas", "Heartbeat",
            pb.HeartbeatRequest(
                replica_id=replica_id,
                connections=[pb.Connection(connection_id=c, user_id=u)
                             for c, u in connections.items()],
            ),
        )
        return LeaseTerms(reply.lease_ttl_ms, reply.heartbeat_interval_ms)

    async def connection_opened(
        self, replica_id: str, connection_id: str, user_id: str
    ) -> LeaseTerms:
        reply = await self._call(
            "replicas", "ConnectionOpened",
            pb.ConnectionOpenedRequest(
                replica_id=replica_id,
                connection=pb.Connection(connection_id=connection_id, user_id=user_id),
            ),
        )
        return LeaseTerms(reply.lease_ttl_ms, 0)

    async def connection_closed(self, replica_id: str, connection_id: str) -> None:
        await self._call(
            "replicas", "ConnectionClosed",
            pb.ConnectionClosedRequest(replica_id=replica_id, connection_id=connection_id),
        )

    async def report_typing(self, user_id: str, conversation_id: str, typing: bool) -> int:
        reply = await self._call(
            "replicas", "ReportTyping",
            pb.ReportTypingRequest(user_id=user_id, conversation_id=conversation_id,
                                   typing=typing),
        )
        return int(reply.expires_at_ms)

    async def get_online_status_for(
        self, viewer_id: str, user_ids: Sequence[str]
    ) -> list[Presence]:
        reply = await self._call(
            "replicas", "GetOnlineStatusFor",
            pb.GetOnlineStatusForRequest(viewer_id=viewer_id, user_ids=list(user_ids)),
        )
        return [_presence_in(p) for p in reply.presences]

    # ------------------------------------------------------------------ end-user calls

    async def set_online_status(self, status: Status, *, token: str) -> Presence:
        reply = await self._call(
            "users", "SetOnlineStatus",
            pb.SetOnlineStatusRequest(status=STATUS_TO_PB[status]), token=token,
        )
        return _presence_in(reply.presence)

    async def get_online_status(self, user_ids: Sequence[str], *, token: str) -> list[Presence]:
        reply = await self._call(
            "users", "GetOnlineStatus", pb.GetOnlineStatusRequest(user_ids=list(user_ids)),
            token=token,
        )
        return [_presence_in(p) for p in reply.presences]

    async def set_typing(self, conversation_id: str, typing: bool, *, token: str) -> int:
        reply = await self._call(
            "users", "SetTypingIndicator",
            pb.SetTypingIndicatorRequest(conversation_id=conversation_id, typing=typing),
            token=token,
        )
        return int(reply.expires_at_ms)

    async def get_typing(self, conversation_id: str, *, token: str) -> list[Typing]:
        reply = await self._call(
            "users", "GetTypingIndicators",
            pb.GetTypingIndicatorsRequest(conversation_id=conversation_id), token=token,
        )
        return [Typing(t.user_id, t.expires_at_ms) for t in reply.typing]

    # ------------------------------------------------------------------ connection

    async def _call(self, service: str, method: str, message: Any, *,
                    token: str | None = None) -> Any:
        bearer = token if token is not None else self._token()
        metadata = (("authorization", f"Bearer {bearer}"),)
        with trio.move_on_after(self._call_timeout_s):
            await self._ready.wait()
            stubs, broken = self._stubs, self._broken
            assert stubs is not None
            try:
                return await getattr(getattr(stubs, service), method)(message, metadata=metadata)
            except purerpc.RpcFailedError as exc:
                raise _error_from_status(exc.status) from None
            except _TRANSPORT_ERRORS as exc:
                broken.set()
                raise PresenceUnavailable(f"presence connection failed: {exc!r}") from exc
        # Timed out: the connection may be wedged (purerpc cannot abandon a stream cleanly).
        self._broken.set()
        raise PresenceUnavailable(f"presence did not answer within {self._call_timeout_s:g} s")

    async def _maintain(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                        ) -> None:
        """Keep one connection open, replacing it when a call finds it broken."""
        task_status.started()
        backoff = 0.05
        while True:
            try:
                async with purerpc.insecure_channel(self._host, self._port) as channel:
                    self._stubs = _Stubs(channel)
                    self._broken = trio.Event()
                    self._ready.set()
                    backoff = 0.05
                    await self._broken.wait()
            except Exception as exc:
                # Connection refused, reset, protocol errors from purerpc's reader task (possibly
                # in an exception group): all mean "try a new connection".
                log.info("presence connection to %s:%d failed: %r", self._host, self._port, exc)
            finally:
                self._stubs = None
                if self._ready.is_set():
                    self._ready = trio.Event()
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


@asynccontextmanager
async def open_presence_client(
    host: str, port: int, *, token: Callable[[], str], call_timeout_s: float = 5.0
) -> AsyncIterator[PresenceClient]:
    """A client whose connection lives as long as the block. Connecting happens in the
    background: calls made before it succeeds wait (within their timeout)."""
    client = PresenceClient(host, port, token=token, call_timeout_s=call_timeout_s)
    # The block's own exception is re-raised outside the nursery, so that callers catch
    # NotFound, not an ExceptionGroup holding it.
    raised: BaseException | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(client._maintain)
        try:
            yield client
        except BaseException as exc:
            raised = exc
        finally:
            nursery.cancel_scope.cancel()
    if raised is not None:
        raise raised


def _presence_in(message: pb.UserPresence) -> Presence:
    return Presence(
        message.user_id,
        STATUS_FROM_PB.get(message.status, Status.UNKNOWN),
        int(message.last_seen_ms),
    )


# ---------------------------------------------------------------------- connection reporting


class ReportTarget(Protocol):
    """Where a replica reports connections: `PresenceClient` or `PresenceService`."""

    async def heartbeat(self, replica_id: str, connections: Mapping[str, str]) -> LeaseTerms: ...

    async def connection_opened(
        self, replica_id: str, connection_id: str, user_id: str
    ) -> LeaseTerms: ...

    async def connection_closed(self, replica_id: str, connection_id: str) -> None: ...


class ReplicaTarget(ReportTarget, Protocol):
    """Everything a chat replica asks of presence: `PresenceClient` or `PresenceService`."""

    async def report_typing(self, user_id: str, conversation_id: str, typing: bool) -> int: ...

    async def get_online_status_for(
        self, viewer_id: str, user_ids: Sequence[str]
    ) -> list[Presence]: ...


@attrs.frozen
class ReporterStatistics:
    live_connections: int
    pending_deltas: int
    heartbeats: int
    deltas_sent: int
    #: Deltas dropped because the queue was full (repaired by the next heartbeat).
    deltas_dropped: int
    failures: int


class ConnectionReporter:
    def __init__(
        self,
        target: ReportTarget,
        replica_id: str,
        *,
        heartbeat_interval_s: float = 5.0,
        max_pending: int = 10_000,
        retry_s: float = 0.5,
    ) -> None:
        self._target = target
        self.replica_id = replica_id
        self._interval_s = heartbeat_interval_s
        self._max_pending = max_pending
        self._retry_s = retry_s
        self._live: dict[str, str] = {}
        self._pending: deque[tuple[str, str | None]] = deque()  # (connection, user | None)
        self._resync = True
        self._wake = trio.Event()
        self._heartbeats = 0
        self._deltas_sent = 0
        self._dropped = 0
        self._failures = 0

    def opened(self, connection_id: str, user_id: str) -> None:
        self._live[connection_id] = user_id
        self._enqueue(connection_id, user_id)

    def closed(self, connection_id: str) -> None:
        if self._live.pop(connection_id, None) is not None:
            self._enqueue(connection_id, None)

    def _enqueue(self, connection_id: str, user_id: str | None) -> None:
        if len(self._pending) >= self._max_pending:
            self._dropped += len(self._pending)
            self._pending.clear()
            self._resync = True
        elif not self._resync:
            self._pending.append((connection_id, user_id))
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Report until cancelled. Started once the first heartbeat was attempted."""
        next_beat = trio.current_time()
        started = False
        while True:
            try:
                if self._resync or trio.current_time() >= next_beat:
                    await self._send_heartbeat()
                    next_beat = trio.current_time() + self._interval_s
                elif self._pending:
                    await self._send_delta(*self._pending[0])
                    self._pending.popleft()
                else:
                    with trio.move_on_at(next_beat):
                        await self._wake.wait()
                    self._wake = trio.Event()
            except errors.ChatError as exc:
                # Presence unreachable or refusing: resync with a full heartbeat once it is back.
                self._failures += 1
                self._resync = True
                self._pending.clear()
                log.warning("presence reporting failed (%s); retrying", exc)
                await trio.sleep(self._retry_s)
            if not started:
                started = True
                task_status.started()

    async def _send_heartbeat(self) -> None:
        # Deltas queued so far are part of this snapshot: drop them before awaiting, so the
        # order "snapshot, then later deltas" holds.
        self._pending.clear()
        self._resync = False
        try:
            terms = await self._target.heartbeat(self.replica_id, dict(self._live))
        except BaseException:
            self._resync = True
            raise
        self._heartbeats += 1
        if terms.heartbeat_interval_ms > 0:
            self._interval_s = terms.heartbeat_interval_ms / 1000

    async def _send_delta(self, connection_id: str, user_id: str | None) -> None:
        if user_id is None:
            await self._target.connection_closed(self.replica_id, connection_id)
        else:
            await self._target.connection_opened(self.replica_id, connection_id, user_id)
        self._deltas_sent += 1

    def statistics(self) -> ReporterStatistics:
        return ReporterStatistics(
            live_connections=len(self._live),
            pending_deltas=len(self._pending),
            heartbeats=self._heartbeats,
            deltas_sent=self._deltas_sent,
            deltas_dropped=self._dropped,
            failures=self._failures,
        )


class ReplicaPresence:
    """The chat replica's presence hook (`chat.realtime.websocket.PresenceHook`): connections go
    through the replica's `ConnectionReporter` (never blocking the socket), typing straight to
    presence."""

    def __init__(self, reporter: ConnectionReporter, target: ReplicaTarget) -> None:
        self.reporter = reporter
        self._target = target

    async def connected(self, user_id: str, connection_id: str) -> None:
        self.reporter.opened(connection_id, user_id)

    async def disconnected(self, user_id: str, connection_id: str) -> None:
        self.reporter.closed(connection_id)

    async def typing(self, user_id: str, conversation_id: str, started: bool) -> None:
        await self._target.report_typing(user_id, conversation_id, started)
