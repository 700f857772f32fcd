"""Pure builders: a parsed ChatCell spec -> the manifests of the objects the cell needs.

Nothing here does I/O or reads the clock, so every manifest is unit-tested without a cluster
(and validated offline against the Kubernetes schemas). The operator server-side-applies
what these return, so a manifest names every field the operator owns and nothing else:
a field left out here is one the operator does not fight over.

Rules:
- Every object carries the same labels and a controller owner reference to the ChatCell, so
  deleting the ChatCell garbage-collects them.
- Non-secret settings live in one ConfigMap that both Deployments load; its content hash is a
  pod-template annotation, so a settings change rolls the pods like an image change does.
- Secrets never appear in a manifest: passwords and keys are mounted as files
  (``*_FILE`` variables), the Redis URL and the user name come from ``secretKeyRef``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs

from chatcell_operator import GROUP, KIND, VERSION
from chatcell_operator.spec import CellSpec, Workload

GRPC_PORT = 50051
WS_PORT = 8080
OPS_PORT = 9090
PRESENCE_PORT = 50061
RUN_AS = 10001  # the image's non-root user (see Dockerfile)
MANAGER = "chatcell-operator"
CONFIG_HASH_ANNOTATION = "cellchat.io/config-hash"
SECRETS_DIR = "/var/run/secrets/cellchat"


@attrs.frozen
class Owner:
    """The ChatCell that owns the objects (its uid comes from the API server)."""

    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def chat_name(cell: CellSpec) -> str:
    return f"{cell.name}-chat"


def presence_name(cell: CellSpec) -> str:
    return f"{cell.name}-presence"


def config_name(cell: CellSpec) -> str:
    return f"{cell.name}-config"


def presence_address(cell: CellSpec) -> str:
    return f"{presence_name(cell)}.{cell.namespace}.svc:{PRESENCE_PORT}"


def selector_labels(cell: CellSpec, component: str) -> dict[str, str]:
    """The labels a Deployment selects on: immutable once created, so keep them few."""
    return {
        "app.kubernetes.io/name": "cellchat",
        "app.kubernetes.io/instance": cell.name,
        "app.kubernetes.io/component": component,
    }


def labels(cell: CellSpec, component: str) -> dict[str, str]:
    return {
        **selector_labels(cell, component),
        "app.kubernetes.io/part-of": "cellchat",
        "app.kubernetes.io/managed-by": MANAGER,
        "cellchat.io/cell": cell.cell_id,
    }


def _metadata(cell: CellSpec, owner: Owner, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": cell.namespace,
        "labels": labels(cell, component),
        "ownerReferences": [owner.reference()],
    }


def settings(cell: CellSpec) -> dict[str, str]:
    """The services' non-secret settings (environment variables), shared by both Deployments."""
    data = {
        "CELL_ID": cell.cell_id,
        "SCYLLA_HOSTS": ",".join(cell.scylla.contact_points),
        "SCYLLA_PORT": str(cell.scylla.port),
        "SCYLLA_KEYSPACE": cell.keyspace,
        # The operator creates the keyspace and applies the migrations before the pods need
        # them; replicas starting together must not race to do it themselves.
        "MIGRATE_ON_START": "false",
        "JWT_ALGORITHMS": ",".join(cell.jwt.algorithms),
        "JWT_ISSUER": cell.jwt.issuer,
        "JWT_AUDIENCE": cell.jwt.audience,
        "BIND_HOST": "0.0.0.0",
        "GRPC_PORT": str(GRPC_PORT),
        "WS_PORT": str(WS_PORT),
        "OPS_PORT": str(OPS_PORT),
        "PRESENCE_PORT": str(PRESENCE_PORT),
        "PRESENCE_ADDR": presence_address(cell),
    }
    if cell.redis.url:
        data["REDIS_URL"] = cell.redis.url
    return data


