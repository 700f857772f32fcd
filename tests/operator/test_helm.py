"""The Helm chart: `helm lint`, `helm template` validated offline against the Kubernetes
schemas (kubernetes-validate) and the ChatCell CRD, and `helm install` on a fresh API server,
CRD included."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.operator.cluster import (
    CHART,
    CRD_PATH,
    HELM_ENV,
    KUBE_VERSION,
    Cells,
    helm_template,
    wait_for,
)

pytestmark = pytest.mark.kube

CELL_SPEC = {
    "cellId": "demo",
    "scylla": {"contactPoints": ["scylla.db.svc"],
               "replication": {"strategy": "SimpleStrategy", "replicationFactor": 1}},
    "redis": {"url": "redis://redis.db.svc:6379/0"},
    "jwt": {"secretRef": {"name": "cellchat-jwt"}},
}


def helm(helm_binary: Path, *args: str, kubeconfig: Path | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **HELM_ENV}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run([str(helm_binary), *args], capture_output=True, text=True,
                          timeout=180, env=env, check=check)


def test_helm_lint(helm_binary: Path) -> None:
    for extra in ([], ["--set", "chatCell.enabled=true", "--set-json",
                       f"chatCell.spec={json.dumps(CELL_SPEC)}"]):
        result = helm(helm_binary, "lint", "--strict", str(CHART), *extra, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout


def test_helm_refuses_bad_values(helm_binary: Path) -> None:
    template = ("template", "x", str(CHART), "--kube-version", KUBE_VERSION)
    result = helm(helm_binary, *template, "--set", "operator.driftInterval=0", check=False)
    assert result.returncode != 0
    assert "driftInterval" in result.stderr
    result = helm(helm_binary, *template, "--set", "chatCell.enabled=true", check=False)
    assert result.returncode != 0
    assert "chatCell.spec is required" in result.stderr


def test_helm_template_is_valid_offline(helm_binary: Path) -> None:
    docs = helm_template(
        helm_binary, "cells", "--include-crds",
        "--set", "chatCell.enabled=true",
        "--set-json", f"chatCell.spec={json.dumps(CELL_SPEC)}",
        "--set-json", 'watchNamespaces=["cells","cells-2"]',
        "--set-json", 'rbac.secretNames=["scylla-user"]',
    )
    crd = yaml.safe_load(CRD_PATH.read_text())
    (version,) = crd["spec"]["versions"]
    chatcell_schema = version["schema"]["openAPIV3Schema"]
    kinds: list[str] = []
    for doc in docs:
        kinds.append(doc["kind"])
        if doc["kind"] == "ChatCell":
            jsonschema.Draft7Validator(chatcell_schema).validate(doc)
        else:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    assert sorted(kinds) == sorted([
        "CustomResourceDefinition", "ServiceAccount", "Deployment", "ChatCell",
        "Role", "RoleBinding", "Role", "RoleBinding",
    ])
    assert next(d for d in docs if d["kind"] == "CustomResourceDefinition") == crd

    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["cells", "cells-2"]
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): r for r in roles[0]["rules"]}
    # Least privilege: no wildcard, no delete, no cluster scope; secrets narrowed by name.
    assert all("*" not in r["verbs"] and "delete" not in r["verbs"] for r in rules.values())
    assert rules[(("",), ("secrets",))] == {
        "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
        "resourceNames": ["scylla-user"]}
    assert not any(d["kind"].startswith("Cluster") for d in docs)

    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["WATCH_NAMESPACE"] == "cells,cells-2"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["image"] == "cellchat:0.1.0"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


@pytest.fixture(scope="module")
def fresh_kube() -> Iterator[Any]:
    """An API server of its own: the install must create the CRD, not find it there."""
    from tests.infra import kube as kube_infra

    server = kube_infra.start(timeout=180)
    yield server
    server.stop()


def test_helm_install_creates_the_crd_the_operator_and_a_chatcell(
        helm_binary: Path, fresh_kube: Any) -> None:
    from kubernetes import client, config

    result = helm(
        helm_binary, "install", "chatcell", str(CHART),
        "--namespace", "cellchat", "--create-namespace",
        "--set", "chatCell.enabled=true", "--set", "chatCell.name=demo",
        "--set-json", f"chatCell.spec={json.dumps(CELL_SPEC)}",
        kubeconfig=fresh_kube.kubeconfig, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "STATUS: deployed" in result.stdout

    api = config.new_client_from_config(config_file=str(fresh_kube.kubeconfig))
    try:
        ext = client.ApiextensionsV1Api(api)
        crd = ext.read_custom_resource_definition("chatcells.cellchat.io")
        assert any(c.type == "Established" and c.status == "True"
                   for c in crd.status.conditions)
        name = "chatcell-chatcell-operator"
        client.CoreV1Api(api).read_namespaced_service_account(name, "cellchat")
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.read_namespaced_role(name, "cellchat")
        binding = rbac.read_namespaced_role_binding(name, "cellchat")
        assert binding.subjects[0].name == name
        deployment = client.AppsV1Api(api).read_namespaced_deployment(name, "cellchat")
        assert deployment.spec.template.spec.service_account_name == name
        cell = wait_for("the ChatCell from values", lambda: Cells(api, "cellchat").get("demo"),
                        10)
        assert cell["spec"]["cellId"] == "demo"
        assert cell["spec"]["keyspacePolicy"] == "Retain"

        status = helm(helm_binary, "status", "chatcell", "--namespace", "cellchat",
                      kubeconfig=fresh_kube.kubeconfig)
        assert "STATUS: deployed" in status.stdout
        upgrade = helm(helm_binary, "upgrade", "chatcell", str(CHART), "--namespace",
                       "cellchat", "--reuse-values", "--set", "operator.driftInterval=30",
                       kubeconfig=fresh_kube.kubeconfig, check=False)
        assert upgrade.returncode == 0, upgrade.stderr
    finally:
        api.close()
