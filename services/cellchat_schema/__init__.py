"""The cellchat schema and its migration runner, shared by the services and the operator.

`cql/` (a link to the repository's top-level cql/ folder) holds the only copy of the schema.
This package never imports the services and does blocking I/O only: async callers run it in a
worker thread. See `runner` for the rules it keeps.
"""

from cellchat_schema.cqlfile import CqlSyntaxError, split_statements
from cellchat_schema.runner import (
    Migration,
    MigrationChecksumMismatch,
    MigrationError,
    MigrationLockTimeout,
    applied_versions,
    apply_migrations,
    ensure_keyspace,
    keyspace_for_cell,
    load_migrations,
)

__all__ = [
    "CqlSyntaxError",
    "Migration",
    "MigrationChecksumMismatch",
    "MigrationError",
    "MigrationLockTimeout",
    "applied_versions",
    "apply_migrations",
    "ensure_keyspace",
    "keyspace_for_cell",
    "load_migrations",
    "split_statements",
]
