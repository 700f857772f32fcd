"""grpcutil's server over real sockets, called by stock clients: grpcio and grpcurl.

The server runs in the test's Trio loop. grpcio is blocking, so its calls run in worker threads;
grpcurl runs as a process and knows our services only through reflection (no .proto files).

The services under test are health, reflection, and `cellchat.test.Probe`: a handful of methods
on well-known message types, whose descriptor is added to the pool here so that grpcurl can
describe and call it too.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import grpc
import purerpc
import pytest
import trio
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, empty_pb2, wrappers_pb2
from purerpc.wrappers import extract_message_from_singleton_stream, send_single_message_client

from cellchat.api.chat.v1 import chat_grpc
from cellchat.api.health.v1 import health_pb2, health_pb2_grpc
from cellchat.grpcutil import (
    CallInfo,
    CallLimits,
    ErrorMap,
    GrpcServer,
    HealthServicer,
    ServingStatus,
    StatusCode,
    bearer_token,
    rpc_error,
)

T = TypeVar("T")

GRPCURL = (
    Path(os.environ.get("CELLCHAT_CACHE", Path.home() / ".cache" / "cellchat")) / "bin" / "grpcurl"
)
PROBE = "cellchat.test.Probe"


# ---------------------------------------------------------------- the probe service


def _register_probe_descriptor() -> None:
    file = descriptor_pb2.FileDescriptorProto(
        name="cellchat/test/probe.proto",
        package="cellchat.test",
        syntax="proto3",
        dependency=[
            "google/protobuf/duration.proto",
            "google/protobuf/empty.proto",
            "google/protobuf/wrappers.proto",
        ],
    )
    service = file.service.add(name="Probe")
    for name, request, response, client_streaming, server_streaming in [
        ("Sleep", "Duration", "Empty", False, False),
        ("Fail", "StringValue", "Empty", False, False),
        ("WhoAmI", "Empty", "StringValue", False, False),
        ("Collect", "StringValue", "StringValue", True, False),
        ("Hang", "Empty", "Empty", False, True),
    ]:
        service.method.add(
            name=name,
            input_type=f".google.protobuf.{request}",
            output_type=f".google.protobuf.{response}",
            client_streaming=client_streaming,
            server_streaming=server_streaming,
        )
    descriptor_pool.Default().AddSerializedFile(file.SerializeToString())


_register_probe_descriptor()


class Missing(Exception):
    """A domain error the probe's ErrorMap sends as NOT_FOUND."""


class Overloaded(Exception):
    """A domain error sent with a fixed message."""


PROBE_ERRORS = ErrorMap(
    {Missing: StatusCode.NOT_FOUND, Overloaded: (StatusCode.UNAVAILABLE, "busy; retry")}
)


