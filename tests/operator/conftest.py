"""Operator tests: a real kube-apiserver + etcd, a real Cassandra node, the operator as a process.

- ``kube`` (session): the API server from tests/infra/kube.py with the ChatCell CRD installed.
- ``namespace``: a fresh namespace per test.
- ``operator_kubeconfig``: the operator's credentials in that namespace: the chart's own
  ServiceAccount, Role and RoleBinding (rendered by ``helm template``) and a token for the
  ServiceAccount. So every test also proves the chart's RBAC is enough, and nothing more is
  needed: the operator never runs as an admin here.
- ``start_operator``: runs ``python -m chatcell_operator`` with those credentials; stopped at
  the end of the test (SIGKILL on request, to test restarts).

kopf is asyncio and the tests are plain synchronous functions that poll with explicit
timeouts (``wait_for``); nothing here runs inside Trio.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.operator.cluster import (
    CRD_PATH,
    ROOT,
    SERVICE_ACCOUNT,
    Cells,
    OperatorProcess,
    create_objects,
    helm_template,
    wait_for,
)


def install_crd(api: Any) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext = client.ApiextensionsV1Api(api)
    body = yaml.safe_load(CRD_PATH.read_text())
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise

    def established() -> bool:
        crd = ext.read_custom_resource_definition(body["metadata"]["name"])
        return any(c.type == "Established" and c.status == "True"
                   for c in (crd.status.conditions or []))

    wait_for("the ChatCell CRD to be established", established, 60)


@pytest.fixture(scope="session")
def kube() -> Iterator[Any]:
    from tests.infra import kube as kube_infra

    server = kube_infra.start(timeout=180)
    try:
        from kubernetes import config

        api = config.new_client_from_config(config_file=str(server.kubeconfig))
        install_crd(api)
        api.close()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def api(kube: Any) -> Iterator[Any]:
    """An admin client (the test's own view of the cluster)."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(kube.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    from tests.infra import kube as kube_infra

    return kube_infra.build()["helm"]


@pytest.fixture(scope="session")
def cql(cassandra: Any) -> Iterator[Any]:
    """The test's own CQL session, to look at (and tamper with) what the operator did."""
    from cassandra.cluster import Cluster

    cluster = Cluster([cassandra.host], port=cassandra.port)
    session = cluster.connect()
    yield session
    cluster.shutdown()


@pytest.fixture
def namespace(api: Any, uid: str) -> Iterator[str]:
    from kubernetes import client

    name = f"op-{uid}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    yield name
    # Without kube-controller-manager a namespace never finishes terminating; its objects
    # are simply left behind in the throw-away etcd.
    client.CoreV1Api(api).delete_namespace(name)


@pytest.fixture
def operator_kubeconfig(kube: Any, api: Any, helm_binary: Path, namespace: str,
                        tmp_path: Path) -> Path:
    from kubernetes import client

    rbac = helm_template(helm_binary, namespace,
                         "--show-only", "templates/serviceaccount.yaml",
                         "--show-only", "templates/rbac.yaml")
    assert sorted(m["kind"] for m in rbac) == ["Role", "RoleBinding", "ServiceAccount"]
    create_objects(api, rbac)
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        SERVICE_ACCOUNT, namespace, {"spec": {"expirationSeconds": 7200}}
    ).status.token
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    path = tmp_path / "operator.kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {
            "cluster": admin["clusters"][0]["name"], "user": "operator",
            "namespace": namespace}}],
        "current-context": "operator",
    }))
    return path


@pytest.fixture
def start_operator(operator_kubeconfig: Path, namespace: str,
                   tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    from tests.infra.ports import spawn

    started: list[OperatorProcess] = []

    def start(drift_interval: float = 60) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started) + 1}.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(operator_kubeconfig),
            "CHATCELL_DRIFT_INTERVAL": str(drift_interval),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("KUBERNETES_SERVICE_HOST", None)
        managed = spawn(
            [sys.executable, "-m", "chatcell_operator", "--namespace", namespace,
             "--liveness", "", "--verbose"],
            log, env=env, cwd=ROOT,
        )
        process = OperatorProcess(managed, log)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def secrets(api: Any, namespace: str) -> None:
    """The Secrets a test ChatCell refers to: a JWT key and database credentials."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "cellchat-jwt"},
        "stringData": {"jwt": "test-secret-not-for-production"},
    })
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "scylla-user"},
        "stringData": {"username": "cellchat", "password": "not-checked-by-the-test-node"},
    })


@pytest.fixture
def cells(api: Any, namespace: str) -> Cells:
    return Cells(api, namespace)


