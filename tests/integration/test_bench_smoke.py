"""The benchmarks keep working: `python -m bench --smoke` against the session's Cassandra and Redis.

Tiny sizes, every figure of bench/ (issue 7). It never asserts how good a number is, only that
each figure was produced and is a positive number: a benchmark must not fail the suite because
a shared CI machine was slow, but it must fail when it (or what it measures) breaks.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.context import SMOKE

REPO = Path(__file__).resolve().parents[2]

#: Figure keys, and whether the row has a peer value that must be positive too.
EXPECTED = {
    **{f"fanout_{n}": True for n in SMOKE.fanout_subscribers},
    **{f"fanout_{n}_redis": True for n in SMOKE.fanout_subscribers},
    "presence_storm": True,
    "memory": True,
    "grpc_unary": True,
    "grpc_stream": True,
    "send_vs_driver": True,
    "send_vs_insert": True,
    "history_p99": True,
    "e2e_p99": False,  # an absolute target: no peer
    "scale_out": True,
}


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.cassandra
@pytest.mark.redis
def test_every_figure_is_produced(cassandra: Any, redis: Any, tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke",
         "--cassandra", f"{cassandra.host}:{cassandra.port}", "--redis", redis.url,
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    log = f"stdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-6000:]}"
    assert done.returncode == 0, log
    results = json.loads((out / "latest.json").read_text())
    figures = {row["key"]: row for row in results["figures"]}
    missing = sorted(set(EXPECTED) - set(figures))
    assert not missing, f"figures not produced: {missing}\n{log}"
    for key, has_peer in EXPECTED.items():
        row = figures[key]
        assert not row["error"], f"{key}: {row['error']}\n{log}"
        assert _positive(row["cellchat"]), f"{key}: cellchat value {row['cellchat']!r}\n{log}"
        if has_peer:
            assert _positive(row["peer"]), f"{key}: peer value {row['peer']!r}\n{log}"