class Probe:
    """Handlers that sleep, fail on demand, echo the caller's token, and record their fate."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.cancelled = 0
        self.sleeping = trio.Event()
        self.hanging = trio.Event()

    async def sleep(self, message: duration_pb2.Duration) -> empty_pb2.Empty:
        self.started += 1
        self.sleeping.set()
        try:
            await trio.sleep(message.ToTimedelta().total_seconds())
        except trio.Cancelled:
            self.cancelled += 1
            raise
        self.finished += 1
        return empty_pb2.Empty()

    async def fail(self, message: wrappers_pb2.StringValue) -> empty_pb2.Empty:
        kind, _, text = message.value.partition(":")
        if kind == "missing":
            raise Missing(text)
        if kind == "overloaded":
            raise Overloaded(text)
        if kind == "rpc":
            raise rpc_error(StatusCode.PERMISSION_DENIED, text)
        raise RuntimeError(f"a bug: {text}")

    async def who_am_i(
        self, message: empty_pb2.Empty, request: CallInfo
    ) -> wrappers_pb2.StringValue:
        token = bearer_token(request.custom_metadata)
        if token is None:
            raise rpc_error(StatusCode.UNAUTHENTICATED, "no bearer token")
        return wrappers_pb2.StringValue(value=token)

    async def collect(
        self, messages: AsyncIterator[wrappers_pb2.StringValue]
    ) -> wrappers_pb2.StringValue:
        # Consuming the request stream in a nursery, as real handlers do to work concurrently:
        # an error inside leaves as an ExceptionGroup.
        values: list[str] = []

        async def consume() -> None:
            async for message in messages:
                if message.value == "missing":
                    raise Missing("no such item")
                values.append(message.value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
        return wrappers_pb2.StringValue(value=",".join(values))

    async def hang(self, message: empty_pb2.Empty) -> AsyncIterator[empty_pb2.Empty]:
        self.hanging.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled += 1
            raise
        yield empty_pb2.Empty()  # pragma: no cover

    @property
    def service(self) -> purerpc.Service:
        service = purerpc.Service(PROBE)
        for name, handler, cardinality, request, response in [
            ("Sleep", self.sleep, "UNARY_UNARY", duration_pb2.Duration, empty_pb2.Empty),
            ("Fail", self.fail, "UNARY_UNARY", wrappers_pb2.StringValue, empty_pb2.Empty),
            ("WhoAmI", self.who_am_i, "UNARY_UNARY", empty_pb2.Empty, wrappers_pb2.StringValue),
            (
                "Collect",
                self.collect,
                "STREAM_UNARY",
                wrappers_pb2.StringValue,
                wrappers_pb2.StringValue,
            ),
            ("Hang", self.hang, "UNARY_STREAM", empty_pb2.Empty, empty_pb2.Empty),
        ]:
            signature = purerpc.RPCSignature(purerpc.Cardinality[cardinality], request, response)
            service.add_method(name, handler, signature)
        return service


# ---------------------------------------------------------------- harness


@attrs.define
class Running:
    server: GrpcServer
    port: int
    probe: Probe
    health: HealthServicer
    stop: Callable[[], None]
    stopped: trio.Event

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@asynccontextmanager
async def running(
    *, grace_s: float = 5.0, limits: CallLimits | None = None
) -> AsyncIterator[Running]:
    probe = Probe()
    health = HealthServicer()
    health.set(PROBE, ServingStatus.SERVING)
    server = GrpcServer(
        [probe.service, chat_grpc.ChatServiceServicer()],
        health=health,
        errors=PROBE_ERRORS,
        limits=limits,
    )
    stopped = trio.Event()
    # The server's own scope: stopping it must not cancel the test body, which goes on
    # observing the drain.
    server_scope = trio.CancelScope()

    async def serve(task_status: trio.TaskStatus[int]) -> None:
        with server_scope:
            await server.serve(port=0, grace_s=grace_s, task_status=task_status)
        stopped.set()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve)
        yield Running(server, port, probe, health, server_scope.cancel, stopped)
        server_scope.cancel()


async def in_thread(fn: Callable[[], T]) -> T:
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


@asynccontextmanager
async def channel(target: str) -> AsyncIterator[grpc.Channel]:
    ch = grpc.insecure_channel(target)
    try:
        yield ch
    finally:
        await in_thread(ch.close)


def probe_call(ch: grpc.Channel, method: str, request: Any, response_type: Any) -> Any:
    return ch.unary_unary(
        f"/{PROBE}/{method}",
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_type.FromString,
    )


async def rpc_error_of(fn: Callable[[], Any]) -> grpc.RpcError:
    def call() -> grpc.RpcError:
        try:
            fn()
        except grpc.RpcError as exc:
            return exc
        raise AssertionError("the call succeeded")

    return await in_thread(call)


def seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(value * 1e9))
    return duration


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds (the caller's fail_after bounds the wait)."""
    for _ in itertools.count():
        if condition():
            return
        await trio.sleep(0.01)


