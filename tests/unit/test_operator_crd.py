"""The ChatCell CRD as a file: valid for Kubernetes, shipped identically by the chart, every
spec field documented in docs/crd.md, and the documented example valid and reconcilable.

The API server's own verdicts (CEL rules, defaulting) are tested in tests/operator/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from chatcell_operator import GROUP, KIND, PLURAL, VERSION, builders
from chatcell_operator.spec import parse

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "chatcell.yaml"
CHART_CRD_PATH = ROOT / "helm" / "chatcell" / "crds" / "chatcell.yaml"
DOC = ROOT / "docs" / "crd.md"


def crd() -> dict[str, Any]:
    return dict(yaml.safe_load(CRD_PATH.read_text()))


def version_schema() -> dict[str, Any]:
    (version,) = crd()["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"])


def field_paths(schema: dict[str, Any], prefix: str) -> Iterator[str]:
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}"
        yield path
        yield from field_paths(sub, path)
        items = sub.get("items") or {}
        if items.get("properties"):
            yield from field_paths(items, f"{path}[]")


def documented_example() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    examples = [yaml.safe_load(b) for b in blocks]
    (example,) = [e for e in examples if isinstance(e, dict) and e.get("kind") == KIND]
    return dict(example)


def test_crd_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate.validate(crd(), "1.35", strict=True)
    spec = crd()["spec"]
    assert (spec["group"], spec["names"]["plural"], spec["names"]["kind"]) == (GROUP, PLURAL, KIND)
    (version,) = spec["versions"]
    assert version["name"] == VERSION
    assert version["subresources"] == {"status": {}}


def test_the_chart_ships_the_same_crd() -> None:
    assert CHART_CRD_PATH.read_text() == CRD_PATH.read_text(), (
        "helm/chatcell/crds/chatcell.yaml differs from crds/chatcell.yaml: copy it over"
    )


def test_every_spec_field_is_documented() -> None:
    doc = DOC.read_text()
    paths = list(field_paths(version_schema()["properties"]["spec"], "spec"))
    assert len(paths) > 30
    missing = [p for p in paths if f"`{p}`" not in doc]
    assert not missing, f"docs/crd.md does not document: {missing}"


def test_every_status_field_is_documented() -> None:
    doc = DOC.read_text()
    status = version_schema()["properties"]["status"]["properties"]
    missing = [f"status.{name}" for name in status if f"`status.{name}`" not in doc]
    assert not missing, f"docs/crd.md does not document: {missing}"


def test_the_documented_example_is_valid_and_reconcilable() -> None:
    example = documented_example()
    jsonschema.Draft7Validator(version_schema()).validate(example)
    cell = parse(example["spec"], name=example["metadata"]["name"], namespace="ns")
    assert cell.keyspace == "chat_eu_west_1a"
    for manifest in builders.build_all(cell, builders.Owner(cell.name, "uid-1")):
        kubernetes_validate.validate(manifest, "1.35", strict=True)


def test_the_schema_refuses_what_the_parser_refuses() -> None:
    example = documented_example()
    validator = jsonschema.Draft7Validator(version_schema())
    for path, bad in (
        (("spec", "cellId"), "Not_Valid"),
        (("spec", "chat", "replicas"), 101),
        (("spec", "keyspacePolicy"), "Orphan"),
        (("spec", "scylla", "replication", "strategy"), "LocalStrategy"),
        (("spec", "jwt", "algorithms"), ["none"]),
    ):
        doc = yaml.safe_load(yaml.safe_dump(example))
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = bad
        assert list(validator.iter_errors(doc)), f"schema accepted {path} = {bad!r}"


def test_printer_columns_point_at_real_fields() -> None:
    (version,) = crd()["spec"]["versions"]
    paths = set(field_paths(version_schema(), ""))
    for column in version["additionalPrinterColumns"]:
        json_path = column["jsonPath"].split("[")[0]
        if json_path.startswith(".metadata."):
            continue  # ObjectMeta: not part of the CRD's schema
        assert json_path in paths, column
