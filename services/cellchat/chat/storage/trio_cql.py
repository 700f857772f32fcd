"""Run CQL queries from Trio without a thread per query, and translate the driver's errors.

The driver does its I/O on its own reactor thread (libev). `execute_async` returns a future;
its callback wakes the waiting Trio task through the Trio token (`run_sync_soon` is the one
thread-safe way into a Trio run, and also works when the driver calls back inline, on the Trio
thread, because the answer was already there).

Rules:
- A result is only ever read from `current_rows`: iterating a driver ResultSet past its first
  page fetches the next page synchronously, which would block the whole event loop. Further
  pages are fetched with `paging_state`, each one awaited like any query.
- If the waiting task is cancelled, the query still runs to completion in the driver (a CQL
  request cannot be taken back); its late answer wakes nobody and is dropped. Nothing is kept
  per query after it returns, so nothing leaks.
- Driver exceptions never leave this module: `map_driver_errors` turns them into the store
  errors of the domain (`raise ... from exc`).
- Blocking driver calls (connect, prepare, shutdown) belong in `trio.to_thread.run_sync`.
"""

from __future__ import annotations

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
from cassandra.cluster import NoHostAvailable, ResponseFuture, Session
from cassandra.connection import ConnectionException

from cellchat.chat.domain.errors import (
    Contention,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)

Row = dict[str, Any]

_SERIAL = (ConsistencyLevel.SERIAL, ConsistencyLevel.LOCAL_SERIAL)


@contextlib.contextmanager
def map_driver_errors() -> Iterator[None]:
    """Translate whatever the driver raises into StoreUnavailable / StoreTimeout / Contention."""
    try:
        yield
    except StoreError:
        raise
    except WriteTimeout as exc:
        if exc.write_type == WriteType.CAS:
            raise Contention(f"conditional write timed out under contention: {exc}") from exc
        raise StoreTimeout(f"write timed out: {exc}") from exc
    except Unavailable as exc:
        if exc.consistency in _SERIAL:
            raise Contention(f"not enough replicas for a conditional write: {exc}") from exc
        raise StoreUnavailable(f"not enough replicas: {exc}") from exc
    except (OperationTimedOut, Timeout) as exc:
        raise StoreTimeout(f"the database did not answer in time: {exc}") from exc
    except (NoHostAvailable, ConnectionException, OSError) as exc:
        raise StoreUnavailable(f"the database cannot be reached: {exc}") from exc
    except RequestExecutionException as exc:  # read/write failures, overload, truncation
        raise StoreUnavailable(f"the database failed the request: {exc}") from exc
    except DriverException as exc:
        raise StoreUnavailable(f"database driver error: {exc}") from exc
    except Exception as exc:
        # Anything else the driver raises (InvalidRequest on a schema that is not applied,
        # protocol errors...) is still a database failure as far as callers are concerned.
        if type(exc).__module__.startswith("cassandra"):
            raise StoreUnavailable(f"database error: {exc!r}") from exc
        raise


class Page:
    """One page of a result: its rows, and the state that fetches the next one (or None)."""

    __slots__ = ("paging_state", "rows")

    def __init__(self, rows: list[Row], paging_state: bytes | None) -> None:
        self.rows = rows
        self.paging_state = paging_state

    def one(self) -> Row | None:
        return self.rows[0] if self.rows else None


class TrioSession:
    """A driver Session whose queries are awaited from Trio."""

    def __init__(self, session: Session, *, timeout: float) -> None:
        self._session = session
        self._timeout = timeout

    @property
    def session(self) -> Session:
        return self._session

    async def execute(
        self,
        statement: Any,
        params: Sequence[Any] | None = None,
        *,
        paging_state: bytes | None = None,
    ) -> Page:
        with map_driver_errors():
            future = self._session.execute_async(
                statement, params, timeout=self._timeout, paging_state=paging_state
            )
            await _wait(future)
            result = future.result()  # already complete: returns at once
            return Page(list(result.current_rows), result.paging_state)

    async def execute_all(self, statement: Any, params: Sequence[Any] | None = None) -> list[Row]:
        """Every row of a (small) result, page after page, without blocking the event loop."""
        page = await self.execute(statement, params)
        rows = page.rows
        while page.paging_state is not None:
            page = await self.execute(statement, params, paging_state=page.paging_state)
            rows.extend(page.rows)
        return rows


async def _wait(future: ResponseFuture) -> None:
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object = None) -> None:
        # Runs on the driver's thread, or inline on ours if the answer is already there.
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    future.add_callbacks(wake, wake)
    await done.wait()
