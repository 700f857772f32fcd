"""The standard gRPC health service (grpc.health.v1.Health), for load balancers and probes.

Rules (those of gRPC's reference servers):

* Statuses are per service name; "" stands for the whole server and starts SERVING. The
  composition root sets each service's status (`set`) once its dependencies are ready, and back
  to NOT_SERVING when they are lost.
* `Check` answers NOT_FOUND for a name never set; `Watch` answers SERVICE_UNKNOWN for it and
  keeps watching, since the service may be registered later.
* Watchers see the latest status, not every transition: each keeps only the last status it
  sent and waits for a change, so a flapping service costs nothing per watcher (no queue).
* `enter_graceful_shutdown()` (called by our server when it starts draining) turns every status
  to NOT_SERVING for good: later `set` calls are ignored, and each Watch stream sends
  NOT_SERVING and then ends with UNAVAILABLE, so that draining is not held up by watchers.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator

import trio

from cellchat.api.health.v1 import health_grpc, health_pb2

from .statuses import StatusCode, rpc_error

__all__ = ["HealthServicer", "ServingStatus"]


class ServingStatus(enum.IntEnum):
    """`grpc.health.v1.HealthCheckResponse.ServingStatus`, as a Python enum."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3


class HealthServicer(health_grpc.HealthServicer):
    def __init__(self) -> None:
        self._statuses: dict[str, ServingStatus] = {"": ServingStatus.SERVING}
        self._changed = trio.Event()
        self._shutting_down = False

    def set(self, service: str, status: ServingStatus) -> None:
        """Report `service` ("" for the whole server) as `status` from now on."""
        if status is ServingStatus.SERVICE_UNKNOWN:
            raise ValueError("SERVICE_UNKNOWN is what Watch reports for unset services")
        if self._shutting_down:
            return
        self._statuses[service] = status
        self._notify()

    def get(self, service: str) -> ServingStatus | None:
        return self._statuses.get(service)

    def enter_graceful_shutdown(self) -> None:
        """Report NOT_SERVING for everything, now and for good."""
        self._shutting_down = True
        for service in self._statuses:
            self._statuses[service] = ServingStatus.NOT_SERVING
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def Check(
        self, input_message: health_pb2.HealthCheckRequest
    ) -> health_pb2.HealthCheckResponse:
        status = self._statuses.get(input_message.service)
        if status is None:
            raise rpc_error(StatusCode.NOT_FOUND, f"unknown service {input_message.service!r}")
        return _response(status)

    async def List(
        self, input_message: health_pb2.HealthListRequest
    ) -> health_pb2.HealthListResponse:
        response = health_pb2.HealthListResponse()
        for service, status in self._statuses.items():
            response.statuses[service].CopyFrom(_response(status))
        return response

    # The generated base declares every method as a coroutine; purerpc wants an async
    # generator for a server-streaming method.
    async def Watch(  # type: ignore[override]
        self, input_message: health_pb2.HealthCheckRequest
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        service = input_message.service
        sent: ServingStatus | None = None
        while True:
            # Read the state and the event that announces its next change together: the yield
            # below suspends us, and a change made meanwhile must not be missed.
            status = self._statuses.get(service, ServingStatus.SERVICE_UNKNOWN)
            changed = self._changed
            shutting_down = self._shutting_down
            if status is not sent:
                yield _response(status)
                sent = status
            if shutting_down:
                raise rpc_error(StatusCode.UNAVAILABLE, "server is shutting down")
            await changed.wait()


def _response(status: ServingStatus) -> health_pb2.HealthCheckResponse:
    # The enum's names are the proto's, and protobuf accepts enum values by name.
    return health_pb2.HealthCheckResponse(status=status.name)
