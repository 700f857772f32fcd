"""Status conditions, phase and the drift check's findings: pure functions, no cluster."""

from __future__ import annotations

from chatcell_operator import conditions, drift
from chatcell_operator.conditions import Condition
from chatcell_operator.keyspaces import Inspection, normalise_replication
from chatcell_operator.reconcile import backoff

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:01:00Z"


def test_transition_time_changes_only_with_the_status() -> None:
    first = conditions.merge(None, [Condition("Ready", False, "Reconciling", "wait")],
                             now=T0, generation=1)
    same = conditions.merge(first, [Condition("Ready", False, "Reconciling", "still")],
                            now=T1, generation=1)
    assert same[0]["lastTransitionTime"] == T0
    assert same[0]["message"] == "still"
    flipped = conditions.merge(same, [Condition("Ready", True, "Reconciled", "ok")],
                               now=T1, generation=2)
    assert flipped[0] == {
        "type": "Ready", "status": "True", "reason": "Reconciled", "message": "ok",
        "lastTransitionTime": T1, "observedGeneration": 2,
    }


def test_conditions_keep_their_order_and_other_types() -> None:
    merged = conditions.merge(
        [{"type": "Custom", "status": "True"}],
        [Condition("Ready", True, "Reconciled"), Condition("KeyspaceReady", True, "Created"),
         Condition("MigrationsApplied", None, "Waiting")],
        now=T0, generation=None,
    )
    assert [c["type"] for c in merged] == ["KeyspaceReady", "MigrationsApplied", "Ready", "Custom"]
    assert merged[1]["status"] == "Unknown"
    assert "observedGeneration" not in merged[1]


def test_phase_follows_readys_reason() -> None:
    def phase(reason: str, ok: bool = False) -> str:
        return conditions.phase(conditions.merge(None, [Condition("Ready", ok, reason)],
                                                 now=T0, generation=1))

    assert conditions.phase([]) == "Pending"
    assert phase("Reconciled", True) == "Ready"
    assert phase("Reconciling") == "Reconciling"
    assert phase("InvalidSpec") == "Failed"
    assert phase("DatabaseRejected") == "Failed"
    assert phase("SchemaConflict") == "Failed"
    assert phase("DriftDetected") == "Degraded"


def test_status_patch_claims_the_generation_only_when_observed() -> None:
    updates = [Condition("Ready", False, "Reconciling", "db down")]
    assert "observedGeneration" not in conditions.status_patch(
        {}, updates, now=T0, generation=3)
    patch = conditions.status_patch({}, updates, now=T0, generation=3, observed=True,
                                    fields={"schemaVersion": 1})
    assert patch["observedGeneration"] == 3
    assert patch["schemaVersion"] == 1
    assert patch["phase"] == "Reconciling"


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(r) for r in range(4)] == [5, 10, 20, 40]
    assert backoff(30) == 300


def inspection(replication: dict[str, str] | None, applied: dict[int, str],
               expected: dict[int, str] | None = None) -> Inspection:
    return Inspection(
        keyspace="chat_c",
        replication=replication,
        wanted_replication={"class": "SimpleStrategy", "replication_factor": "1"},
        applied=applied,
        expected=expected if expected is not None else {1: "a", 2: "b"},
    )


SIMPLE_1 = {"class": "SimpleStrategy", "replication_factor": "1"}


def test_no_drift() -> None:
    assert not drift.findings(inspection(SIMPLE_1, {1: "a", 2: "b"}))


def test_a_dropped_keyspace_is_repairable_drift() -> None:
    found = drift.findings(inspection(None, {}))
    assert found.repairable == ("keyspace chat_c does not exist",)
    assert not found.unsafe
    updates = {c.type: c for c in drift.drift_conditions(found)}
    assert updates["KeyspaceReady"].status is False
    assert updates["MigrationsApplied"].status is False
    assert updates["Ready"].reason == "DriftDetected"


def test_missing_migrations_and_other_replication_are_repairable() -> None:
    found = drift.findings(inspection({"class": "SimpleStrategy", "replication_factor": "3"},
                                      {1: "a"}))
    assert len(found.repairable) == 2
    assert not found.unsafe
    assert "migrations 002 are not recorded" in found.repairable[1]


def test_edited_or_unknown_migrations_are_never_repaired() -> None:
    found = drift.findings(inspection(SIMPLE_1, {1: "a", 2: "edited", 3: "z"}))
    assert not found.repairable
    assert "002 were changed" in found.unsafe[0]
    assert "003" in found.unsafe[1]
    assert "newer release" in found.unsafe[1]
    reasons = {c.type: c.reason for c in drift.drift_conditions(found)}
    assert reasons["MigrationsApplied"] == "SchemaConflict"


def test_replication_maps_compare_as_the_database_stores_them() -> None:
    assert normalise_replication(
        {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "dc1": "3"}
    ) == normalise_replication({"class": "NetworkTopologyStrategy", "dc1": 3})


def test_only_reconciled_live_cells_are_due_for_a_drift_check() -> None:
    def body(generation: int, observed: int, phase: str, deleting: bool = False) -> dict:
        meta = {"generation": generation}
        if deleting:
            meta["deletionTimestamp"] = T0
        return {"metadata": meta, "status": {"observedGeneration": observed, "phase": phase}}

    assert drift.is_due(body(2, 2, "Ready"))
    assert drift.is_due(body(2, 2, "Degraded"))
    assert not drift.is_due(body(3, 2, "Ready"))  # the handlers own a new generation
    assert not drift.is_due(body(2, 2, "Failed"))
    assert not drift.is_due(body(2, 2, "Ready", deleting=True))
