"""The WebSocket endpoint of one chat server on the embedded default (SQLite store, in-process
broker), driven by the `websockets` library's client: protocol, resume, receipts, typing,
multi-device, slow consumers and every bad input. The server runs in the test's Trio loop; the
blocking client runs in worker threads. The multi-replica tests (Redis, Cassandra, processes)
are in test_ws_replicas.py and reuse `WsClient` from here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
import websockets.exceptions
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from cellchat.auth import JwtSettings, mint_token
from cellchat.chat.server import ChatPorts, serve_chat
from cellchat.settings import Settings

JWT = JwtSettings(verify_key="ws-integration-secret-0123456789abcdef")


def token(user: str, *, jwt: JwtSettings = JWT, ttl_s: int = 3600) -> str:
    return mint_token(jwt, user, ttl_s=ttl_s)


def ws_url(port: int, user: str, *, tok: str | None = None, as_user: str | None = None) -> str:
    return (f"ws://127.0.0.1:{port}/ws/chat?token={tok if tok is not None else token(user)}"
            f"&user_id={as_user or user}")


async def off_thread(fn: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


@attrs.define
class WsClient:
    ws: ClientConnection
    user: str
    seen: list[dict[str, Any]] = attrs.field(factory=list)
    skipped: list[dict[str, Any]] = attrs.field(factory=list)

    @classmethod
    async def open(cls, port: int, user: str, **kwargs: Any) -> WsClient:
        url = ws_url(port, user)
        ws = await off_thread(lambda: connect(url, open_timeout=10, compression=None, legacy=True,
                                              ping_interval=None, **kwargs))
        client = cls(ws, user)
        hello = await client.recv()
        assert hello["type"] == "hello"
        assert hello["protocol"] == 1
        return client

    async def send(self, **frame: Any) -> None:
        text = json.dumps(frame)
        await off_thread(lambda: self.ws.send(text))

    async def send_raw(self, data: str | bytes) -> None:
        await off_thread(lambda: self.ws.send(data))

    async def recv(self, within: float = 10) -> dict[str, Any]:
        text = await off_thread(lambda: self.ws.recv(timeout=within))
        frame: dict[str, Any] = json.loads(text)
        self.seen.append(frame)
        return frame

    async def expect(self, type_: str, within: float = 10, **match: Any) -> dict[str, Any]:
        """The first frame of `type_` (matching `match`) not expected yet; frames passed over
        are kept for later `expect` calls."""

        def matches(frame: dict[str, Any]) -> bool:
            return frame["type"] == type_ and all(frame.get(k) == v for k, v in match.items())

        for index, frame in enumerate(self.skipped):
            if matches(frame):
                return self.skipped.pop(index)
        with trio.fail_after(within):
            while True:
                frame = await self.recv(within)
                if matches(frame):
                    return frame
                self.skipped.append(frame)

    async def nothing(self, seconds: float = 0.5) -> list[dict[str, Any]]:
        """Frames arriving within `seconds` (expected: none of interest)."""
        got = []
        with trio.move_on_after(seconds + 1):
            while True:
                try:
                    got.append(await self.recv(within=seconds))
                except TimeoutError:
                    break
        return got

    async def subscribe(self, positions: dict[str, int] | None = None) -> dict[str, Any]:
        await self.send(type="subscribe", positions=positions or {}, ref="sub")
        return await self.expect("subscribed", ref="sub")

    async def open_direct(self, counterpart: str) -> str:
        await self.send(type="open", counterpart_id=counterpart, ref="open")
        opened = await self.expect("opened", ref="open")
        return str(opened["conversation"]["conversation_id"])

    async def say(self, cid: str, text: str, client_id: str | None = None) -> dict[str, Any]:
        ref = client_id or uuid.uuid4().hex[:12]
        await self.send(type="send", conversation_id=cid, client_message_id=ref, kind="text",
                        text=text, ref=ref)
        ack = await self.expect("ack", ref=ref)
        return dict(ack["message"])

    async def closed_with(self, within: float = 15) -> int:
        """Read until the server closes; the close code."""
        with trio.fail_after(within):
            while True:
                try:
                    await off_thread(lambda: self.ws.recv(timeout=within))
                except ConnectionClosed as exc:
                    return exc.rcvd.code if exc.rcvd is not None else 1006

    async def close(self) -> None:
        await off_thread(self.ws.close)


async def handshake_status(url: str, **kwargs: Any) -> int:
    try:
        ws = await off_thread(lambda: connect(url, open_timeout=10, legacy=True, **kwargs))
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    await off_thread(ws.close)
    return 101


def users(*names: str) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"{name}-{tag}" for name in names]


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    def get() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())
    return await off_thread(get)  # type: ignore[no-any-return]


def metric(text: bytes, name: str) -> float:
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------- embedded server


def embedded_settings(**changes: Any) -> Settings:
    base = dict(grpc_port=0, ws_port=0, ops_port=0, jwt=JWT, dev_jwt=False, grace_s=3.0,
                ws_allowed_origins=("https://shop.example",))
    base.update(changes)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
async def chat(nursery: trio.Nursery) -> ChatPorts:
    ports: ChatPorts = await nursery.start(serve_chat, embedded_settings())
    return ports


async def test_two_users_chat_with_receipts_and_typing(chat: ChatPorts) -> None:
    buyer, seller = users("buyer", "seller")
    with trio.fail_after(60):
        b = await WsClient.open(chat.ws, buyer)
        s = await WsClient.open(chat.ws, seller)
        await b.subscribe()
        await s.subscribe()
        cid = await b.open_direct(seller)
        await s.expect("conversation.created")
        sent = await b.say(cid, "Is the lamp still available?")
        assert (sent["seq"], sent["sender_id"]) == (1, buyer)
        got = await s.expect("message.created")
        assert got["message"]["message_id"] == sent["message_id"]
        echo = await b.expect("message.created")  # the sender's own stream has it too
        assert echo["message"]["seq"] == 1
        # receipts: delivered then read, seen by the sender
        await s.send(type="delivered", conversation_id=cid, seq=1)
        status = await b.expect("status", user_id=seller)
        assert (status["delivered_seq"], status["read_seq"]) == (1, 0)
        await s.send(type="read", conversation_id=cid, seq=1)
        status = await b.expect("status", user_id=seller, read_seq=1)
        assert status["delivered_seq"] == 1
        # typing reaches the other participant only
        await s.send(type="typing", conversation_id=cid, state="started")
        typing = await b.expect("typing.started")
        assert typing["user_id"] == seller
        assert typing["expires_in_ms"] > 0
        await s.send(type="typing", conversation_id=cid, state="stopped")
        await b.expect("typing.stopped", user_id=seller)
        assert not [f for f in await s.nothing(0.3) if f["type"].startswith("typing")]
        # edits and deletes fan out; ping answers
        await b.send(type="edit", conversation_id=cid, seq=1, text="Is the lamp available?")
        edited = await s.expect("message.edited")
        assert edited["message"]["version"] == 2
        await b.send(type="delete", conversation_id=cid, seq=1)
        assert (await s.expect("message.deleted"))["message"]["deleted"]
        await s.send(type="ping", ref="p")
        await s.expect("pong", ref="p")
        # a retried send is acknowledged as a duplicate, not stored twice
        await b.send(type="send", conversation_id=cid, client_message_id="again", kind="text",
                     text="one", ref="x1")
        first = await b.expect("ack", ref="x1")
        await b.send(type="send", conversation_id=cid, client_message_id="again", kind="text",
                     text="one", ref="x2")
        second = await b.expect("ack", ref="x2")
        assert second["duplicate"]
        assert second["message"]["seq"] == first["message"]["seq"]
        await b.close()
        await s.close()


async def test_a_user_on_two_devices_gets_everything_on_both(chat: ChatPorts) -> None:
    alice, bob = users("alice", "bob")
    with trio.fail_after(60):
        phone = await WsClient.open(chat.ws, alice)
        laptop = await WsClient.open(chat.ws, alice)
        b = await WsClient.open(chat.ws, bob)
        for c in (phone, laptop, b):
            await c.subscribe()
        cid = await b.open_direct(alice)
        for i in range(5):
            await b.say(cid, f"m{i}")
        await phone.send(type="read", conversation_id=cid, seq=5)
        for device in (phone, laptop):
            seqs = [(await device.expect("message.created"))["message"]["seq"] for _ in range(5)]
            assert seqs == [1, 2, 3, 4, 5]
            await device.expect("status", user_id=alice, read_seq=5)  # read on one, seen on both
        for c in (phone, laptop, b):
            await c.close()


async def test_resume_after_a_dropped_connection_has_no_gap_and_no_duplicate(
        chat: ChatPorts) -> None:
    alice, bob = users("alice", "bob")
    with trio.fail_after(60):
        a = await WsClient.open(chat.ws, alice)
        b = await WsClient.open(chat.ws, bob)
        await a.subscribe()
        await b.subscribe()
        cid = await a.open_direct(bob)
        for i in range(3):
            await a.say(cid, f"before {i}")
        last_seen = 0
        for _ in range(3):
            last_seen = (await b.expect("message.created"))["message"]["seq"]
        await b.close()  # dropped
        for i in range(4):
            await a.say(cid, f"while away {i}")

        b2 = await WsClient.open(chat.ws, bob)
        # messages sent while the replay is being read are live-held, then deduplicated
        async with trio.open_nursery() as n:
            n.start_soon(b2.send_raw, json.dumps({"type": "subscribe", "ref": "r",
                                                  "positions": {cid: last_seen}}))
            for i in range(3):
                await a.say(cid, f"during resume {i}")
        await a.say(cid, "after")
        seqs: list[int] = []
        while len(seqs) < 8:
            frame = await b2.recv()
            if frame["type"] == "message.created":
                seqs.append(frame["message"]["seq"])
        assert sorted(seqs) == list(range(4, 12)), seqs
        assert not [f for f in await b2.nothing(0.5) if f["type"] == "message.created"]
        assert any(f["type"] == "subscribed" for f in b2.seen)
        await a.close()
        await b2.close()


async def test_positions_that_cannot_be_replayed_get_resync(nursery: trio.Nursery) -> None:
    ports: ChatPorts = await nursery.start(serve_chat, embedded_settings(ws_replay_max=3))
    alice, bob = users("alice", "bob")
    with trio.fail_after(60):
        a = await WsClient.open(ports.ws, alice)
        await a.subscribe()
        cid = await a.open_direct(bob)
        for i in range(6):
            await a.say(cid, f"m{i}")
        b = await WsClient.open(ports.ws, bob)
        await b.send(type="subscribe", positions={cid: 1})
        resync = await b.expect("resync")
        assert (resync["conversation_id"], resync["from_seq"], resync["last_seq"],
                resync["reason"]) == (cid, 1, 6, "gap_too_large")
        await b.send(type="subscribe", positions={cid: 60})
        assert (await b.expect("resync"))["reason"] == "position_ahead"
        await b.send(type="subscribe", positions={cid: 4}, ref="ok")
        assert [(await b.expect("message.created"))["message"]["seq"] for _ in range(2)] == [5, 6]
        assert (await b.expect("subscribed", ref="ok"))["replayed"] == 2


async def test_handshake_refusals_happen_before_the_upgrade(chat: ChatPorts) -> None:
    alice, = users("alice")
    port = chat.ws
    other_key = JwtSettings(verify_key="another-secret-0123456789abcdef-xyz")
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    claims = base64.urlsafe_b64encode(json.dumps({
        "sub": alice, "iss": "cellchat", "aud": "cellchat", "exp": int(time.time()) + 600,
    }).encode()).rstrip(b"=").decode()
    alg_none = f"{header}.{claims}."
    signing = f"{header}.{claims}".encode()
    forged = hmac.new(b"guess", signing, hashlib.sha256).digest()
    with trio.fail_after(60):
        assert await handshake_status(f"ws://127.0.0.1:{port}/ws/chat?user_id={alice}") == 401
        assert await handshake_status(ws_url(port, alice, tok="")) == 401
        assert await handshake_status(ws_url(port, alice, tok="garbage")) == 401
        assert await handshake_status(ws_url(port, alice, tok=token(alice, ttl_s=-120))) == 401
        assert await handshake_status(ws_url(port, alice, tok=token(alice, jwt=other_key))) == 401
        assert await handshake_status(ws_url(port, alice, tok=alg_none)) == 401
        assert await handshake_status(ws_url(
            port, alice, tok=alg_none + base64.urlsafe_b64encode(forged).decode())) == 401
        assert await handshake_status(ws_url(port, alice, as_user="mallory")) == 403
        assert await handshake_status(ws_url(port, alice), origin="https://evil.example") == 403
        assert await handshake_status(ws_url(port, alice), origin="https://shop.example") == 101
        assert await handshake_status(
            ws_url(port, alice).replace("/ws/chat", "/ws/other")) == 404
        # and the server is fine afterwards
        client = await WsClient.open(port, alice)
        await client.send(type="ping", ref="still-ok")
        await client.expect("pong", ref="still-ok")
        await client.close()


async def test_bad_frames_get_error_frames_and_the_connection_stays(chat: ChatPorts) -> None:
    alice, bob, eve = users("alice", "bob", "eve")
    with trio.fail_after(60):
        a = await WsClient.open(chat.ws, alice)
        await a.subscribe()
        cid = await a.open_direct(bob)
        e = await WsClient.open(chat.ws, eve)
        await e.subscribe()
        await e.send_raw("{this is not json")
        assert (await e.expect("error"))["code"] == "bad_frame"
        await e.send_raw(b"\x00\x01binary")
        assert (await e.expect("error"))["code"] == "bad_frame"
        await e.send(type="teleport", ref="t")
        assert (await e.expect("error", ref="t"))["code"] == "unknown_type"
        await e.send(type="send", conversation_id=cid, ref="s")  # schema: fields missing
        assert (await e.expect("error", ref="s"))["code"] == "bad_frame"
        # a conversation that is not hers: not_found, and nothing stored or leaked
        await e.send(type="send", conversation_id=cid, client_message_id="x", kind="text",
                     text="spam", ref="n")
        assert (await e.expect("error", ref="n"))["code"] == "not_found"
        await e.send(type="read", conversation_id=cid, seq=1, ref="r")
        assert (await e.expect("error", ref="r"))["code"] == "not_found"
        await e.send(type="typing", conversation_id=cid, state="started", ref="ty")
        assert (await e.expect("error", ref="ty"))["code"] == "not_found"
        await e.send(type="subscribe", positions={cid: 0}, ref="sub2")
        assert (await e.expect("error", ref="sub2"))["code"] == "not_found"
        await e.expect("subscribed", ref="sub2")
        await a.send(type="send", conversation_id=cid, client_message_id="y", kind="text",
                     text="x" * 5000, ref="long")
        err = await a.expect("error", ref="long")
        assert (err["code"], err["field"]) == ("invalid_argument", "text")
        # still connected, still working
        await e.send(type="ping", ref="alive")
        await e.expect("pong", ref="alive")
        assert (await a.say(cid, "hello"))["seq"] == 1
        assert not [f for f in await a.nothing(0.3) if f["type"] == "error"]
        await a.close()
        await e.close()


async def test_an_oversized_frame_closes_with_1009(nursery: trio.Nursery) -> None:
    ports: ChatPorts = await nursery.start(serve_chat, embedded_settings(ws_max_frame_bytes=1024))
    alice, = users("alice")
    with trio.fail_after(60):
        a = await WsClient.open(ports.ws, alice)
        bystander = await WsClient.open(ports.ws, alice + "-b")
        await a.send_raw(json.dumps({"type": "ping", "ref": "x" * 2000}))
        assert await a.closed_with() == 1009
        await bystander.send(type="ping", ref="ok")
        await bystander.expect("pong", ref="ok")
        await bystander.close()


async def test_a_flood_gets_an_error_then_close_4008(nursery: trio.Nursery) -> None:
    ports: ChatPorts = await nursery.start(
        serve_chat, embedded_settings(ws_rate_per_s=5.0, ws_burst=5, ws_flood_strikes=20))
    alice, = users("alice")
    with trio.fail_after(60):
        a = await WsClient.open(ports.ws, alice)
        calm = await WsClient.open(ports.ws, alice + "-calm")
        text = json.dumps({"type": "ping"})

        def flood() -> None:
            # The server may close the connection before the flood is over: that is the point.
            try:
                for _ in range(40):
                    a.ws.send(text)
            except websockets.exceptions.ConnectionClosed:
                pass

        await off_thread(flood)
        code = await a.closed_with()
        assert code == 4008
        await calm.send(type="ping", ref="ok")
        await calm.expect("pong", ref="ok")
        await calm.close()


async def test_rate_limited_error_frame_comes_first(nursery: trio.Nursery) -> None:
    ports: ChatPorts = await nursery.start(
        serve_chat, embedded_settings(ws_rate_per_s=1.0, ws_burst=2, ws_flood_strikes=50))
    alice, = users("alice")
    with trio.fail_after(60):
        a = await WsClient.open(ports.ws, alice)
        for i in range(4):
            await a.send(type="ping", ref=str(i))
        assert (await a.expect("error"))["code"] == "rate_limited"
        await a.close()


async def test_a_slow_consumer_is_closed_and_others_keep_receiving(
        nursery: trio.Nursery) -> None:
    ports: ChatPorts = await nursery.start(serve_chat, embedded_settings(
        ws_queue_size=8, ws_rate_per_s=10_000.0, ws_burst=10_000, ws_close_timeout_s=10.0))
    alice, bob = users("alice", "bob")
    with trio.fail_after(90):
        sender = await WsClient.open(ports.ws, alice)
        await sender.subscribe()
        cid = await sender.open_direct(bob)
        # the slow one: a tiny receive buffer, and it stops reading
        sock = socket.create_connection(("127.0.0.1", ports.ws))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow = await off_thread(lambda: connect(
            ws_url(ports.ws, bob), sock=sock, open_timeout=10, compression=None,
            ping_interval=None, max_queue=1, legacy=True))
        await off_thread(lambda: slow.send(json.dumps({"type": "subscribe"})))
        fast = await WsClient.open(ports.ws, bob)
        await fast.subscribe()
        got: list[int] = []
        big = "y" * 3900

        async def fast_reader() -> None:
            while len(got) < 300:
                frame = await fast.recv()
                if frame["type"] == "message.created":
                    got.append(frame["message"]["seq"])

        codes: list[int] = []

        async def drain_slow_once_closed() -> None:
            # The close frame waits behind the data in the socket: once the server has given
            # up on the slow client, read (within WS_CLOSE_TIMEOUT_S) to get to it.
            while True:
                _, text = await http_get(ports.ops, "/metrics")
                if metric(text, "cellchat_ws_slow_consumer_closes_total") >= 1:
                    break
                await trio.sleep(0.05)
            while True:
                try:
                    await off_thread(lambda: slow.recv(timeout=10))
                except ConnectionClosed as exc:
                    codes.append(exc.rcvd.code if exc.rcvd is not None else 1006)
                    return

        async with trio.open_nursery() as n:
            n.start_soon(fast_reader)
            n.start_soon(drain_slow_once_closed)
            for i in range(300):  # one at a time: the sender is a well-behaved reader
                await sender.say(cid, big, client_id=f"c{i}")
                sender.skipped.clear()
        assert got == list(range(1, 301))
        code = codes[0]
        assert code == 4009
        await fast.close()


async def test_ops_endpoints(chat: ChatPorts) -> None:
    alice, = users("alice")
    with trio.fail_after(30):
        assert await http_get(chat.ops, "/healthz") == (200, b"ok\n")
        status, body = await http_get(chat.ops, "/readyz")
        assert status == 200
        assert json.loads(body)["ready"] is True
        a = await WsClient.open(chat.ws, alice)
        await a.send(type="ping")
        await a.expect("pong")
        status, text = await http_get(chat.ops, "/metrics")
        assert status == 200
        assert metric(text, "cellchat_ws_connections") == 1
        assert metric(text, 'cellchat_ws_frames_in_total{type="ping"}') == 1
        assert b"cellchat_store_latency_seconds" in text
        assert token(alice) not in text.decode()
        assert (await http_get(chat.ops, "/nope"))[0] == 404
        await a.close()


async def test_shutdown_tells_clients_to_reconnect(nursery: trio.Nursery) -> None:
    alice, = users("alice")
    with trio.fail_after(30):
        async with trio.open_nursery() as inner:
            ports: ChatPorts = await inner.start(serve_chat, embedded_settings())
            a = await WsClient.open(ports.ws, alice)
            await a.subscribe()
            inner.cancel_scope.cancel()
        assert await a.closed_with() == 1001
