"""A lean WebSocket client for load generation: many connections, one thread, raw epoll.

A library client per connection (websockets, trio-websocket) costs more CPU per received
frame than the servers under test spend sending it, and on a 2-core machine the load
generator would then measure itself. This client does only what the benchmarks need:

- the opening handshake (RFC 6455 section 4.1) without extensions, so compression is off;
- reading unfragmented server frames (servers never mask), answering pings with pongs and
  close frames with a close;
- writing masked client frames (text, pong, close).

Every connection lives in one `Pool`, driven by `Pool.poll()`; frames are handed to the
pool's `on_text(conn, payload)` callback. Nothing here blocks, and every wait is bounded.
"""

from __future__ import annotations

import base64
import errno
import os
import select
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

CONNECTING, HANDSHAKE, OPEN, CLOSED = range(4)

_RECV = 1 << 18


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked, final frame (clients must mask: RFC 6455 section 5.3)."""
    n = len(payload)
    head = bytearray([0x80 | opcode])
    if n < 126:
        head.append(0x80 | n)
    elif n < 1 << 16:
        head.append(0x80 | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(0x80 | 127)
        head += n.to_bytes(8, "big")
    key = os.urandom(4)
    if n:
        stream = (key * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little"))
        payload = masked.to_bytes(n, "little")
    return bytes(head) + key + payload


def handshake_request(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class Conn:
    __slots__ = ("buf", "close_code", "fd", "index", "out", "pool", "request", "sock",
                 "state", "status", "tag")

    def __init__(self, pool: Pool, sock: socket.socket, request: bytes, index: int,
                 tag: Any) -> None:
        self.pool = pool
        self.sock = sock
        self.fd = sock.fileno()
        self.request = request
        self.index = index
        self.tag = tag
        self.buf = bytearray()
        self.out = bytearray()
        self.state = CONNECTING
        self.status = 0  # HTTP status of the handshake answer
        self.close_code: int | None = None

    def send_text(self, text: bytes) -> None:
        self.pool.write(self, client_frame(OP_TEXT, text))


class Pool:
    """Many client connections on one epoll; `poll()` drives them all."""

    def __init__(self, on_text: Callable[[Conn, bytes], None] | None = None) -> None:
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.on_text = on_text or (lambda conn, payload: None)
        self.opened = 0
        self.failed = 0
        self.closed_by_server: dict[int, int] = {}
        self.frames_in = 0
        self.lost = 0  # connections that were open and are not any more
        self.pending = 0  # connections still connecting or in their handshake
        self.retried_503 = 0  # handshakes answered 503 and tried again (see fig_fanout)

    # ------------------------------------------------------------ connecting

    def open_many(self, host: str, port: int, paths: Sequence[str], *, tags: Sequence[Any] = (),
                  parallel: int = 200, timeout: float = 120.0) -> list[Conn]:
        """Open one connection per path, at most `parallel` handshakes at a time.

        Returns the connections in `paths` order; those refused or broken have a state other
        than OPEN (their `status` says what the server answered)."""
        out: list[Conn | None] = [None] * len(paths)
        next_index = 0
        deadline = time.monotonic() + timeout
        while (next_index < len(paths) or self.pending) and time.monotonic() < deadline:
            while next_index < len(paths) and self.pending < parallel:
                tag = tags[next_index] if tags else None
                out[next_index] = self._connect(host, port, paths[next_index], next_index, tag)
                next_index += 1
            self.poll(0.05)
        result = [c for c in out if c is not None]
        for conn in result:
            if conn.state in (CONNECTING, HANDSHAKE):
                self._drop(conn)
        return result

    def _connect(self, host: str, port: int, path: str, index: int, tag: Any) -> Conn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(self, sock, handshake_request(host, port, path), index, tag)
        self.conns[conn.fd] = conn
        self.pending += 1
        code = sock.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS):
            self._drop(conn)
            return conn
        self.ep.register(conn.fd, select.EPOLLOUT)
        return conn

    # ------------------------------------------------------------ driving

    def poll(self, timeout: float) -> int:
        """Handle whatever is ready within `timeout` seconds; returns the events handled."""
        events = self.ep.poll(timeout, 4096)
        for fd, mask in events:
            conn = self.conns.get(fd)
            if conn is None:
                continue
            if conn.state == CONNECTING:
                self._connected(conn)
                continue
            if mask & select.EPOLLOUT:
                self._flush(conn)
            if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                self._readable(conn)
        return len(events)

    def run_until(self, done: Callable[[], bool], timeout: float,
                  progress: Callable[[], Any] | None = None) -> bool:
        """Drive the pool until `done()`; False after `timeout` seconds, counted from the last
        change of `progress()` when given (so a slow but moving run is not cut short)."""
        deadline = time.monotonic() + timeout
        last = progress() if progress is not None else None
        while not done():
            now = time.monotonic()
            if progress is not None:
                current = progress()
                if current != last:
                    last, deadline = current, now + timeout
            if now >= deadline:
                return False
            self.poll(min(deadline - now, 0.05))
        return True

    def _connected(self, conn: Conn) -> None:
        if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._drop(conn)
            return
        conn.state = HANDSHAKE
        conn.out += conn.request
        self.ep.modify(conn.fd, select.EPOLLIN)
        self._flush(conn)

    def write(self, conn: Conn, data: bytes) -> None:
        if conn.state == CLOSED:
            return
        if conn.out:
            conn.out += data
            return
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(conn)
            return
        if sent < len(data):
            conn.out += data[sent:]
            self.ep.modify(conn.fd, select.EPOLLIN | select.EPOLLOUT)

    def _flush(self, conn: Conn) -> None:
        if not conn.out:
            return
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(conn)
            return
        del conn.out[:sent]
        mask = select.EPOLLIN | (select.EPOLLOUT if conn.out else 0)
        self.ep.modify(conn.fd, mask)

    def _readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except BlockingIOError:
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        buf = conn.buf
        buf += data
        if conn.state == HANDSHAKE:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line = bytes(buf[: buf.find(b"\r\n")])
            parts = status_line.split(b" ", 2)
            conn.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            del buf[: end + 4]
            if conn.status != 101:
                self.failed += 1
                self._drop(conn)
                return
            conn.state = OPEN
            self.pending -= 1
            self.opened += 1
        self._frames(conn)

    def _frames(self, conn: Conn) -> None:
        buf = conn.buf
        size = len(buf)
        i = 0
        on_text = self.on_text
        while size - i >= 2:
            b0 = buf[i]
            length = buf[i + 1] & 0x7F
            head = 2
            if length == 126:
                if size - i < 4:
                    break
                length = (buf[i + 2] << 8) | buf[i + 3]
                head = 4
            elif length == 127:
                if size - i < 10:
                    break
                length = int.from_bytes(buf[i + 2:i + 10], "big")
                head = 10
            end = i + head + length
            if end > size:
                break
            opcode = b0 & 0x0F
            payload = bytes(buf[i + head:end])
            i = end
            if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                self.frames_in += 1
                on_text(conn, payload)
            elif opcode == OP_PING:
                self.write(conn, client_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                conn.close_code = code
                self.closed_by_server[code] = self.closed_by_server.get(code, 0) + 1
                self.write(conn, client_frame(OP_CLOSE, payload[:2]))
                self._drop(conn)
                return
        if i:
            del buf[:i]

    # ------------------------------------------------------------ closing

    def _drop(self, conn: Conn) -> None:
        if conn.state == CLOSED:
            return
        if conn.state == OPEN:
            self.lost += 1
            if conn.close_code is None:
                conn.close_code = 1006
        elif conn.state in (CONNECTING, HANDSHAKE):
            self.pending -= 1
        conn.state = CLOSED
        try:
            self.ep.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        self.conns.pop(conn.fd, None)
        conn.sock.close()

    @property
    def open_count(self) -> int:
        return sum(1 for c in self.conns.values() if c.state == OPEN)

    def close_all(self, *, linger: float = 2.0) -> None:
        """Send a close frame on every open connection, wait briefly, then drop them all."""
        for conn in list(self.conns.values()):
            if conn.state == OPEN:
                self.write(conn, client_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
        deadline = time.monotonic() + linger
        while self.conns and time.monotonic() < deadline:
            self.poll(0.05)
            if all(not c.out for c in self.conns.values()):
                break
        for conn in list(self.conns.values()):
            self._drop(conn)
        self.ep.close()
