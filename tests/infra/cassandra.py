"""A real, throw-away Apache Cassandra 5.0 node for the test suite.

Production runs on ScyllaDB, which none of the package registries our machines reach
distributes. Cassandra 5.0 speaks the same CQL protocol, so the tests run the real database code
paths (LWT, conditional batches, paging) against it, keeping to the CQL subset both share.

Cassandra 5.0 publishes no binary tarball on Maven Central (only up to 4.0-alpha2), so
``fetch()`` downloads the ``cassandra-all`` server jar and its runtime dependencies with
``mvn dependency:copy-dependencies`` (see ``cassandra/pom.xml``) into a cache, and ``start()``
runs ``CassandraDaemon`` from those jars with what Cassandra's own launcher scripts would have
set: the Java 17 module flags, the jamm agent, a generated ``cassandra.yaml``.

CLI::

    python -m tests.infra.cassandra fetch   # download into the cache only (CI warm-up step)
    python -m tests.infra.cassandra start   # run a node, print host:port, stop on Ctrl-C
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from .ports import ManagedProcess, free_port, spawn, wait_for_port

__all__ = ["CACHE_DIR", "VERSION", "CassandraNode", "fetch", "java_home", "start"]

# Pinned: a new patch release is a deliberate change (its jars are a new cache entry).
VERSION = "5.0.9"

CACHE_DIR: Path = Path(os.environ.get("CELLCHAT_CACHE") or Path.home() / ".cache" / "cellchat")

_HERE = Path(__file__).resolve().parent / "cassandra"
_POM = _HERE / "pom.xml"
_YAML_TEMPLATE = _HERE / "cassandra.yaml.template"
_LOGBACK = _HERE / "logback.xml"
_COMPLETE = ".complete"  # written last by fetch(): its presence means the lib dir is whole
_HOST = "127.0.0.1"

# Cassandra 5.0 supports Java 11 and 17 only and refuses newer ones at start-up, while these
# machines also carry a Temurin 25 that may be first on PATH. So the JDK is chosen explicitly.
_JAVA17_CANDIDATES = (
    "/usr/lib/jvm/java-17-openjdk-amd64",
    "/usr/lib/jvm/java-17-openjdk-arm64",
)

# From Cassandra 5.0's conf/jvm17-server.options: the JDK internals Cassandra reaches into
# (off-heap memory, direct buffers, JMX over RMI, the jamm object-size agent). Without them
# start-up fails with InaccessibleObjectException / IllegalAccessError.
_JAVA17_MODULE_FLAGS = [
    "-Djdk.attach.allowAttachSelf=true",
    *(
        f"--add-exports={spec}=ALL-UNNAMED"
        for spec in (
            "java.base/jdk.internal.misc",
            "java.base/java.lang.ref",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "jdk.unsupported/sun.misc",
            "jdk.compiler/com.sun.tools.javac.file",
            "jdk.attach/sun.tools.attach",
        )
    ),
    *(
        f"--add-opens={spec}=ALL-UNNAMED"
        for spec in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "jdk.management/com.sun.management.internal",
            "java.base/sun.nio.ch",
            "java.base/java.io",
            "java.base/java.lang.reflect",
            "jdk.compiler/com.sun.tools.javac",
            "java.base/java.lang",
            "java.base/java.util",
        )
    ),
    # Also from jvm17-server.options: let Netty use Unsafe for direct buffers, and keep the
    # allocator defaults Cassandra is tuned for.
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
]

# Single-node start-up without the waits meant for real clusters: no gossip settling, a short
# ring delay, no saved ring state, a fixed token, and the (unused) default superuser set up at
# once rather than after 10 s.
_FAST_START_FLAGS = [
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=1000",
    "-Dcassandra.load_ring_state=false",
    "-Dcassandra.initial_token=0",
    "-Dcassandra.superuser_setup_delay_ms=0",
    # Cassandra measures a memtable row's overhead at start-up by building 100,000 rows (seconds
    # of CPU on a small machine); its own test suite uses 100, which is accurate enough here.
    "-Dcassandra.memtable_row_overhead_computation_step=100",
]

# The data directory is thrown away, so durability is pure cost. These are the switches
# Cassandra's own test suite uses: no fsync at all, and no flush of the system and schema tables
# after every change, which makes the CREATE/DROP KEYSPACE/TABLE that tests do constantly faster.
_THROWAWAY_DATA_FLAGS = [
    "-Dcassandra.skip_sync=true",
    "-Dcassandra.unsafesystem=true",
    "-Dcassandra.test.flush_local_schema_changes=false",
]

# A small heap is plenty for test data. Serial GC and C1-only JIT trade peak throughput for
# much less CPU during start-up, which is what dominates on 2-core CI machines.
_MEMORY_FLAGS = [
    "-Xms256m",
    "-Xmx768m",
    "-Xss256k",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",  # no /tmp/hsperfdata_* files left behind
    # A test node out of memory should die loudly (and show up in the log tail), not limp on.
    "-XX:+ExitOnOutOfMemoryError",
]

# For the benchmarks (bench/): a node that runs like a server for minutes rather than starting
# fast for a test session. The JVM's full JIT and G1, with a fixed 1 GiB heap: steady-state
# throughput and latency, at the cost of a slower start.
_SERVER_MEMORY_FLAGS = [
    "-Xms1g",
    "-Xmx1g",
    "-Xss256k",
    "-XX:+UseG1GC",
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
]


def java_home() -> Path:
    """The Java 17 installation Cassandra runs on (``$CELLCHAT_JAVA17_HOME`` overrides)."""
    override = os.environ.get("CELLCHAT_JAVA17_HOME")
    candidates = [override] if override else list(_JAVA17_CANDIDATES)
    for candidate in candidates:
        if (Path(candidate) / "bin" / "java").is_file():
            return Path(candidate)
    raise RuntimeError(
        f"no Java 17 found (looked at {', '.join(candidates)}); Cassandra 5.0 needs Java 11 or 17: "
        "run `apt-get install -y openjdk-17-jre-headless` or set CELLCHAT_JAVA17_HOME"
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Parallel test workers (pytest-xdist) may all call fetch() on a cold cache; one downloads,
    # the others wait and then find the result.
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch() -> Path:
    """Make sure Cassandra's jars are in the cache and return the directory holding them.

    Idempotent and cheap when already cached (one ``stat``). A cold fetch runs Maven against
    Maven Central (or the mirror in ``~/.m2/settings.xml``). Maven's own repository is a
    temporary one inside the cache entry, deleted afterwards: the copied jars are the cache, so
    nothing is stored twice, and a fetch does not depend on the state of ``~/.m2``.
    """
    home = CACHE_DIR / f"cassandra-{VERSION}"
    lib = home / "lib"
    if (home / _COMPLETE).is_file():
        return lib
    home.mkdir(parents=True, exist_ok=True)
    with _file_lock(home / ".lock"):
        if (home / _COMPLETE).is_file():  # another process finished it while we waited
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("`mvn` not found: run `apt-get install -y maven`")
        staging = home / "lib.partial"
        repo = home / "m2-repository"
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            mvn,
            "--batch-mode",
            "--quiet",
            "--file",
            str(_POM),
            f"-Dcassandra.version={VERSION}",
            f"-Dmaven.repo.local={repo}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        env = dict(os.environ, JAVA_HOME=str(java_home()))
        try:
            result = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=1800, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"Maven did not finish within {exc.timeout:.0f}s: {command}"
            ) from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            raise RuntimeError(
                f"Maven failed to fetch Cassandra {VERSION} (exit {result.returncode}):\n"
                + "\n".join(output[-40:])
            )
        for required in (f"cassandra-all-{VERSION}.jar", "jamm-*.jar", "logback-classic-*.jar"):
            if not list(staging.glob(required)):
                raise RuntimeError(f"Maven finished but {required} is missing from {staging}")
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)
        shutil.rmtree(repo, ignore_errors=True)
        (home / _COMPLETE).write_text(VERSION + "\n")
    return lib


def _log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _cql_ping(host: str, port: int) -> int:
    """Open a real CQL session and read ``system.local``; returns the negotiated protocol."""
    # Imported here so that `fetch` works without the driver installed.
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    cluster = Cluster(
        contact_points=[host],
        port=port,
        connect_timeout=10,
        control_connection_timeout=10,
        # An explicit policy: without one the driver logs a warning on every Cluster().
        execution_profiles={
            EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
        },
    )
    try:
        session = cluster.connect()
        session.execute("SELECT release_version FROM system.local", timeout=10).one()
        return int(cluster.protocol_version)
    finally:
        cluster.shutdown()


class CassandraNode:
    """A running single-node Cassandra; ``host``:``port`` is its CQL native transport."""

    def __init__(
        self,
        *,
        process: ManagedProcess,
        port: int,
        storage_port: int,
        jmx_port: int,
        workdir: Path,
        owns_workdir: bool,
    ) -> None:
        self.host: str = _HOST
        self.port: int = port
        self.storage_port: int = storage_port
        self.jmx_port: int = jmx_port
        self.workdir: Path = workdir
        self.log_path: Path = workdir / "cassandra.log"
        self.version: str = VERSION
        self.protocol_version: int | None = None  # set once a CQL session has worked
        self._process = process
        self._owns_workdir = owns_workdir
        atexit.register(self.stop)

    @property
    def pid(self) -> int:
        return self._process.pid

    def __repr__(self) -> str:
        return f"<CassandraNode {VERSION} {self.host}:{self.port} pid={self.pid}>"

    def __enter__(self) -> CassandraNode:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the JVM, wait for it, and delete the data directory if ``start()`` created it.

        Idempotent. A node on a temporary directory is SIGKILLed: its data is about to be
        deleted, so the flush a clean shutdown performs would only cost time. A node on a
        caller-supplied directory gets SIGTERM (Cassandra drains and exits) and 60 s to do so.
        """
        if self._owns_workdir:
            self._process.kill(signal.SIGKILL)
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            self._process.kill(signal.SIGTERM, grace=60)
        atexit.unregister(self.stop)

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            code = self._process.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"Cassandra exited during start-up with code {code}; "
                    f"log {self.log_path} ends with:\n{_log_tail(self.log_path)}"
                )
            # The native port opens last in Cassandra's start-up sequence, so a cheap TCP probe
            # saves building driver clusters that would only fail while it boots.
            if wait_for_port(self.host, self.port):
                try:
                    self.protocol_version = _cql_ping(self.host, self.port)
                    return
                except Exception as exc:  # driver raises many types; we only report the last
                    last_error = exc
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"Cassandra did not accept CQL on {self.host}:{self.port} within "
                    f"{timeout:.0f}s (last error: {last_error!r}); "
                    f"log {self.log_path} ends with:\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.5)


