"""Apply the cql/ migrations to a cell's keyspace, once, even when many processes start at once.

Used by the chat services at start-up and by the operator when it reconciles a ChatCell, so it
imports nothing of the services and is synchronous (blocking driver calls; async callers run it
in a worker thread).

Rules:
- The files are the only source of the schema: `cql/NNN_name.cql`, applied in version order.
  Each applied version is recorded in `schema_migrations` with the checksum of its statements;
  a recorded version whose file changed since is an error (`MigrationChecksumMismatch`), never
  silently re-applied. Comments and indentation do not count towards the checksum.
- One applier at a time per keyspace: a lock row in `schema_lock`, taken with
  `INSERT ... IF NOT EXISTS USING TTL`, renewed before each statement and released at the end.
  A holder that dies loses the lock when the TTL runs out; everyone else polls until the
  versions they know are recorded (or they get the lock and apply what is left themselves).
- Progress is recorded per statement, so a migration interrupted half-way resumes after its
  last applied statement instead of failing on "already exists".
- After every schema change the runner waits for schema agreement before going on.
- The runner's own two tables are created with IF NOT EXISTS before the lock can exist. On
  Cassandra (no transactional schema before 5.1) two processes creating them at the very same
  moment through different coordinators is the one unprotected race; the operator creates the
  keyspace and runs the migrations before any service replica starts, which avoids it.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any

from cellchat_schema.cqlfile import checksum, split_statements

log = logging.getLogger(__name__)

_CELL_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,41}[a-z0-9])?$")
_KEYSPACE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9][a-z0-9_]*)\.cql$")
_LOCK_NAME = "migrations"
_POLL_S = 0.5
_SCHEMA_AGREEMENT_S = 60.0


class MigrationError(RuntimeError):
    """The keyspace's schema cannot be brought to the files' version."""


class MigrationChecksumMismatch(MigrationError):
    """An already-applied migration file was changed afterwards."""


class MigrationLockTimeout(MigrationError):
    """Another applier held the lock for longer than we were willing to wait."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: list[str]
    checksum: str


def keyspace_for_cell(cell_id: str) -> str:
    """The keyspace of a cell: "cell-001" -> "chat_cell_001"."""
    if not isinstance(cell_id, str) or not _CELL_ID.match(cell_id):
        raise ValueError(
            f"invalid cell id {cell_id!r}: use 1-43 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return "chat_" + cell_id.replace("-", "_")


def _check_keyspace(keyspace: str) -> str:
    if not isinstance(keyspace, str) or not _KEYSPACE.match(keyspace):
        raise ValueError(
            f"invalid keyspace name {keyspace!r}: 1-48 lowercase letters, digits and '_', "
            "starting with a letter"
        )
    return keyspace


def load_migrations(folder: Traversable | None = None) -> list[Migration]:
    """Every NNN_name.cql file in `folder` (default: the cql/ shipped with this package), in
    version order."""
    if folder is None:
        folder = importlib.resources.files("cellchat_schema") / "cql"
    migrations: list[Migration] = []
    seen: dict[int, str] = {}
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            if entry.name.endswith(".cql"):
                raise MigrationError(f"migration file {entry.name!r} is not named NNN_name.cql")
            continue
        version = int(match.group(1))
        if version == 0:
            raise MigrationError(f"{entry.name}: versions start at 001")
        if version in seen:
            raise MigrationError(f"{entry.name} and {seen[version]} share version {version}")
        seen[version] = entry.name
        statements = split_statements(entry.read_text(encoding="utf-8"))
        if not statements:
            raise MigrationError(f"{entry.name} holds no statement")
        migrations.append(Migration(version, match.group(2), statements, checksum(statements)))
    migrations.sort(key=lambda m: m.version)
    return migrations


def _cql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ensure_keyspace(
    session: Any, keyspace: str, replication: dict[str, Any], *, tablets: bool | None = None
) -> None:
    """CREATE KEYSPACE IF NOT EXISTS with this replication map (an existing one is left as is).

    `tablets` is ScyllaDB's per-keyspace choice of data distribution. The chat needs
    lightweight transactions, which ScyllaDB releases of 2025 do not support on tablets, so on
    ScyllaDB (None: detected) the keyspace asks for vnodes; a ScyllaDB that does not know the
    option, or enforces tablets, gets the plain statement. Cassandra never sees the option.
    """
    _check_keyspace(keyspace)
    if not replication or "class" not in replication:
        raise ValueError("replication needs at least a 'class'")
    items = []
    for key, value in replication.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"replication entry {key!r}: {value!r} is not a string or integer")
        items.append(f"{_cql_string(key)}: {_cql_string(str(value))}")
    create = f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{{', '.join(items)}}}"
    if tablets is None and _is_scylla(session):
        tablets = False
    if tablets is None:
        session.execute(create)
    else:
        try:
            session.execute(f"{create} AND tablets = {{'enabled': {str(tablets).lower()}}}")
        except Exception as exc:  # the driver's InvalidRequest / ConfigurationException
            if "tablets" not in str(exc).lower():
                raise
            log.warning("keyspace %s: tablets option refused (%s); creating without it",
                        keyspace, exc)
            session.execute(create)
    _wait_for_schema_agreement(session)


