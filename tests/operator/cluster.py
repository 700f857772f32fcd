"""What the operator tests share: polling with a deadline, ChatCell bodies, the test's view of
ChatCells and the operator process, and ``helm template``."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "chatcell.yaml"
CHART = ROOT / "helm" / "chatcell"
GROUP, VERSION, PLURAL = "cellchat.io", "v1alpha1", "chatcells"
RELEASE = "test"  # the Helm release name the RBAC is rendered for
SERVICE_ACCOUNT = f"{RELEASE}-chatcell-operator"
KUBE_VERSION = "1.35.0"  # what tests/infra/kube.py builds
HELM_ENV = {"HELM_CACHE_HOME": "/tmp/cellchat-helm/cache",
            "HELM_CONFIG_HOME": "/tmp/cellchat-helm/config",
            "HELM_DATA_HOME": "/tmp/cellchat-helm/data"}


def wait_for(what: str, check: Callable[[], Any], timeout: float,
             describe: Callable[[], str] | None = None, interval: float = 0.25) -> Any:
    """Poll `check` until it returns something truthy; fail with `describe()` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = describe() if describe is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{detail}")
        time.sleep(interval)


def helm_template(helm_binary: Path, namespace: str, *args: str,
                  env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    out = subprocess.run(
        # --kube-version: a helm built with `go install` (no release ldflags) assumes 1.20,
        # older than the chart's kubeVersion.
        [str(helm_binary), "template", RELEASE, str(CHART), "--namespace", namespace,
         "--kube-version", KUBE_VERSION, *args],
        check=True, capture_output=True, text=True, timeout=60,
        env={**os.environ, **HELM_ENV, **(env or {})},
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def create_objects(api: Any, manifests: list[dict[str, Any]]) -> None:
    from kubernetes import utils

    for manifest in manifests:
        utils.create_from_dict(api, manifest)


class OperatorProcess:
    def __init__(self, managed: Any, log: Path) -> None:
        self._managed = managed
        self.log = log

    def running(self) -> bool:
        return bool(self._managed.running())

    def stop(self) -> None:
        self._managed.kill(signal.SIGTERM, grace=15)

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no last status write."""
        self._managed.kill(signal.SIGKILL)

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "--- operator log (tail) ---\n" + "\n".join(text[-lines:])


def chatcell(name: str, cell_id: str, cassandra: Any, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ChatCell",
        "metadata": {"name": name},
        "spec": {
            "cellId": cell_id,
            "scylla": {
                "contactPoints": [cassandra.host],
                "port": cassandra.port,
                "replication": {"strategy": "SimpleStrategy", "replicationFactor": 1},
            },
            "redis": {"url": "redis://redis.cellchat.svc:6379/0"},
            "jwt": {"secretRef": {"name": "cellchat-jwt"}},
        },
    }
    body["spec"].update(spec)
    return body


class Cells:
    """ChatCells in one namespace, through the admin client."""

    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes import client

        self.namespace = namespace
        self._custom = client.CustomObjectsApi(api)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body))

    def get(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return dict(self._custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(self._custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec},
            _content_type="application/merge-patch+json"))

    def delete(self, name: str) -> None:
        self._custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                     name)

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        cell = self.get(name) or {}
        for c in (cell.get("status") or {}).get("conditions", []):
            if c["type"] == type_:
                return dict(c)
        return None

    def describe(self, name: str, operator: OperatorProcess | None = None) -> str:
        cell = self.get(name)
        status = json.dumps((cell or {}).get("status"), indent=1) if cell else "<gone>"
        return f"ChatCell {name} status: {status}\n" + (operator.tail() if operator else "")

    def wait_phase(self, name: str, phase: str, operator: OperatorProcess | None,
                   timeout: float = 120) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            cell = self.get(name)
            if cell is not None and (cell.get("status") or {}).get("phase") == phase:
                return cell
            return None

        return dict(wait_for(f"ChatCell {name} to be {phase}", reached, timeout,
                             lambda: self.describe(name, operator)))


def keyspace_replication(cql: Any, keyspace: str) -> dict[str, str] | None:
    row = cql.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (keyspace,)
    ).one()
    return dict(row[0]) if row is not None else None


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
