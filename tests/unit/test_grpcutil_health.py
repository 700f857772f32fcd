"""The health servicer's rules, called directly (no sockets)."""

from __future__ import annotations

import purerpc
import pytest
import trio

from cellchat.api.health.v1 import health_pb2
from cellchat.grpcutil import HealthServicer, ServingStatus, StatusCode

CHAT = "cellchat.chat.v1.ChatService"


def request(service: str) -> health_pb2.HealthCheckRequest:
    return health_pb2.HealthCheckRequest(service=service)


async def check(health: HealthServicer, service: str) -> int:
    response = await health.Check(request(service))
    return int(response.status)


async def test_server_starts_serving_and_services_are_unknown_until_set() -> None:
    health = HealthServicer()
    assert await check(health, "") == ServingStatus.SERVING
    with pytest.raises(purerpc.RpcFailedError) as info:
        await check(health, CHAT)
    assert info.value.status.status_code is StatusCode.NOT_FOUND

    health.set(CHAT, ServingStatus.NOT_SERVING)
    assert await check(health, CHAT) == ServingStatus.NOT_SERVING
    assert health.get(CHAT) is ServingStatus.NOT_SERVING


async def test_list_reports_every_service() -> None:
    health = HealthServicer()
    health.set(CHAT, ServingStatus.SERVING)
    response = await health.List(health_pb2.HealthListRequest())
    assert {name: int(entry.status) for name, entry in response.statuses.items()} == {
        "": ServingStatus.SERVING,
        CHAT: ServingStatus.SERVING,
    }


def test_service_unknown_cannot_be_set() -> None:
    with pytest.raises(ValueError, match="SERVICE_UNKNOWN"):
        HealthServicer().set(CHAT, ServingStatus.SERVICE_UNKNOWN)


async def test_watch_sends_current_status_then_each_change() -> None:
    health = HealthServicer()
    watch = health.Watch(request(CHAT))
    with trio.fail_after(5):
        assert (await anext(watch)).status == ServingStatus.SERVICE_UNKNOWN
        health.set(CHAT, ServingStatus.SERVING)
        assert (await anext(watch)).status == ServingStatus.SERVING
        # Setting the same status again is no change; a real change comes through.
        health.set(CHAT, ServingStatus.SERVING)
        health.set(CHAT, ServingStatus.NOT_SERVING)
        assert (await anext(watch)).status == ServingStatus.NOT_SERVING
    await watch.aclose()


async def test_watch_coalesces_quick_changes_to_the_latest() -> None:
    health = HealthServicer()
    watch = health.Watch(request(""))
    with trio.fail_after(5):
        assert (await anext(watch)).status == ServingStatus.SERVING
        health.set("", ServingStatus.NOT_SERVING)
        health.set("", ServingStatus.UNKNOWN)
        health.set("", ServingStatus.SERVING)
        health.set("", ServingStatus.NOT_SERVING)
        assert (await anext(watch)).status == ServingStatus.NOT_SERVING
    await watch.aclose()


async def test_shutdown_turns_everything_not_serving_and_ends_watches() -> None:
    health = HealthServicer()
    health.set(CHAT, ServingStatus.SERVING)
    watch = health.Watch(request(CHAT))
    with trio.fail_after(5):
        assert (await anext(watch)).status == ServingStatus.SERVING
        health.enter_graceful_shutdown()
        assert (await anext(watch)).status == ServingStatus.NOT_SERVING
        with pytest.raises(purerpc.RpcFailedError) as info:
            await anext(watch)
    assert info.value.status.status_code is StatusCode.UNAVAILABLE

    health.set(CHAT, ServingStatus.SERVING)  # ignored from now on
    assert await check(health, CHAT) == ServingStatus.NOT_SERVING
    assert await check(health, "") == ServingStatus.NOT_SERVING


async def test_watch_started_after_shutdown_reports_and_ends() -> None:
    health = HealthServicer()
    health.enter_graceful_shutdown()
    watch = health.Watch(request(""))
    with trio.fail_after(5):
        assert (await anext(watch)).status == ServingStatus.NOT_SERVING
        with pytest.raises(purerpc.RpcFailedError):
            await anext(watch)