def _is_scylla(session: Any) -> bool:
    return _has_table(session, "system_schema", "scylla_tables")


def _wait_for_schema_agreement(session: Any) -> None:
    wait = getattr(session, "wait_for_schema_agreement", None)
    if wait is not None:
        agreed = wait(wait_time=_SCHEMA_AGREEMENT_S)
    else:  # the upstream driver has it only on the control connection
        agreed = session.cluster.control_connection.wait_for_schema_agreement(
            wait_time=_SCHEMA_AGREEMENT_S
        )
    if not agreed:
        raise MigrationError(f"no schema agreement within {_SCHEMA_AGREEMENT_S:.0f} s")


def _ensure_runner_tables(session: Any, keyspace: str) -> None:
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations ("
        " version int PRIMARY KEY, name text, checksum text, statements_done int,"
        " complete boolean, applied_at timestamp, applied_by text)"
    )
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_lock ("
        " name text PRIMARY KEY, owner text, acquired_at timestamp)"
    )
    _wait_for_schema_agreement(session)


@dataclass
class _Recorded:
    checksum: str
    statements_done: int
    complete: bool


def _recorded(session: Any, keyspace: str) -> dict[int, _Recorded]:
    rows = session.execute(
        f"SELECT version, checksum, statements_done, complete FROM {keyspace}.schema_migrations"
    )
    recorded: dict[int, _Recorded] = {}
    for row in rows:
        version, digest, done, complete = _values(
            row, ("version", "checksum", "statements_done", "complete")
        )
        recorded[version] = _Recorded(digest or "", done or 0, bool(complete))
    return recorded


def _values(row: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    """A row's columns in select order, whatever the session's row factory."""
    if isinstance(row, dict):
        return tuple(row[name] for name in names)
    return tuple(row)


def applied_versions(session: Any, keyspace: str) -> dict[int, str]:
    """Completely applied versions and their checksums ({} before the first migration)."""
    _check_keyspace(keyspace)
    if not _has_table(session, keyspace, "schema_migrations"):
        return {}
    return {v: r.checksum for v, r in _recorded(session, keyspace).items() if r.complete}


def _has_table(session: Any, keyspace: str, table: str) -> bool:
    rows = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
        (keyspace, table),
    )
    return rows.one() is not None


def _check_checksums(migrations: list[Migration], recorded: dict[int, _Recorded]) -> None:
    known = {m.version: m for m in migrations}
    for version, record in sorted(recorded.items()):
        migration = known.get(version)
        if migration is None:
            if record.complete:
                continue  # applied by a newer release than this one; not ours to judge
            raise MigrationError(f"version {version} was half applied by a newer release")
        if record.checksum != migration.checksum:
            raise MigrationChecksumMismatch(
                f"migration {version:03d}_{migration.name}.cql changed after it was applied "
                f"(recorded {record.checksum[:12]}, file {migration.checksum[:12]}); "
                "write a new migration instead of editing an applied one"
            )


