"""The operator end to end: a real API server, a real Cassandra node, the operator as a process
running under the chart's Role. No kubelet: pods stay Pending, so the tests look at the objects
the operator wrote and at the keyspace it created."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cassandra import InvalidRequest
from cassandra.cluster import NoHostAvailable
from kubernetes import client

from cellchat_schema import applied_versions, load_migrations
from tests.operator.cluster import Cells, chatcell, keyspace_replication, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.cassandra]

LATEST = max(m.version for m in load_migrations())
SIMPLE_1 = {"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": "1"}


def conditions_of(cell: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in cell["status"]["conditions"]}


def env_of(deployment: Any) -> dict[str, Any]:
    return {e.name: e.value if e.value is not None else e.value_from
            for e in deployment.spec.template.spec.containers[0].env}


def test_apply_creates_the_cell(api: Any, cells: Cells, cql: Any, cassandra: Any,
                                namespace: str, secrets: None, start_operator: Any,
                                uid: str) -> None:
    operator = start_operator()
    cell_id = f"t{uid}-a"
    keyspace = "chat_" + cell_id.replace("-", "_")
    created = cells.create(chatcell(
        "c1", cell_id, cassandra,
        image="reg.example/cellchat:1.0.0",
        chat={"replicas": 3},
        scylla={
            "contactPoints": [cassandra.host],
            "port": cassandra.port,
            "credentialsSecret": {"name": "scylla-user"},
            "replication": {"strategy": "SimpleStrategy", "replicationFactor": 1},
        },
    ))
    uid_of_cell = created["metadata"]["uid"]
    cell = cells.wait_phase("c1", "Ready", operator)

    # Status: three True conditions at the current generation, the keyspace and its version.
    status = cell["status"]
    assert status["observedGeneration"] == cell["metadata"]["generation"] == 1
    assert status["keyspace"] == keyspace
    assert status["schemaVersion"] == LATEST
    found = conditions_of(cell)
    assert {t: c["status"] for t, c in found.items()} == {
        "KeyspaceReady": "True", "MigrationsApplied": "True", "Ready": "True"}
    assert found["KeyspaceReady"]["reason"] == "Created"
    assert found["MigrationsApplied"]["reason"] == "Applied"
    # kopf's own bookkeeping lives in annotations, and a Retain cell carries no finalizer.
    assert not cell["metadata"].get("finalizers")
    assert set(status) <= {"conditions", "phase", "observedGeneration", "keyspace",
                           "schemaVersion", "lastVerifiedTime", "drift"}

    # The database: the keyspace with the requested replication, every migration recorded.
    assert keyspace_replication(cql, keyspace) == SIMPLE_1
    assert set(applied_versions(cql, keyspace)) == {m.version for m in load_migrations()}

    # The objects, each owned by the ChatCell.
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    policy = client.PolicyV1Api(api)
    chat = apps.read_namespaced_deployment("c1-chat", namespace)
    presence = apps.read_namespaced_deployment("c1-presence", namespace)
    config = core.read_namespaced_config_map("c1-config", namespace)
    services = {s: core.read_namespaced_service(f"c1-{s}", namespace)
                for s in ("chat", "presence")}
    pdbs = [policy.read_namespaced_pod_disruption_budget(f"c1-{s}", namespace)
            for s in ("chat", "presence")]
    for obj in (chat, presence, config, *services.values(), *pdbs):
        (owner,) = obj.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid, owner.controller) == (
            "ChatCell", "c1", uid_of_cell, True)

    assert chat.spec.replicas == 3
    assert presence.spec.replicas == 1
    for deployment, command in ((chat, ["cellchat", "run"]), (presence, ["cellchat", "presence"])):
        container = deployment.spec.template.spec.containers[0]
        assert container.image == "reg.example/cellchat:1.0.0"
        assert container.command == command
        assert container.env_from[0].config_map_ref.name == "c1-config"
        env = env_of(deployment)
        assert env["CELL_ID"] == cell_id
        assert env["SCYLLA_USERNAME"].secret_key_ref.name == "scylla-user"
        assert env["SCYLLA_PASSWORD_FILE"].endswith("/scylla/password")
        assert env["JWT_SECRET_FILE"].endswith("/jwt/key")
    assert config.data["CELL_ID"] == cell_id
    assert config.data["SCYLLA_HOSTS"] == cassandra.host
    assert config.data["SCYLLA_PORT"] == str(cassandra.port)
    assert config.data["SCYLLA_KEYSPACE"] == keyspace
    assert config.data["MIGRATE_ON_START"] == "false"
    assert config.data["REDIS_URL"] == "redis://redis.cellchat.svc:6379/0"
    assert config.data["PRESENCE_ADDR"] == f"c1-presence.{namespace}.svc:50061"
    assert {p.name: p.port for p in services["chat"].spec.ports} == {"grpc": 50051, "ws": 8080}
    assert {p.name: p.port for p in services["presence"].spec.ports} == {"grpc": 50061}
    assert services["chat"].spec.selector.items() <= chat.spec.template.metadata.labels.items()
    assert all(p.spec.max_unavailable == 1 for p in pdbs)


def test_scale_image_settings_and_replication_changes_roll_out(
        api: Any, cells: Cells, cql: Any, cassandra: Any, namespace: str, secrets: None,
        start_operator: Any, uid: str) -> None:
    operator = start_operator()
    cell_id = f"t{uid}-b"
    keyspace = "chat_" + cell_id.replace("-", "_")
    cells.create(chatcell("c1", cell_id, cassandra))
    cells.wait_phase("c1", "Ready", operator)
    apps = client.AppsV1Api(api)
    before = apps.read_namespaced_deployment("c1-chat", namespace)
    config_hash = before.spec.template.metadata.annotations["cellchat.io/config-hash"]
    assert before.spec.replicas == 2

    cells.patch("c1", {"chat": {"replicas": 5}, "image": "cellchat:0.2.0"})

    def scaled() -> bool:
        d = apps.read_namespaced_deployment("c1-chat", namespace)
        return bool(d.spec.replicas == 5
                    and d.spec.template.spec.containers[0].image == "cellchat:0.2.0")

    wait_for("the chat Deployment to scale and change image", scaled, 60,
             lambda: cells.describe("c1", operator))
    chat = apps.read_namespaced_deployment("c1-chat", namespace)
    presence = apps.read_namespaced_deployment("c1-presence", namespace)
    assert presence.spec.replicas == 1
    assert presence.spec.template.spec.containers[0].image == "cellchat:0.2.0"
    # Scaling and a new image change no setting: same ConfigMap hash on the pod template.
    assert chat.spec.template.metadata.annotations["cellchat.io/config-hash"] == config_hash
    cell = wait_for("generation 2 to be observed",
                    lambda: (c := cells.get("c1")) and c["status"].get("observedGeneration") == 2
                    and c, 60, lambda: cells.describe("c1", operator))
    assert cell["status"]["phase"] == "Ready"

    # A settings change rewrites the ConfigMap and rolls the pods through the hash.
    cells.patch("c1", {"redis": {"url": "redis://other-redis:6379/1"}})
    wait_for(
        "the pod template's config hash to change",
        lambda: apps.read_namespaced_deployment("c1-chat", namespace).spec.template.metadata
        .annotations["cellchat.io/config-hash"] != config_hash,
        60, lambda: cells.describe("c1", operator),
    )
    assert client.CoreV1Api(api).read_namespaced_config_map("c1-config", namespace).data[
        "REDIS_URL"] == "redis://other-redis:6379/1"

    # A replication change ALTERs the keyspace and says a repair is due.
    cells.patch("c1", {"scylla": {"replication": {
        "strategy": "NetworkTopologyStrategy", "dataCenters": {"datacenter1": 1},
        "replicationFactor": None}}})
    wait_for("the keyspace to move to NetworkTopologyStrategy",
             lambda: keyspace_replication(cql, keyspace) == {
                 "class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
                 "datacenter1": "1"},
             60, lambda: cells.describe("c1", operator))
    wait_for("KeyspaceReady to report the replication change",
             lambda: (cells.condition("c1", "KeyspaceReady") or {}).get("reason")
             == "ReplicationChanged", 60, lambda: cells.describe("c1", operator))
    assert "repair" in (cells.condition("c1", "KeyspaceReady") or {})["message"]


def test_delete_policy_drops_the_keyspace(cells: Cells, cql: Any, cassandra: Any,
                                          secrets: None, start_operator: Any, uid: str) -> None:
    operator = start_operator()
    keyspace = f"chat_t{uid}_d"
    cells.create(chatcell("c1", f"t{uid}-d", cassandra, keyspacePolicy="Delete"))
    cell = cells.wait_phase("c1", "Ready", operator)
    assert cell["metadata"]["finalizers"] == ["cellchat.io/drop-keyspace"]
    assert keyspace_replication(cql, keyspace) is not None

    cells.delete("c1")
    wait_for("the ChatCell to be gone", lambda: cells.get("c1") is None, 90,
             lambda: cells.describe("c1", operator))
    assert keyspace_replication(cql, keyspace) is None


def test_retain_policy_keeps_the_keyspace_and_needs_no_operator_to_delete(
        cells: Cells, cql: Any, cassandra: Any, secrets: None, start_operator: Any,
        uid: str) -> None:
    operator = start_operator()
    keyspace = f"chat_t{uid}_r"
    cells.create(chatcell("c1", f"t{uid}-r", cassandra, keyspacePolicy="Retain"))
    cell = cells.wait_phase("c1", "Ready", operator)
    assert not cell["metadata"].get("finalizers")

    # Switching to Delete adds the finalizer; switching back removes it again.
    cells.patch("c1", {"keyspacePolicy": "Delete"})
    wait_for("the finalizer to be added",
             lambda: (cells.get("c1") or {})["metadata"].get("finalizers"), 60,
             lambda: cells.describe("c1", operator))
    cells.patch("c1", {"keyspacePolicy": "Retain"})
    wait_for("the finalizer to be removed",
             lambda: not (cells.get("c1") or {})["metadata"].get("finalizers"), 60,
             lambda: cells.describe("c1", operator))

    operator.stop()  # a Retain cell must not depend on the operator to go away
    cells.delete("c1")
    wait_for("the ChatCell to be gone", lambda: cells.get("c1") is None, 15,
             lambda: cells.describe("c1"))
    assert keyspace_replication(cql, keyspace) == SIMPLE_1
    assert set(applied_versions(cql, keyspace)) == {m.version for m in load_migrations()}


def test_operator_killed_mid_reconcile_converges(
        api: Any, cells: Cells, cql: Any, cassandra: Any, namespace: str, secrets: None,
        start_operator: Any, uid: str) -> None:
    """Killed (SIGKILL) half-way: objects applied, the database credentials' Secret not there
    yet, so the keyspace is not created; kopf has persisted a retry. A new operator finishes."""
    first = start_operator()
    keyspace = f"chat_t{uid}_k"
    cells.create(chatcell("c1", f"t{uid}-k", cassandra, scylla={
        "contactPoints": [cassandra.host],
        "port": cassandra.port,
        "credentialsSecret": {"name": "late-credentials"},
        "replication": {"strategy": "SimpleStrategy", "replicationFactor": 1},
    }))
    wait_for("the operator to wait for the Secret",
             lambda: (cells.condition("c1", "KeyspaceReady") or {}).get("reason")
             == "SecretNotFound", 90, lambda: cells.describe("c1", first))
    assert cells.get("c1")["status"]["phase"] == "Reconciling"  # type: ignore[index]
    client.AppsV1Api(api).read_namespaced_deployment("c1-chat", namespace)  # step 2 done
    assert keyspace_replication(cql, keyspace) is None  # step 4 not
    first.kill()

    client.CoreV1Api(api).create_namespaced_secret(namespace, {
        "metadata": {"name": "late-credentials"},
        "stringData": {"username": "cellchat", "password": "x"},
    })
    second = start_operator()
    cell = cells.wait_phase("c1", "Ready", second)
    assert cell["status"]["observedGeneration"] == 1
    assert keyspace_replication(cql, keyspace) == SIMPLE_1
    assert max(applied_versions(cql, keyspace)) == LATEST


def test_operator_killed_while_migrating_converges(
        cells: Cells, cql: Any, cassandra: Any, secrets: None, start_operator: Any,
        uid: str) -> None:
    """Killed while applying the migrations, holding the runner's migration lock (an LWT row
    with a TTL). The next operator waits for the dead holder's lock to expire and finishes
    the migrations from where they stopped."""
    first = start_operator()
    keyspace = f"chat_t{uid}_m"
    cells.create(chatcell("c1", f"t{uid}-m", cassandra))

    def lock_held() -> bool:
        try:
            return cql.execute(f"SELECT owner FROM {keyspace}.schema_lock").one() is not None
        except (InvalidRequest, NoHostAvailable):
            # Not there yet, or being created right now ("Unknown CF" while the schema settles).
            return False

    wait_for("the operator to hold the migration lock", lock_held, 90, first.tail,
             interval=0.02)
    first.kill()
    recorded_when_killed = applied_versions(cql, keyspace)
    assert (cells.get("c1") or {}).get("status", {}).get("phase") != "Ready"
    second = start_operator()
    cell = cells.wait_phase("c1", "Ready", second, timeout=150)
    assert keyspace_replication(cql, keyspace) == SIMPLE_1
    assert set(applied_versions(cql, keyspace)) == {m.version for m in load_migrations()}
    assert cell["status"]["schemaVersion"] == LATEST
    print("migrations recorded when killed:", sorted(recorded_when_killed))


def test_drift_is_reported_and_repaired(cells: Cells, cql: Any, cassandra: Any,
                                        secrets: None, start_operator: Any, uid: str) -> None:
    operator = start_operator(drift_interval=2)
    keyspace = f"chat_t{uid}_x"
    cells.create(chatcell("c1", f"t{uid}-x", cassandra))
    cells.wait_phase("c1", "Ready", operator)
    wait_for("a first drift check", lambda: (cells.get("c1") or {})["status"].get(
        "lastVerifiedTime"), 30, lambda: cells.describe("c1", operator))

    # Dropped behind the operator's back: reported, then re-created and migrated again.
    cql.execute(f"DROP KEYSPACE {keyspace}", timeout=60)
    cell = wait_for("the drift report",
                    lambda: (c := cells.get("c1")) and (c["status"].get("drift") or {}).get(
                        "repaired") and c, 60, lambda: cells.describe("c1", operator))
    drift = cell["status"]["drift"]
    assert drift["findings"] == [f"keyspace {keyspace} does not exist"]
    assert drift["detectedTime"] <= drift["repairedTime"]
    assert cell["status"]["phase"] == "Ready"
    assert keyspace_replication(cql, keyspace) == SIMPLE_1
    assert set(applied_versions(cql, keyspace)) == {m.version for m in load_migrations()}

    # An applied migration that no longer matches cql/: reported, never "repaired".
    cql.execute(f"UPDATE {keyspace}.schema_migrations SET checksum = 'edited' "
                f"WHERE version = {LATEST}")
    cell = cells.wait_phase("c1", "Degraded", operator, timeout=60)
    migrations = conditions_of(cell)["MigrationsApplied"]
    assert (migrations["status"], migrations["reason"]) == ("False", "SchemaConflict")
    assert cell["status"]["drift"]["repaired"] is False
    assert "were changed after being applied" in cell["status"]["drift"]["findings"][0]
    assert applied_versions(cql, keyspace)[LATEST] == "edited"

    # Put right by hand: the next round notices and the cell is Ready again.
    (good,) = [m.checksum for m in load_migrations() if m.version == LATEST]
    cql.execute(f"UPDATE {keyspace}.schema_migrations SET checksum = %s WHERE version = %s",
                (good, LATEST))
    cell = cells.wait_phase("c1", "Ready", operator, timeout=60)
    assert cell["status"]["drift"]["repaired"] is False
    assert cell["status"]["drift"]["resolvedTime"] >= cell["status"]["drift"]["detectedTime"]


def test_specs_that_cannot_work_fail_without_endless_retries(
        cells: Cells, cql: Any, cassandra: Any, secrets: None, start_operator: Any,
        uid: str) -> None:
    operator = start_operator()
    # A data centre the database does not have: refused by Cassandra, not by the schema.
    cells.create(chatcell("c1", f"t{uid}-f", cassandra, scylla={
        "contactPoints": [cassandra.host], "port": cassandra.port,
        "replication": {"strategy": "NetworkTopologyStrategy", "dataCenters": {"nowhere": 3}},
    }))
    cell = cells.wait_phase("c1", "Failed", operator)
    ready = conditions_of(cell)["Ready"]
    assert ready["reason"] == "DatabaseRejected"
    assert "nowhere" in ready["message"]
    assert conditions_of(cell)["KeyspaceReady"]["status"] == "False"
    assert cell["status"]["observedGeneration"] == 1
    time.sleep(8)  # longer than the first backoffs: a retried handler would have run again
    assert operator.log.read_text().count("Handler 'reconcile_cell' failed permanently") == 1
    assert keyspace_replication(cql, f"chat_t{uid}_f") is None

    # Fixing the spec is what makes it go.
    cells.patch("c1", {"scylla": {"replication": {"dataCenters": {"nowhere": None,
                                                                   "datacenter1": 1}}}})
    cells.wait_phase("c1", "Ready", operator)

    # A second cell with the same cellId in the namespace would share the keyspace: refused.
    cells.create(chatcell("c2", f"t{uid}-f", cassandra))
    cell = cells.wait_phase("c2", "Failed", operator)
    ready = conditions_of(cell)["Ready"]
    assert ready["reason"] == "InvalidSpec"
    assert "already used by ChatCell c1" in ready["message"]
