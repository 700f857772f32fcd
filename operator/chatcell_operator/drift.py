"""The periodic drift check: re-verify every reconciled cell against the database.

kopf reacts to changes of the ChatCell; nothing tells it that someone dropped the keyspace,
restored an old backup, or edited a migration file. So every ``interval`` seconds this loop
inspects each cell whose status claims the current generation, and compares the database
with the spec and ``cql/``. A current ``observedGeneration`` is exactly when drift would go
unnoticed otherwise, so it never skips a cell for looking up to date.

What it finds is written to the status first (``status.drift`` and the conditions, phase
``Degraded``), then repaired where that is safe, and the repair reported:

- keyspace missing, replication different, migrations missing: repaired by a normal pass
  (create/alter the keyspace, apply the pending migrations);
- an applied migration whose file changed, or versions newer than this operator's ``cql/``:
  reported, never "repaired" (that would mean guessing which side is right).

The cell's objects are re-applied on every round too (server-side apply is a no-op when
nothing changed), so a deleted Service or a hand-edited Deployment comes back.

Why not a kopf timer: kopf puts a finalizer on every object that has a timer or daemon, so a
Retain cell would hang in Terminating whenever the operator is down. This loop needs none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from chatcell_operator import conditions, keyspaces
from chatcell_operator.conditions import Condition
from chatcell_operator.kube import KubeError
from chatcell_operator.reconcile import (
    Context,
    Outcome,
    Pass,
    apply_objects,
    database,
    ensure_schema,
    now_text,
    parse_and_check,
)

log = logging.getLogger("chatcell_operator.drift")

# One cell's check may take a while (a repair applies migrations); it must not take forever.
CHECK_TIMEOUT_S = 600.0


@attrs.frozen
class Findings:
    repairable: tuple[str, ...] = ()
    unsafe: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.repairable or self.unsafe)

    @property
    def all(self) -> tuple[str, ...]:
        return self.repairable + self.unsafe


def findings(inspection: keyspaces.Inspection) -> Findings:
    """Pure: what is wrong with the keyspace, split by whether a pass may repair it."""
    repairable: list[str] = []
    unsafe: list[str] = []
    ks = inspection.keyspace
    if not inspection.exists:
        repairable.append(f"keyspace {ks} does not exist")
    else:
        if not inspection.replication_matches:
            repairable.append(
                f"keyspace {ks} has replication {inspection.replication}, "
                f"the spec asks for {inspection.wanted_replication}"
            )
        if inspection.missing:
            versions = ", ".join(f"{v:03d}" for v in inspection.missing)
            repairable.append(f"migrations {versions} are not recorded in {ks}")
    if inspection.changed:
        versions = ", ".join(f"{v:03d}" for v in inspection.changed)
        unsafe.append(
            f"migrations {versions} were changed after being applied to {ks} "
            "(write a new migration instead)"
        )
    if inspection.unknown:
        versions = ", ".join(f"{v:03d}" for v in inspection.unknown)
        unsafe.append(
            f"{ks} records migrations {versions} that this operator's cql/ does not have "
            "(a newer release migrated it; upgrade the operator)"
        )
    return Findings(tuple(repairable), tuple(unsafe))


def is_due(body: Mapping[str, Any]) -> bool:
    """Check a cell only once its handlers are done with the current generation; until then
    they own it (and report on it)."""
    meta = body.get("metadata", {})
    status = body.get("status") or {}
    if meta.get("deletionTimestamp"):
        return False
    if status.get("observedGeneration") != meta.get("generation"):
        return False
    return status.get("phase") in ("Ready", "Degraded")


def drift_conditions(found: Findings) -> tuple[Condition, ...]:
    text = "; ".join(found.all)
    updates: list[Condition] = []
    keyspace_gone = any("does not exist" in f for f in found.repairable)
    if keyspace_gone or any("replication" in f for f in found.repairable):
        updates.append(Condition(conditions.KEYSPACE_READY, False, "Drift", text))
    if keyspace_gone or found.unsafe or any("migrations" in f for f in found.repairable):
        # A missing keyspace has no migrations either.
        reason = conditions.SCHEMA_CONFLICT if found.unsafe else "Drift"
        updates.append(Condition(conditions.MIGRATIONS_APPLIED, False, reason, text))
    updates.append(Condition(conditions.READY, False, conditions.DRIFT, text))
    return tuple(updates)


async def _write(ctx: Context, body: Mapping[str, Any], updates: Sequence[Condition],
                 fields: Mapping[str, Any], *, status: Mapping[str, Any] | None = None,
                 observed: bool = False) -> dict[str, Any]:
    meta = body["metadata"]
    patch = conditions.status_patch(
        status if status is not None else body.get("status"),
        updates,
        now=now_text(),
        generation=meta.get("generation"),
        observed=observed,
        fields=fields,
    )
    await ctx.kube.patch_cell_status(meta["namespace"], meta["name"], patch)
    return patch


async def check(ctx: Context, body: Mapping[str, Any]) -> Findings | None:
    """Verify one cell; report and repair drift. The findings, or None if it was not checked."""
    meta = body["metadata"]
    checked = await parse_and_check(ctx, body)
    if isinstance(checked, Pass):
        return None  # the handlers report an invalid spec; nothing to compare against
    cell = checked
    failure = await apply_objects(ctx, cell, meta["uid"])
    if failure is not None:
        log.warning("drift check of %s/%s: %s", cell.namespace, cell.name, failure.message)
        return None
    connected = await database(ctx, cell)
    if isinstance(connected, Pass):
        log.warning("drift check of %s/%s: %s", cell.namespace, cell.name, connected.message)
        return None
    _, session = connected
    try:
        inspection = await asyncio.to_thread(
            keyspaces.inspect, session, cell.keyspace, cell.scylla.replication
        )
    except keyspaces.KeyspaceError as exc:
        log.warning("drift check of %s/%s: %s", cell.namespace, cell.name, exc)
        return None

    found = findings(inspection)
    checked_at = now_text()
    if not found:
        status = body.get("status") or {}
        if status.get("phase") == "Degraded":
            # Drift was found earlier and is gone now (e.g. repaired by hand): say so.
            result = await ensure_schema(ctx, cell, session)
            resolved = {**(status.get("drift") or {}), "resolvedTime": checked_at}
            await _write(ctx, body, result.updates,
                         {"lastVerifiedTime": checked_at, "drift": resolved, **result.fields},
                         observed=result.outcome is not Outcome.RETRY)
        else:
            await ctx.kube.patch_cell_status(
                cell.namespace, cell.name, {"lastVerifiedTime": checked_at}
            )
        return found

    log.warning("drift in %s/%s: %s", cell.namespace, cell.name, "; ".join(found.all))
    report: dict[str, Any] = {
        "detectedTime": checked_at,
        "findings": list(found.all),
        "repaired": False,
    }
    written = await _write(ctx, body, drift_conditions(found),
                           {"drift": report, "lastVerifiedTime": checked_at})
    if found.unsafe:
        return found

    result = await ensure_schema(ctx, cell, session)
    if result.outcome is Outcome.DONE:
        repaired_at = now_text()
        report = {**report, "repaired": True, "repairedTime": repaired_at,
                  "resolvedTime": repaired_at}
        log.warning("repaired drift in %s/%s", cell.namespace, cell.name)
    await _write(ctx, body, result.updates, {"drift": report, **result.fields},
                 status={**(body.get("status") or {}), **written},
                 observed=result.outcome is not Outcome.RETRY)
    return found


async def check_namespace(ctx: Context, namespace: str) -> None:
    try:
        cells = await ctx.kube.list_cells(namespace)
    except KubeError as exc:
        log.warning("drift check: %s", exc)
        return
    for listed in cells:
        if not is_due(listed):
            continue
        meta = listed["metadata"]
        try:
            async with ctx.locks(meta["uid"]):
                # Read again under the lock: a handler may have moved the cell to a newer
                # generation while we waited, and applying an older spec would undo it.
                body = await ctx.kube.get_cell(namespace, meta["name"])
                if body is None or not is_due(body):
                    continue
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    await check(ctx, body)
        except (KubeError, TimeoutError) as exc:
            log.warning("drift check of %s/%s: %s", namespace, meta.get("name"), exc)


async def run_forever(ctx: Context, namespaces: Sequence[str], interval_s: float) -> None:
    """Check every namespace's cells every `interval_s` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        for namespace in namespaces:
            try:
                await check_namespace(ctx, namespace)
            except Exception:  # one bad round must not end the loop
                log.exception("drift check of namespace %s failed", namespace)
