"""The style gates of pyproject.toml, run as tests so CI holds them: ruff on the code and
mypy --strict on the service packages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINTED = ["services", "operator", "tests", "bench"]


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which(cmd[0])
    assert tool, f"{cmd[0]} is missing: pip install -e '.[dev]'"
    return subprocess.run([tool, *cmd[1:]], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)


def test_ruff() -> None:
    result = _run("ruff", "check", "--output-format", "concise", *LINTED)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_mypy_strict() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
