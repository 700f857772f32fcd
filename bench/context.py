"""What every figure gets: the run's sizes, its directories, and the shared real components.

Cassandra and Redis are started on first use (tests/infra, the same code the test suite
uses) unless the command line points at running ones (`--cassandra`, `--redis`), as the CI
smoke test does with the test session's own servers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs

from bench.common import HOST, JWT_SECRET, Child, python_child


@attrs.frozen
class Sizes:
    """Everything a mode changes. `default` is a few minutes; `long` and `smoke` scale it."""

    fanout_subscribers: tuple[int, ...] = (1000, 5000)
    fanout_seconds: float = 6.0
    fanout_window: int = 4
    presence_members: int = 200
    memory_connections: int = 10_000
    settle_s: float = 1.5
    grpc_seconds: float = 4.0
    grpc_concurrency: int = 16
    grpc_stream_messages: int = 2000
    rounds: int = 2
    send_seconds: float = 10.0
    send_concurrency: int = 32
    history_sizes: tuple[int, ...] = (1000, 1_000_000)
    history_pages: int = 300
    scale_seconds: float = 8.0
    scale_pairs: int = 32
    e2e_seconds: float = 10.0
    timeout_scale: float = 1.0


SMOKE = Sizes(
    fanout_subscribers=(20, 50), fanout_seconds=0.7, presence_members=20,
    memory_connections=200, settle_s=0.3,
    grpc_seconds=0.6, grpc_concurrency=4, grpc_stream_messages=200, rounds=1, send_seconds=2.0,
    send_concurrency=4, history_sizes=(100, 2000), history_pages=20, scale_seconds=2.0,
    scale_pairs=4, e2e_seconds=1.5, timeout_scale=0.5,
)
DEFAULT = Sizes()
LONG = Sizes(
    fanout_seconds=20.0, grpc_seconds=10.0, rounds=3, send_seconds=30.0, history_pages=1000,
    scale_seconds=25.0, e2e_seconds=30.0, timeout_scale=2.0,
)


class Context:
    def __init__(self, sizes: Sizes, mode: str, run_dir: Path, *, cassandra: str = "",
                 redis: str = "", profile: bool = False) -> None:
        self.sizes = sizes
        self.profile = profile
        self.mode = mode
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._cassandra_addr = cassandra
        self._redis_url = redis
        self._cassandra_node: Any = None
        self._redis_server: Any = None
        self.keyspace = "chat_bench"
        self._keyspace_ready = False
        self.notes: list[str] = []

    # ------------------------------------------------------------ real components

    def cassandra(self) -> tuple[str, int]:
        if not self._cassandra_addr:
            from tests.infra import cassandra as cassandra_infra

            began = time.monotonic()
            # Server JVM settings (full JIT, G1, 1 GiB), not the test suite's fast start.
            self._cassandra_node = cassandra_infra.start(server=True)
            self._cassandra_addr = f"{self._cassandra_node.host}:{self._cassandra_node.port}"
            self.note(f"started Cassandra {cassandra_infra.VERSION} (server JVM settings) in "
                      f"{time.monotonic() - began:.0f}s at {self._cassandra_addr}")
        host, _, port = self._cassandra_addr.rpartition(":")
        return host, int(port)

    def redis(self) -> str:
        if not self._redis_url:
            from tests.infra import redis as redis_infra

            self._redis_server = redis_infra.start()
            self._redis_url = self._redis_server.url
        return self._redis_url

    def ensure_keyspace(self) -> str:
        """The bench keyspace, dropped and recreated once per run, every migration applied."""
        if self._keyspace_ready:
            return self.keyspace
        from cassandra.cluster import Cluster
        from cassandra.policies import DCAwareRoundRobinPolicy

        from cellchat_schema import apply_migrations, ensure_keyspace

        host, port = self.cassandra()
        cluster = Cluster([host], port=port, load_balancing_policy=DCAwareRoundRobinPolicy())
        try:
            session = cluster.connect()
            session.execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}", timeout=120)
            ensure_keyspace(session, self.keyspace,
                            {"class": "SimpleStrategy", "replication_factor": 1})
            apply_migrations(session, self.keyspace)
        finally:
            cluster.shutdown()
        self._keyspace_ready = True
        return self.keyspace

    def close(self) -> None:
        if self._redis_server is not None:
            self._redis_server.stop()
        if self._cassandra_node is not None:
            self._cassandra_node.stop()

    # ------------------------------------------------------------ servers under test

    def cellchat(self, name: str, *, store: str = "embedded", redis: bool = False,
                 extra: dict[str, str] | None = None) -> Child:
        """Start one chat replica (`cellchat run` equivalent) and wait until it listens."""
        env = {
            "CELL_ID": "bench",
            "JWT_SECRET": JWT_SECRET,
            "BIND_HOST": HOST,
            "GRPC_PORT": "0", "WS_PORT": "0", "OPS_PORT": "0",
            "SCYLLA_HOSTS": "", "REDIS_URL": "",
            "LOG_LEVEL": "INFO",
        }
        if store == "cassandra":
            host, port = self.cassandra()
            env.update(SCYLLA_HOSTS=host, SCYLLA_PORT=str(port),
                       SCYLLA_KEYSPACE=self.ensure_keyspace(), MIGRATE_ON_START="false")
        if redis:
            env["REDIS_URL"] = self.redis()
        env.update(extra or {})
        child = python_child(name, "bench.servers", ["cellchat"], env, self.log_dir)
        child.ready(timeout=90)
        return child

    def server(self, name: str, kind: str, env: dict[str, str] | None = None) -> Child:
        child = python_child(name, "bench.servers", [kind],
                             {"JWT_SECRET": JWT_SECRET, **(env or {})}, self.log_dir)
        child.ready(timeout=60)
        return child

    def sampling(self, child: Child, label: str) -> Any:
        """With --profile: py-spy samples `child` inside the block (bench/profile.py)."""
        from bench.profile import sampling

        return sampling(child.pid, self.run_dir / "profiles" / f"{label}.txt",
                        enabled=self.profile)

    def note(self, text: str) -> None:
        print(f"  . {text}", flush=True)
        self.notes.append(text)

    def timeout(self, seconds: float) -> float:
        return seconds * max(1.0, self.sizes.timeout_scale)
