"""A real, throw-away redis-server for the test suite.

The service uses Redis as its Pub/Sub broker between replicas, and the tests need the real
server's behaviour, including what happens when it goes away: ``kill()`` simulates a crash and
``restart()`` brings it back on the same port, so clients can be tested reconnecting.

Debian's ``redis-server`` package is the source (``ensure_installed()`` installs it with apt when
missing). Every server runs on a free loopback port with persistence off, as a child of the test
process that is killed when the test process exits (see ``ports.spawn``).

CLI::

    python -m tests.infra.redis install   # make sure redis-server is installed (CI set-up step)
    python -m tests.infra.redis start     # run a server, print its URL, stop on Ctrl-C
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from .ports import ManagedProcess, free_port, spawn

__all__ = ["RedisServer", "ensure_installed", "start"]

_HOST = "127.0.0.1"
_apt_updated = False  # `apt-get update` is slow and needed at most once per process

# Persistence off: tests never need data to survive a restart, and an outage test must not be
# slowed down (or confused) by an RDB/AOF reload. The log goes to stdout, which spawn() sends
# to the log file next to this config.
_CONFIG = """\
bind {host}
port {port}
daemonize no
save ""
appendonly no
dir {dir}
logfile ""
loglevel notice
"""


def _find_redis_server() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    # Parallel test workers may all find redis missing; one installs, the others wait for it.
    with open(Path(tempfile.gettempdir()) / "cellchat-redis-install.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _apt_get(*args: str) -> None:
    command = [
        "apt-get",
        # Wait for a dpkg lock held by someone else (unattended upgrades) instead of failing.
        "-o",
        "DPkg::Lock::Timeout=300",
        *args,
    ]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise RuntimeError(
            f"`{' '.join(command)}` failed with exit code {result.returncode}:\n"
            + "\n".join(output[-30:])
        )


def ensure_installed() -> str:
    """Return the path of ``redis-server``, installing Debian's package first if needed.

    Installing needs root (as on CI machines); otherwise this raises with the command to run.
    """
    global _apt_updated
    found = _find_redis_server()
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise RuntimeError("redis-server is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        raise RuntimeError(
            "redis-server is not installed: run `sudo apt-get install -y redis-server`"
        )
    with _install_lock():
        found = _find_redis_server()  # another worker may have installed it while we waited
        if found:
            return found
        if not _apt_updated:
            _apt_get("update")
            _apt_updated = True
        _apt_get("install", "-y", "--no-install-recommends", "redis-server")
    found = _find_redis_server()
    if not found:
        raise RuntimeError(
            "`apt-get install redis-server` succeeded but redis-server is not on PATH"
        )
    return found


def _ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING on host:port (raw RESP: no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server on ``host``:``port`` (``url`` for clients) that tests can crash and revive."""

    def __init__(self, *, binary: str, port: int, workdir: Path, owns_workdir: bool) -> None:
        self.host: str = _HOST
        self.port: int = port
        self.url: str = f"redis://{_HOST}:{port}"
        self.workdir: Path = workdir
        self.log_path: Path = workdir / "redis.log"
        self._binary = binary
        self._owns_workdir = owns_workdir
        self._process: ManagedProcess | None = None

    def __repr__(self) -> str:
        process = self._process
        state = f"pid={process.pid}" if process is not None and process.running() else "stopped"
        return f"<RedisServer {self.url} {state}>"

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def _launch(self, timeout: float = 15) -> None:
        # Remove the directory at exit even if a test forgets stop() (ports.py kills the process).
        atexit.unregister(self.stop)
        atexit.register(self.stop)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "redis.conf"
        config.write_text(_CONFIG.format(host=self.host, port=self.port, dir=self.workdir))
        process = spawn([self._binary, str(config)], log_path=self.log_path, cwd=self.workdir)
        self._process = process
        deadline = time.monotonic() + timeout
        while not _ping(self.host, self.port):
            code = process.proc.poll()
            if code is not None or time.monotonic() >= deadline:
                process.kill()
                what = f"exited with code {code}" if code is not None else f"no PONG in {timeout}s"
                tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(
                    f"redis-server on port {self.port} {what}; log ends with:\n{tail}"
                )
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would. ``restart()`` brings it back on the same port."""
        if self._process is not None:
            self._process.kill(signal.SIGKILL)

    def restart(self) -> None:
        """Start the server again on the same port (stopping it first if it still runs).

        The data is gone (no persistence), as after a real crash of a cache-only Redis.
        """
        if self._process is not None:
            self._process.kill(signal.SIGTERM, grace=5)
        self._launch()

    def stop(self) -> None:
        """Stop the server and delete its directory if ``start()`` created it. Idempotent."""
        if self._process is not None:
            self._process.kill(signal.SIGTERM, grace=5)
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.stop)


def start(workdir: Path | None = None) -> RedisServer:
    """Start a redis-server on a free loopback port and wait until it answers PING."""
    binary = ensure_installed()
    owns_workdir = workdir is None
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="cellchat-redis-"))
    server = RedisServer(
        binary=binary, port=free_port(), workdir=workdir.resolve(), owns_workdir=owns_workdir
    )
    try:
        server._launch()
    except BaseException:
        server.stop()
        raise
    return server


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.infra.redis", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install redis-server with apt if it is missing")
    commands.add_parser("start", help="run a server until Ctrl-C")
    args = parser.parse_args(argv)

    if args.command == "install":
        print(ensure_installed())
        return 0

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on SIGTERM too
    server = start()
    try:
        print(f"{server.url}  (log {server.log_path}); Ctrl-C stops it", flush=True)
        while server.running:
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(_main())
