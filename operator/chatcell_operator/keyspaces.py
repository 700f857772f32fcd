"""The cell's keyspace: create it, migrate it, inspect it for drift, drop it.

Blocking code (the cassandra driver and ``cellchat_schema`` are synchronous): the async
handlers call it through ``asyncio.to_thread``. Migrations go through ``cellchat_schema``, the
runner the services use, so there is one implementation of "apply cql/ once".

Driver errors are translated here, at the boundary, into three kinds the reconciler acts on:

- ``DatabaseUnavailable``: try again later, with backoff (no host, timeouts, lock held,
  authentication or permission problems an operator of the database can fix meanwhile);
- ``DatabaseRejected``: the database refuses what the spec asks for (e.g. a data centre it
  does not have); retrying cannot help, editing the spec can;
- ``SchemaConflict``: the keyspace's recorded schema disagrees with ``cql/`` in a way the
  operator must not repair by itself (an applied migration was edited, or a newer release
  half-applied one).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import attrs
from cassandra import (
    AuthenticationFailed,
    ConsistencyLevel,
    DriverException,
    OperationTimedOut,
    RequestExecutionException,
    Unauthorized,
)
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable, Session
from cassandra.protocol import ConfigurationException, InvalidRequest, SyntaxException

import cellchat_schema
from chatcell_operator.spec import Replication

log = logging.getLogger(__name__)

_LOCATOR_PREFIX = "org.apache.cassandra.locator."
_REQUEST_TIMEOUT_S = 30.0
# The runner's migration lock expires this long after its holder's last sign of life (it is
# renewed before every statement). Shorter than the runner's default, so an operator that
# was killed while migrating gets the lock back within half a minute of restarting; a lock
# lost to a slow statement only costs a retry, since progress is recorded per statement.
MIGRATION_LOCK_TTL_S = 30


class KeyspaceError(Exception):
    """Root of the errors this module raises; the message is fit for a status condition."""


class DatabaseUnavailable(KeyspaceError):
    pass


class DatabaseRejected(KeyspaceError):
    pass


class SchemaConflict(KeyspaceError):
    pass


@attrs.frozen
class Endpoint:
    """How to reach a ScyllaDB cluster; the cache key of its session."""

    contact_points: tuple[str, ...]
    port: int
    username: str = ""
    password: str = attrs.field(default="", repr=False)


class Sessions:
    """One driver session per database endpoint, shared by every cell that uses it.

    A Cluster object costs a control connection and a pool per host, so cells on the same
    database share one. Thread-safe: handlers for different cells run concurrently.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clusters: dict[Endpoint, tuple[Cluster, Session]] = {}

    def get(self, endpoint: Endpoint) -> Session:
        with self._lock:
            cached = self._clusters.get(endpoint)
            if cached is not None and not cached[0].is_shutdown:
                return cached[1]
        auth = (
            PlainTextAuthProvider(username=endpoint.username, password=endpoint.password)
            if endpoint.username
            else None
        )
        cluster = Cluster(
            list(endpoint.contact_points),
            port=endpoint.port,
            auth_provider=auth,
            connect_timeout=10,
            control_connection_timeout=10,
        )
        try:
            with translate_errors("connecting to the database"):
                session = cluster.connect()
        except BaseException:
            cluster.shutdown()
            raise
        session.default_timeout = _REQUEST_TIMEOUT_S
        # Schema reads and writes must see each other: quorum-or-better everywhere.
        session.default_consistency_level = ConsistencyLevel.LOCAL_QUORUM
        with self._lock:
            previous = self._clusters.get(endpoint)
            self._clusters[endpoint] = (cluster, session)
        if previous is not None:
            previous[0].shutdown()
        return session

    def discard(self, endpoint: Endpoint) -> None:
        """Forget a session after an error that may have left it unusable."""
        with self._lock:
            cached = self._clusters.pop(endpoint, None)
        if cached is not None:
            cached[0].shutdown()

    def close(self) -> None:
        with self._lock:
            clusters = list(self._clusters.values())
            self._clusters.clear()
        for cluster, _ in clusters:
            cluster.shutdown()


@contextlib.contextmanager
def translate_errors(doing: str) -> Iterator[None]:
    try:
        yield
    except cellchat_schema.MigrationChecksumMismatch as exc:
        raise SchemaConflict(str(exc)) from exc
    except cellchat_schema.MigrationLockTimeout as exc:
        raise DatabaseUnavailable(f"{doing}: {exc}") from exc
    except cellchat_schema.MigrationError as exc:
        if "newer release" in str(exc):
            raise SchemaConflict(str(exc)) from exc
        raise DatabaseUnavailable(f"{doing}: {exc}") from exc
    except (ConfigurationException, InvalidRequest, SyntaxException) as exc:
        raise DatabaseRejected(f"{doing}: the database refused: {_message(exc)}") from exc
    except (AuthenticationFailed, Unauthorized) as exc:
        raise DatabaseUnavailable(f"{doing}: {_message(exc)}") from exc
    except NoHostAvailable as exc:
        reasons = "; ".join(f"{host}: {_message(err)}" for host, err in exc.errors.items())
        raise DatabaseUnavailable(f"{doing}: no host available ({reasons})") from exc
    except (OperationTimedOut, RequestExecutionException, DriverException) as exc:
        raise DatabaseUnavailable(f"{doing}: {_message(exc)}") from exc
    except OSError as exc:
        raise DatabaseUnavailable(f"{doing}: {exc}") from exc


