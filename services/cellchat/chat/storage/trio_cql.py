"""Run CQL queries from Trio without a thread per query, and translate the driver's errors.

The driver does its I/O on its own reactor thread (libev). `execute_async` returns a future;
its callback hands the answer to the waiting Trio task through the Trio token (`run_sync_soon`
is the one thread-safe way into a Trio run, and also works when the driver calls back inline,
on the Trio thread, because the answer was already there). Answers arrive in bursts under load,
so they queue up and one `run_sync_soon` (a lock and a byte written to Trio's wakeup socket)
wakes every task of a burst: a query costs the Trio side one deque append, not one wakeup.
`execute_many` sends independent statements at once and parks the task once for all of them:
concurrency without a task (or a nursery) per statement.

Rules:
- A result is only ever read from `current_rows`: iterating a driver ResultSet past its first
  page fetches the next page synchronously, which would block the whole event loop. Further
  pages are fetched with `paging_state`, each one awaited like any query.
- If the waiting task is cancelled, the query still runs to completion in the driver (a CQL
  request cannot be taken back); its late answer wakes nobody and is dropped. Nothing is kept
  per query after it returns, so nothing leaks.
- Rows come from the driver's callback (the first page, already decoded); the paging state is
  read from the future only when the driver says there are more pages.
- `execute_many` answers once every statement has: the first failure (in statement order) is
  raised then, never while others are still in flight.
- Driver exceptions never leave this module: `map_driver_errors` / `store_error` turn them
  into the store errors of the domain (`raise ... from exc`).
- Blocking driver calls (connect, prepare, shutdown) belong in `trio.to_thread.run_sync`.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import trio
from cassandra import (
    ConsistencyLevel,
    DriverException,
    OperationTimedOut,
    RequestExecutionException,
    Timeout,
    Unavailable,
    WriteTimeout,
    WriteType,
)
from cassandra.cluster import NoHostAvailable, Session
from cassandra.connection import ConnectionException

from cellchat.chat.domain.errors import (
    Contention,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)

Row = dict[str, Any]

_SERIAL = (ConsistencyLevel.SERIAL, ConsistencyLevel.LOCAL_SERIAL)


def store_error(exc: Exception) -> Exception:
    """The store error a driver exception stands for (`exc` itself when it is not the
    driver's, or already a store error)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, WriteTimeout):
        if exc.write_type == WriteType.CAS:
            return Contention(f"conditional write timed out under contention: {exc}")
        return StoreTimeout(f"write timed out: {exc}")
    if isinstance(exc, Unavailable):
        if exc.consistency in _SERIAL:
            return Contention(f"not enough replicas for a conditional write: {exc}")
        return StoreUnavailable(f"not enough replicas: {exc}")
    if isinstance(exc, OperationTimedOut | Timeout):
        return StoreTimeout(f"the database did not answer in time: {exc}")
    if isinstance(exc, NoHostAvailable | ConnectionException | OSError):
        return StoreUnavailable(f"the database cannot be reached: {exc}")
    if isinstance(exc, RequestExecutionException):  # read/write failures, overload, truncation
        return StoreUnavailable(f"the database failed the request: {exc}")
    if isinstance(exc, DriverException):
        return StoreUnavailable(f"database driver error: {exc}")
    # Anything else the driver raises (InvalidRequest on a schema that is not applied,
    # protocol errors...) is still a database failure as far as callers are concerned.
    if type(exc).__module__.startswith("cassandra"):
        return StoreUnavailable(f"database error: {exc!r}")
    return exc


@contextlib.contextmanager
def map_driver_errors() -> Iterator[None]:
    """Translate whatever the driver raises into StoreUnavailable / StoreTimeout / Contention."""
    try:
        yield
    except Exception as exc:
        mapped = store_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc


class Page:
    """One page of a result: its rows, and the state that fetches the next one (or None)."""

    __slots__ = ("paging_state", "rows")

    def __init__(self, rows: list[Row], paging_state: bytes | None) -> None:
        self.rows = rows
        self.paging_state = paging_state

    def one(self) -> Row | None:
        return self.rows[0] if self.rows else None


class _Waiter:
    """The answers a parked Trio task waits for; touched on the Trio thread only."""

    __slots__ = ("answers", "errors", "remaining", "task")

    def __init__(self, task: trio.lowlevel.Task, count: int) -> None:
        self.task: trio.lowlevel.Task | None = task  # None once it stopped waiting
        self.remaining = count
        self.answers: list[Any] = [None] * count
        self.errors: dict[int, Exception] | None = None

    def abort(self, _: Any) -> trio.lowlevel.Abort:
        self.task = None  # late answers wake nobody
        return trio.lowlevel.Abort.SUCCEEDED


class _Wakeups:
    """Answers handed over from the driver's thread, woken in bursts on the Trio thread.

    `answered` / `failed` may run on any thread: they only append to a deque. `_drain` runs on
    the Trio thread (through `run_sync_soon`) and does all the bookkeeping. The flag is cleared
    before the queue is emptied, so an answer pushed meanwhile is either drained by the running
    `_drain` or schedules the next one: none is left behind. A spare `_drain` finding an empty
    queue is harmless.
    """

    __slots__ = ("_ready", "_scheduled", "token")

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self.token = token
        self._ready: collections.deque[tuple[_Waiter, int, Any, bool]] = collections.deque()
        self._scheduled = False

    def answered(self, rows: Any, waiter: _Waiter, index: int) -> None:
        self._push((waiter, index, rows, False))

    def failed(self, exc: Exception, waiter: _Waiter, index: int) -> None:
        self._push((waiter, index, exc, True))

    def _push(self, answer: tuple[_Waiter, int, Any, bool]) -> None:
        self._ready.append(answer)
        if not self._scheduled:
            self._scheduled = True
            with contextlib.suppress(trio.RunFinishedError):
                self.token.run_sync_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        ready = self._ready
        while ready:
            waiter, index, value, failed = ready.popleft()
            if failed:
                if waiter.errors is None:
                    waiter.errors = {}
                waiter.errors[index] = value
            else:
                waiter.answers[index] = value
            waiter.remaining -= 1
            if waiter.remaining == 0 and waiter.task is not None:
                trio.lowlevel.reschedule(waiter.task)
                waiter.task = None


Statement = tuple[Any, Sequence[Any] | None]


class TrioSession:
    """A driver Session whose queries are awaited from Trio."""

    def __init__(self, session: Session, *, timeout: float) -> None:
        self._session = session
        self._timeout = timeout
        self._wakeups: _Wakeups | None = None

    @property
    def session(self) -> Session:
        return self._session

    def _current_wakeups(self) -> _Wakeups:
        token = trio.lowlevel.current_trio_token()
        wakeups = self._wakeups
        if wakeups is None or wakeups.token is not token:
            wakeups = self._wakeups = _Wakeups(token)
        return wakeups

    async def execute(
        self,
        statement: Any,
        params: Sequence[Any] | None = None,
        *,
        paging_state: bytes | None = None,
    ) -> Page:
        return (await self._run([(statement, params)], paging_state))[0]

    async def execute_many(self, statements: Sequence[Statement]) -> list[Page]:
        """Independent statements, sent at once; their first pages, in order."""
        if not statements:
            return []
        return await self._run(statements, None)

    async def _run(self, statements: Sequence[Statement], paging_state: bytes | None
                   ) -> list[Page]:
        wakeups = self._current_wakeups()
        waiter = _Waiter(trio.lowlevel.current_task(), len(statements))
        futures = []
        try:
            for index, (statement, params) in enumerate(statements):
                future = self._session.execute_async(
                    statement, params, timeout=self._timeout, paging_state=paging_state
                )
                future.add_callbacks(wakeups.answered, wakeups.failed,
                                     callback_args=(waiter, index), errback_args=(waiter, index))
                futures.append(future)
        except Exception as exc:  # refused before it was sent (bad parameters, shut down)
            waiter.task = None  # what was sent already completes on its own
            mapped = store_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        await trio.lowlevel.wait_task_rescheduled(waiter.abort)
        if waiter.errors:
            error = waiter.errors[min(waiter.errors)]
            mapped = store_error(error)
            if mapped is error:
                raise error
            raise mapped from error
        return [self._page(future, rows) for future, rows in zip(futures, waiter.answers,
                                                                  strict=True)]

    @staticmethod
    def _page(future: Any, rows: Any) -> Page:
        if not isinstance(rows, list):  # a write's void answer, or a row-less result
            rows = [] if rows is None else list(future.result().current_rows)
        return Page(rows, future.result().paging_state if future.has_more_pages else None)

    async def execute_all(self, statement: Any, params: Sequence[Any] | None = None) -> list[Row]:
        """Every row of a (small) result, page after page, without blocking the event loop."""
        page = await self.execute(statement, params)
        rows = page.rows
        while page.paging_state is not None:
            page = await self.execute(statement, params, paging_state=page.paging_state)
            rows.extend(page.rows)
        return rows
