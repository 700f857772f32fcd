"""Free ports and child-process lifetime for the real servers the tests start.

The test infrastructure runs real server processes (a Cassandra JVM, redis-server). Two things
are shared by all of them and live here:

* ``free_port()``: every server listens on a port the kernel just handed out, so parallel test
  runs and developers' own local servers never collide with fixed default ports.
* ``spawn()`` / ``ManagedProcess``: a failing or interrupted test run must never leave a JVM
  behind. ``atexit`` alone is not enough (it does not run on SIGTERM, SIGKILL or a CI timeout
  killing the process group), so each child also gets a tiny watchdog process that kills the
  child's process group as soon as the test process is gone, however it died.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = ["ManagedProcess", "free_port", "spawn", "wait_for_port"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0). There is an unavoidable race between closing this
    socket and the server binding the port; it is small enough for tests, and the servers
    report a bind failure loudly if it ever happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True if a TCP connection to host:port succeeds within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/<pid>/stat), or None if gone.

    A pid plus its start time identifies a process for good, whereas a bare pid can be reused.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name (field 2) may contain spaces; it ends at the last ")".
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


# The watchdog blocks reading its stdin, a pipe whose only write end is held by the test
# process. One byte means "the child was stopped normally, just exit"; EOF means the test
# process died, so the child's process group is killed, provided the child is still the same
# process (start time unchanged: its pid may have been reused meanwhile). The watchdog runs in
# its own session and ignores the usual termination signals, so that Ctrl-C or a kill of the
# test's process group cannot take it down before it has done its job.
_WATCHDOG = """
import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
pid, start_time = int(sys.argv[1]), sys.argv[2]
if sys.stdin.buffer.read(1) == b"":
    try:
        with open(f"/proc/{pid}/stat") as stat:
            same = stat.read().rsplit(")", 1)[1].split()[19] == start_time
        if same:
            os.killpg(pid, signal.SIGKILL)
    except (OSError, IndexError):
        pass
"""

_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


class ManagedProcess:
    """A child process leading its own process group, killed when the test process exits."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        watchdog: subprocess.Popen[bytes],
        watchdog_pipe: int,
        log: IO[bytes],
    ) -> None:
        self.proc = proc
        self._watchdog = watchdog
        self._watchdog_pipe: int | None = watchdog_pipe
        self._log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL, grace: float = 0.0) -> None:
        """Send ``sig`` to the child's process group, wait for the child and release it.

        After ``grace`` seconds without exiting, the group gets SIGKILL. Idempotent; safe to
        call on a child that already exited.
        """
        if self._watchdog_pipe is None:
            return
        # Signals go to the group only while the child is unreaped (running or a zombie): until
        # then the kernel cannot hand its pid, which is also the group id, to another process.
        if self.proc.returncode is None:
            self._signal_group(sig)
            if not self._wait_unreaped(None if sig == signal.SIGKILL else grace):
                self._signal_group(signal.SIGKILL)
                self._wait_unreaped(None)
            self._signal_group(signal.SIGKILL)  # anything the child left behind in its group
            self.proc.wait()
        self._release()

    def _wait_unreaped(self, timeout: float | None) -> bool:
        """Wait until the child has exited, without reaping it; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                exited = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            except ChildProcessError:  # already reaped
                return True
            if exited is not None:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _release(self) -> None:
        # Disarm the watchdog only after the child is dead and reaped: telling it "all good"
        # before that could leave an orphan if we crash in between.
        if self._watchdog_pipe is not None:
            try:
                os.write(self._watchdog_pipe, b"x")
            except OSError:
                pass
            os.close(self._watchdog_pipe)
            self._watchdog_pipe = None
            try:
                self._watchdog.wait(timeout=5)  # reap it: no zombie, no ResourceWarning
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()
        if not self._log.closed:
            self._log.close()
        with _live_lock:
            _live.discard(self)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start ``argv`` in a new process group, stdout and stderr appended to ``log_path``."""
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        # Its own session: the child is its process group's leader (pgid == pid), so the whole
        # group can be killed at once, and a Ctrl-C in the terminal reaches only the tests, which
        # then stop the child in order.
        start_new_session=True,
    )
    read_end, write_end = os.pipe()
    try:
        start_time = _start_time(proc.pid)
        if start_time is None:
            raise RuntimeError(f"cannot read /proc/{proc.pid}/stat of the process just started")
        watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(proc.pid), start_time],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    managed = ManagedProcess(proc, watchdog, write_end, log)
    with _live_lock:
        _live.add(managed)
    return managed


@atexit.register
def _kill_leftovers() -> None:
    """Kill every child still running when the interpreter exits normally or on an exception."""
    with _live_lock:
        leftovers = list(_live)
    for managed in leftovers:
        managed.kill()
