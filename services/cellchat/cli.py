"""The `cellchat` command: run the services, apply migrations, mint development tokens.

    cellchat run                 chat service (embedded store and broker unless configured)
    cellchat presence            presence service, beside replicas with PRESENCE_ADDR (needs
                                 SCYLLA_HOSTS and REDIS_URL; `run` embeds it otherwise)
    cellchat migrate             create the cell's keyspace and apply cql/ migrations
    cellchat token --user alice  a development JWT for trying the API out
    cellchat chat --user alice --with bob
                                 chat in the terminal over the WebSocket (run it in two
                                 terminals, the second with --user bob --with alice)
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from cellchat.settings import Settings, SettingsError, from_env


def _settings() -> Settings:
    try:
        return from_env()
    except SettingsError as exc:
        print(f"cellchat: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def _serve_until_signalled(serve: Callable[..., Awaitable[None]],
                                 settings: Settings) -> None:
    """Run `serve` until SIGINT or SIGTERM, then cancel it: its servers drain gracefully.

    Once it listens, everything built so far (modules, prepared statements, caches) is moved
    out of the garbage collector's sight (`gc.freeze`): it lives as long as the process, and
    every full collection would otherwise walk it again, a pause of tens of milliseconds in
    the middle of serving."""
    import trio

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, settings)
            gc.freeze()
            async for signum in signals:
                logging.getLogger("cellchat").info(
                    "received %s, stopping", signal.Signals(signum).name
                )
                nursery.cancel_scope.cancel()
                break


def _cmd_run(args: argparse.Namespace) -> int:
    import trio

    from cellchat.chat.server import serve_chat
    from cellchat.logs import configure_logging

    settings = _settings()
    configure_logging(settings.service_name)
    trio.run(_serve_until_signalled, serve_chat, settings)
    return 0


def _cmd_presence(args: argparse.Namespace) -> int:
    import trio

    from cellchat.logs import configure_logging
    from cellchat.presence.process import check_settings, serve_presence_process

    settings = _settings()
    try:
        check_settings(settings)
    except SettingsError as exc:
        print(f"cellchat: {exc}", file=sys.stderr)
        return 2
    configure_logging("presence-service")
    trio.run(_serve_until_signalled, serve_presence_process, settings)
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from cellchat.migrate import run_migrations

    settings = _settings()
    if settings.uses_embedded_store:
        print("cellchat: SCYLLA_HOSTS is not set; the embedded store needs no migrations",
              file=sys.stderr)
        return 2
    applied = run_migrations(settings)
    print(f"keyspace {settings.keyspace}: applied {applied or 'nothing (up to date)'}")
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from cellchat.auth import mint_token

    settings = _settings()
    print(mint_token(settings.jwt, args.user, ttl_s=args.ttl))
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    import trio

    from cellchat.auth import mint_token
    from cellchat.chat.realtime.terminal import chat_in_terminal

    settings = _settings()
    url = args.url or f"ws://{settings.host}:{settings.ws_port}"
    token = args.token or mint_token(settings.jwt, args.user, ttl_s=24 * 3600)
    try:
        return trio.run(chat_in_terminal, url, args.user, token, args.counterpart)
    except KeyboardInterrupt:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cellchat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the chat service").set_defaults(fn=_cmd_run)
    sub.add_parser("presence", help="run the presence service").set_defaults(fn=_cmd_presence)
    sub.add_parser("migrate", help="apply CQL migrations").set_defaults(fn=_cmd_migrate)
    token = sub.add_parser("token", help="mint a development JWT")
    token.add_argument("--user", required=True, help="the token's subject (user id)")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    token.set_defaults(fn=_cmd_token)
    chat = sub.add_parser("chat", help="chat in the terminal (WebSocket client)")
    chat.add_argument("--user", required=True, help="who you are")
    chat.add_argument("--with", dest="counterpart", required=True, help="who to chat with")
    chat.add_argument("--url", default="", help="ws://host:port (default: WS_PORT on BIND_HOST)")
    chat.add_argument("--token", default="",
                      help="a JWT (default: minted with the development secret or JWT_SECRET)")
    chat.set_defaults(fn=_cmd_chat)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    code: int = args.fn(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
