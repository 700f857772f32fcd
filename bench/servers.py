"""The servers under test, each run as its own process: `python -m bench.servers <name>`.

Every server binds ephemeral ports on 127.0.0.1, prints one JSON line with them on stdout once
it listens, and stops on SIGTERM. Logs go to stderr (the orchestrator sends them to a file).

    cellchat       `cellchat run` in all but name: settings from the environment, the same
                   JSON logging, serve_chat; prints {"grpc", "ws", "ops", "pid"}
    ws-peer        the fan-out / memory peer: a minimal `websockets` server that checks the
                   same JWT before the upgrade and broadcast()s every message it receives to
                   every connection (compression off)
    grpc-aio       the bench Echo service on grpc.aio (the gRPC peer)
    grpc-cellchat  the bench Echo service on cellchat.grpcutil.serve_grpc (purerpc, deadlines,
                   error mapping, graceful stop: what the chat service runs)
    grpc-purerpc   the bench Echo service on a bare purerpc.Server (for reference)
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from typing import Any

from bench.common import HOST, raise_nofile


def _ready(**ports: Any) -> None:
    print(json.dumps({**ports, "pid": os.getpid()}), flush=True)


# ---------------------------------------------------------------- cellchat


def cellchat() -> None:
    import trio

    from cellchat.chat.server import serve_chat
    from cellchat.logs import configure_logging
    from cellchat.settings import from_env

    settings = from_env()
    configure_logging(settings.service_name)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                ports = await nursery.start(serve_chat, settings)
                gc.freeze()  # as `cellchat run` does once listening (cellchat/cli.py)
                _ready(grpc=ports.grpc, ws=ports.ws, ops=ports.ops)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)


# ---------------------------------------------------------------- WebSocket peer


def ws_peer() -> None:
    import asyncio
    from http import HTTPStatus
    from urllib.parse import parse_qs, urlsplit

    import jwt
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    secret = os.environ["JWT_SECRET"]
    connections: set[ServerConnection] = set()

    def process_request(connection: ServerConnection, request: Any) -> Any:
        split = urlsplit(request.path)
        if split.path != "/ws/chat":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        query = parse_qs(split.query)
        try:
            claims = jwt.decode((query.get("token") or [""])[0], secret, algorithms=["HS256"],
                                audience="cellchat", issuer="cellchat",
                                options={"require": ["exp", "sub", "iss", "aud"]})
        except jwt.PyJWTError:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unauthenticated\n")
        if (query.get("user_id") or [""])[0] != claims["sub"]:
            return connection.respond(HTTPStatus.FORBIDDEN, "user mismatch\n")
        return None

    async def handler(connection: ServerConnection) -> None:
        connections.add(connection)
        try:
            async for message in connection:
                broadcast(connections, message)
        finally:
            connections.discard(connection)

    async def main() -> None:
        stop = asyncio.get_running_loop().create_future()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
        async with serve(handler, HOST, 0, process_request=process_request, compression=None,
                         max_size=64 * 1024, backlog=4096) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            _ready(ws=port)
            await stop

    asyncio.run(main())


# ---------------------------------------------------------------- gRPC servers


def grpc_aio() -> None:
    import asyncio

    import grpc

    from bench import echo

    _, _, grpc_stubs = echo.modules()

    async def main() -> None:
        server = grpc.aio.server()
        grpc_stubs.add_EchoServicer_to_server(echo.aio_servicer(), server)
        port = server.add_insecure_port(f"{HOST}:0")
        await server.start()
        stop = asyncio.get_running_loop().create_future()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
        _ready(grpc=port)
        await stop
        await server.stop(1)

    asyncio.run(main())


def _serve_trio(start: Any) -> None:
    import trio

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(start)
                _ready(grpc=port)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)


def grpc_cellchat() -> None:
    from functools import partial

    from bench import echo
    from cellchat.grpcutil.server import serve_grpc

    _serve_trio(partial(serve_grpc, [echo.purerpc_servicer()], host=HOST, port=0, grace_s=1))


def grpc_purerpc() -> None:
    from contextlib import AsyncExitStack

    import anyio
    import anyio.abc
    import purerpc
    from purerpc.server import ConnectionHandler

    from bench import echo

    server = purerpc.Server(port=0)
    server.add_service(echo.purerpc_servicer().service)

    # purerpc.Server.serve_async, but bound to loopback only (it listens on every interface).
    async def serve(*, task_status: Any) -> None:
        listener = await anyio.create_tcp_listener(local_host=HOST, local_port=0)
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
        async with AsyncExitStack() as stack:
            services = {name: await stack.enter_async_context(service)
                        for name, service in server.services.items()}
            await listener.serve(ConnectionHandler(services, server))

    _serve_trio(serve)


SERVERS = {
    "cellchat": cellchat,
    "ws-peer": ws_peer,
    "grpc-aio": grpc_aio,
    "grpc-cellchat": grpc_cellchat,
    "grpc-purerpc": grpc_purerpc,
}


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0] not in SERVERS:
        raise SystemExit(f"usage: python -m bench.servers {{{','.join(SERVERS)}}}")
    raise_nofile()
    SERVERS[argv[0]]()


if __name__ == "__main__":
    main(sys.argv[1:])
