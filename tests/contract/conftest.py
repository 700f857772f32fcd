"""The one storage contract, run against every adapter: embedded SQLite and CQL (Cassandra).

The CQL store uses a tiny bucket size so bucket edges are crossed by every test that writes
more than a handful of messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cellchat.chat.app.ports import ChatStore

CQL_BUCKET_SIZE = 4


@pytest.fixture(params=["embedded", "cql"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ChatStore]:
    if request.param == "embedded":
        from cellchat.chat.storage.embedded import open_embedded_store

        async with open_embedded_store() as embedded:
            yield embedded
        return
    from cellchat.chat.storage.cql import open_cql_store

    node: Any = request.getfixturevalue("cassandra")
    keyspace: str = request.getfixturevalue("cql_keyspace")
    async with open_cql_store(
        [node.host], node.port, keyspace, bucket_size=CQL_BUCKET_SIZE
    ) as cql:
        yield cql


@pytest.fixture
async def store_outbox(store: ChatStore, request: pytest.FixtureRequest) -> Any:
    """The event outbox that lives beside `store` (same database), under a fresh name."""
    import uuid

    from cellchat.chat.storage.cql import CqlStore
    from cellchat.chat.storage.cql_outbox import CqlOutbox
    from cellchat.chat.storage.embedded import EmbeddedStore

    if isinstance(store, EmbeddedStore):
        return store.outbox()
    assert isinstance(store, CqlStore)
    keyspace: str = request.getfixturevalue("cql_keyspace")
    return await CqlOutbox.open(store.trio_session, keyspace, f"test-{uuid.uuid4().hex}",
                                start_ms=0)