class _Lock:
    """The LWT lock row: whoever inserted it owns it until it is released or its TTL ends."""

    def __init__(self, session: Any, keyspace: str, ttl_s: int) -> None:
        self._session = session
        self._keyspace = keyspace
        self._ttl_s = ttl_s
        self.owner = str(uuid.uuid4())

    def acquire(self) -> bool:
        rows = self._session.execute(
            f"INSERT INTO {self._keyspace}.schema_lock (name, owner, acquired_at)"
            f" VALUES (%s, %s, toTimestamp(now())) IF NOT EXISTS USING TTL {self._ttl_s}",
            (_LOCK_NAME, self.owner),
        )
        return bool(rows.was_applied)

    def renew(self) -> None:
        rows = self._session.execute(
            f"UPDATE {self._keyspace}.schema_lock USING TTL {self._ttl_s} SET owner = %s"
            " WHERE name = %s IF owner = %s",
            (self.owner, _LOCK_NAME, self.owner),
        )
        if not rows.was_applied:
            raise MigrationError(
                "lost the migration lock (it expired while applying; raise lock_ttl_s)"
            )

    def release(self) -> None:
        self._session.execute(
            f"DELETE FROM {self._keyspace}.schema_lock WHERE name = %s IF owner = %s",
            (_LOCK_NAME, self.owner),
        )


def apply_migrations(
    session: Any,
    keyspace: str,
    *,
    lock_ttl_s: int = 120,
    wait_s: float = 300,
    migrations: Sequence[Migration] | None = None,
) -> list[int]:
    """Bring `keyspace` (which must exist) to the newest migration; the versions this call
    applied, in order ([] when another process did it or there was nothing to do).

    `migrations` defaults to `load_migrations()`; tests pass their own.
    """
    _check_keyspace(keyspace)
    if lock_ttl_s < 10:
        raise ValueError("lock_ttl_s must be at least 10 seconds")
    migrations = sorted(
        load_migrations() if migrations is None else migrations, key=lambda m: m.version
    )
    _ensure_runner_tables(session, keyspace)
    deadline = time.monotonic() + wait_s
    lock = _Lock(session, keyspace, lock_ttl_s)
    while True:
        recorded = _recorded(session, keyspace)
        _check_checksums(migrations, recorded)
        if all(m.version in recorded and recorded[m.version].complete for m in migrations):
            return []
        if lock.acquire():
            break
        if time.monotonic() >= deadline:
            raise MigrationLockTimeout(
                f"keyspace {keyspace}: another process held the migration lock for {wait_s} s"
            )
        time.sleep(_POLL_S)

    try:
        # The statements carry no keyspace: run them on a session of our own bound to it, so
        # the caller's session keeps its keyspace.
        bound = session.cluster.connect(keyspace)
        try:
            return _apply_pending(bound, keyspace, migrations, lock)
        finally:
            bound.shutdown()
    finally:
        try:
            lock.release()
        except Exception:  # the TTL frees it anyway
            log.warning("could not release the migration lock of %s", keyspace, exc_info=True)


def _apply_pending(
    session: Any, keyspace: str, migrations: list[Migration], lock: _Lock
) -> list[int]:
    recorded = _recorded(session, keyspace)  # again: someone may have finished meanwhile
    _check_checksums(migrations, recorded)
    applied: list[int] = []
    record = (
        f"INSERT INTO {keyspace}.schema_migrations"
        " (version, name, checksum, statements_done, complete, applied_at, applied_by)"
        " VALUES (%s, %s, %s, %s, %s, toTimestamp(now()), %s)"
    )
    for migration in migrations:
        done = recorded.get(migration.version)
        if done is not None and done.complete:
            continue
        start = done.statements_done if done is not None else 0
        log.info("applying migration %03d_%s to %s", migration.version, migration.name, keyspace)
        for index in range(start, len(migration.statements)):
            lock.renew()
            session.execute(migration.statements[index], timeout=_SCHEMA_AGREEMENT_S)
            _wait_for_schema_agreement(session)
            complete = index + 1 == len(migration.statements)
            session.execute(
                record,
                (migration.version, migration.name, migration.checksum, index + 1, complete,
                 lock.owner),
            )
        applied.append(migration.version)
    return applied
