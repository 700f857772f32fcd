"""One reconcile pass over a ChatCell, shared by the kopf handlers and the drift check.

A pass is idempotent from any starting point (nothing done yet, half done by an operator that
was killed, everything done, or undone behind the operator's back), so restarting the
operator at any moment converges:

1. parse the spec (an invalid spec fails the pass for good: only an edit can fix it);
2. server-side apply the cell's objects;
3. resolve the database credentials from their Secret;
4. create the keyspace, or bring its replication to the spec;
5. apply the pending ``cql/`` migrations through the shared runner.

A pass returns a ``Pass``: the condition updates and status fields to write, and whether it
ended well, should be retried later, or failed for good. The caller decides how to write the
status and how to retry (kopf's handler raises ``TemporaryError``; the drift check simply
tries again on its next round).
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import weakref
from collections.abc import Mapping
from typing import Any

import attrs

from chatcell_operator import builders, conditions, keyspaces
from chatcell_operator.conditions import Condition
from chatcell_operator.kube import ApiRejected, Kube, KubeError, SecretMissing
from chatcell_operator.spec import CellSpec, InvalidSpec, parse

# Backoff for temporary failures: 5 s, 10 s, 20 s ... capped at 5 minutes.
BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 300.0


def backoff(retry: int) -> float:
    return float(min(BACKOFF_BASE_S * 2 ** max(retry, 0), BACKOFF_MAX_S))


def now_text() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Outcome(enum.Enum):
    DONE = "done"
    RETRY = "retry"  # a temporary problem: try the whole pass again later
    FAILED = "failed"  # a permanent problem: wait for the spec to change


@attrs.frozen
class Pass:
    outcome: Outcome
    message: str
    updates: tuple[Condition, ...] = ()
    fields: Mapping[str, Any] = attrs.field(factory=dict)


class CellLocks:
    """One lock per ChatCell (by uid): a handler and the drift check never work on the same
    cell at once. Weak values: a lock nobody holds or waits for is forgotten."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def __call__(self, uid: str) -> asyncio.Lock:
        lock = self._locks.get(uid)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[uid] = lock
        return lock


@attrs.define
class Context:
    """The collaborators of a pass, built once at start-up."""

    kube: Kube
    sessions: keyspaces.Sessions
    locks: CellLocks = attrs.field(factory=CellLocks)


def _ready(ok: bool, reason: str, message: str) -> Condition:
    return Condition(conditions.READY, ok, reason, message)


def _failed(reason: str, message: str, *more: Condition) -> Pass:
    return Pass(Outcome.FAILED, message, (*more, _ready(False, reason, message)))


def _retry(message: str, *more: Condition) -> Pass:
    return Pass(Outcome.RETRY, message, (*more, _ready(False, conditions.RECONCILING, message)))


async def cell_id_taken_by(kube: Kube, cell: CellSpec, uid: str,
                           created: str) -> str | None:
    """The name of an older ChatCell in the namespace with the same cellId, if any.

    Two cells with one cellId would share (and one could drop) one keyspace. The older one
    keeps it; ties on the creation second go to the lower name.
    """
    for other in await kube.list_cells(cell.namespace):
        meta = other.get("metadata", {})
        if meta.get("uid") == uid or meta.get("deletionTimestamp"):
            continue
        if (other.get("spec") or {}).get("cellId") != cell.cell_id:
            continue
        if (meta.get("creationTimestamp", ""), meta.get("name", "")) < (created, cell.name):
            return str(meta.get("name"))
    return None


async def endpoint_for(kube: Kube, cell: CellSpec) -> keyspaces.Endpoint:
    username = password = ""
    creds = cell.scylla.credentials
    if creds is not None:
        username = await kube.read_secret_key(cell.namespace, creds.secret, creds.username_key)
        password = await kube.read_secret_key(cell.namespace, creds.secret, creds.password_key)
    return keyspaces.Endpoint(cell.scylla.contact_points, cell.scylla.port, username, password)


async def parse_and_check(ctx: Context, body: Mapping[str, Any]) -> CellSpec | Pass:
    meta = body.get("metadata", {})
    try:
        cell = parse(body.get("spec") or {}, name=meta.get("name", ""),
                     namespace=meta.get("namespace", ""))
    except InvalidSpec as exc:
        return _failed(conditions.INVALID_SPEC, str(exc))
    try:
        holder = await cell_id_taken_by(ctx.kube, cell, meta.get("uid", ""),
                                        meta.get("creationTimestamp", ""))
    except KubeError as exc:
        return _retry(str(exc))
    if holder is not None:
        return _failed(
            conditions.INVALID_SPEC,
            f"spec.cellId {cell.cell_id!r} is already used by ChatCell {holder}: "
            "two cells would share one keyspace",
        )
    return cell