async def grpcurl(*args: str) -> tuple[int, str, str]:
    if not GRPCURL.is_file():
        pytest.fail(f"grpcurl not found at {GRPCURL}: run scripts/install-grpcurl.sh first")
    result = await trio.run_process(
        [str(GRPCURL), "-plaintext", "-max-time", "10", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


# ---------------------------------------------------------------- health


async def test_health_check_and_watch_with_grpcio() -> None:
    with trio.fail_after(20):
        async with running() as srv, channel(srv.target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            response = await in_thread(
                lambda: stub.Check(health_pb2.HealthCheckRequest(service=PROBE), timeout=5)
            )
            assert response.status == health_pb2.HealthCheckResponse.SERVING
            error = await rpc_error_of(
                lambda: stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
            )
            assert error.code() == grpc.StatusCode.NOT_FOUND

            watch = stub.Watch(health_pb2.HealthCheckRequest(service=PROBE), timeout=10)
            first = await in_thread(lambda: next(watch))
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            srv.health.set(PROBE, ServingStatus.NOT_SERVING)
            second = await in_thread(lambda: next(watch))
            assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
            # The client's RST_STREAM cancels the Watch handler on the server.
            await eventually(lambda: not srv.server.statistics().calls_in_flight)


# ---------------------------------------------------------------- reflection via grpcurl


async def test_grpcurl_lists_describes_and_calls_without_proto_files() -> None:
    with trio.fail_after(60):
        async with running() as srv:
            code, out, err = await grpcurl(srv.target, "list")
            assert code == 0, err
            assert out.split() == sorted(
                [
                    PROBE,
                    "cellchat.chat.v1.ChatService",
                    "grpc.health.v1.Health",
                    "grpc.reflection.v1.ServerReflection",
                    "grpc.reflection.v1alpha.ServerReflection",
                ]
            )

            code, out, err = await grpcurl(srv.target, "describe", "cellchat.chat.v1.ChatService")
            assert code == 0, err
            assert "rpc SendMessage ( .cellchat.chat.v1.SendMessageRequest )" in out

            code, out, err = await grpcurl(srv.target, "describe", "cellchat.chat.v1.Message")
            assert code == 0, err
            assert "oneof attachment" in out

            code, out, err = await grpcurl(
                "-d", json.dumps({"service": PROBE}), srv.target, "grpc.health.v1.Health/Check"
            )
            assert code == 0, err
            assert json.loads(out) == {"status": "SERVING"}

            code, out, err = await grpcurl(
                "-H", "authorization: Bearer tok-123", srv.target, f"{PROBE}/WhoAmI"
            )
            assert code == 0, err
            assert json.loads(out) == "tok-123"


async def test_grpcurl_sees_mapped_status_code_and_message() -> None:
    with trio.fail_after(30):
        async with running() as srv:
            code, _, err = await grpcurl(
                "-d", json.dumps("missing:conversation c1"), srv.target, f"{PROBE}/Fail"
            )
            assert code != 0
            assert "Code: NotFound" in err
            assert "Message: conversation c1" in err


async def test_grpcurl_deadline_exceeded() -> None:
    with trio.fail_after(30):
        async with running(limits=CallLimits(unary_s=0.2)) as srv:
            code, _, err = await grpcurl("-d", '"5s"', srv.target, f"{PROBE}/Sleep")
            assert code != 0
            assert "Code: DeadlineExceeded" in err
            assert "server's time limit of 0.2 s" in err


# ---------------------------------------------------------------- deadlines


async def test_client_deadline_cancels_the_handler() -> None:
    with trio.fail_after(20):
        async with running() as srv, channel(srv.target) as ch:
            sleep = probe_call(ch, "Sleep", seconds(10), empty_pb2.Empty)
            error = await rpc_error_of(lambda: sleep(seconds(10), timeout=0.3))
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # grpcio gives up on its own at the deadline; the point is the server stopped too.
            with trio.fail_after(2):
                await eventually(lambda: srv.probe.cancelled > 0)
            assert srv.probe.finished == 0


async def test_grpc_timeout_is_enforced_by_the_server() -> None:
    # A purerpc client sends `grpc-timeout` but keeps no timer of its own, unlike grpcio: the
    # DEADLINE_EXCEEDED it gets can only come from the server.
    with trio.fail_after(20):
        async with running() as srv, purerpc.insecure_channel("127.0.0.1", srv.port) as ch:
            stream = await ch._grpc_socket.start_request(
                "http",
                PROBE,
                "Sleep",
                "google.protobuf.Duration",
                srv.target,
                timeout=datetime.timedelta(milliseconds=300),
            )
            stream.expect_message_type(empty_pb2.Empty)
            await send_single_message_client(stream, seconds(10))
            with pytest.raises(purerpc.DeadlineExceededError, match="deadline exceeded"):
                await extract_message_from_singleton_stream(stream)
            assert srv.probe.cancelled == 1
            assert srv.server.statistics().calls_deadline_exceeded == 1


async def test_server_time_limit_applies_without_client_deadline() -> None:
    with trio.fail_after(20):
        async with running(limits=CallLimits(unary_s=0.3)) as srv, channel(srv.target) as ch:
            sleep = probe_call(ch, "Sleep", seconds(10), empty_pb2.Empty)
            error = await rpc_error_of(lambda: sleep(seconds(10)))
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert error.details() == "call exceeded the server's time limit of 0.3 s"
            assert srv.probe.cancelled == 1
            assert srv.server.statistics().calls_deadline_exceeded == 1
            ok = await in_thread(lambda: sleep(seconds(0.01), timeout=5))
            assert ok == empty_pb2.Empty()


# ---------------------------------------------------------------- errors and metadata


@pytest.mark.parametrize(
    ("kind", "code", "details"),
    [
        ("missing:conversation c1", grpc.StatusCode.NOT_FOUND, "conversation c1"),
        ("overloaded:db-3 is down", grpc.StatusCode.UNAVAILABLE, "busy; retry"),
        ("rpc:not yours", grpc.StatusCode.PERMISSION_DENIED, "not yours"),
        ("bug:secret", grpc.StatusCode.UNKNOWN, "internal error"),
    ],
)
async def test_errors_reach_the_client_as_exact_statuses(
    kind: str, code: grpc.StatusCode, details: str, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(20):
        async with running() as srv, channel(srv.target) as ch:
            fail = probe_call(ch, "Fail", wrappers_pb2.StringValue(), empty_pb2.Empty)
            error = await rpc_error_of(
                lambda: fail(wrappers_pb2.StringValue(value=kind), timeout=5)
            )
    assert (error.code(), error.details()) == (code, details)


async def test_client_streaming_error_inside_a_nursery_is_unwrapped() -> None:
    with trio.fail_after(20):
        async with running() as srv, channel(srv.target) as ch:
            collect = ch.stream_unary(
                f"/{PROBE}/Collect",
                request_serializer=wrappers_pb2.StringValue.SerializeToString,
                response_deserializer=wrappers_pb2.StringValue.FromString,
            )
            values = [wrappers_pb2.StringValue(value=v) for v in ("a", "b")]
            ok = await in_thread(lambda: collect(iter(values), timeout=5))
            assert ok.value == "a,b"
            bad = [*values, wrappers_pb2.StringValue(value="missing")]
            error = await rpc_error_of(lambda: collect(iter(bad), timeout=5))
            assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "no such item")


async def test_handler_reads_bearer_token_from_metadata() -> None:
    with trio.fail_after(20):
        async with running() as srv, channel(srv.target) as ch:
            who = probe_call(ch, "WhoAmI", empty_pb2.Empty(), wrappers_pb2.StringValue)
            metadata = [("authorization", "Bearer abc.def")]
            answer = await in_thread(lambda: who(empty_pb2.Empty(), metadata=metadata, timeout=5))
            assert answer.value == "abc.def"
            error = await rpc_error_of(lambda: who(empty_pb2.Empty(), timeout=5))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_unknown_service_and_method_are_unimplemented() -> None:
    with trio.fail_after(20):
        async with running() as srv, channel(srv.target) as ch:
            for path in ("/nope.Service/Call", f"/{PROBE}/Nope"):
                call = ch.unary_unary(
                    path,
                    request_serializer=empty_pb2.Empty.SerializeToString,
                    response_deserializer=empty_pb2.Empty.FromString,
                )
                error = await rpc_error_of(lambda call=call: call(empty_pb2.Empty(), timeout=5))
                assert error.code() == grpc.StatusCode.UNIMPLEMENTED, path


async def test_calls_over_the_concurrency_limit_are_refused() -> None:
    with trio.fail_after(20):
        async with (
            running(limits=CallLimits(max_concurrent_calls=1)) as srv,
            channel(srv.target) as ch,
        ):
            hang = ch.unary_stream(
                f"/{PROBE}/Hang",
                request_serializer=empty_pb2.Empty.SerializeToString,
                response_deserializer=empty_pb2.Empty.FromString,
            )
            stream = hang(empty_pb2.Empty(), timeout=10)
            await srv.probe.hanging.wait()
            sleep = probe_call(ch, "Sleep", seconds(0), empty_pb2.Empty)
            error = await rpc_error_of(lambda: sleep(seconds(0), timeout=5))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert srv.server.statistics().calls_refused == 1
            stream.cancel()


async def test_client_cancel_cancels_the_handler() -> None:
    with trio.fail_after(20):
        async with running() as srv, channel(srv.target) as ch:
            hang = ch.unary_stream(
                f"/{PROBE}/Hang",
                request_serializer=empty_pb2.Empty.SerializeToString,
                response_deserializer=empty_pb2.Empty.FromString,
            )
            stream = hang(empty_pb2.Empty())
            await srv.probe.hanging.wait()
            assert srv.server.statistics().calls_in_flight == 1
            stream.cancel()
            await eventually(lambda: srv.probe.cancelled > 0)
            await eventually(lambda: not srv.server.statistics().calls_in_flight)
            assert srv.server.statistics().calls_abandoned == 1


async def test_a_peer_speaking_garbage_loses_only_its_own_connection() -> None:
    with trio.fail_after(20):
        async with running() as srv:
            garbage = await trio.open_tcp_stream("127.0.0.1", srv.port)
            async with garbage:
                await garbage.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                while await garbage.receive_some():  # until the server hangs up
                    pass
            async with channel(srv.target) as ch:
                stub = health_pb2_grpc.HealthStub(ch)
                response = await in_thread(
                    lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                )
            assert response.status == health_pb2.HealthCheckResponse.SERVING


# ---------------------------------------------------------------- graceful stop


async def test_graceful_stop_finishes_in_flight_calls_and_refuses_new_ones() -> None:
    with trio.fail_after(30):
        async with running(grace_s=5.0) as srv, channel(srv.target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
            assert (await in_thread(lambda: next(watch))).status == ServingStatus.SERVING

            sleep = probe_call(ch, "Sleep", seconds(1), empty_pb2.Empty)
            slow = sleep.future(seconds(1.0), timeout=20)
            await srv.probe.sleeping.wait()

            srv.stop()
            # Health flips first: the watcher hears NOT_SERVING, then its stream ends.
            assert (await in_thread(lambda: next(watch))).status == ServingStatus.NOT_SERVING
            with pytest.raises(grpc.RpcError) as ended:
                await in_thread(lambda: next(watch))
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE

            # New calls are refused, on a new connection and on the draining one alike.
            async with channel(srv.target) as fresh:
                check = health_pb2_grpc.HealthStub(fresh).Check
                error = await rpc_error_of(
                    lambda: check(health_pb2.HealthCheckRequest(), timeout=3)
                )
                assert error.code() == grpc.StatusCode.UNAVAILABLE
            error = await rpc_error_of(
                lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=3)
            )
            assert error.code() == grpc.StatusCode.UNAVAILABLE

            # The call in flight completes normally, and then the server is done.
            assert await in_thread(lambda: slow.result(timeout=10)) == empty_pb2.Empty()
            await srv.stopped.wait()
            assert srv.probe.finished == 1
            assert srv.probe.cancelled == 0
            assert srv.server.statistics().connections == 0


async def test_calls_still_running_after_the_grace_period_are_cancelled() -> None:
    with trio.fail_after(30):
        async with running(grace_s=0.5) as srv, channel(srv.target) as ch:
            sleep = probe_call(ch, "Sleep", seconds(30), empty_pb2.Empty)
            slow = sleep.future(seconds(30), timeout=20)
            await srv.probe.sleeping.wait()
            start = trio.current_time()
            srv.stop()
            await srv.stopped.wait()
            assert trio.current_time() - start < 3
            error = await in_thread(lambda: slow.exception(timeout=5))
            assert isinstance(error, grpc.RpcError)
            assert (error.code(), error.details()) == (
                grpc.StatusCode.UNAVAILABLE,
                "server is shutting down",
            )
            assert srv.probe.cancelled == 1


async def test_idle_server_stops_at_once() -> None:
    with trio.fail_after(20):
        async with running(grace_s=10) as srv, channel(srv.target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            await in_thread(lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=5))
            start = trio.current_time()
            srv.stop()
            await srv.stopped.wait()
            assert trio.current_time() - start < 1
