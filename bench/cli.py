"""`python -m bench`: run the figures, print the table, write the JSON results.

    python -m bench                 default run (a few minutes)
    python -m bench --long          longer measurements, several rounds
    python -m bench --smoke         tiny sizes (CI): checks that every figure still runs
    python -m bench --only grpc,send    (fanout presence memory grpc send history scale)
    python -m bench --cassandra 127.0.0.1:9042 --redis redis://127.0.0.1:6379  (reuse servers)

A figure that breaks is reported as FAILED in the table (with the error in the JSON) and the
others still run; the exit status is 1 if any figure broke, never because of a number. When
the service under test fails under a figure's load (refuses or drops clients, stops
delivering) the row says SERVICE FAILED: that is a result, and does not fail the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import REPO, Row, raise_nofile, render_table
from bench.context import DEFAULT, LONG, SMOKE, Context

# Order matters: the figures without a database run first, before Cassandra's JVM starts and
# competes for the two cores.
FIGURES: dict[str, tuple[str, str]] = {
    "fanout": ("bench.fig_fanout", "1 fan-out"),
    "presence": ("bench.fig_presence", "1b presence on connect"),
    "memory": ("bench.fig_memory", "2 idle memory"),
    "grpc": ("bench.fig_grpc", "4 gRPC"),
    "send": ("bench.fig_send", "3 SendMessage"),
    "history": ("bench.fig_history", "5 history"),
    "scale": ("bench.fig_scale", "6/7 end to end and scale-out"),
}


def _failed_rows(key: str, label: str, error: str) -> list[Row]:
    return [Row(key, label, "", None, None, "", "", error=error)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, for CI (< ~60 s)")
    mode.add_argument("--long", action="store_true", help="longer runs, median of rounds")
    parser.add_argument("--only", default="", help=f"comma-separated: {','.join(FIGURES)}")
    parser.add_argument("--cassandra", default=os.environ.get("BENCH_CASSANDRA", ""),
                        help="host:port of a running Cassandra/Scylla (else one is started)")
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", ""),
                        help="URL of a running Redis (else one is started)")
    parser.add_argument("--profile", action="store_true",
                        help="sample cellchat with py-spy while measured (<run>/profiles/)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results",
                        help="where the JSON results go (default bench/results/)")
    args = parser.parse_args(argv)

    selected = [f.strip() for f in args.only.split(",") if f.strip()] or list(FIGURES)
    unknown = set(selected) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    mode_name = "smoke" if args.smoke else "long" if args.long else "default"
    sizes = SMOKE if args.smoke else LONG if args.long else DEFAULT
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = args.out / f"run-{stamp}-{mode_name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    nofile = raise_nofile()
    ctx = Context(sizes, mode_name, run_dir, cassandra=args.cassandra, redis=args.redis,
                  profile=args.profile)
    print(f"cellchat bench ({mode_name}), {os.cpu_count()} CPUs, RLIMIT_NOFILE {nofile}; "
          f"logs in {ctx.log_dir}", flush=True)

    rows: list[Row] = []
    timings: dict[str, float] = {}
    began = time.monotonic()
    try:
        for key in [k for k in FIGURES if k in selected]:
            module_name, label = FIGURES[key]
            print(f"\n== {label}", flush=True)
            started = time.monotonic()
            try:
                module = __import__(module_name, fromlist=["run"])
                runner: Callable[[Context], list[Row]] = module.run
                rows.extend(runner(ctx))
            except Exception as exc:
                traceback.print_exc()
                rows.extend(_failed_rows(key, label, f"{type(exc).__name__}: {exc}"))
            timings[key] = time.monotonic() - started
            print(f"   ({timings[key]:.0f}s)", flush=True)
    finally:
        ctx.close()

    table = render_table(rows)
    print("\n" + table)
    result: dict[str, Any] = {
        "mode": mode_name,
        "started_utc": stamp,
        "seconds": time.monotonic() - began,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "figures": [row.as_json() for row in rows],
        "timings_s": timings,
        "notes": ctx.notes,
        "table": table,
    }
    path = run_dir / "results.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    (args.out / "latest.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"\nresults: {path}  ({result['seconds']:.0f}s)")
    # A benchmark that broke fails the command; a service that failed under load is a result.
    return 1 if any(row.error and not row.service_failure for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
