"""`cellchat migrate` and migrate-on-start: the services' side of the shared schema runner.

The runner itself (`cellchat_schema`) is synchronous and shared with the operator; this module
only turns settings into a driver session and calls it, from a worker thread when in Trio.
"""

from __future__ import annotations

import ast
from typing import Any

from cellchat.settings import Settings, SettingsError


def replication_map(settings: Settings) -> dict[str, Any]:
    try:
        value = ast.literal_eval(settings.scylla_replication)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, dict) or "class" not in value:
        raise SettingsError(
            "SCYLLA_REPLICATION must be a map with a 'class', e.g. "
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3}"
        )
    return value


def run_migrations(settings: Settings) -> list[int]:
    """Create the cell's keyspace if needed and apply pending migrations; blocking."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy

    from cellchat_schema import apply_migrations, ensure_keyspace

    auth = None
    if settings.scylla_username:
        auth = PlainTextAuthProvider(settings.scylla_username, settings.scylla_password)
    cluster = Cluster(
        list(settings.scylla_hosts),
        port=settings.scylla_port,
        auth_provider=auth,
        execution_profiles={
            EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy())
        },
    )
    try:
        session = cluster.connect()
        ensure_keyspace(session, settings.keyspace, replication_map(settings))
        return apply_migrations(session, settings.keyspace)
    finally:
        cluster.shutdown()
