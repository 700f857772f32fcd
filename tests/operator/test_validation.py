"""The API server itself refuses bad ChatCells, with messages that name the problem (the CRD's
openAPIV3Schema and its CEL rules), and fills in the documented defaults. No operator runs:
this is the CRD's behaviour alone."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.operator.cluster import Cells

pytestmark = pytest.mark.kube

GOOD: dict[str, Any] = {
    "apiVersion": "cellchat.io/v1alpha1",
    "kind": "ChatCell",
    "metadata": {"name": "c1"},
    "spec": {
        "cellId": "cell-1",
        "scylla": {"contactPoints": ["scylla-0.db"],
                   "replication": {"strategy": "SimpleStrategy", "replicationFactor": 3}},
        "redis": {"url": "redis://redis:6379/0"},
        "jwt": {"secretRef": {"name": "jwt"}},
    },
}


def refusal(cells: Cells, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as caught:
        cells.create(body)
    assert caught.value.status == 422, caught.value.body
    return str(json.loads(caught.value.body)["message"])


def changed(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("spec.scylla.replication", {"strategy": "SimpleStrategy"},
         "spec.scylla.replication: Invalid value: SimpleStrategy takes replicationFactor"),
        ("spec.scylla.replication", {"strategy": "NetworkTopologyStrategy",
                                     "replicationFactor": 3},
         "NetworkTopologyStrategy takes dataCenters"),
        ("spec.scylla.replication", {"strategy": "NetworkTopologyStrategy",
                                     "dataCenters": {"dc 1": 3}},
         "data centre names hold letters"),
        ("spec.redis", {"url": "redis://r", "secretRef": {"name": "r"}},
         "redis: set exactly one of url or secretRef"),
        ("spec.jwt", {"algorithms": ["HS256", "RS256"], "secretRef": {"name": "j"}},
         "jwt.algorithms must not mix HMAC"),
        ("spec.jwt", {"algorithms": ["RS256"], "secretRef": {"name": "j"}},
         "jwt.signingSecretRef is required with public-key algorithms"),
        ("spec.cellId", "Cell_1", "spec.cellId in body should match"),
        ("spec.cellId", "c" * 41, "spec.cellId: Too long"),
        ("spec.chat", {"replicas": 101}, "spec.chat.replicas in body should be less than"),
        ("spec.keyspacePolicy", "Orphan", 'spec.keyspacePolicy: Unsupported value: "Orphan"'),
        ("spec.scylla", None, "spec.scylla: Required value"),
        ("metadata.name", "1-cell", "metadata.name must start with a letter"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(cells: Cells, path: str, value: Any,
                                                    expected: str) -> None:
    assert expected in refusal(cells, changed(path, value))


def test_defaults_are_filled_in_and_cell_id_is_immutable(cells: Cells) -> None:
    spec = cells.create(copy.deepcopy(GOOD))["spec"]
    assert spec["image"] == "cellchat:0.1.0"
    assert spec["imagePullPolicy"] == "IfNotPresent"
    assert spec["chat"]["replicas"] == 2
    assert spec["presence"]["replicas"] == 1
    assert spec["chat"]["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert spec["scylla"]["port"] == 9042
    assert spec["keyspacePolicy"] == "Retain"
    assert spec["jwt"] == {"algorithms": ["HS256"], "issuer": "cellchat",
                           "audience": "cellchat", "secretRef": {"name": "jwt", "key": "jwt"}}

    with pytest.raises(ApiException) as caught:
        cells.patch("c1", {"cellId": "cell-2"})
    assert caught.value.status == 422
    assert "cellId is immutable" in json.loads(caught.value.body)["message"]
    cells.patch("c1", {"chat": {"replicas": 4}})  # everything else may change
