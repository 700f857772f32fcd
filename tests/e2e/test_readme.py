"""The README's promises, run as a user would: `cellchat run` on the embedded default, then the
first calls with grpcurl (stock client, reflection, no .proto files) and the `cellchat token`
command. The service runs as its own process on free ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.ports import free_port

CACHE = Path(os.environ.get("CELLCHAT_CACHE", Path.home() / ".cache" / "cellchat"))
GRPCURL = CACHE / "bin" / "grpcurl"


@pytest.fixture
def service() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "GRPC_PORT": str(port), "WS_PORT": str(free_port()),
           "OPS_PORT": str(free_port()), "PRESENCE_PORT": str(free_port())}
    for name in ("SCYLLA_HOSTS", "REDIS_URL", "JWT_SECRET"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "cellchat.cli", "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if grpcurl(address, "list").returncode == 0:
                break
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.2)
        else:
            pytest.fail("cellchat run did not start serving within 30 s")
        yield address
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("cellchat run did not stop within 20 s of SIGINT")
        assert proc.returncode == 0, out


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    assert GRPCURL.exists(), f"{GRPCURL} missing: run scripts/install-grpcurl.sh"
    return subprocess.run([str(GRPCURL), "-plaintext", *args], capture_output=True, text=True,
                          timeout=30, check=False)


def token(user: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
    out = subprocess.run([sys.executable, "-m", "cellchat.cli", "token", "--user", user],
                         capture_output=True, text=True, timeout=30, check=True, env=env)
    return out.stdout.strip()


def test_readme_first_calls(service: str) -> None:
    listed = grpcurl(service, "list")
    assert "cellchat.chat.v1.ChatService" in listed.stdout.split()
    assert "grpc.health.v1.Health" in listed.stdout.split()
    health = grpcurl("-d", '{"service": "cellchat.chat.v1.ChatService"}', service,
                     "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout)["status"] == "SERVING"
    alice = token("alice")
    created = grpcurl(
        "-H", f"authorization: Bearer {alice}", "-d",
        '{"kind":"CONVERSATION_KIND_DIRECT","counterpart_id":"bob",'
        '"context":{"product_id":"lamp-1"}}',
        service, "cellchat.chat.v1.ChatService/CreateConversation",
    )
    assert created.returncode == 0, created.stderr
    conversation = json.loads(created.stdout)["conversation"]
    assert {p["user_id"] for p in conversation["participants"]} == {"alice", "bob"}
    cid = conversation["conversation_id"]
    sent = grpcurl(
        "-H", f"authorization: Bearer {alice}", "-d",
        json.dumps({"conversation_id": cid, "client_message_id": "m-1",
                    "kind": "MESSAGE_KIND_TEXT", "text": "Is the lamp available?"}),
        service, "cellchat.chat.v1.ChatService/SendMessage",
    )
    assert json.loads(sent.stdout)["message"]["seq"] == "1"
    bob = token("bob")
    inbox = grpcurl("-H", f"authorization: Bearer {bob}", "-d", "{}", service,
                    "cellchat.chat.v1.ChatService/GetUserConversations")
    summary = json.loads(inbox.stdout)["conversations"][0]
    assert summary["unread_count"] == "1"
    assert summary["last_message"]["text"] == "Is the lamp available?"
    anonymous = grpcurl("-d", "{}", service, "cellchat.chat.v1.ChatService/GetUserConversations")
    assert anonymous.returncode != 0
    assert "Unauthenticated" in anonymous.stderr
