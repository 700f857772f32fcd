"""Session-wide real components: one Cassandra node, one Redis server, started once per run.

If a component cannot start, every test that needs it fails loudly with the reason; nothing is
skipped. Tests share the node and give themselves fresh ids (or keyspaces) instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

CQL_TEST_KEYSPACE = "chat_test_contract"


@pytest.fixture(scope="session")
def cassandra() -> Iterator[Any]:
    from tests.infra import cassandra as cassandra_infra

    node = cassandra_infra.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def cql_keyspace(cassandra: Any) -> str:
    """A keyspace with every migration applied, shared by the session's CQL tests."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy

    from cellchat_schema import apply_migrations, ensure_keyspace

    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy())
    cluster = Cluster([cassandra.host], port=cassandra.port,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    try:
        session = cluster.connect()
        ensure_keyspace(session, CQL_TEST_KEYSPACE, {"class": "SimpleStrategy",
                                                     "replication_factor": 1})
        apply_migrations(session, CQL_TEST_KEYSPACE)
    finally:
        cluster.shutdown()
    return CQL_TEST_KEYSPACE


@pytest.fixture(scope="session")
def redis() -> Iterator[Any]:
    from tests.infra import redis as redis_infra

    redis_infra.ensure_installed()
    server = redis_infra.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def uid() -> str:
    """A fresh suffix so tests sharing a database never see each other's rows."""
    return uuid.uuid4().hex[:10]