def start(workdir: Path | None = None, timeout: float = 240, *,
          server: bool = False) -> CassandraNode:
    """Start a fresh single Cassandra node on free loopback ports and wait until CQL works.

    ``workdir`` holds the yaml, the log and the data; by default a temporary directory that
    ``stop()`` deletes. ``server``: JVM settings for steady-state work (the benchmarks)
    instead of a fast start (the tests). Raises RuntimeError with the tail of the Cassandra
    log if the node dies or does not serve CQL within ``timeout`` seconds; the JVM is stopped
    in that case.
    Blocking: call it from a thread (``trio.to_thread.run_sync``) inside async code.
    """
    lib = fetch()
    java = java_home() / "bin" / "java"
    jamm = sorted(lib.glob("jamm-*.jar"))[-1]

    native_port, storage_port, jmx_port = _distinct_free_ports(3)
    config_text = string.Template(_YAML_TEMPLATE.read_text()).substitute(
        cluster_name=f"cellchat-test-{native_port}",
        native_port=native_port,
        storage_port=storage_port,
    )

    owns_workdir = workdir is None
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="cellchat-cassandra-"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(exist_ok=True)
    (workdir / "triggers").mkdir(exist_ok=True)
    config = workdir / "cassandra.yaml"
    config.write_text(config_text)

    argv = [
        str(java),
        *(_SERVER_MEMORY_FLAGS if server else _MEMORY_FLAGS),
        *_JAVA17_MODULE_FLAGS,
        *_FAST_START_FLAGS,
        *_THROWAWAY_DATA_FLAGS,
        "-Djava.net.preferIPv4Stack=true",
        # jamm measures object sizes for memtable accounting; Cassandra refuses to start without.
        f"-javaagent:{jamm}",
        f"-Dcassandra.config={config.as_uri()}",
        f"-Dcassandra.storagedir={workdir / 'data'}",
        f"-Dcassandra.logdir={workdir / 'logs'}",
        f"-Dcassandra.triggers_dir={workdir / 'triggers'}",
        f"-Dlogback.configurationFile={_LOGBACK}",
        # Keep stdout open (it carries the log) instead of detaching like a daemon.
        "-Dcassandra-foreground=yes",
        # JMX on loopback only, on a free port: lets a developer point nodetool at a test node.
        f"-Dcassandra.jmx.local.port={jmx_port}",
        "-cp",
        f"{lib}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]
    env = dict(os.environ, JAVA_HOME=str(java.parent.parent))
    process = spawn(argv, log_path=workdir / "cassandra.log", env=env, cwd=workdir)
    node = CassandraNode(
        process=process,
        port=native_port,
        storage_port=storage_port,
        jmx_port=jmx_port,
        workdir=workdir,
        owns_workdir=owns_workdir,
    )
    try:
        node._wait_until_ready(timeout)
    except BaseException:
        node._process.kill()
        atexit.unregister(node.stop)
        # Keep the yaml and the full log that the error message points to; drop the data.
        shutil.rmtree(workdir / "data", ignore_errors=True)
        raise
    return node


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.infra.cassandra", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help=f"download Cassandra {VERSION} into {CACHE_DIR}")
    run = commands.add_parser("start", help="run a node until Ctrl-C")
    run.add_argument("--workdir", type=Path, default=None, help="keep data here (not deleted)")
    run.add_argument("--timeout", type=float, default=240)
    args = parser.parse_args(argv)

    if args.command == "fetch":
        began = time.monotonic()
        lib = fetch()
        print(f"Cassandra {VERSION} jars in {lib} ({time.monotonic() - began:.1f}s)")
        return 0

    # SIGTERM would otherwise end Python without running cleanup; make it behave like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    began = time.monotonic()
    node = start(args.workdir, args.timeout)
    try:
        elapsed = time.monotonic() - began
        print(
            f"{node.host}:{node.port}  (Cassandra {VERSION}, protocol v{node.protocol_version}, "
            f"started in {elapsed:.1f}s, log {node.log_path}); Ctrl-C stops it",
            flush=True,
        )
        while node._process.running():
            time.sleep(1)
        print(f"Cassandra exited; log tail:\n{_log_tail(node.log_path)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(_main())
