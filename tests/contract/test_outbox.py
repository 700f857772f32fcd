"""What every `Outbox` adapter must do, whatever it stores intents in.

Parametrised over the adapters through the `outbox` fixture: in-memory, the embedded store's
(SQLite) and the CQL one (on the session's Cassandra node, under a fresh outbox name).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from cellchat.events import published
from cellchat.events.envelope import CloudEvent
from cellchat.events.outbox import Check, InMemoryOutbox, Intent, Outbox

AT_MS = 1_740_000_000_000


@pytest.fixture(params=["memory", "embedded", "cql"])
async def outbox(request: pytest.FixtureRequest) -> AsyncIterator[Outbox]:
    if request.param == "memory":
        yield InMemoryOutbox()
    elif request.param == "embedded":
        from cellchat.chat.storage.embedded import open_embedded_store

        async with open_embedded_store() as store:
            yield store.outbox()
    else:
        from cellchat.chat.storage.cql import open_cql_store
        from cellchat.chat.storage.cql_outbox import CqlOutbox

        node: Any = request.getfixturevalue("cassandra")
        keyspace: str = request.getfixturevalue("cql_keyspace")
        async with open_cql_store([node.host], node.port, keyspace) as store:
            yield await CqlOutbox.open(store.trio_session, keyspace, f"test-{uuid.uuid4().hex}",
                                       start_ms=0)


def _intent(seq: int) -> Intent:
    event = published.message_sent(
        "eu-1", conversation_id="c1", seq=seq, message_id=f"m{seq}", sender_id="u1",
        kind="text", recipients=["u2"], created_at_ms=AT_MS + seq,
    )
    return Intent(event, Check.of("message", conversation_id="c1", seq=seq, message_id=f"m{seq}"))


async def _ids(outbox: Outbox, limit: int = 1000) -> list[str]:
    with trio.fail_after(10):
        return [intent.id for intent in await outbox.pending(limit)]


async def test_pending_is_oldest_first_and_limited(outbox: Outbox) -> None:
    with trio.fail_after(10):
        await outbox.record([_intent(1), _intent(2)])
        await outbox.record([_intent(3)])
    assert await _ids(outbox) == [_intent(n).id for n in (1, 2, 3)]
    assert await _ids(outbox, limit=2) == [_intent(n).id for n in (1, 2)]


async def test_recording_an_id_again_keeps_one_intent(outbox: Outbox) -> None:
    with trio.fail_after(10):
        await outbox.record([_intent(1)])
        await outbox.record([_intent(1), _intent(2)])
    assert await _ids(outbox) == [_intent(1).id, _intent(2).id]


async def test_done_forgets_and_ignores_unknown_ids(outbox: Outbox) -> None:
    with trio.fail_after(10):
        await outbox.record([_intent(n) for n in (1, 2, 3)])
        await outbox.done([_intent(2).id, "never-recorded"])
        await outbox.done([_intent(2).id])
    assert await _ids(outbox) == [_intent(1).id, _intent(3).id]
    with trio.fail_after(10):
        await outbox.done([_intent(1).id, _intent(3).id])
    assert await _ids(outbox) == []


async def test_intents_come_back_as_they_were_recorded(outbox: Outbox) -> None:
    unusual = Intent(
        CloudEvent(
            id="e-1", source="cellchat/eu-1", type="com.cellchat.user.online.v1",
            subject="users/ü",
            time=datetime.datetime(2025, 3, 1, 10, 0, 0, 123_000, tzinfo=datetime.UTC),
            data={"user_id": "ü", "last_seen_ms": AT_MS}, extensions={"traceparent": "00-1"},
        ),
        Check.UNCONDITIONAL,
    )
    with trio.fail_after(10):
        await outbox.record([_intent(1), unusual])
        intents = await outbox.pending(10)
    assert intents == [_intent(1), unusual]
    assert intents[0].check["seq"] == 1
    assert intents[0].recorded_at_ms == AT_MS + 1
