"""The migration runner against a real node: fresh keyspaces, re-runs, racing appliers (threads
and processes), a crashed lock holder, a half-applied migration and an edited applied file."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import RoundRobinPolicy

from cellchat_schema import (
    Migration,
    MigrationChecksumMismatch,
    MigrationLockTimeout,
    applied_versions,
    apply_migrations,
    ensure_keyspace,
    keyspace_for_cell,
    load_migrations,
    split_statements,
)

SIMPLE = {"class": "SimpleStrategy", "replication_factor": 1}
REPO = Path(__file__).resolve().parents[2]


def new_cluster(node: Any) -> Cluster:
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
    return Cluster([node.host], port=node.port, execution_profiles={EXEC_PROFILE_DEFAULT: profile})


@pytest.fixture(scope="module")
def session(cassandra: Any) -> Iterator[Session]:
    cluster = new_cluster(cassandra)
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


@pytest.fixture
def keyspace(session: Session) -> Iterator[str]:
    name = f"mig_{uuid.uuid4().hex[:12]}"
    ensure_keyspace(session, name, SIMPLE)
    yield name
    session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)


def tables(session: Session, keyspace: str) -> set[str]:
    rows = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,)
    )
    return {row.table_name for row in rows}


def write_migrations(folder: Path, files: dict[str, str]) -> list[Migration]:
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.cql"):
        old.unlink()
    for name, text in files.items():
        (folder / name).write_text(text)
    return load_migrations(folder)


THREE = {
    "001_first.cql": """
        -- two tables
        CREATE TABLE a (k int PRIMARY KEY, v text);
        CREATE TABLE b (k int PRIMARY KEY, v text);
    """,
    "002_second.cql": "CREATE TABLE c (k int PRIMARY KEY); ALTER TABLE a ADD w int;",
    "003_third.cql": "CREATE TABLE d (k int, c int, PRIMARY KEY (k, c));",
}


# ------------------------------------------------------------ against the node


def test_fresh_keyspace_gets_every_migration_once(session: Session, keyspace: str) -> None:
    shipped = load_migrations()
    assert apply_migrations(session, keyspace) == [m.version for m in shipped]
    assert {"messages", "conversations", "inbox_activity", "schema_migrations",
            "schema_lock"} <= tables(session, keyspace)
    assert applied_versions(session, keyspace) == {m.version: m.checksum for m in shipped}
    assert apply_migrations(session, keyspace) == []
    assert applied_versions(session, keyspace) == {m.version: m.checksum for m in shipped}


def test_a_database_without_tablets_gets_the_plain_statement(session: Session) -> None:
    # Cassandra is not ScyllaDB: nothing asks for tablets, and an explicit choice is dropped.
    name = f"mig_{uuid.uuid4().hex[:12]}"
    ensure_keyspace(session, name, SIMPLE, tablets=False)
    try:
        rows = session.execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (name,)
        )
        assert rows.one().replication["replication_factor"] == "1"
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)


def test_applied_versions_of_an_untouched_keyspace(session: Session, keyspace: str) -> None:
    assert applied_versions(session, keyspace) == {}


def test_new_migrations_are_applied_on_top(
    session: Session, keyspace: str, tmp_path: Path
) -> None:
    first = write_migrations(tmp_path, {"001_first.cql": THREE["001_first.cql"]})
    assert apply_migrations(session, keyspace, migrations=first) == [1]
    three = write_migrations(tmp_path, THREE)
    assert apply_migrations(session, keyspace, migrations=three) == [2, 3]
    assert {"a", "b", "c", "d"} <= tables(session, keyspace)


def test_an_edited_applied_migration_is_refused(
    session: Session, keyspace: str, tmp_path: Path
) -> None:
    original = write_migrations(tmp_path, THREE)
    apply_migrations(session, keyspace, migrations=original)
    # comments and layout are not part of the checksum...
    reformatted = write_migrations(tmp_path, {
        **THREE, "001_first.cql": "CREATE TABLE a (k int PRIMARY KEY, v text); -- first\n"
                                  "CREATE   TABLE b (k int PRIMARY KEY,\n v text);",
    })
    assert apply_migrations(session, keyspace, migrations=reformatted) == []
    # ...a changed statement is
    edited = write_migrations(tmp_path, {
        **THREE, "002_second.cql": "CREATE TABLE c (k int PRIMARY KEY, x int);",
    })
    with pytest.raises(MigrationChecksumMismatch, match="002_second"):
        apply_migrations(session, keyspace, migrations=edited)


def test_racing_threads_apply_once(cassandra: Any, keyspace: str, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path, THREE)
    results: list[list[int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def replica() -> None:
        cluster = new_cluster(cassandra)
        try:
            own = cluster.connect()
            start.wait(timeout=30)
            results.append(apply_migrations(own, keyspace, migrations=migrations, wait_s=120))
        except BaseException as exc:
            errors.append(exc)
        finally:
            cluster.shutdown()

    threads = [threading.Thread(target=replica) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors
    assert sorted(results) == [[], [], [1, 2, 3]]


_APPLY_SCRIPT = """
import json, sys
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy
from cellchat_schema import apply_migrations
host, port, keyspace, start_at = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
cluster = Cluster([host], port=port, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
session = cluster.connect()
import time
time.sleep(max(0.0, start_at - time.time()))
print(json.dumps(apply_migrations(session, keyspace, wait_s=120)))
cluster.shutdown()
"""


def test_racing_processes_apply_once(cassandra: Any, session: Session, keyspace: str) -> None:
    start_at = time.time() + 8  # both are connected by then, and start together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _APPLY_SCRIPT, cassandra.host, str(cassandra.port),
             keyspace, str(start_at)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    shipped = [m.version for m in load_migrations()]
    assert sorted(outputs) == [[], shipped]
    assert set(applied_versions(session, keyspace)) == set(shipped)


def test_a_crashed_holder_blocks_only_until_its_lock_expires(
    session: Session, keyspace: str, tmp_path: Path
) -> None:
    migrations = write_migrations(tmp_path, THREE)
    assert applied_versions(session, keyspace) == {}
    apply_migrations(session, keyspace, migrations=migrations[:1])  # creates the runner tables
    session.execute(
        f"INSERT INTO {keyspace}.schema_lock (name, owner) VALUES ('migrations', 'crashed')"
        " USING TTL 3"
    )
    began = time.monotonic()
    assert apply_migrations(session, keyspace, migrations=migrations, wait_s=60) == [2, 3]
    assert time.monotonic() - began >= 1.5


def test_waiting_for_a_live_holder_has_a_limit(
    session: Session, keyspace: str, tmp_path: Path
) -> None:
    migrations = write_migrations(tmp_path, THREE)
    apply_migrations(session, keyspace, migrations=migrations[:1])
    session.execute(
        f"INSERT INTO {keyspace}.schema_lock (name, owner) VALUES ('migrations', 'busy')"
        " USING TTL 60"
    )
    with pytest.raises(MigrationLockTimeout):
        apply_migrations(session, keyspace, migrations=migrations, wait_s=1.5)
    session.execute(f"DELETE FROM {keyspace}.schema_lock WHERE name = 'migrations'")
    assert apply_migrations(session, keyspace, migrations=migrations) == [2, 3]


def test_a_half_applied_migration_resumes_after_its_last_statement(
    session: Session, keyspace: str, tmp_path: Path
) -> None:
    migrations = write_migrations(tmp_path, THREE)
    apply_migrations(session, keyspace, migrations=migrations[:1])
    # a previous applier ran 002's first statement (not idempotent: no IF NOT EXISTS) and died
    second = migrations[1]
    session.execute(f"CREATE TABLE {keyspace}.c (k int PRIMARY KEY)")
    session.execute(
        f"INSERT INTO {keyspace}.schema_migrations (version, name, checksum, statements_done,"
        " complete) VALUES (2, %s, %s, 1, false)", (second.name, second.checksum),
    )
    assert applied_versions(session, keyspace) == {1: migrations[0].checksum}
    assert apply_migrations(session, keyspace, migrations=migrations) == [2, 3]
    columns = session.execute(
        "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s"
        " AND table_name = 'a'", (keyspace,)
    )
    assert "w" in {row.column_name for row in columns}


# ------------------------------------------------------------ no I/O


def test_keyspace_for_cell() -> None:
    assert keyspace_for_cell("cell-001") == "chat_cell_001"
    assert keyspace_for_cell("eu1") == "chat_eu1"
    for junk in ["", "Cell-1", "-a", "a-", "a_b", "a.b", "a" * 44, "ü", " a"]:
        with pytest.raises(ValueError, match="invalid cell id"):
            keyspace_for_cell(junk)


def test_ensure_keyspace_rejects_bad_input_before_any_query() -> None:
    with pytest.raises(ValueError, match="keyspace"):
        ensure_keyspace(None, "bad-name", SIMPLE)
    with pytest.raises(ValueError, match="class"):
        ensure_keyspace(None, "fine", {"replication_factor": 1})
    with pytest.raises(ValueError, match="replication entry"):
        ensure_keyspace(None, "fine", {"class": "SimpleStrategy", "replication_factor": True})


def test_statements_are_split_outside_literals_and_comments() -> None:
    text = """
        -- a comment; with a semicolon
        CREATE TABLE "odd;name" (k text PRIMARY KEY) WITH comment = 'it''s; fine';
        /* block; comment */ INSERT INTO t (k) VALUES ('a--b'); // trailing; comment
        CREATE FUNCTION f (x int) RETURNS NULL ON NULL INPUT RETURNS int
          LANGUAGE java AS $$ return x; $$
    """
    assert split_statements(text) == [
        "CREATE TABLE \"odd;name\" (k text PRIMARY KEY) WITH comment = 'it''s; fine'",
        "INSERT INTO t (k) VALUES ('a--b')",
        "CREATE FUNCTION f (x int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS"
        " $$ return x; $$",
    ]


def test_the_shipped_schema_loads() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    assert migrations[0].version == 1
    assert all(m.statements and len(m.checksum) == 64 for m in migrations)
