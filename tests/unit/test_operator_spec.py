"""The ChatCell spec parser: defaults, the checks the CRD schema also makes, and the ones
it cannot make alone."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chatcell_operator.spec import InvalidSpec, parse

MINIMAL: dict[str, Any] = {
    "cellId": "cell-1",
    "scylla": {
        "contactPoints": ["10.0.0.5"],
        "replication": {"strategy": "SimpleStrategy", "replicationFactor": 1},
    },
    "redis": {"url": "redis://redis:6379/0"},
    "jwt": {"secretRef": {"name": "jwt"}},
}


def with_(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(MINIMAL)
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return spec


def test_minimal_spec_gets_the_crd_defaults() -> None:
    cell = parse(MINIMAL, name="c1", namespace="ns")
    assert cell.keyspace == "chat_cell_1"
    assert cell.chat.replicas == 2
    assert cell.presence.replicas == 1
    assert cell.chat.image == cell.presence.image == "cellchat:0.1.0"
    assert cell.scylla.port == 9042
    assert cell.scylla.credentials is None
    assert cell.jwt.algorithms == ("HS256",)
    assert cell.jwt.symmetric
    assert cell.jwt.secret.key == "jwt"
    assert cell.keyspace_policy == "Retain"
    assert cell.scylla.replication.as_cql_map() == {
        "class": "SimpleStrategy", "replication_factor": 1,
    }


def test_network_topology_replication_map() -> None:
    spec = with_("scylla.replication", {"strategy": "NetworkTopologyStrategy",
                                        "dataCenters": {"dc2": 3, "dc1": 2}})
    cell = parse(spec, name="c1", namespace="ns")
    assert cell.scylla.replication.as_cql_map() == {
        "class": "NetworkTopologyStrategy", "dc1": 2, "dc2": 3,
    }


def test_per_workload_image_overrides_the_cell_image() -> None:
    spec = with_("image", "reg/cellchat:2")
    spec["chat"] = {"image": "reg/cellchat:3-canary", "replicas": 5}
    cell = parse(spec, name="c1", namespace="ns")
    assert cell.chat.image == "reg/cellchat:3-canary"
    assert cell.chat.replicas == 5
    assert cell.presence.image == "reg/cellchat:2"


def test_credentials_keys() -> None:
    spec = with_("scylla.credentialsSecret", {"name": "db", "usernameKey": "u"})
    creds = parse(spec, name="c1", namespace="ns").scylla.credentials
    assert creds is not None
    assert (creds.secret, creds.username_key, creds.password_key) == ("db", "u", "password")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("cellId", "Cell_1", "spec.cellId"),
        ("cellId", "-x", "spec.cellId"),
        ("cellId", None, "spec.cellId is required"),
        ("chat", {"replicas": -1}, "spec.chat.replicas"),
        ("chat", {"replicas": True}, "spec.chat.replicas must be an integer"),
        ("scylla.contactPoints", [], "at least one host"),
        ("scylla.contactPoints", ["bad host"], "not a host name"),
        ("scylla.port", 70000, "spec.scylla.port"),
        ("scylla.replication", {"strategy": "SimpleStrategy"}, "replicationFactor is required"),
        ("scylla.replication", {"strategy": "SimpleStrategy", "replicationFactor": 3,
                                "dataCenters": {"dc1": 3}}, "not dataCenters"),
        ("scylla.replication", {"strategy": "NetworkTopologyStrategy"}, "at least one data"),
        ("scylla.replication", {"strategy": "NetworkTopologyStrategy",
                                "dataCenters": {"dc1": 0}}, "between 1 and 10"),
        ("scylla.replication", {"strategy": "EverywhereStrategy"}, "strategy must be"),
        ("redis", {}, "exactly one of url or secretRef"),
        ("redis", {"url": "redis://r", "secretRef": {"name": "r"}}, "exactly one"),
        ("redis", {"url": "http://r"}, "must start with redis://"),
        ("jwt", {"algorithms": ["HS256", "RS256"], "secretRef": {"name": "j"}}, "must not mix"),
        ("jwt", {"algorithms": ["none"], "secretRef": {"name": "j"}}, "not supported"),
        ("jwt", {"algorithms": ["RS256"]}, "spec.jwt.secretRef is required"),
        ("keyspacePolicy", "Orphan", "Retain or Delete"),
    ],
)
def test_invalid_specs_name_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse(with_(path, value), name="c1", namespace="ns")


@pytest.mark.parametrize("name", ["1cell", "Cell", "a" * 51, "cell-"])
def test_names_that_cannot_prefix_a_service_are_refused(name: str) -> None:
    with pytest.raises(InvalidSpec, match=r"metadata\.name"):
        parse(MINIMAL, name=name, namespace="ns")
