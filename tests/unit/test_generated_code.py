"""The committed generated code is exactly what scripts/gen-proto.sh makes from proto/.

Generated modules are never edited by hand; after changing a .proto, run the script and commit
its output. A failure here names the files that differ.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc_tools

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "services" / "cellchat" / "api"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_committed_generated_code_matches_the_protos(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "gen-proto.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = _tree(tmp_path / "cellchat" / "api")
    committed = _tree(COMMITTED)

    assert fresh, "gen-proto.sh generated nothing"
    missing = sorted(fresh.keys() - committed.keys())
    stale = sorted(committed.keys() - fresh.keys())
    changed = sorted(
        name for name in fresh.keys() & committed.keys() if fresh[name] != committed[name]
    )
    hint = (
        f"run scripts/gen-proto.sh and commit the result (generated with grpcio-tools from "
        f"{Path(grpc_tools.__file__).parent})"
    )
    assert (missing, stale, changed) == ([], [], []), hint


def test_every_proto_has_all_four_generated_modules() -> None:
    for proto in sorted((REPO / "proto").rglob("*.proto")):
        stem = REPO / "services" / proto.relative_to(REPO / "proto").with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_grpc.py", "_pb2_grpc.py"):
            assert stem.with_name(stem.name + suffix).is_file(), f"{proto}: no {suffix}"
