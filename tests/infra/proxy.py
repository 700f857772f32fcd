"""A TCP proxy the tests can cut, to simulate a database or broker outage without stopping the
shared server: `cut()` drops every proxied connection and refuses new ones until `restore()`.
It runs inside the test's Trio loop."""

from __future__ import annotations

from typing import Any

import trio


class Proxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._open = True
        self._scopes: set[trio.CancelScope] = set()
        self.port = 0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    def cut(self) -> None:
        self._open = False
        for scope in list(self._scopes):
            scope.cancel()

    def restore(self) -> None:
        self._open = True

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if not self._open:
                return
            try:
                upstream = await trio.open_tcp_stream(*self._upstream)
            except OSError:
                return
            async with upstream:
                with trio.CancelScope() as scope:
                    self._scopes.add(scope)
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(_pump, client, upstream, nursery.cancel_scope)
                            nursery.start_soon(_pump, upstream, client, nursery.cancel_scope)
                    finally:
                        self._scopes.discard(scope)


async def _pump(source: trio.SocketStream, sink: trio.SocketStream,
                done: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    done.cancel()
