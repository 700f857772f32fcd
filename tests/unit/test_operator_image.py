"""The Dockerfile, checked without a Docker engine: its shape, and that its build context
(what .dockerignore lets in) really builds the project with the operator in it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chatcell_operator import builders

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]


def test_base_image_is_pinned_to_an_exact_release() -> None:
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert match is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", match.group(1))
    assert all(stage.startswith("${PYTHON_IMAGE}") for stage in stages())


def test_final_stage_is_non_root_and_has_no_build_tools() -> None:
    build, final = stages()
    assert "AS build" in build.splitlines()[0]
    assert f"USER {builders.RUN_AS}:{builders.RUN_AS}" in final
    assert "COPY --from=build /opt/cellchat /opt/cellchat" in final
    for tool in ("gcc", "build-essential", "apt-get install", "pip install", "COPY services"):
        assert tool not in final
    assert 'pip install ".[operator]"' in build
    assert 'CMD ["cellchat", "run"]' in final


def _copy_context(dest: Path) -> None:
    """Copy what `docker build .` sends, per .dockerignore (an allow-list after `*`).
    Links stay links, as Docker's COPY keeps them."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", ".dockerignore is expected to be an allow-list"
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    denied = [r.split("/")[-1] for r in rules[1:] if not r.startswith("!")]
    dest.mkdir()
    for top in allowed:
        src = ROOT / top
        if src.is_dir():
            shutil.copytree(src, dest / top, symlinks=True,
                            ignore=shutil.ignore_patterns(*denied))
        else:
            shutil.copy2(src, dest / top)


@pytest.mark.skipif(not (ROOT / "README.md").exists(), reason="pyproject names README.md")
def test_the_build_context_builds_a_wheel_with_every_package(tmp_path: Path) -> None:
    context = tmp_path / "context"
    _copy_context(context)
    # services/cellchat_schema/cql links to ../../cql, so cql/ must be in the context too.
    assert (context / "services" / "cellchat_schema" / "cql").is_symlink()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(context)],
        check=True, timeout=300, capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("cellchat-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "chatcell_operator/main.py" in names
    assert "cellchat/cli.py" in names
    assert any(re.fullmatch(r"cellchat_schema/cql/\d{3}_\w+\.cql", n) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "chatcell-operator = chatcell_operator.main:run" in text
