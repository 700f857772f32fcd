"""`cellchat chat`: a line-based chat client in the terminal, over the WebSocket protocol.

It exists so a person can try cellchat between two terminals against the embedded default
(`cellchat run`), and as a small, readable example of a protocol client: open the direct
conversation, subscribe with a position (the last messages are replayed), print live frames,
acknowledge delivery and reading, send each typed line with a fresh client id.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

_HISTORY = 20


def _line(frame: dict[str, Any], me: str) -> str | None:
    kind = frame["type"]
    if kind in ("message.created", "message.edited", "message.deleted"):
        m = frame["message"]
        stamp = time.strftime("%H:%M", time.localtime(m["created_at_ms"] / 1000))
        who = "you" if m["sender_id"] == me else m["sender_id"]
        text = "(deleted)" if m["deleted"] else m["text"] or f"[{m['kind']}]"
        mark = " (edited)" if kind == "message.edited" else ""
        return f"[{stamp}] #{m['seq']} {who}: {text}{mark}"
    if kind == "typing.started":
        return f"  … {frame['user_id']} is typing"
    if kind == "status" and frame["user_id"] != me:
        return f"  ✓ {frame['user_id']} read up to #{frame['read_seq']}" if frame["read_seq"] \
            else None
    if kind == "presence":
        status = frame.get("status") or ("online" if frame["online"] else "offline")
        return f"  {frame['user_id']} is {status}"
    if kind == "error":
        return f"  ! {frame['code']}: {frame['message']}"
    if kind == "resync":
        return f"  ! history before #{frame['last_seq']} is not replayed here"
    return None


async def chat_in_terminal(url: str, user: str, token: str, counterpart: str, *,
                           show: Callable[[str], None] = print) -> int:
    endpoint = f"{url.rstrip('/')}/ws/chat?token={quote(token)}&user_id={quote(user)}"
    try:
        async with open_websocket_url(endpoint) as ws:
            hello = json.loads(await ws.get_message())
            await ws.send_message(json.dumps({"type": "open", "ref": "open",
                                              "counterpart_id": counterpart}))
            cid = ""
            while not cid:
                frame = json.loads(await ws.get_message())
                if frame["type"] == "opened":
                    cid = frame["conversation"]["conversation_id"]
                    since = max(0, frame["last_seq"] - _HISTORY)
                elif frame["type"] == "error":
                    show(f"cannot open the conversation: {frame['message']}")
                    return 1
            await ws.send_message(json.dumps({"type": "subscribe",
                                              "positions": {cid: since}}))
            show(f"connected as {user} (protocol {hello['protocol']}); chatting with "
                 f"{counterpart}. Type a line and Enter to send, /quit to leave.")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_print_frames, ws, user, cid, show)
                await _send_lines(ws, cid)
                nursery.cancel_scope.cancel()
    except ConnectionRejected as exc:
        show(f"refused by the server: HTTP {exc.status_code}")
        return 1
    except (ConnectionClosed, OSError) as exc:
        show(f"disconnected: {exc}")
        return 1
    return 0


async def _print_frames(ws: Any, me: str, cid: str, show: Callable[[str], None]) -> None:
    while True:
        frame = json.loads(await ws.get_message())
        line = _line(frame, me)
        if line:
            show(line)
        if frame["type"] == "message.created" and frame["message"]["sender_id"] != me:
            seq = frame["message"]["seq"]
            await ws.send_message(json.dumps({"type": "read", "conversation_id": cid,
                                              "seq": seq}))


async def _send_lines(ws: Any, cid: str) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stdin:
        while True:
            chunk = await stdin.receive_some(4096)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                text = raw.decode(errors="replace").strip()
                if text == "/quit":
                    return
                if text:
                    await ws.send_message(json.dumps({
                        "type": "send", "conversation_id": cid, "kind": "text", "text": text,
                        "client_message_id": uuid.uuid4().hex,
                    }))
