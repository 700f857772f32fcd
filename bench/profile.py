"""`--profile`: sample the server under test with py-spy while a figure measures it.

py-spy attaches to the running process by pid (no restart, no instrumentation), samples every
thread at `rate` Hz and writes collapsed stacks ("raw" format, one line per stack with its
sample count). `summarise` turns them into the hottest frames: by self time (where the CPU is
spent) and inclusive time (which call paths cost the most). Without py-spy installed, or
without `--profile`, this is a no-op.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def sampling(pid: int, out: Path, *, enabled: bool, rate: int = 100) -> Iterator[None]:
    spy = shutil.which("py-spy") if enabled else None
    if spy is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
         "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    if out.exists():
        summary = summarise(out)
        out.with_suffix(".top.txt").write_text(render(summary))


def summarise(raw: Path, top: int = 25) -> dict[str, Any]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    share = (lambda n: round(100.0 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "self": [(frame, share(n)) for frame, n in own.most_common(top)],
        "inclusive": [(frame, share(n)) for frame, n in inclusive.most_common(3 * top)
                      if "runpy" not in frame and "<module>" not in frame],
    }


def render(summary: dict[str, Any]) -> str:
    lines = [f"{summary['samples']} samples", "", "self %:"]
    lines += [f"{pct:5.1f}  {frame}" for frame, pct in summary["self"]]
    lines += ["", "inclusive %:"]
    lines += [f"{pct:5.1f}  {frame}" for frame, pct in summary["inclusive"]]
    return "\n".join(lines) + "\n"