def config_hash(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def config_map(cell: CellSpec, owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(cell, owner, config_name(cell), "config"),
        "data": settings(cell),
    }


def _secret_env_and_mounts(cell: CellSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                      list[dict[str, Any]]]:
    """Environment, volumes and mounts that bring the cell's Secrets in."""
    env: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]

    creds = cell.scylla.credentials
    if creds is not None:
        env.append({
            "name": "SCYLLA_USERNAME",
            "valueFrom": {"secretKeyRef": {"name": creds.secret, "key": creds.username_key}},
        })
        env.append({"name": "SCYLLA_PASSWORD_FILE", "value": f"{SECRETS_DIR}/scylla/password"})
        volumes.append({
            "name": "scylla-credentials",
            "secret": {
                "secretName": creds.secret,
                "items": [{"key": creds.password_key, "path": "password"}],
                "defaultMode": 0o440,
            },
        })
        mounts.append({
            "name": "scylla-credentials", "mountPath": f"{SECRETS_DIR}/scylla", "readOnly": True,
        })

    jwt_variable = "JWT_SECRET_FILE" if cell.jwt.symmetric else "JWT_PUBLIC_KEY_FILE"
    env.append({"name": jwt_variable, "value": f"{SECRETS_DIR}/jwt/key"})
    volumes.append({
        "name": "jwt",
        "secret": {
            "secretName": cell.jwt.secret.name,
            "items": [{"key": cell.jwt.secret.key, "path": "key"}],
            "defaultMode": 0o440,
        },
    })
    mounts.append({"name": "jwt", "mountPath": f"{SECRETS_DIR}/jwt", "readOnly": True})
    if cell.jwt.signing is not None:
        # Replicas sign their service tokens to the presence service with it.
        env.append({"name": "JWT_SIGNING_KEY_FILE", "value": f"{SECRETS_DIR}/jwt-signing/key"})
        volumes.append({
            "name": "jwt-signing",
            "secret": {
                "secretName": cell.jwt.signing.name,
                "items": [{"key": cell.jwt.signing.key, "path": "key"}],
                "defaultMode": 0o440,
            },
        })
        mounts.append({
            "name": "jwt-signing", "mountPath": f"{SECRETS_DIR}/jwt-signing", "readOnly": True,
        })

    if cell.redis.secret is not None:
        env.append({
            "name": "REDIS_URL",
            "valueFrom": {"secretKeyRef": {"name": cell.redis.secret.name,
                                           "key": cell.redis.secret.key}},
        })
    return env, volumes, mounts


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "ops"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _deployment(
    cell: CellSpec,
    owner: Owner,
    *,
    name: str,
    component: str,
    service_name: str,
    workload: Workload,
    command: list[str],
    ports: list[dict[str, Any]],
) -> dict[str, Any]:
    secret_env, volumes, mounts = _secret_env_and_mounts(cell)
    container: dict[str, Any] = {
        "name": component,
        "image": workload.image,
        "imagePullPolicy": cell.image_pull_policy,
        "command": command,
        "env": [
            {"name": "SERVICE_NAME", "value": service_name},
            {"name": "CELL_ID", "value": cell.cell_id},
            *secret_env,
        ],
        "envFrom": [{"configMapRef": {"name": config_name(cell)}}],
        "ports": ports,
        "readinessProbe": _probe("/readyz", 5, 3),
        "livenessProbe": _probe("/healthz", 10, 6),
        "startupProbe": _probe("/healthz", 2, 30),
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    resources = workload.resources.as_manifest()
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(cell, component)},
        }],
    }
    if cell.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in cell.image_pull_secrets]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(cell, owner, name, component),
        "spec": {
            "replicas": workload.replicas,
            "selector": {"matchLabels": selector_labels(cell, component)},
            # Never below the desired count during a roll-out: chat connections are long-lived
            # and a replica going away costs every client on it a reconnect.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels(cell, component),
                    "annotations": {CONFIG_HASH_ANNOTATION: config_hash(settings(cell))},
                },
                "spec": pod_spec,
            },
        },
    }


def chat_deployment(cell: CellSpec, owner: Owner) -> dict[str, Any]:
    return _deployment(
        cell, owner,
        name=chat_name(cell),
        component="chat",
        service_name="chat-service",
        workload=cell.chat,
        command=["cellchat", "run"],
        ports=[
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "ws", "containerPort": WS_PORT, "protocol": "TCP"},
            {"name": "ops", "containerPort": OPS_PORT, "protocol": "TCP"},
        ],
    )


def presence_deployment(cell: CellSpec, owner: Owner) -> dict[str, Any]:
    return _deployment(
        cell, owner,
        name=presence_name(cell),
        component="presence",
        service_name="presence-service",
        workload=cell.presence,
        command=["cellchat", "presence"],
        ports=[
            {"name": "grpc", "containerPort": PRESENCE_PORT, "protocol": "TCP"},
            {"name": "ops", "containerPort": OPS_PORT, "protocol": "TCP"},
        ],
    )


def _service(cell: CellSpec, owner: Owner, name: str, component: str,
             ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(cell, owner, name, component),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(cell, component),
            "ports": ports,
        },
    }


def chat_service(cell: CellSpec, owner: Owner) -> dict[str, Any]:
    return _service(cell, owner, chat_name(cell), "chat", [
        {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP",
         "appProtocol": "kubernetes.io/h2c"},
        {"name": "ws", "port": WS_PORT, "targetPort": "ws", "protocol": "TCP",
         "appProtocol": "kubernetes.io/ws"},
    ])


def presence_service(cell: CellSpec, owner: Owner) -> dict[str, Any]:
    return _service(cell, owner, presence_name(cell), "presence", [
        {"name": "grpc", "port": PRESENCE_PORT, "targetPort": "grpc", "protocol": "TCP",
         "appProtocol": "kubernetes.io/h2c"},
    ])


def _pdb(cell: CellSpec, owner: Owner, name: str, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(cell, owner, name, component),
        "spec": {
            # One pod at a time: voluntary evictions (node drains) then behave like the
            # Deployment's own roll-out, whatever the replica count.
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(cell, component)},
        },
    }


def chat_pdb(cell: CellSpec, owner: Owner) -> dict[str, Any]:
    return _pdb(cell, owner, chat_name(cell), "chat")


def presence_pdb(cell: CellSpec, owner: Owner) -> dict[str, Any]:
    return _pdb(cell, owner, presence_name(cell), "presence")


def build_all(cell: CellSpec, owner: Owner) -> list[dict[str, Any]]:
    """Every object of the cell, in the order they are applied (config before its readers,
    presence before the chat replicas that connect to it)."""
    return [
        config_map(cell, owner),
        presence_service(cell, owner),
        chat_service(cell, owner),
        presence_pdb(cell, owner),
        chat_pdb(cell, owner),
        presence_deployment(cell, owner),
        chat_deployment(cell, owner),
    ]
