"""A purerpc-compatible gRPC server that enforces deadlines, maps errors and stops gracefully.

Servicers are plain purerpc servicers (the generated `*_grpc.py` classes); only the server
loop differs from `purerpc.Server`, which parses deadlines without enforcing them, answers
unexpected errors CANCELLED with their repr, logs noisily and cannot drain.

Per call, the server:

1. answers UNIMPLEMENTED for unknown services and methods, RESOURCE_EXHAUSTED beyond
   `CallLimits.max_concurrent_calls`, and refuses (REFUSED_STREAM) calls opened while draining;
2. runs the whole call under a trio cancel scope whose deadline is the client's
   `grpc-timeout` capped by the server's limit (`grpcutil.deadlines`): DEADLINE_EXCEEDED when
   it passes;
3. closes a failed call with `grpcutil.statuses.status_for_exception` (RpcFailedError, the
   service's ErrorMap, exception groups of one unwrapped, UNKNOWN for bugs);
4. cancels the handler when the client resets the stream or goes away.

Stopping: cancel the task running `serve()`. In order, it then reports NOT_SERVING on the
health service, stops accepting connections, sends every connection a GOAWAY (clients open
no new calls on it), lets calls in flight finish for up to `grace_s` (each connection closes
as soon as it is idle), then cancels what is left, answering UNAVAILABLE, and returns.
The caller's cancellation reaches the calls only through this sequence, so make `grace_s`
(+1 s to flush) fit inside whatever deadline the caller gives the shutdown.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, TypeAlias, cast

import anyio
import anyio.abc
import attrs
import h2.exceptions
import purerpc
import trio
from purerpc.grpc_socket import GRPCStreamState
from purerpc.grpclib.events import RequestReceived
from purerpc.wrappers import (
    call_server_stream_stream,
    call_server_stream_unary,
    call_server_unary_stream,
    call_server_unary_unary,
)

from ._connection import ServerConnection
from .deadlines import CallLimits, Deadline, call_deadline
from .health import HealthServicer
from .reflection import REFLECTION_SERVICES, ReflectionIndex, reflection_services
from .statuses import ErrorMap, StatusCode, status_for_exception

__all__ = ["GrpcServer", "ServerStatistics", "serve_grpc"]

log = logging.getLogger(__name__)

ServiceLike: TypeAlias = "purerpc.Servicer | purerpc.Service"
_CancelReason: TypeAlias = Literal["reset", "disconnected", "shutdown"]

_CALLERS: dict[Any, Callable[[Any, Any], Awaitable[None]]] = {
    purerpc.Cardinality.UNARY_UNARY: call_server_unary_unary,
    purerpc.Cardinality.UNARY_STREAM: call_server_unary_stream,
    purerpc.Cardinality.STREAM_UNARY: call_server_stream_unary,
    purerpc.Cardinality.STREAM_STREAM: call_server_stream_stream,
}
_STREAMING_RESPONSE = {purerpc.Cardinality.UNARY_STREAM, purerpc.Cardinality.STREAM_STREAM}
# After the grace period: time to write the final statuses and GOAWAYs before sockets are cut.
_CLOSE_TIMEOUT_S = 1.0
# accept() errors that mean "out of resources right now", not "the listener is broken".
_ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


@attrs.frozen
class ServerStatistics:
    connections: int
    calls_in_flight: int
    #: Calls handed to a handler since the server started.
    calls_started: int
    #: Calls refused: over `max_concurrent_calls`, or opened while draining.
    calls_refused: int
    #: Calls ended by their deadline (the client's or the server's limit).
    calls_deadline_exceeded: int
    #: Calls whose client reset the stream or disconnected before they ended.
    calls_abandoned: int
    draining: bool


class _Call:
    __slots__ = ("cancel_reason", "scope")

    def __init__(self, deadline: Deadline) -> None:
        self.scope = trio.CancelScope(deadline=deadline.at)
        self.cancel_reason: _CancelReason | None = None

    def cancel(self, reason: _CancelReason) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.scope.cancel()


class _Connection:
    """Bookkeeping for one client connection: its calls and whether it is draining."""

    def __init__(self) -> None:
        self.calls: dict[int, _Call] = {}
        self.socket: ServerConnection | None = None
        self.draining = False
        # Cancelled to stop reading from the client: once draining and idle.
        self.reader = trio.CancelScope()

    def on_reset(self, stream_id: int) -> None:
        call = self.calls.get(stream_id)
        if call is not None:
            call.cancel("reset")

    def cancel_calls(self, reason: _CancelReason) -> None:
        for call in self.calls.values():
            call.cancel(reason)

    def close_if_idle(self) -> None:
        if self.draining and not self.calls:
            self.reader.cancel()


class GrpcServer:
    """Serves purerpc servicers, plus health (optional) and reflection (on by default)."""

    def __init__(
        self,
        services: Iterable[ServiceLike],
        *,
        health: HealthServicer | None = None,
        reflection: bool = True,
        errors: ErrorMap | None = None,
        limits: CallLimits | None = None,
    ) -> None:
        resolved = [s.service if isinstance(s, purerpc.Servicer) else s for s in services]
        if health is not None:
            resolved.append(health.service)
        if reflection:
            names = [s.name for s in resolved] + list(REFLECTION_SERVICES)
            resolved.extend(reflection_services(ReflectionIndex(names)))
        self._services: dict[str, purerpc.Service] = {}
        for service in resolved:
            if service.name in self._services:
                raise ValueError(f"service {service.name} is registered twice")
            self._services[service.name] = service
        self._health = health
        self._errors = errors if errors is not None else ErrorMap()
        self._limits = limits if limits is not None else CallLimits()
        self._started = False
        self._draining = False
        self._connections: set[_Connection] = set()
        self._connections_changed = trio.Event()
        self._in_flight = 0
        self._calls_started = 0
        self._calls_refused = 0
        self._calls_deadline_exceeded = 0
        self._calls_abandoned = 0

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(self._services)

    def statistics(self) -> ServerStatistics:
        return ServerStatistics(
            connections=len(self._connections),
            calls_in_flight=self._in_flight,
            calls_started=self._calls_started,
            calls_refused=self._calls_refused,
            calls_deadline_exceeded=self._calls_deadline_exceeded,
            calls_abandoned=self._calls_abandoned,
            draining=self._draining,
        )

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        grace_s: float = 10.0,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on host:port (0: any free port), report the bound port, serve until cancelled."""
        if self._started:
            raise RuntimeError("a GrpcServer serves only once")
        self._started = True
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        bound_port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
        # Connections live under a shielded scope: the caller's cancellation must not reach
        # calls in flight before they had their grace period. `_drain` ends it.
        connections_scope = trio.CancelScope(shield=True)
        async with trio.open_nursery() as nursery:
            connections: trio.Nursery = await nursery.start(
                _open_shielded_nursery, connections_scope
            )
            try:
                for one in listener.listeners:
                    # create_tcp_listener makes one SocketListener per address family.
                    socket_listener = cast(anyio.abc.SocketListener, one)
                    nursery.start_soon(self._accept, socket_listener, connections)
                log.info("gRPC server listening on %s:%d", host, bound_port)
                task_status.started(bound_port)
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await self._drain(listener, grace_s)
                    connections_scope.cancel()

    async def _accept(self, listener: anyio.abc.SocketListener, connections: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:
                if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                    raise
                log.warning("gRPC server cannot accept connections: %s", exc)
                await trio.sleep(0.1)
                continue
            connections.start_soon(self._serve_connection, stream)

    async def _drain(self, listener: anyio.abc.Listener[Any], grace_s: float) -> None:
        self._draining = True
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        await listener.aclose()
        for connection in list(self._connections):
            await self._start_draining(connection)
        with trio.move_on_after(grace_s):
            await self._wait_no_connections()
        if self._connections:
            left = sum(len(c.calls) for c in self._connections)
            log.warning(
                "gRPC server: cancelling %d call(s) still running after %g s", left, grace_s
            )
        for connection in list(self._connections):
            connection.cancel_calls("shutdown")
        with trio.move_on_after(_CLOSE_TIMEOUT_S):
            await self._wait_no_connections()

    async def _wait_no_connections(self) -> None:
        while self._connections:
            await self._connections_changed.wait()

    async def _start_draining(self, connection: _Connection) -> None:
        if connection.draining or connection.socket is None:
            return
        connection.draining = True
        await connection.socket.send_goaway()
        connection.close_if_idle()

    async def _serve_connection(self, stream: anyio.abc.SocketStream) -> None:
        connection = _Connection()
        self._connections.add(connection)
        try:
            async with (
                stream,
                ServerConnection(
                    stream,
                    max_message_bytes=self._limits.max_message_bytes,
                    on_reset=connection.on_reset,
                ) as socket,
            ):
                connection.socket = socket
                if self._draining:  # accepted just before the listener closed
                    await self._start_draining(connection)
                async with trio.open_nursery() as calls:
                    with connection.reader:
                        async for call_stream in socket.listen():
                            calls.start_soon(self._run_call_logged, connection, call_stream)
                    # The client went away (or we stopped reading): nobody can get answers.
                    if not connection.reader.cancel_called:
                        connection.cancel_calls("disconnected")
                await socket.close()
        except Exception as exc:
            # A broken or misbehaving peer ends its own connection only; not our error.
            log.debug("gRPC connection ended with an error: %r", exc)
        finally:
            self._connections.discard(connection)
            self._connections_changed.set()
            self._connections_changed = trio.Event()

    def _lookup(self, event: RequestReceived) -> Any:
        service = self._services.get(event.service_name)
        if service is None:
            return purerpc.Status(StatusCode.UNIMPLEMENTED, f"unknown service {event.service_name}")
        method = service.methods.get(event.method_name)
        if method is None:
            return purerpc.Status(
                StatusCode.UNIMPLEMENTED,
                f"unknown method {event.method_name} for service {event.service_name}",
            )
        return method

    async def _run_call_logged(self, connection: _Connection, stream: Any) -> None:
        try:
            await self._run_call(connection, stream)
        except Exception:
            # Handler errors never get here (they become statuses): this is a bug of ours, and
            # it must not take the other calls on the connection down with it.
            log.exception("gRPC server failed to run a call")
        finally:
            assert connection.socket is not None
            connection.socket.forget(stream.stream_id)

    async def _run_call(self, connection: _Connection, stream: Any) -> None:
        socket = connection.socket
        assert socket is not None
        stream_id: int = stream.stream_id
        # listen() yielded the stream after queueing its RequestReceived event.
        event: RequestReceived = await stream.receive_event()
        if connection.draining:
            self._calls_refused += 1
            await socket.refuse(stream_id)
            return
        method = self._lookup(event)
        if isinstance(method, purerpc.Status):
            await _close(stream, method)
            return
        if self._in_flight >= self._limits.max_concurrent_calls:
            self._calls_refused += 1
            await _close(stream, purerpc.Status(StatusCode.RESOURCE_EXHAUSTED, "server is busy"))
            return

        cardinality = method.signature.cardinality
        limit = (
            self._limits.streaming_s if cardinality in _STREAMING_RESPONSE else self._limits.unary_s
        )
        deadline = call_deadline(trio.current_time(), event.timeout, limit)
        call = _Call(deadline)
        connection.calls[stream_id] = call
        self._in_flight += 1
        self._calls_started += 1
        try:
            status = await self._invoke(method, event, stream, call, deadline)
            if status is not None:
                await _close(stream, status)
        finally:
            del connection.calls[stream_id]
            self._in_flight -= 1
            connection.close_if_idle()

    async def _invoke(
        self, method: Any, event: RequestReceived, stream: Any, call: _Call, deadline: Deadline
    ) -> purerpc.Status | None:
        """Run the handler; the status to close the call with, or None if already closed."""
        handler = functools.partial(method.method_fn, request=event)
        stream.expect_message_type(method.signature.request_type)
        error: Exception | None = None
        with call.scope:
            try:
                # Response headers leave with the first message (`_connection`).
                await _CALLERS[method.signature.cardinality](handler, stream)
            except Exception as exc:
                error = exc
        # A handler may turn cancellation into an error of its own (a store timeout, say): the
        # cancellation is still what happened.
        if call.scope.cancelled_caught or (error is not None and call.scope.cancel_called):
            if call.cancel_reason is None:
                self._calls_deadline_exceeded += 1
                return purerpc.Status(StatusCode.DEADLINE_EXCEEDED, deadline.message)
            if call.cancel_reason == "shutdown":
                return purerpc.Status(StatusCode.UNAVAILABLE, "server is shutting down")
            self._calls_abandoned += 1
            return None  # reset or disconnected: nobody is listening
        if error is not None:
            path = f"/{event.service_name}/{event.method_name}"
            return status_for_exception(error, self._errors, method=path)
        return None


async def _close(stream: Any, status: purerpc.Status) -> None:
    if stream.state in (GRPCStreamState.HALF_CLOSED_LOCAL, GRPCStreamState.CLOSED):
        return
    try:
        await stream.close(status)
    except h2.exceptions.H2Error as exc:  # the client reset the stream meanwhile
        log.debug("could not send %s: %r", status, exc)


async def _open_shielded_nursery(
    scope: trio.CancelScope, *, task_status: trio.TaskStatus[trio.Nursery]
) -> None:
    with scope:
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()


async def serve_grpc(
    services: Iterable[ServiceLike],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    grace_s: float = 10.0,
    health: HealthServicer | None = None,
    reflection: bool = True,
    errors: ErrorMap | None = None,
    limits: CallLimits | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`GrpcServer(...).serve(...)` in one call.

    `port = await nursery.start(functools.partial(serve_grpc, servicers, health=health))`
    """
    server = GrpcServer(
        services, health=health, reflection=reflection, errors=errors, limits=limits
    )
    await server.serve(host=host, port=port, grace_s=grace_s, task_status=task_status)
