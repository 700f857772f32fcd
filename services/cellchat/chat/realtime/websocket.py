"""`/ws/chat?token=<jwt>&user_id=<id>` on trio-websocket: handshake checks, then one session.

The handshake is decided before the upgrade: a wrong path is 404, a missing or invalid token
401, a `user_id` other than the token's subject or a disallowed Origin 403, a replica that is
draining or without its broker 503 - all plain HTTP answers, no WebSocket is opened. Only then
is the user's broker subject subscribed and the upgrade accepted.

A session is two tasks of its own around one socket (trio-websocket runs a third, its reader):
the handler's task is the writer (the only task that writes frames: it takes everything queued
in the bounded outbox and writes it as one batch, straight to the stream - wire.py), and the
reader (decode, rate-limit, call the use case, answer) also keeps the timers: the token's
expiry (4001) and the heartbeat (a WebSocket ping every half idle timeout, in a short-lived
task; no pong within the other half closes with 4000). Whoever decides the connection must end
calls `request_close`; the reader then stops at once, the writer writes what is queued (except
for a slow consumer, whose queue is abandoned) within the close timeout, and the close code is
sent. The request path holds the token, so it is never logged; neither are frame bodies.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from functools import partial
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState as WsState
from wsproto.handshake import H11Handshake

from cellchat.auth import Principal, TokenVerifier
from cellchat.chat.app.service import ChatApp, MessagePage, NewMessage
from cellchat.chat.domain.errors import ChatError, Unauthenticated
from cellchat.chat.domain.model import Context, Participant
from cellchat.chat.realtime import frames
from cellchat.chat.realtime.broker import BrokerUnavailable, Envelope
from cellchat.chat.realtime.fanout import RealtimeEvents
from cellchat.chat.realtime.frames import CloseCode, FrameError
from cellchat.chat.realtime.hub import Hub, Outbox
from cellchat.chat.realtime.ratelimit import FloodGuard, Verdict
from cellchat.chat.realtime.wire import ConnectionGone, FrameWriter, frame_payload
from cellchat.ops import Metrics

log = logging.getLogger(__name__)

PATH = "/ws/chat"
_REPLAY_PAGE = 100
_PARTICIPANTS_TTL_S = 5.0


class PresenceHook(Protocol):
    """What the chat replica tells the presence service (cellchat.presence)."""

    async def connected(self, user_id: str, connection_id: str) -> None: ...

    async def disconnected(self, user_id: str, connection_id: str) -> None: ...

    async def typing(self, user_id: str, conversation_id: str, started: bool) -> None: ...


@attrs.frozen
class SocketConfig:
    allowed_origins: tuple[str, ...] = ()
    max_frame_bytes: int = 64 * 1024
    rate_per_s: float = 20.0
    burst: int = 40
    flood_strikes: int = 10
    idle_timeout_s: float = 60.0
    queue_size: int = 256
    replay_max: int = 1000
    close_timeout_s: float = 5.0
    typing_ttl_s: float = 6.0


class _Reject(Exception):
    def __init__(self, status: int, result: str, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.result = result
        self.code = code
        self.message = message


class ChatSocketServer:
    def __init__(self, app: ChatApp, verifier: TokenVerifier, hub: Hub, events: RealtimeEvents,
                 metrics: Metrics, config: SocketConfig,
                 presence: PresenceHook | None = None) -> None:
        self.app = app
        self.verifier = verifier
        self.hub = hub
        self.events = events
        self.metrics = metrics
        self.config = config
        self.presence = presence
        self.accepting = True

    def drain(self) -> None:
        """Stop accepting; ask every connected client to reconnect elsewhere (1001)."""
        self.accepting = False
        self.hub.close_all(CloseCode.GOING_AWAY, "server shutting down: reconnect and resume")

    def check_handshake(self, path: str, headers: Sequence[tuple[bytes, bytes]]) -> Principal:
        """Decide the handshake from the request alone; raises `_Reject`."""
        split = urlsplit(path)
        if split.path != PATH:
            raise _Reject(404, "not_found", "not_found", f"the chat stream is at {PATH}")
        origin = next((v for k, v in headers if k.lower() == b"origin"), None)
        if (origin is not None and self.config.allowed_origins
                and origin.decode("latin-1") not in self.config.allowed_origins):
            raise _Reject(403, "origin_forbidden", "permission_denied", "origin not allowed")
        query = parse_qs(split.query, keep_blank_values=True)
        token = (query.get("token") or [""])[0]
        try:
            principal = self.verifier.verify(token)
        except Unauthenticated as exc:
            raise _Reject(401, "unauthenticated", "unauthenticated", str(exc)) from None
        if (query.get("user_id") or [""])[0] != principal.user_id:
            raise _Reject(403, "user_mismatch", "permission_denied",
                          "user_id does not match the token")
        if not self.accepting or (self.hub.broker is not None and not self.hub.broker.ready):
            raise _Reject(503, "unavailable", "unavailable", "not accepting connections")
        return principal

    async def handle(self, request: WebSocketRequest) -> None:
        # One coroutine for the handshake and the session's whole life (not a wrapper around
        # another: each frame that lives as long as the connection costs ~300 bytes of it).
        try:
            try:
                principal = self.check_handshake(request.path, request.headers)
            except _Reject as rejected:
                await self._reject(request, rejected)
                return
            session = Session(self, principal, os.urandom(6).hex())
            try:
                await self.hub.attach(session.outbox)
            except BrokerUnavailable:
                await self._reject(request, _Reject(503, "unavailable", "unavailable",
                                                    "the broker is unavailable; retry"))
                return
            try:
                try:
                    ws = await request.accept()
                except ConnectionClosed:
                    return
                release_handshake(ws)
                self.metrics.ws_handshakes.labels("accepted").inc()
                await session.run(ws)
            finally:
                await self.hub.detach(session.outbox)
                self.hub.detached(session.outbox)
        except Exception:
            # One connection's failure must never reach the server's nursery.
            log.exception("websocket session failed")

    async def _reject(self, request: WebSocketRequest, rejected: _Reject) -> None:
        self.metrics.ws_handshakes.labels(rejected.result).inc()
        log.info("websocket handshake refused: %s", rejected.result,
                 extra={"code": rejected.status})
        body = frames.encode_error(rejected.code, rejected.message).encode()
        try:
            await request.reject(rejected.status,
                                 extra_headers=[(b"content-type", b"application/json")],
                                 body=body)
        except ConnectionClosed:
            pass
        finally:
            await _close_rejected(request)


class Session:
    """One accepted connection (see the module docstring for its tasks)."""

    # A replica holds tens of thousands of these: slots, and nothing built before it is needed.
    __slots__ = ("_abandon", "_close_code", "_close_reason", "_closing", "_expire_at",
                 "_participants", "_pinging", "_read_scope", "_tasks_scope", "_torn", "_ws",
                 "connection_id", "expires_at", "guard", "outbox", "server", "user_id")

    def __init__(self, server: ChatSocketServer, principal: Principal,
                 connection_id: str) -> None:
        self.server = server
        self.user_id = principal.user_id
        self.expires_at = principal.expires_at
        self.connection_id = connection_id
        config = server.config
        self.outbox = Outbox(connection_id, self.user_id, config.queue_size,
                             self.request_close, server.metrics)
        self.guard = FloodGuard.create(config.rate_per_s, config.burst, trio.current_time(),
                                       config.flood_strikes)
        self._closing = False
        self._close_code: CloseCode | None = None
        self._close_reason = ""
        self._abandon = False
        # The reader's current scope, and the session nursery's (the writer runs in its body).
        # Each entered cancel scope costs a few hundred bytes per connection: no more of them.
        self._read_scope: trio.CancelScope | None = None
        self._tasks_scope: trio.CancelScope | None = None
        self._torn = False  # a write was cut off part-way
        self._expire_at = math.inf  # on Trio's clock, from `run` on
        self._pinging = False
        self._participants: dict[str, tuple[float, tuple[Participant, ...]]] | None = None
        self._ws: WebSocketConnection | None = None

    @property
    def _log_extra(self) -> dict[str, str]:
        return {"conn_id": self.connection_id, "user_id": self.user_id}

    # ------------------------------------------------------------ lifecycle

    def request_close(self, code: CloseCode | None, reason: str = "") -> None:
        """End the session; `code` None means the peer is already gone.

        The reader stops at once. The writer writes what is queued (within the close timeout),
        except for a slow consumer, whose queue is abandoned after the write under way, and a
        peer that is gone, where nothing more is written."""
        if self._closing:
            return
        self._closing = True
        self._close_code = code
        self._close_reason = reason
        self._abandon = code in (None, CloseCode.SLOW_CONSUMER)
        if self._read_scope is not None:
            self._read_scope.cancel()
        self._limit_tasks()
        self.outbox.close_input()

    def _limit_tasks(self) -> None:
        """Once closing: the peer gone, everything stops now; else the writer (and the
        heartbeat) get the close timeout."""
        scope = self._tasks_scope
        if scope is None or not self._closing:
            return
        if self._close_code is None:
            scope.cancel()
        else:
            scope.deadline = min(scope.deadline,
                                 trio.current_time() + self.server.config.close_timeout_s)

    async def run(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        server = self.server
        config = server.config
        self._expire_at = trio.current_time() + max(0.0, self.expires_at - time.time())
        self._log_connected()
        self.outbox.put(frames.encode_hello(
            self.connection_id, self.user_id, max_frame_bytes=config.max_frame_bytes,
            rate_per_s=config.rate_per_s, burst=config.burst,
            typing_ttl_ms=int(config.typing_ttl_s * 1000)))
        if server.presence is not None:
            await self._presence("connected")
        try:
            # Two tasks of our own (trio-websocket runs its reader besides): this one writes,
            # the other reads and keeps the timers (heartbeat, token expiry).
            writer = FrameWriter.attach(ws)
            async with trio.open_nursery() as tasks:
                self._tasks_scope = tasks.cancel_scope
                self._limit_tasks()  # a close requested before the session ran
                tasks.start_soon(self._reader, tasks)
                try:
                    await self._writer(writer)
                finally:
                    self.outbox.direct = None
                tasks.cancel_scope.cancel()
            self._tasks_scope = None
            # A write cut off part-way (by the writer, or a frame `try_write` began whose rest
            # was never written) leaves the stream unusable for a close frame.
            torn = self._torn or (writer is not None and writer.owed)
            if self._close_code is not None:
                server.metrics.ws_closes.labels(str(int(self._close_code))).inc()
                if not torn:
                    with trio.move_on_after(config.close_timeout_s):
                        await ws.aclose(int(self._close_code), self._close_reason)
                elif writer is not None:
                    await _abort(writer)
            elif torn and writer is not None:
                await _abort(writer)
            elif ws.closed is not None:
                server.metrics.ws_closes.labels(str(ws.closed.code)).inc()
        finally:
            log.info("websocket closed", extra={
                **self._log_extra,
                "code": int(self._close_code) if self._close_code is not None
                else (ws.closed.code if ws.closed else None)})
            if server.presence is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await self._presence("disconnected")

    def _log_connected(self) -> None:
        # Not logged from `run` itself: logging looks up its caller's frame, and a coroutine's
        # frame object, once made, lives as long as the coroutine (here: the connection).
        log.info("websocket connected", extra=self._log_extra)

    async def _presence(self, what: str) -> None:
        presence = self.server.presence
        assert presence is not None
        try:
            with trio.fail_after(2):
                if what == "connected":
                    await presence.connected(self.user_id, self.connection_id)
                else:
                    await presence.disconnected(self.user_id, self.connection_id)
        except Exception as exc:  # presence is best effort; chat goes on
            log.warning("presence %s not reported: %s", what, type(exc).__name__,
                        extra=self._log_extra)

    async def _writer(self, writer: FrameWriter | None) -> None:
        """Writes what the outbox queues (everything queued, as one write) until the session
        closes; while it runs, the outbox may write frames at once itself (`Outbox.direct`).
        Cancelled part-way through a write, it leaves `_torn` set: no close frame may follow.
        Abandoning the queue (slow consumer), it still finishes a frame already begun."""
        ws = self._ws
        assert ws is not None
        outbox = self.outbox
        outbox.direct = writer
        frames_out = self.server.metrics.ws_frames_out
        while True:
            batch = await outbox.take()
            if self._abandon:
                if writer is None or not writer.owed or not batch:
                    return
                batch = batch[:1]  # the rest of the frame begun, then the close frame
            if not batch:
                return
            self._torn = True
            try:
                if writer is not None:
                    await writer.write(batch)
                else:  # trio-websocket's internals moved (wire.py): the public way
                    for frame in batch:
                        await ws.send_message(frame_payload(frame).decode())
            except (ConnectionGone, ConnectionClosed):
                self._torn = False
                self.request_close(None)
                return
            self._torn = False
            frames_out.inc(len(batch))

    async def _ping(self) -> None:
        """One heartbeat: no pong within half the idle timeout closes with 4000."""
        assert self._ws is not None
        try:
            with trio.move_on_after(self.server.config.idle_timeout_s / 2) as waited:
                await self._ws.ping()
        except ConnectionClosed:
            self.request_close(None)
            return
        finally:
            self._pinging = False
        if waited.cancelled_caught:
            self.request_close(CloseCode.IDLE_TIMEOUT, "no pong within the idle timeout")

    def _timers_due(self, now: float, tasks: trio.Nursery) -> bool:
        """The reader's timers fired: token expiry (4001) or the next heartbeat. False once
        the session is closing."""
        if now >= self._expire_at:
            self.request_close(CloseCode.TOKEN_EXPIRED, "token expired: reconnect with a new one")
            return False
        if not self._pinging:
            self._pinging = True
            tasks.start_soon(self._ping)
        return True

    # ------------------------------------------------------------ reading

    def _error(self, code: str, message: str, *, ref: str = "", field: str = "") -> None:
        self.server.metrics.ws_errors.labels(code).inc()
        self.outbox.put(frames.encode_error(code, message, ref=ref, field=field))

    async def _reader(self, tasks: trio.Nursery) -> None:
        """Reads and answers client frames; also keeps the timers, so that an idle connection
        costs no task of its own for them (a heartbeat's wait for its pong is a short task)."""
        ws = self._ws
        assert ws is not None
        beat = self.server.config.idle_timeout_s / 2
        next_ping = trio.current_time() + beat
        pending: str | bytes | None = None
        while not self._closing:
            # One scope until a timer fires (not one per frame): its deadline is the next
            # timer while waiting for a frame, none while a command runs; a close cancels it.
            self._read_scope = scope = trio.CancelScope()
            with scope:
                while True:
                    if pending is None:
                        scope.deadline = min(next_ping, self._expire_at)
                        try:
                            pending = await ws.get_message()
                        except ConnectionClosed:
                            self.request_close(None)
                            return
                        if scope.cancel_called:
                            # A timer fired (or a close came) as the frame arrived: the frame
                            # is handled after the timers, in a fresh scope, not cancelled.
                            break
                    scope.deadline = math.inf
                    data, pending = pending, None
                    if not await self._received(data):
                        return
            self._read_scope = None
            now = trio.current_time()
            if self._closing or not self._timers_due(now, tasks):
                return
            if now >= next_ping:
                next_ping = now + beat

    async def _received(self, data: str | bytes) -> bool:
        """One client frame: rate limit, decode, dispatch, answer. False: stop reading."""
        metrics = self.server.metrics
        verdict = self.guard.check(trio.current_time())
        if verdict is not Verdict.ALLOW:
            metrics.ws_frames_in.labels("rate_limited").inc()
            if verdict is Verdict.REJECT_NOTIFY:
                self._error("rate_limited", "too many frames; slow down")
            elif verdict is Verdict.CLOSE:
                self.request_close(CloseCode.RATE_LIMITED, "rate limit exceeded")
                return False
            return True
        try:
            frame = frames.decode_client(data)
        except FrameError as exc:
            metrics.ws_frames_in.labels("invalid").inc()
            self._error(exc.code, exc.message, ref=exc.ref, field=exc.field)
            return True
        metrics.ws_frames_in.labels(_frame_type(frame)).inc()
        try:
            await self._dispatch(frame)
        except ChatError as exc:
            self._error(exc.code, str(exc), ref=frame.ref, field=getattr(exc, "field", ""))
        except Exception:
            log.exception("command failed", extra=self._log_extra)
            self._error("internal", "internal error", ref=frame.ref)
        return True

    async def _dispatch(self, frame: frames.ClientFrame) -> None:
        app = self.server.app
        me = self.user_id
        match frame:
            case frames.Send():
                stored = await app.send_message(me, NewMessage(
                    conversation_id=frame.conversation_id,
                    client_message_id=frame.client_message_id,
                    kind=frame.kind,
                    text=frame.text,
                    attachment=frame.attachment,
                    reply_to_seq=frame.reply_to_seq,
                ))
                self.outbox.put(frames.encode_ack(stored.message, duplicate=stored.duplicate,
                                                  ref=frame.ref))
            case frames.Read():
                await app.mark_read(me, frame.conversation_id, frame.seq)
            case frames.Delivered():
                await app.mark_delivered(me, frame.conversation_id, frame.seq)
            case frames.Typing():
                await self._typing(frame)
            case frames.Ping():
                self.outbox.put(frames.encode_pong(frame.ref))
            case frames.Subscribe():
                await self._subscribe(frame)
            case frames.Open():
                view, created = await app.create_direct(
                    me, frame.counterpart_id, counterpart_role=frame.counterpart_role,
                    context=Context(frame.product_id, frame.order_id))
                self.outbox.put(frames.encode_opened(
                    view.conversation, view.participants, created=created,
                    last_seq=view.last_seq, ref=frame.ref))
            case frames.Edit():
                await app.edit_message(me, frame.conversation_id, frame.seq, frame.text)
            case frames.Delete():
                await app.delete_message(me, frame.conversation_id, frame.seq)

    async def _participants_of(self, conversation_id: str) -> tuple[Participant, ...]:
        now = trio.current_time()
        cache = self._participants
        if cache is None:
            cache = self._participants = {}
        cached = cache.get(conversation_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        view = await self.server.app.get_conversation(self.user_id, conversation_id)
        if len(cache) > 256:
            cache.clear()
        cache[conversation_id] = (now + _PARTICIPANTS_TTL_S, view.participants)
        return view.participants

    async def _typing(self, frame: frames.Typing) -> None:
        participants = await self._participants_of(frame.conversation_id)
        server = self.server
        if server.presence is not None:
            try:
                with trio.fail_after(2):
                    await server.presence.typing(self.user_id, frame.conversation_id,
                                                 frame.started)
            except Exception as exc:  # typing is best effort
                log.warning("typing not reported to presence: %s", type(exc).__name__,
                            extra=self._log_extra)
        await server.events.publish_typing(
            frame.conversation_id, self.user_id, [p.user_id for p in participants],
            started=frame.started, ttl_ms=int(server.config.typing_ttl_s * 1000))

    # ------------------------------------------------------------ resume

    async def _subscribe(self, frame: frames.Subscribe) -> None:
        """Replay what the client missed, then open the live stream (the subject was
        subscribed before the upgrade, so nothing stored since then can be missed)."""
        gate = self.outbox.gate
        gate.hold()
        replayed = 0
        for conversation_id, position in frame.positions.items():
            try:
                replayed += await self._replay(conversation_id, position)
            except ChatError as exc:
                self._error(exc.code, f"{conversation_id}: {exc}", ref=frame.ref,
                            field="positions")
            except Exception:
                # Any other failure (a bug, an untranslated storage error) is answered for
                # this conversation like the others: escaping here would leave the gate
                # holding, and the live stream would go silent until the held events
                # overflowed into a 4009 for a client that reads fine.
                log.exception("replay failed", extra=self._log_extra)
                self._error("internal", f"{conversation_id}: internal error", ref=frame.ref,
                            field="positions")
            if self.outbox.closed:
                return
        for envelope in gate.release():
            self.outbox.put_frame(envelope.wire)
        self.outbox.put(frames.encode_subscribed(replayed, frame.ref))

    async def _replay(self, conversation_id: str, position: int) -> int:
        app = self.server.app
        gate = self.outbox.gate
        # The conversation first (not_found if the user is not in it): a position beyond its
        # last seq gets `position_ahead` without asking storage for messages after a seq that
        # cannot exist, which a store may not even express (on Cassandra, a seq of 2**70
        # failed to bind and the subscribe was answered `internal`). Its horizons are the
        # `status` frames after the replay: a change meanwhile is held live and follows them.
        view = await app.get_conversation(self.user_id, conversation_id)
        if position > view.last_seq:
            gate.position(conversation_id, view.last_seq)
            self.outbox.put(frames.encode_resync(conversation_id, position, view.last_seq,
                                                 "position_ahead"))
            return 0
        page = await self._page_after(conversation_id, position)
        last_seq = page.last_seq
        reason = ""
        if position > last_seq:
            reason = "position_ahead"
        elif last_seq - position > self.server.config.replay_max:
            reason = "gap_too_large"
        if reason:
            gate.position(conversation_id, last_seq)
            self.outbox.put(frames.encode_resync(conversation_id, position, last_seq, reason))
            return 0
        gate.position(conversation_id, position)
        count = 0
        while True:
            for message in page.messages:
                envelope = Envelope(frames.encode_message("message.created", message),
                                    conversation_id, message.seq)
                if gate.admit_replayed(envelope):
                    if not await self.outbox.put_wait(envelope.wire):
                        return count
                    count += 1
            if not page.has_more or not page.messages:
                break
            page = await self._page_after(conversation_id, page.messages[-1].seq)
        for horizon in view.horizons:
            self.outbox.put(frames.encode_status(conversation_id, horizon.user_id,
                                                 horizon.read_seq, horizon.delivered_seq))
        return count

    async def _page_after(self, conversation_id: str, seq: int) -> MessagePage:
        """The next replay page: messages after `seq`, oldest first.

        To the use case `after_seq=0` means "not given", i.e. the newest page, newest first:
        a replay from position 0 sent the newest 100 messages in reverse, then only duplicates,
        and silently skipped everything older (a gap). So the first page from 0 is asked as
        "older than seq page + 1" (seqs start at 1) and put in seq order."""
        app = self.server.app
        if seq > 0:
            return await app.get_messages(self.user_id, conversation_id, after_seq=seq,
                                          page_size=_REPLAY_PAGE)
        page = await app.get_messages(self.user_id, conversation_id,
                                      before_seq=_REPLAY_PAGE + 1, page_size=_REPLAY_PAGE)
        messages = tuple(sorted(page.messages, key=lambda m: m.seq))
        newest = messages[-1].seq if messages else 0
        return attrs.evolve(page, messages=messages, has_more=page.last_seq > newest)


async def _close_rejected(request: WebSocketRequest) -> None:
    """Close the TCP connection of a refused handshake once the answer is written.

    trio-websocket (0.12) does not: after `reject()` its `aclose()` returns at once (the
    connection already has a close reason) and its reader task keeps waiting for bytes, so a
    client that keeps the socket open after a 401/403/404/503 would hold a task and a file
    descriptor on the replica for as long as it likes (tests/integration/
    test_ws_adversarial.py). The response is already in the kernel's send buffer: closing
    sends it, then FIN; the reader task ends on the closed stream. The library exposes no
    public way to reach the stream, hence the guarded private attributes: if they ever move,
    this does nothing and the test above fails."""
    stream = getattr(getattr(request, "_connection", None), "_stream", None)
    if isinstance(stream, trio.abc.AsyncResource):
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()


# Stands in for every connection's HTTP handshake once it is done: it never receives data
# (wsproto hands bytes to the handshake only until the WebSocket connection exists), so its
# event queue stays empty and one instance serves them all.
_SPENT_HANDSHAKE = H11Handshake(ConnectionType.SERVER)


def release_handshake(ws: WebSocketConnection) -> bool:
    """Let go of the HTTP handshake's state once the upgrade is done; True if it was.

    wsproto's `WSConnection` keeps its `H11Handshake` (an h11 connection with its buffers and
    state, the request, an event queue) for the connection's whole life, although after the
    upgrade it only ever asks it for events, of which there are none: about 2.5 KB of an idle
    connection's memory. trio-websocket exposes no public way to reach its `WSConnection`,
    hence the guarded private attribute: if it moves, this does nothing and
    tests/unit/test_ws_handshake.py fails."""
    proto = getattr(ws, "_wsproto", None)
    if (not isinstance(proto, WSConnection) or proto.connection is None
            or proto.state is not WsState.OPEN
            or not isinstance(proto.handshake, H11Handshake)):
        return False
    proto.handshake = _SPENT_HANDSHAKE
    return True


async def _abort(writer: FrameWriter) -> None:
    """Close the TCP connection without a close frame: a write was cut off part-way, so the
    peer would read a close frame as the rest of a data frame. (FrameWriter's stream: only
    the fast path can cut a write off in our hands.)"""
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        await writer.abort()


def _frame_type(frame: frames.ClientFrame) -> str:
    return type(frame).__name__.lower()


async def serve_chat_socket(
    server: ChatSocketServer, host: str, port: int, *, grace_s: float = 10.0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen for WebSocket clients; reports the bound port once listening.

    Cancelling stops the listener at once, then gives the sessions up to `grace_s` to close
    with 1001 (they live under a shielded scope until then), then cancels what is left."""
    config = server.config
    sessions_scope = trio.CancelScope(shield=True)

    async def run_sessions(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        with sessions_scope:
            async with trio.open_nursery() as sessions:
                task_status.started(sessions)
                await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        sessions: trio.Nursery = await nursery.start(run_sessions)
        try:
            ws_server = await nursery.start(partial(
                serve_websocket, server.handle, host, port, None,
                handler_nursery=sessions,
                max_message_size=config.max_frame_bytes,
                connect_timeout=10.0,
                disconnect_timeout=config.close_timeout_s,
            ))
            task_status.started(ws_server.port)
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                server.drain()
                with trio.move_on_after(grace_s):
                    await server.hub.wait_empty()
                sessions_scope.cancel()
