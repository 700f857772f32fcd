"""Plumbing shared by the benchmark figures: limits, statistics, child processes, tokens.

Everything here is small on purpose: the figures (bench/figures/*.py) read as the method they
measure, and this module holds what they all need.
"""

from __future__ import annotations

import json
import math
import os
import resource
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

#: One secret per run, shared by the servers under test and the load generator (>= 32 bytes).
JWT_SECRET = os.environ.get("BENCH_JWT_SECRET") or "bench-" + secrets.token_hex(24)


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (10,000 sockets need it); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100.0 * len(ordered)) - 1))
    return float(ordered[rank])


def summary_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds of latencies given in seconds."""
    return {
        "count": len(latencies_s),
        "p50_ms": percentile(latencies_s, 50) * 1000,
        "p90_ms": percentile(latencies_s, 90) * 1000,
        "p99_ms": percentile(latencies_s, 99) * 1000,
        "max_ms": (max(latencies_s) * 1000) if latencies_s else 0.0,
    }


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# ---------------------------------------------------------------- results


class ServiceFailure(RuntimeError):
    """The server under test failed under the figure's load (refused clients, dropped them,
    stopped delivering): a result to report, not a broken benchmark."""


@attrs.define
class Row:
    """One line of the table: a figure, cellchat's value, the peer's, and the target."""

    key: str
    figure: str
    unit: str
    cellchat: float | None
    peer: float | None
    peer_name: str
    target: str
    #: "higher" when a bigger ratio is better, "lower" when smaller is; the target's bound.
    better: str = "higher"
    bound: float | None = None
    #: Compare cellchat's value itself with the bound (absolute targets, e.g. 50 ms).
    absolute: bool = False
    details: dict[str, Any] = attrs.field(factory=dict)
    error: str = ""
    #: The error is the service's failure under load (ServiceFailure), not the benchmark's.
    service_failure: bool = False

    @property
    def ratio(self) -> float | None:
        if self.cellchat is None or self.peer is None or self.peer == 0:
            return None
        return self.cellchat / self.peer

    @property
    def met(self) -> bool | None:
        value = self.cellchat if self.absolute else self.ratio
        if value is None or self.bound is None:
            return None
        return value >= self.bound if self.better == "higher" else value <= self.bound

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "figure": self.figure, "unit": self.unit,
            "cellchat": self.cellchat, "peer": self.peer, "peer_name": self.peer_name,
            "ratio": self.ratio, "target": self.target, "met": self.met,
            "details": self.details, "error": self.error,
            "service_failure": self.service_failure,
        }


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def render_table(rows: Iterable[Row]) -> str:
    header = ("figure", "cellchat", "peer", "ratio", "target", "")
    lines = [header]
    for row in rows:
        if row.error:
            what = "SERVICE FAILED" if row.service_failure else "FAILED"
            lines.append((row.figure, what, fmt(row.peer, row.unit), "-", row.target,
                          " ".join(row.error.split())[:70]))
            continue
        peer = fmt(row.peer, row.unit)
        if row.peer_name:
            peer = f"{peer} ({row.peer_name})"
        met = row.met
        verdict = "" if met is None else ("ok" if met else "short")
        ratio = "-" if row.ratio is None or row.absolute else f"{row.ratio:.2f}x"
        lines.append((row.figure, fmt(row.cellchat, row.unit), peer, ratio, row.target,
                      verdict))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


# ---------------------------------------------------------------- child processes


class Child:
    """A server under test (or a peer loop) in its own process, stopped by pid only.

    The child prints one JSON line on stdout once it is ready (its ports); `ready` reads it.
    Its stderr goes to a log file under the run's directory.
    """

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path,
                 *, cwd: Path = REPO) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *filter(None, [full_env.get("PYTHONPATH")])])
        self.proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=self._log, env=full_env, cwd=cwd,
            start_new_session=True,
        )
        self.info: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the child's ready line; raises with the log tail if it dies or hangs."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buffer = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                why = "timed out" if left <= 0 else f"exited with {self.proc.returncode}"
                raise RuntimeError(f"{self.name} {why} before it was ready:\n{self.log_tail()}")
            readable, _, _ = select.select([fd], [], [], min(left, 0.5))
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk and self.proc.poll() is None:
                    time.sleep(0.05)
                buffer += chunk
        self.info = json.loads(buffer.split(b"\n", 1)[0])
        return self.info

    def result(self, timeout: float) -> dict[str, Any]:
        """For one-shot children (peer loops): wait for exit and parse the last stdout line."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"{self.name} did not finish in {timeout:.0f}s:\n"
                               f"{self.log_tail()}") from None
        finally:
            self._log.close()
        lines = [line for line in out.decode().splitlines() if line.strip()]
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"{self.name} failed (exit {self.proc.returncode}):\n"
                               f"{self.log_tail()}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (servers drain), then SIGKILL after `grace`; only this child's pid."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_child(name: str, module: str, args: Sequence[str], env: Mapping[str, str],
                 log_dir: Path) -> Child:
    return Child(name, [sys.executable, "-m", module, *args], env, log_dir)


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def settle_rss(pid: int, *, timeout: float = 10.0, quiet_for: float = 1.5) -> int:
    """RSS once it stopped moving (less than 0.5% change over `quiet_for` seconds)."""
    deadline = time.monotonic() + timeout
    last = rss_bytes(pid)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = rss_bytes(pid)
        if abs(now - last) > last * 0.005:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= quiet_for:
            return now
    return rss_bytes(pid)