def _message(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def normalise_replication(raw: dict[str, Any]) -> dict[str, str]:
    """A replication map as comparable text: short class name, every value a string."""
    out = {str(k): str(v) for k, v in raw.items()}
    if out.get("class", "").startswith(_LOCATOR_PREFIX):
        out["class"] = out["class"][len(_LOCATOR_PREFIX):]
    return out


def current_replication(session: Session, keyspace: str) -> dict[str, str] | None:
    """The keyspace's replication map, or None if the keyspace does not exist."""
    row = session.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
        (keyspace,),
    ).one()
    if row is None:
        return None
    replication = row[0] if not isinstance(row, dict) else row["replication"]
    return normalise_replication(dict(replication))


@attrs.frozen
class KeyspaceState:
    created: bool
    altered_from: dict[str, str] | None  # the replication before an ALTER, if one was made


def ensure(session: Session, keyspace: str, replication: Replication) -> KeyspaceState:
    """Create the keyspace, or bring an existing one to the requested replication."""
    wanted = replication.as_cql_map()
    with translate_errors(f"creating keyspace {keyspace}"):
        before = current_replication(session, keyspace)
        if before is None:
            cellchat_schema.ensure_keyspace(session, keyspace, wanted)
            return KeyspaceState(created=True, altered_from=None)
        if before == normalise_replication(wanted):
            return KeyspaceState(created=False, altered_from=None)
    with translate_errors(f"altering the replication of keyspace {keyspace}"):
        items = ", ".join(f"'{k}': '{v}'" for k, v in wanted.items())
        session.execute(f"ALTER KEYSPACE {keyspace} WITH replication = {{{items}}}")
        session.cluster.control_connection.wait_for_schema_agreement(wait_time=60)
    log.warning(
        "keyspace %s: replication changed from %s to %s; run a repair so existing data "
        "reaches its new replicas", keyspace, before, wanted,
    )
    return KeyspaceState(created=False, altered_from=before)


def migrate(session: Session, keyspace: str) -> list[int]:
    """Apply the pending cql/ migrations; the versions applied by this call."""
    with translate_errors(f"migrating keyspace {keyspace}"):
        return cellchat_schema.apply_migrations(
            session, keyspace, lock_ttl_s=MIGRATION_LOCK_TTL_S, wait_s=120
        )


def latest_version() -> int:
    migrations = cellchat_schema.load_migrations()
    return migrations[-1].version if migrations else 0


@attrs.frozen
class Inspection:
    """What the drift check found in the database for one cell."""

    keyspace: str
    replication: dict[str, str] | None  # None: the keyspace does not exist
    wanted_replication: dict[str, str]
    applied: dict[int, str]  # version -> checksum, as recorded
    expected: dict[int, str]  # version -> checksum, from cql/

    @property
    def exists(self) -> bool:
        return self.replication is not None

    @property
    def replication_matches(self) -> bool:
        return self.replication == self.wanted_replication

    @property
    def missing(self) -> list[int]:
        return sorted(v for v in self.expected if v not in self.applied)

    @property
    def changed(self) -> list[int]:
        """Applied versions whose recorded checksum differs from the file's."""
        return sorted(
            v for v, digest in self.applied.items()
            if v in self.expected and self.expected[v] != digest
        )

    @property
    def unknown(self) -> list[int]:
        """Applied versions this operator's cql/ does not have (a newer release ran)."""
        return sorted(v for v in self.applied if v not in self.expected)

    @property
    def schema_version(self) -> int:
        return max(self.applied, default=0)


def inspect(session: Session, keyspace: str, replication: Replication) -> Inspection:
    with translate_errors(f"inspecting keyspace {keyspace}"):
        actual = current_replication(session, keyspace)
        applied = (
            cellchat_schema.applied_versions(session, keyspace) if actual is not None else {}
        )
        expected = {m.version: m.checksum for m in cellchat_schema.load_migrations()}
    return Inspection(
        keyspace=keyspace,
        replication=actual,
        wanted_replication=normalise_replication(replication.as_cql_map()),
        applied=applied,
        expected=expected,
    )


def drop(session: Session, keyspace: str) -> bool:
    """DROP KEYSPACE; False if it was already gone."""
    with translate_errors(f"dropping keyspace {keyspace}"):
        if current_replication(session, keyspace) is None:
            return False
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        session.cluster.control_connection.wait_for_schema_agreement(wait_time=60)
    return True
