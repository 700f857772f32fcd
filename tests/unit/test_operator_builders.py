"""Pure builders: spec -> manifests. Checked field by field and against the Kubernetes
schemas (offline, kubernetes-validate), without a cluster."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from chatcell_operator import builders
from chatcell_operator.builders import Owner
from chatcell_operator.spec import CellSpec, parse

KUBE_VERSION = "1.35"
OWNER = Owner(name="c1", uid="2b6c3c2e-0d3f-4a57-9b0c-7f8e8a1d9e10")
SPEC: dict[str, Any] = {
    "cellId": "cell-1",
    "image": "reg/cellchat:1.2.3",
    "chat": {"replicas": 3,
             "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}},
    "presence": {"replicas": 2},
    "scylla": {
        "contactPoints": ["scylla-0", "scylla-1"],
        "port": 19042,
        "credentialsSecret": {"name": "db"},
        "replication": {"strategy": "SimpleStrategy", "replicationFactor": 3},
    },
    "redis": {"url": "redis://redis:6379/0"},
    "jwt": {"algorithms": ["HS256"], "issuer": "iss", "audience": "aud",
            "secretRef": {"name": "jwt", "key": "secret"}},
}


def cell(**changes: Any) -> CellSpec:
    spec = copy.deepcopy(SPEC)
    spec.update(changes)
    return parse(spec, name="c1", namespace="ns")


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def by_kind(manifests: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


def test_every_manifest_is_valid_for_kubernetes() -> None:
    for spec_changes in ({}, {"redis": {"secretRef": {"name": "r", "key": "url"}}},
                         {"jwt": {"algorithms": ["RS256"], "secretRef": {"name": "k"},
                                  "signingSecretRef": {"name": "k"}}}):
        for manifest in builders.build_all(cell(**spec_changes), OWNER):
            kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)


def test_the_cell_has_two_deployments_two_services_a_config_map_and_two_pdbs() -> None:
    names = sorted(by_kind(builders.build_all(cell(), OWNER)))
    assert names == [
        ("ConfigMap", "c1-config"),
        ("Deployment", "c1-chat"),
        ("Deployment", "c1-presence"),
        ("PodDisruptionBudget", "c1-chat"),
        ("PodDisruptionBudget", "c1-presence"),
        ("Service", "c1-chat"),
        ("Service", "c1-presence"),
    ]
    for manifest in builders.build_all(cell(), OWNER):
        meta = manifest["metadata"]
        assert meta["namespace"] == "ns"
        assert meta["ownerReferences"] == [{
            "apiVersion": "cellchat.io/v1alpha1", "kind": "ChatCell", "name": "c1",
            "uid": OWNER.uid, "controller": True, "blockOwnerDeletion": True,
        }]
        assert meta["labels"]["cellchat.io/cell"] == "cell-1"


def test_config_map_holds_the_connection_settings() -> None:
    data = builders.config_map(cell(), OWNER)["data"]
    assert data["CELL_ID"] == "cell-1"
    assert data["SCYLLA_HOSTS"] == "scylla-0,scylla-1"
    assert data["SCYLLA_PORT"] == "19042"
    assert data["SCYLLA_KEYSPACE"] == "chat_cell_1"
    assert data["MIGRATE_ON_START"] == "false"
    assert data["REDIS_URL"] == "redis://redis:6379/0"
    assert data["JWT_ALGORITHMS"] == "HS256"
    assert (data["JWT_ISSUER"], data["JWT_AUDIENCE"]) == ("iss", "aud")
    assert data["BIND_HOST"] == "0.0.0.0"
    assert (data["GRPC_PORT"], data["WS_PORT"], data["OPS_PORT"], data["PRESENCE_PORT"]) == (
        "50051", "8080", "9090", "50061")
    assert data["PRESENCE_ADDR"] == "c1-presence.ns.svc:50061"


def test_chat_deployment() -> None:
    deployment = builders.chat_deployment(cell(), OWNER)
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "reg/cellchat:1.2.3"
    assert container["command"] == ["cellchat", "run"]
    assert container["envFrom"] == [{"configMapRef": {"name": "c1-config"}}]
    env = env_of(deployment)
    assert env["SERVICE_NAME"] == "chat-service"
    assert env["CELL_ID"] == "cell-1"
    assert env["SCYLLA_USERNAME"] == {"secretKeyRef": {"name": "db", "key": "username"}}
    assert env["SCYLLA_PASSWORD_FILE"] == "/var/run/secrets/cellchat/scylla/password"
    assert env["JWT_SECRET_FILE"] == "/var/run/secrets/cellchat/jwt/key"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "grpc": 50051, "ws": 8080, "ops": 9090}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
    assert container["resources"] == {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"][
        "labels"].items()
    # Non-root, read-only, no privileges, whatever the image says.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["scylla-credentials"]["secret"]["items"] == [
        {"key": "password", "path": "password"}]
    assert volumes["jwt"]["secret"] == {
        "secretName": "jwt", "items": [{"key": "secret", "path": "key"}], "defaultMode": 0o440}


def test_presence_deployment() -> None:
    deployment = builders.presence_deployment(cell(), OWNER)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert container["command"] == ["cellchat", "presence"]
    assert env_of(deployment)["SERVICE_NAME"] == "presence-service"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "grpc": 50061, "ops": 9090}


def test_no_secret_value_or_password_ever_reaches_a_manifest() -> None:
    spec = copy.deepcopy(SPEC)
    spec["redis"] = {"secretRef": {"name": "redis-secret", "key": "u"}}
    manifests = builders.build_all(parse(spec, name="c1", namespace="ns"), OWNER)
    data = builders.config_map(parse(spec, name="c1", namespace="ns"), OWNER)["data"]
    assert "REDIS_URL" not in data
    chat = next(m for m in manifests if m["kind"] == "Deployment")
    assert env_of(chat)["REDIS_URL"] == {"secretKeyRef": {"name": "redis-secret", "key": "u"}}


def test_public_key_algorithms_mount_a_public_key() -> None:
    deployment = builders.chat_deployment(
        cell(jwt={"algorithms": ["ES256"], "secretRef": {"name": "k", "key": "pub.pem"},
                  "signingSecretRef": {"name": "k"}}), OWNER)
    env = env_of(deployment)
    assert env["JWT_PUBLIC_KEY_FILE"] == "/var/run/secrets/cellchat/jwt/key"
    assert "JWT_SECRET_FILE" not in env


def test_no_credentials_secret_means_no_database_login() -> None:
    spec = copy.deepcopy(SPEC)
    del spec["scylla"]["credentialsSecret"]
    deployment = builders.chat_deployment(parse(spec, name="c1", namespace="ns"), OWNER)
    env = env_of(deployment)
    assert "SCYLLA_USERNAME" not in env
    assert "SCYLLA_PASSWORD_FILE" not in env
    kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


def test_a_settings_change_rolls_the_pods_and_a_scale_does_not() -> None:
    def config_hash(c: CellSpec) -> str:
        template = builders.chat_deployment(c, OWNER)["spec"]["template"]
        return str(template["metadata"]["annotations"][builders.CONFIG_HASH_ANNOTATION])

    base = config_hash(cell())
    assert config_hash(cell(redis={"url": "redis://other:6379/0"})) != base
    assert config_hash(cell(chat={"replicas": 7})) == base


def test_services_select_their_deployments_pods() -> None:
    c = cell()
    for service, deployment in (
        (builders.chat_service(c, OWNER), builders.chat_deployment(c, OWNER)),
        (builders.presence_service(c, OWNER), builders.presence_deployment(c, OWNER)),
    ):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        container_ports = {p["name"] for p in deployment["spec"]["template"]["spec"][
            "containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    assert {p["name"]: p["port"] for p in builders.chat_service(c, OWNER)["spec"]["ports"]} == {
        "grpc": 50051, "ws": 8080}


def test_pdbs_allow_one_pod_at_a_time() -> None:
    c = cell()
    for pdb, deployment in (
        (builders.chat_pdb(c, OWNER), builders.chat_deployment(c, OWNER)),
        (builders.presence_pdb(c, OWNER), builders.presence_deployment(c, OWNER)),
    ):
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


@pytest.mark.parametrize("replicas", [0, 1, 100])
def test_replicas_pass_through(replicas: int) -> None:
    assert builders.chat_deployment(cell(chat={"replicas": replicas}), OWNER)["spec"][
        "replicas"] == replicas


def test_public_key_cells_mount_a_signing_key_for_service_tokens() -> None:
    from chatcell_operator.spec import InvalidSpec

    public = {"algorithms": ["RS256"], "secretRef": {"name": "jwt-pub"}}
    with pytest.raises(InvalidSpec, match="signingSecretRef is required"):
        cell(jwt=public)
    with pytest.raises(InvalidSpec, match="not allowed"):
        cell(jwt={**SPEC["jwt"], "signingSecretRef": {"name": "jwt-private"}})
    signed = cell(jwt={**public, "signingSecretRef": {"name": "jwt-private"}})
    env = env_of(builders.chat_deployment(signed, OWNER))
    assert env["JWT_PUBLIC_KEY_FILE"].endswith("/jwt/key")
    assert env["JWT_SIGNING_KEY_FILE"].endswith("/jwt-signing/key")
    volumes = builders.chat_deployment(signed, OWNER)["spec"]["template"]["spec"]["volumes"]
    assert {"key": "signing-key", "path": "key"} in [
        item for v in volumes if v["name"] == "jwt-signing" for item in v["secret"]["items"]]
    assert "JWT_SIGNING_KEY_FILE" not in env_of(builders.chat_deployment(cell(), OWNER))
