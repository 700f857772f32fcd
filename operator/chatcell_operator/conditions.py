"""Status conditions and phase, as pure functions of what a reconcile pass found.

Three conditions, in the order a cell gets them: ``KeyspaceReady`` (the keyspace exists with
the requested replication), ``MigrationsApplied`` (every ``cql/`` migration is recorded with a
matching checksum) and ``Ready`` (the cell is fully reconciled at ``observedGeneration``: its
objects are applied and both of the above hold). Pod readiness is the Deployments' own status,
not a condition here: the operator reports what it controls.

``phase`` is a one-word summary for ``kubectl get`` and is derived from ``Ready``'s reason,
never stored independently, so the two cannot disagree.

A condition's ``lastTransitionTime`` changes only when its status does (the Kubernetes API
conventions), so a cell that is re-verified every minute does not churn its status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

KEYSPACE_READY = "KeyspaceReady"
MIGRATIONS_APPLIED = "MigrationsApplied"
READY = "Ready"
ORDER = (KEYSPACE_READY, MIGRATIONS_APPLIED, READY)

# Ready's reasons -> phase. A reason not listed means work is under way: "Reconciling".
RECONCILED = "Reconciled"
RECONCILING = "Reconciling"
INVALID_SPEC = "InvalidSpec"
REJECTED = "DatabaseRejected"
SCHEMA_CONFLICT = "SchemaConflict"
DRIFT = "DriftDetected"
_PHASES = {
    RECONCILED: "Ready",
    INVALID_SPEC: "Failed",
    REJECTED: "Failed",
    SCHEMA_CONFLICT: "Failed",
    DRIFT: "Degraded",
}


@attrs.frozen
class Condition:
    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str = ""

    @property
    def status_text(self) -> str:
        return {True: "True", False: "False", None: "Unknown"}[self.status]


def merge(
    current: Sequence[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    *,
    now: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """The full condition list after applying `updates` to `current` (kept in ORDER)."""
    by_type: dict[str, dict[str, Any]] = {
        c["type"]: dict(c) for c in (current or []) if isinstance(c, Mapping) and "type" in c
    }
    for update in updates:
        previous = by_type.get(update.type)
        transition = (
            previous["lastTransitionTime"]
            if previous is not None
            and previous.get("status") == update.status_text
            and previous.get("lastTransitionTime")
            else now
        )
        entry: dict[str, Any] = {
            "type": update.type,
            "status": update.status_text,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": transition,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        by_type[update.type] = entry
    ordered = [by_type.pop(t) for t in ORDER if t in by_type]
    return ordered + [by_type[t] for t in sorted(by_type)]


def phase(conditions: Sequence[Mapping[str, Any]]) -> str:
    for condition in conditions:
        if condition.get("type") == READY:
            return _PHASES.get(str(condition.get("reason")), "Reconciling")
    return "Pending"


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for condition in conditions or []:
        if condition.get("type") == type_:
            return condition
    return None


def status_patch(
    current_status: Mapping[str, Any] | None,
    updates: Iterable[Condition],
    *,
    now: str,
    generation: int | None,
    observed: bool = False,
    fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``status`` to merge-patch: conditions (whole list), phase and extra fields.

    `observed` sets ``observedGeneration``: only a pass that finished (done or permanently
    failed) may claim it has seen this generation.
    """
    conditions = merge(
        (current_status or {}).get("conditions"), updates, now=now, generation=generation
    )
    patch: dict[str, Any] = {"conditions": conditions, "phase": phase(conditions)}
    if observed and generation is not None:
        patch["observedGeneration"] = generation
    patch.update(fields or {})
    return patch