async def apply_objects(ctx: Context, cell: CellSpec, uid: str) -> Pass | None:
    """Apply every object of the cell; a Pass only if that went wrong."""
    try:
        for manifest in builders.build_all(cell, builders.Owner(cell.name, uid)):
            await ctx.kube.apply(manifest)
    except ApiRejected as exc:
        return _failed("ObjectRejected", str(exc))
    except KubeError as exc:
        return _retry(str(exc))
    return None


async def database(ctx: Context, cell: CellSpec) -> tuple[keyspaces.Endpoint, Any] | Pass:
    try:
        endpoint = await endpoint_for(ctx.kube, cell)
    except SecretMissing as exc:
        message = f"waiting for the database credentials: {exc}"
        return _retry(message, Condition(conditions.KEYSPACE_READY, None, "SecretNotFound",
                                         message))
    except KubeError as exc:
        return _retry(str(exc))
    try:
        session = await asyncio.to_thread(ctx.sessions.get, endpoint)
    except keyspaces.KeyspaceError as exc:
        return _retry(str(exc), Condition(conditions.KEYSPACE_READY, None,
                                          "DatabaseUnavailable", str(exc)))
    return endpoint, session


async def reconcile(ctx: Context, body: Mapping[str, Any]) -> Pass:
    """Bring the cell to its spec; see the module docstring for the steps."""
    checked = await parse_and_check(ctx, body)
    if isinstance(checked, Pass):
        return checked
    cell = checked
    uid = body["metadata"]["uid"]

    failure = await apply_objects(ctx, cell, uid)
    if failure is not None:
        return failure

    connected = await database(ctx, cell)
    if isinstance(connected, Pass):
        return connected
    _, session = connected
    return await ensure_schema(ctx, cell, session)


async def ensure_schema(ctx: Context, cell: CellSpec, session: Any) -> Pass:
    """Steps 4 and 5: the keyspace and its migrations."""
    keyspace = cell.keyspace
    try:
        state = await asyncio.to_thread(
            keyspaces.ensure, session, keyspace, cell.scylla.replication
        )
    except keyspaces.DatabaseRejected as exc:
        return _failed(conditions.REJECTED, str(exc),
                       Condition(conditions.KEYSPACE_READY, False, conditions.REJECTED,
                                 str(exc)))
    except keyspaces.KeyspaceError as exc:
        return _retry(str(exc), Condition(conditions.KEYSPACE_READY, False,
                                          "DatabaseUnavailable", str(exc)))
    replication = cell.scylla.replication.as_cql_map()
    if state.created:
        keyspace_ok = Condition(conditions.KEYSPACE_READY, True, "Created",
                                f"keyspace {keyspace} created with replication {replication}")
    elif state.altered_from is not None:
        keyspace_ok = Condition(
            conditions.KEYSPACE_READY, True, "ReplicationChanged",
            f"keyspace {keyspace} replication changed from {state.altered_from} to "
            f"{replication}; run a repair so existing data reaches its new replicas",
        )
    else:
        keyspace_ok = Condition(conditions.KEYSPACE_READY, True, "Exists",
                                f"keyspace {keyspace} exists with replication {replication}")

    try:
        applied = await asyncio.to_thread(keyspaces.migrate, session, keyspace)
        inspection = await asyncio.to_thread(
            keyspaces.inspect, session, keyspace, cell.scylla.replication
        )
    except keyspaces.SchemaConflict as exc:
        return _failed(conditions.SCHEMA_CONFLICT, str(exc), keyspace_ok,
                       Condition(conditions.MIGRATIONS_APPLIED, False,
                                 conditions.SCHEMA_CONFLICT, str(exc)))
    except keyspaces.DatabaseRejected as exc:
        return _failed(conditions.REJECTED, str(exc), keyspace_ok,
                       Condition(conditions.MIGRATIONS_APPLIED, False, conditions.REJECTED,
                                 str(exc)))
    except keyspaces.KeyspaceError as exc:
        return _retry(str(exc), keyspace_ok,
                      Condition(conditions.MIGRATIONS_APPLIED, False, "DatabaseUnavailable",
                                str(exc)))
    version = inspection.schema_version
    applied_text = (
        f"applied {', '.join(f'{v:03d}' for v in applied)} now" if applied else "up to date"
    )
    migrations_ok = Condition(
        conditions.MIGRATIONS_APPLIED, True, "Applied" if applied else "UpToDate",
        f"schema version {version} ({applied_text})",
    )
    message = (
        f"cell {cell.cell_id}: objects applied, keyspace {keyspace} at schema version {version}"
    )
    return Pass(
        Outcome.DONE,
        message,
        (keyspace_ok, migrations_ok, _ready(True, conditions.RECONCILED, message)),
        {"keyspace": keyspace, "schemaVersion": version},
    )
