"""Adversarial clients against two `cellchat run` replica processes on real Cassandra and Redis.

Every bad input of issue 4 ("Bad input") is thrown at a replica process, and each test checks
the documented answer (HTTP status before the upgrade, close code, or `error` frame) AND that
the server and the other connections stay healthy: a pair of witness clients, connected before
the misbehaviour to *both* replicas and sharing a conversation, still exchange messages
afterwards, and a fresh connection on the replica that was attacked still works.

The two replicas run with different limits so that one module-scoped pair covers everything:

* ``strict`` (chat-1): a short idle timeout, a low rate limit, JWT leeway 0, a small frame
  limit - for the idle, token expiry, flood and handshake tests;
* ``roomy`` (chat-2): a generous rate limit and a tiny outgoing queue - for the slow consumer
  (its second recipient is on ``strict``) and the bad frames (many frames in a row).

Both have an Origin allowlist. Clients are `websockets` (a library the project does not own);
raw sockets are used where that library refuses to misbehave (never answering pings, an HTTP
request that is not an upgrade, a half-sent frame, a TCP connection that sends nothing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import grpc
import pytest
import trio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from cellchat.api.chat.v1 import chat_pb2 as pb
from cellchat.api.chat.v1 import chat_pb2_grpc
from cellchat.auth import JwtSettings, mint_token
from tests.infra.ports import free_port
from tests.integration.test_ws_embedded import (
    JWT,
    WsClient,
    handshake_status,
    http_get,
    metric,
    off_thread,
    token,
    users,
    ws_url,
)
from tests.integration.test_ws_replicas import Replica, signal_term, start_replica

pytestmark = [pytest.mark.cassandra, pytest.mark.redis]

ALLOWED_ORIGIN = "https://shop.example"
IDLE_TIMEOUT_S = 4.0  # strict: the server pings every 2 s and waits 2 s for the pong
STRICT_RATE, STRICT_BURST, STRICT_STRIKES = 20, 20, 10
STRICT_MAX_FRAME = 4096
ROOMY_MAX_FRAME = 16384
ROOMY_QUEUE = 8
CONNECT_TIMEOUT_S = 10.0  # serve_websocket(connect_timeout=...) in chat/realtime/websocket.py


@attrs.define
class Cell:
    strict: Replica
    roomy: Replica
    grpc: dict[str, int]  # replica name -> gRPC port


@pytest.fixture(scope="module")
def cell(cassandra: Any, cql_keyspace: str, redis: Any) -> Iterator[Cell]:
    common = {"WS_ALLOWED_ORIGINS": f"{ALLOWED_ORIGIN},https://other.shop.example",
              "JWT_LEEWAY_S": "0"}
    strict_grpc, roomy_grpc = free_port(), free_port()
    strict_env = {**common, "GRPC_PORT": str(strict_grpc),
                  "WS_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
                  "WS_RATE_PER_S": str(STRICT_RATE), "WS_BURST": str(STRICT_BURST),
                  "WS_FLOOD_STRIKES": str(STRICT_STRIKES),
                  "WS_MAX_FRAME_BYTES": str(STRICT_MAX_FRAME), "WS_QUEUE_SIZE": "256"}
    roomy_env = {**common, "GRPC_PORT": str(roomy_grpc), "WS_QUEUE_SIZE": str(ROOMY_QUEUE),
                 "WS_CLOSE_TIMEOUT_S": "10", "WS_MAX_FRAME_BYTES": str(ROOMY_MAX_FRAME)}
    with tempfile.TemporaryDirectory(prefix="cellchat-ws-adv-") as tmp:
        # Start both at once: each waits mostly on its own imports and Cassandra session.
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(start_replica, "strict", cassandra, cql_keyspace, redis.url,
                            Path(tmp), **strict_env),
                pool.submit(start_replica, "roomy", cassandra, cql_keyspace, redis.url,
                            Path(tmp), **roomy_env),
            ]
            started: list[Replica] = []
            errors: list[BaseException] = []
            for future in futures:
                try:
                    started.append(future.result())
                except BaseException as exc:  # re-raised below, once both are known
                    errors.append(exc)
        try:
            if errors:
                raise errors[0]
            strict, roomy = started
            yield Cell(strict, roomy, {strict.name: strict_grpc, roomy.name: roomy_grpc})
            # whatever the clients did, neither replica failed on it (checked before the
            # shutdown, which is not under test here)
            for replica in started:
                assert replica.process.running(), f"{replica.name} died"
                logged = replica.log.read_text(errors="replace")
                assert "Traceback" not in logged, f"{replica.name}:\n{logged[-4000:]}"
                assert '"level":"error"' not in logged, f"{replica.name}:\n{logged[-4000:]}"
        finally:
            for replica in started:
                replica.process.kill(signal_term(), grace=5)


# ---------------------------------------------------------------- health checks


@attrs.define
class Witnesses:
    """Two users who share a conversation, one on each replica, connected before the test
    misbehaves: afterwards both must still send and receive across replicas."""

    one: WsClient
    two: WsClient
    cid: str

    @classmethod
    async def open(cls, cell: Cell) -> Witnesses:
        a, b = users("witness-a", "witness-b")
        one = await WsClient.open(cell.strict.ws, a)
        two = await WsClient.open(cell.roomy.ws, b)
        await one.subscribe()
        await two.subscribe()
        cid = await one.open_direct(b)
        return cls(one, two, cid)

    async def check(self) -> None:
        with trio.fail_after(30):
            for sender, receiver in ((self.one, self.two), (self.two, self.one)):
                sent = await sender.say(self.cid, f"still here {uuid.uuid4().hex[:6]}")
                await expect_message(receiver, sent)

    async def close(self) -> None:
        await self.one.close()
        await self.two.close()


async def expect_message(client: WsClient, message: dict[str, Any]) -> None:
    """`client` gets `message.created` for `message` (other frames are passed over)."""
    while True:
        got = (await client.expect("message.created"))["message"]
        if got["message_id"] == message["message_id"]:
            assert got == message
            return


async def fresh_client_works(replica: Replica) -> None:
    """A new connection on `replica` is accepted and answered."""
    user, = users("fresh")
    with trio.fail_after(30):
        client = await WsClient.open(replica.ws, user)
        ref = uuid.uuid4().hex[:8]
        await client.send(type="ping", ref=ref)
        await client.expect("pong", ref=ref)
        await client.close()
    status, _ = await http_get(replica.ops, "/readyz")
    assert status == 200
    assert replica.process.running()


async def metric_of(replica: Replica, name: str) -> float:
    _, text = await http_get(replica.ops, "/metrics")
    return metric(text, name)


# ---------------------------------------------------------------- raw sockets


def _handshake_request(path: str, *, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Version: 13",
             f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True,
                 declared_length: int | None = None) -> bytes:
    """A masked client frame; `declared_length` lies about the payload length."""
    length = len(payload) if declared_length is None else declared_length
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        header = bytes([first, 0x80 | length])
    elif length < 1 << 16:
        header = bytes([first, 0x80 | 126]) + struct.pack("!H", length)
    else:
        header = bytes([first, 0x80 | 127]) + struct.pack("!Q", length)
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWs:
    """A blocking WebSocket client that does only what it is told: it never answers a ping,
    never sends a close, and can send anything. Run its methods in a worker thread."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.head = b""

    def upgrade(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Send the handshake; the HTTP status and the head of the answer."""
        self.sock.sendall(_handshake_request(path, headers=headers))
        return self.response_head()

    def response_head(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {self.buffer!r}")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        self.head = head
        return int(head.split(b" ", 2)[1]), head

    def body(self) -> bytes:
        """The body of the HTTP answer whose head `response_head` read."""
        length = 0
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if not self._fill(length, time.monotonic() + 10):
            raise ConnectionError("closed before the end of the body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body

    def _fill(self, n: int, deadline: float) -> bool:
        while len(self.buffer) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def read_frame(self, deadline: float) -> tuple[int, bytes] | None:
        """(opcode, payload) of the next server frame; None at EOF. socket.timeout after the
        deadline."""
        if not self._fill(2, deadline):
            return None
        length, at = self.buffer[1] & 0x7F, 2
        if length == 126:
            if not self._fill(4, deadline):
                return None
            length, at = struct.unpack("!H", self.buffer[2:4])[0], 4
        elif length == 127:
            if not self._fill(10, deadline):
                return None
            length, at = struct.unpack("!Q", self.buffer[2:10])[0], 10
        if not self._fill(at + length, deadline):
            return None
        opcode = self.buffer[0] & 0x0F
        payload = self.buffer[at:at + length]
        self.buffer = self.buffer[at + length:]
        return opcode, payload

    def frames_until_close(self, within: float) -> tuple[list[tuple[int, bytes]], int | None]:
        """Read (never answering pings) until a close frame (its code) or EOF (None)."""
        deadline = time.monotonic() + within
        seen: list[tuple[int, bytes]] = []
        while True:
            try:
                frame = self.read_frame(deadline)
            except ConnectionResetError:
                return seen, None
            if frame is None:
                return seen, None
            seen.append(frame)
            if frame[0] == 0x8:
                return seen, struct.unpack("!H", frame[1][:2])[0] if len(frame[1]) >= 2 else None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def eof_within(self, within: float) -> bool:
        """True once the server has closed the TCP connection (EOF or reset)."""
        deadline = time.monotonic() + within
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return False

    def close(self) -> None:
        self.sock.close()


def ws_path(user: str, *, tok: str | None = None) -> str:
    return ws_url(0, user, tok=tok).split(":0", 1)[1]


# ---------------------------------------------------------------- 1. slow consumer


async def test_a_slow_consumer_is_closed_4009_while_its_other_device_gets_everything(
        cell: Cell) -> None:
    sender_id, bob = users("alice", "bob")
    roomy, strict = cell.roomy, cell.strict
    witnesses = await Witnesses.open(cell)
    with trio.fail_after(120):
        sender = await WsClient.open(roomy.ws, sender_id)
        await sender.subscribe()
        cid = await sender.open_direct(bob)
        # bob's slow device, on the sender's replica: a tiny receive buffer, and it stops
        # reading (the library's queue holds one message, then it stops reading the socket)
        sock = socket.create_connection(("127.0.0.1", roomy.ws))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow = await off_thread(lambda: connect(
            ws_url(roomy.ws, bob), sock=sock, open_timeout=10, compression=None,
            ping_interval=None, max_queue=1, legacy=True))
        await off_thread(lambda: slow.send(json.dumps({"type": "subscribe"})))
        # bob's other device, on the OTHER replica, reads everything
        fast = await WsClient.open(strict.ws, bob)
        await fast.subscribe()
        before = await metric_of(roomy, "cellchat_ws_slow_consumer_closes_total")
        big = "y" * 3900
        got: list[int] = []
        slow_closed = trio.Event()
        sent = 0
        codes: list[int] = []

        async def watch_metric() -> None:
            # (a metric of another process: nothing to wait on but time)
            while True:
                if await metric_of(roomy, "cellchat_ws_slow_consumer_closes_total") > before:
                    slow_closed.set()
                    return
                await trio.sleep(0.05)

        def drain_slow() -> int:
            # The close frame waits behind the data already in the socket: read it all
            # (within WS_CLOSE_TIMEOUT_S) to get to it.
            while True:
                try:
                    slow.recv(timeout=10)
                except ConnectionClosed as exc:
                    return exc.rcvd.code if exc.rcvd is not None else 1006

        async def read_slow_close() -> None:
            await slow_closed.wait()
            codes.append(await off_thread(drain_slow))

        burst_done = False

        async def send_burst() -> None:
            nonlocal sent, burst_done
            extra = 0
            while extra < 30:  # keep going a while after the slow one was dropped
                with trio.fail_after(10):  # the sender is never held up by the slow one
                    await sender.say(cid, big, client_id=f"c{sent}")
                sender.skipped.clear()
                sent += 1
                if slow_closed.is_set():
                    extra += 1
                assert sent < 1500, "the slow consumer was never closed"
            burst_done = True

        async def fast_reader() -> None:
            # (no cancellation around recv: an abandoned worker thread would eat a frame)
            quiet_since = time.monotonic()
            while not (burst_done and len(got) >= sent):
                try:
                    frame = await fast.recv(within=1)
                except TimeoutError:
                    if burst_done and time.monotonic() - quiet_since > 15:
                        return  # missing messages: the assertion below says which
                    continue
                quiet_since = time.monotonic()
                if frame["type"] == "message.created":
                    got.append(frame["message"]["seq"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_metric)
            nursery.start_soon(read_slow_close)
            nursery.start_soon(fast_reader)
            await send_burst()
        assert codes == [4009]
        assert got == list(range(1, sent + 1)), "the other device missed or reordered messages"
        # the sender and bob's other device carry on
        more = await sender.say(cid, "after the slow one left")
        assert (await fast.expect("message.created"))["message"]["seq"] == more["seq"]
        await fast.send(type="read", conversation_id=cid, seq=more["seq"])
        await sender.expect("status", user_id=bob, read_seq=more["seq"])
        await witnesses.check()
        await fresh_client_works(roomy)
        await sender.close()
        await fast.close()
        await witnesses.close()


# ---------------------------------------------------------------- 2. Origin


async def test_a_disallowed_origin_is_refused_403_before_the_upgrade(cell: Cell) -> None:
    alice, = users("alice")
    witnesses = await Witnesses.open(cell)
    with trio.fail_after(60):
        for replica in (cell.strict, cell.roomy):
            url = ws_url(replica.ws, alice)
            for origin in ("https://evil.example", "null", "https://shop.example.evil.example",
                           "http://shop.example", "https://SHOP.example.com"):
                assert await handshake_status(url, origin=origin) == 403, origin
            # the refusal is a plain HTTP answer with a JSON error body, no WebSocket
            raw = RawWs(replica.ws)
            try:
                status, _ = await off_thread(lambda raw=raw: raw.upgrade(
                    ws_path(alice), {"Origin": "https://evil.example"}))
                assert status == 403
                body = await off_thread(raw.body)
                assert json.loads(body)["type"] == "error"
            finally:
                raw.close()
            # allowed origins (and clients that send none) get in and chat
            for origin in (ALLOWED_ORIGIN, "https://other.shop.example"):
                assert await handshake_status(url, origin=origin) == 101
            a = await WsClient.open(replica.ws, alice, origin=ALLOWED_ORIGIN)
            await a.send(type="ping", ref="o")
            await a.expect("pong", ref="o")
            await a.close()
        await witnesses.check()
        await witnesses.close()


# ---------------------------------------------------------------- 3. idle timeout


def _answer_pings(raw: RawWs, seconds: float) -> int:
    """Read for `seconds`, answering every ping with its pong; the number of pings. Raises
    if the server closes the connection meanwhile."""
    deadline = time.monotonic() + seconds
    pings = 0
    while True:
        try:
            frame = raw.read_frame(deadline)
        except TimeoutError:
            return pings
        assert frame is not None, "closed without a close frame"
        assert frame[0] != 0x8, f"closed: {frame!r}"
        if frame[0] == 0x9:
            pings += 1
            raw.send(encode_frame(0xA, frame[1]))


async def test_a_client_that_never_answers_pings_is_closed_4000_and_others_stay(
        cell: Cell) -> None:
    strict = cell.strict
    silent, chatty, ponger, stuck, calm = users("silent", "chatty", "ponger", "stuck", "calm")
    witnesses = await Witnesses.open(cell)
    with trio.fail_after(60):
        # a library client that never sends anything: it answers pings on its own
        quiet = await WsClient.open(strict.ws, calm)
        raws = {name: RawWs(strict.ws) for name in (silent, chatty, ponger, stuck)}
        try:
            opened: dict[str, float] = {}
            for name, raw in raws.items():
                status, _ = await off_thread(lambda raw=raw, name=name: raw.upgrade(
                    ws_path(name)))
                assert status == 101
                opened[name] = time.monotonic()
            started = time.monotonic()
            results: dict[str, tuple[list[tuple[int, bytes]], int | None]] = {}
            elapsed: dict[str, float] = {}

            async def until_close(name: str) -> None:
                results[name] = await off_thread(
                    lambda: raws[name].frames_until_close(IDLE_TIMEOUT_S + 10))
                elapsed[name] = time.monotonic() - opened[name]

            async def chatter() -> None:
                # application-level `ping` frames are not pongs (docs/websocket.md#limits)
                raw = raws[chatty]
                for i in range(int(IDLE_TIMEOUT_S) + 2):
                    if chatty in results:
                        return
                    try:
                        await off_thread(lambda i=i: raw.send(encode_frame(
                            0x1, json.dumps({"type": "ping", "ref": f"c{i}"}).encode())))
                    except OSError:
                        return  # closed meanwhile: until_close says how
                    await trio.sleep(0.8)

            async def half_a_frame() -> None:
                # announces a huge frame, sends ten bytes of it, then nothing: it cannot
                # answer a ping in the middle of a frame, so the idle timeout ends it
                await off_thread(lambda: raws[stuck].send(
                    encode_frame(0x1, b'{"type":"p', declared_length=1 << 40)))

            pongs: list[int] = []

            async def pong_by_hand() -> None:
                pongs.append(await off_thread(
                    lambda: _answer_pings(raws[ponger], 2 * IDLE_TIMEOUT_S + 1)))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(until_close, silent)
                nursery.start_soon(chatter)
                nursery.start_soon(until_close, chatty)
                nursery.start_soon(half_a_frame)
                nursery.start_soon(until_close, stuck)
                nursery.start_soon(pong_by_hand)
            for name in (silent, chatty):
                seen, code = results[name]
                assert code == 4000, (name, seen)
                assert any(op == 0x9 for op, _ in seen), "the server never pinged"
                # not before the timeout, and not much after it
                assert IDLE_TIMEOUT_S - 0.5 <= elapsed[name] <= IDLE_TIMEOUT_S + 6, elapsed
            assert results[stuck][1] in (4000, 1009), results[stuck]
            assert elapsed[stuck] <= IDLE_TIMEOUT_S + 6
            # the raw client that answers pings, and the library client, outlived two timeouts
            assert pongs[0] >= 2
            assert time.monotonic() - started > 2 * IDLE_TIMEOUT_S
            await quiet.send(type="ping", ref="still")
            await quiet.expect("pong", ref="still")
            await off_thread(lambda: raws[ponger].send(encode_frame(
                0x1, json.dumps({"type": "ping", "ref": "raw"}).encode())))
            frame = await off_thread(lambda: raws[ponger].read_frame(time.monotonic() + 10))
            while frame is not None and frame[0] == 0x9:  # a ping may come first
                frame = await off_thread(lambda: raws[ponger].read_frame(time.monotonic() + 10))
            assert frame is not None
            assert json.loads(frame[1]) == {"type": "pong", "ref": "raw"}
        finally:
            for raw in raws.values():
                raw.close()
        assert await metric_of(strict, 'cellchat_ws_closes_total{code="4000"}') >= 2
        await witnesses.check()
        await fresh_client_works(strict)
        await quiet.close()
        await witnesses.close()


# ---------------------------------------------------------------- 4. token expiry


async def test_a_token_that_expires_while_connected_closes_4001(cell: Cell) -> None:
    strict, roomy = cell.strict, cell.roomy
    alice, bob = users("alice", "bob")
    witnesses = await Witnesses.open(cell)
    with trio.fail_after(60):
        # JWT_LEEWAY_S=0: a token that expired a second ago is refused at the handshake
        assert await handshake_status(ws_url(strict.ws, alice,
                                             tok=token(alice, ttl_s=-1))) == 401
        b = await WsClient.open(roomy.ws, bob)
        await b.subscribe()
        other_device = await WsClient.open(strict.ws, alice)  # alice with a long token
        await other_device.subscribe()
        cid = await other_device.open_direct(bob)
        short = token(alice, ttl_s=6)
        exp = json.loads(base64.urlsafe_b64decode(short.split(".")[1] + "=="))["exp"]
        ws = await off_thread(lambda: connect(ws_url(strict.ws, alice, tok=short),
                                              open_timeout=10, compression=None,
                                              ping_interval=None, legacy=True))
        a = WsClient(ws, alice)
        assert (await a.recv())["type"] == "hello"
        sent = await a.say(cid, "said before the token expired")  # usable until exp
        assert time.time() < exp
        assert await a.closed_with(within=exp - time.time() + 8) == 4001
        closed_at = time.time()
        assert exp - 1.0 <= closed_at <= exp + 6, (exp, closed_at)
        # the message was stored and delivered; the other connections carry on
        assert (await b.expect("message.created"))["message"]["seq"] == sent["seq"]
        later = await b.say(cid, "to alice's other device")
        await expect_message(other_device, later)
        assert await metric_of(strict, 'cellchat_ws_closes_total{code="4001"}') >= 1
        await witnesses.check()
        await fresh_client_works(strict)
        await b.close()
        await other_device.close()
        await witnesses.close()


# ---------------------------------------------------------------- 5. flood


async def test_a_flood_gets_rate_limited_then_4008_and_the_same_users_other_device_stays(
        cell: Cell) -> None:
    strict = cell.strict
    alice, = users("alice")
    witnesses = await Witnesses.open(cell)
    with trio.fail_after(60):
        flooder = await WsClient.open(strict.ws, alice)
        calm = await WsClient.open(strict.ws, alice)  # same user, same replica
        text = json.dumps({"type": "ping", "ref": "f"})
        frames_in: list[dict[str, Any]] = []

        def flood() -> None:
            # The server may close the connection before the flood is over: that is the point.
            try:
                for _ in range(5 * (STRICT_BURST + STRICT_STRIKES)):
                    flooder.ws.send(text)
            except ConnectionClosed:
                pass

        def read_until_closed() -> int:
            while True:
                try:
                    frames_in.append(json.loads(flooder.ws.recv(timeout=20)))
                except ConnectionClosed as exc:
                    return exc.rcvd.code if exc.rcvd is not None else 1006

        codes: list[int] = []

        async def reader() -> None:
            codes.append(await off_thread(read_until_closed))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await off_thread(flood)
        assert codes == [4008]
        kinds = [f["type"] for f in frames_in]
        errors = [f for f in frames_in if f["type"] == "error"]
        # an error frame for the first refused frame, then silence until the close (a token
        # refilled in the middle of the flood starts a new streak, hence "a few")
        assert {e["code"] for e in errors} == {"rate_limited"}, frames_in
        assert len(errors) <= 3, frames_in
        assert STRICT_BURST <= kinds.count("pong") <= 2 * STRICT_BURST, kinds
        await calm.send(type="ping", ref="calm")
        await calm.expect("pong", ref="calm")
        assert await metric_of(strict, 'cellchat_ws_closes_total{code="4008"}') >= 1
        await witnesses.check()
        await fresh_client_works(strict)
        await calm.close()
        await witnesses.close()


# ---------------------------------------------------------------- 6. bad frames


@attrs.frozen
class Grpc:
    stub: chat_pb2_grpc.ChatServiceStub

    async def call(self, method: str, request: Any, user: str) -> Any:
        fn: Callable[..., Any] = getattr(self.stub, method)
        metadata = [("authorization", f"Bearer {token(user)}")]
        return await off_thread(lambda: fn(request, metadata=metadata, timeout=20))


async def test_bad_frames_get_error_frames_and_nothing_is_stored(cell: Cell) -> None:
    strict, roomy = cell.strict, cell.roomy
    alice, bob, eve = users("alice", "bob", "eve")
    witnesses = await Witnesses.open(cell)
    with trio.fail_after(90):
        a = await WsClient.open(strict.ws, alice)
        b = await WsClient.open(roomy.ws, bob)
        await a.subscribe()
        await b.subscribe()
        cid = await a.open_direct(bob)
        first = await a.say(cid, "hello bob")
        await expect_message(b, first)
        await expect_message(a, first)  # her own stream has it too
        e = await WsClient.open(roomy.ws, eve)
        e_other = await WsClient.open(roomy.ws, eve)  # eve's second device stays healthy
        await e.subscribe()

        async def refused(data: str | bytes, code: str, ref: str | None = None) -> None:
            await e.send_raw(data)
            error = await (e.expect("error", ref=ref) if ref else e.expect("error"))
            assert error["code"] == code, (data[:80], error)

        await refused("{this is not json", "bad_frame")
        await refused("[1, 2, 3]", "bad_frame")
        await refused('"a string"', "bad_frame")
        await refused("", "bad_frame")
        await refused(b"\x00\x01binary", "bad_frame")
        await refused('{"type": 7}', "bad_frame")
        await refused("[" * 5000, "bad_frame")
        await refused('{"type":"read","ref":"inf","conversation_id":"c","seq":1e400}',
                      "bad_frame", "inf")
        await refused(json.dumps({"type": "teleport", "ref": "t"}), "unknown_type", "t")
        await refused(json.dumps({"type": "send", "conversation_id": cid, "ref": "s"}),
                      "bad_frame", "s")
        await refused(json.dumps({"type": "read", "conversation_id": cid, "seq": -1,
                                  "ref": "neg"}), "bad_frame", "neg")
        # a conversation eve is not in and one that does not exist: the same `not_found`
        # (on purpose); an id that cannot be a conversation id: `invalid_argument`
        for target, code in ((cid, "not_found"), (str(uuid.uuid4()), "not_found"),
                             ("not-a-uuid", "invalid_argument"),
                             ("x" * 128, "invalid_argument")):
            for i, command in enumerate((
                {"type": "send", "conversation_id": target, "client_message_id": "spam",
                 "kind": "text", "text": "spam from eve"},
                {"type": "read", "conversation_id": target, "seq": 1},
                {"type": "delivered", "conversation_id": target, "seq": 1},
                {"type": "typing", "conversation_id": target, "state": "started"},
                {"type": "edit", "conversation_id": target, "seq": 1, "text": "mine now"},
                {"type": "delete", "conversation_id": target, "seq": 1},
            )):
                ref = f"{command['type']}-{i}"
                await refused(json.dumps({**command, "ref": ref}), code, ref)
            await e.send(type="subscribe", positions={target: 0}, ref="sub-x")
            assert (await e.expect("error", ref="sub-x"))["code"] == code
            await e.expect("subscribed", ref="sub-x")
        # a position no conversation can reach is `position_ahead` (it used to fail in the
        # store, answer `internal` and leave the live stream held until a bogus 4009)
        await a.send(type="subscribe", positions={cid: 2**70}, ref="far")
        resync = await a.expect("resync")
        assert (resync["conversation_id"], resync["from_seq"], resync["last_seq"],
                resync["reason"]) == (cid, 2**70, 1, "position_ahead")
        assert (await a.expect("subscribed", ref="far"))["replayed"] == 0
        live = await b.say(cid, "live after a silly position")
        await expect_message(a, live)
        # eve is still connected and answered; nothing reached alice or bob
        await e.send(type="ping", ref="alive")
        await e.expect("pong", ref="alive")
        for client in (a, b):
            leaked = [f for f in client.skipped + await client.nothing(0.5)
                      if eve in json.dumps(f) or f["type"] in (
                          "message.edited", "message.deleted", "conversation.updated")
                      or (f["type"] == "message.created" and f["message"]["seq"] > 2)]
            assert not leaked, leaked
        # and nothing was stored: GetMessages and GetConversation through gRPC
        channel = grpc.insecure_channel(f"127.0.0.1:{cell.grpc[strict.name]}")
        try:
            api = Grpc(chat_pb2_grpc.ChatServiceStub(channel))
            history = await api.call("GetMessages",
                                     pb.GetMessagesRequest(conversation_id=cid), alice)
            assert sorted((m.seq, m.sender_id, m.text) for m in history.messages) == [
                (1, alice, "hello bob"), (2, bob, "live after a silly position")]
            assert history.last_seq == 2
            view = (await api.call("GetConversation",
                                   pb.GetConversationRequest(conversation_id=cid),
                                   bob)).conversation
            assert sorted(p.user_id for p in view.participants) == sorted([alice, bob])
            assert view.last_seq == 2
            with pytest.raises(grpc.RpcError) as info:
                await api.call("GetMessages", pb.GetMessagesRequest(conversation_id=cid), eve)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            channel.close()
        # a replayed subscribe of a participant sees the same
        b2 = await WsClient.open(strict.ws, bob)
        await b2.send(type="subscribe", positions={cid: 0}, ref="replay")
        replay = [(await b2.expect("message.created"))["message"] for _ in range(2)]
        await b2.expect("subscribed", ref="replay")
        assert [(m["seq"], m["sender_id"]) for m in replay] == [(1, alice), (2, bob)]
        assert not [f for f in b2.skipped if f["type"] == "message.created"]
        await b2.close()
        # an oversized frame closes with 1009, in one frame or in fragments
        await e.send_raw(json.dumps({"type": "ping", "ref": "z" * (ROOMY_MAX_FRAME + 100)}))
        assert await e.closed_with() == 1009
        e3 = await WsClient.open(roomy.ws, eve)
        piece = "z" * 1000
        fragments = ['{"type":"ping","ref":"'] + [piece] * (ROOMY_MAX_FRAME // 1000 + 2) + ['"}']

        def send_fragments() -> None:
            try:
                e3.ws.send(iter(fragments))
            except ConnectionClosed:
                pass  # the server may close before the last fragment: that is the point

        await off_thread(send_fragments)
        assert await e3.closed_with() == 1009
        # a frame just under the limit is fine (and refused by the schema, not the socket)
        await e_other.send_raw(json.dumps({"type": "ping", "ref": "z" * (ROOMY_MAX_FRAME - 100)}))
        assert (await e_other.expect("error"))["code"] == "bad_frame"
        await e_other.send(type="ping", ref="other")
        await e_other.expect("pong", ref="other")
        second = await b.say(cid, "still chatting")
        await expect_message(a, second)
        assert await metric_of(roomy, 'cellchat_ws_closes_total{code="1009"}') >= 2
        await witnesses.check()
        await fresh_client_works(roomy)
        for client in (a, b, e_other):
            await client.close()
        await witnesses.close()


# ---------------------------------------------------------------- 7. handshake garbage


def _alg_none(user: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    claims = {"sub": user, "iss": "cellchat", "aud": "cellchat", "exp": int(time.time()) + 600}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def test_handshake_garbage_is_refused_before_the_upgrade(cell: Cell) -> None:
    alice, = users("alice")
    other_key = JwtSettings(verify_key="another-secret-0123456789abcdef-xyz")
    alg_none = _alg_none(alice)
    forged_sig = base64.urlsafe_b64encode(hmac.new(
        b"guess", alg_none[:-1].encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    refusals = [
        (f"/ws/chat?user_id={alice}", 401),  # no token at all
        (ws_path(alice, tok=""), 401),
        (ws_path(alice, tok="garbage"), 401),
        (ws_path(alice, tok="a.b.c"), 401),
        (ws_path(alice, tok=alg_none), 401),
        (ws_path(alice, tok=alg_none + forged_sig), 401),
        (ws_path(alice, tok=mint_token(other_key, alice)), 401),
        (ws_path(alice, tok=token(alice, ttl_s=-1)), 401),
        (ws_path(alice, tok=mint_token(JwtSettings(verify_key=JWT.verify_key,
                                                   issuer="someone-else"), alice)), 401),
        (ws_path(alice, tok=mint_token(JwtSettings(verify_key=JWT.verify_key,
                                                   audience="another-app"), alice)), 401),
        (ws_path(alice).replace(f"user_id={alice}", "user_id=mallory"), 403),
        (ws_path(alice).split("&user_id=")[0], 403),  # no user_id
        (ws_path(alice).replace(f"user_id={alice}", f"user_id={alice}x"), 403),
        (ws_path(alice).replace("/ws/chat", "/ws/other"), 404),
        (ws_path(alice).replace("/ws/chat", "/ws/chat/"), 404),
        (ws_path(alice).replace("/ws/chat", "/"), 404),
        (ws_path(alice).replace("/ws/chat", "/WS/CHAT"), 404),
    ]
    witnesses = await Witnesses.open(cell)
    with trio.fail_after(90):
        for replica in (cell.strict, cell.roomy):
            for path, expected in refusals:
                raw = RawWs(replica.ws)
                try:
                    status, head = await off_thread(lambda raw=raw, path=path: raw.upgrade(path))
                    assert status == expected, (path, head)
                    body = await off_thread(raw.body)
                    assert json.loads(body)["type"] == "error"
                    assert b"upgrade" not in head.lower().split(b"\r\n", 1)[1]
                    assert await off_thread(lambda raw=raw: raw.eof_within(10)), "left open"
                finally:
                    raw.close()
            # HTTP that is not a WebSocket upgrade, and bytes that are not HTTP at all
            good = ws_path(alice)
            for request in (
                f"GET {good} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /healthz HTTP/1.0\r\n\r\n",
                f"POST {good} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".encode(),
                _handshake_request(good).replace(b"Version: 13", b"Version: 8"),
                _handshake_request(good).replace(b"Sec-WebSocket-Key", b"X-Nothing"),
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # TLS hello
                b"garbage garbage\r\n\r\n",
                b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",  # a huge request line
            ):
                raw = RawWs(replica.ws)
                try:
                    await off_thread(lambda raw=raw, request=request: raw.send(request))
                    status, head = await off_thread(raw.response_head)
                    assert 400 <= status < 500, (request[:60], head)
                    assert await off_thread(lambda raw=raw: raw.eof_within(10)), "left open"
                except (ConnectionResetError, BrokenPipeError):
                    pass  # the server hung up on the garbage: fine too
                finally:
                    raw.close()
            await fresh_client_works(replica)
        await witnesses.check()
        await witnesses.close()
    # tokens never reach the logs, not even refused ones
    for replica in (cell.strict, cell.roomy):
        logged = replica.log.read_text(errors="replace")
        assert "eyJ" not in logged
        assert alg_none not in logged


async def test_connections_that_never_finish_the_handshake_do_not_hold_the_server(
        cell: Cell) -> None:
    strict = cell.strict
    witnesses = await Witnesses.open(cell)
    idle: list[RawWs] = []
    try:
        with trio.fail_after(60):
            started = time.monotonic()
            for i in range(40):
                raw = RawWs(strict.ws)
                idle.append(raw)
                if i % 4 == 1:  # slowloris: half a request line
                    raw.send(b"GET /ws/chat?token=")
                elif i % 4 == 2:  # the whole head but the final blank line
                    raw.send(_handshake_request(ws_path("slow"))[:-2])
            # meanwhile everybody else is served at once
            with trio.fail_after(8):
                await fresh_client_works(strict)
                await witnesses.check()
            # and every one of them is closed within the handshake timeout (with a bound)
            for raw in idle:
                remaining = started + CONNECT_TIMEOUT_S + 10 - time.monotonic()
                assert await off_thread(lambda raw=raw, r=remaining: raw.eof_within(r)), (
                    "a connection that never finished its handshake was left open")
            await fresh_client_works(strict)
            await witnesses.check()
    finally:
        for raw in idle:
            raw.close()
    await witnesses.close()


async def test_a_replay_from_position_zero_gives_every_message_in_order(cell: Cell) -> None:
    # More than one replay page (100), from position 0: "I have nothing of this conversation".
    # (It used to replay the newest 100 in reverse and skip the older ones without a word.)
    alice, bob = users("alice", "bob")
    total = 105
    with trio.fail_after(90):
        a = await WsClient.open(cell.roomy.ws, alice)
        await a.subscribe()
        cid = await a.open_direct(bob)
        for i in range(total):  # pipelined: the acks are collected afterwards
            await a.send(type="send", conversation_id=cid, client_message_id=f"c{i}",
                         kind="text", text=f"m{i}", ref=f"c{i}")
        for i in range(total):
            await a.expect("ack", ref=f"c{i}", within=30)
        b = await WsClient.open(cell.strict.ws, bob)
        await b.send(type="subscribe", positions={cid: 0}, ref="all")
        seqs = []
        while (frame := await b.recv())["type"] != "subscribed":
            if frame["type"] == "message.created":
                seqs.append(frame["message"]["seq"])
        assert seqs == list(range(1, total + 1))
        assert frame["replayed"] == total
        live = await a.say(cid, "and live after it")
        await expect_message(b, live)
        await a.close()
        await b.close()
