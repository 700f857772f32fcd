"""The event outbox on CQL (schema: cql/003_outbox.cql), implementing `cellchat.events.Outbox`.

Intents are rows `((name, minute), recorded_at_ms, event_id)`, never deleted: deleting each
published intent would leave a tombstone per event for every later read of the partition to
step over. Instead this adapter remembers how far it has seen everything published (the
*frontier*, in event time) and reads from there, minus a safety margin for writers whose rows
land a little out of order; ids published within that margin are remembered and skipped. Rows
expire after three days (TWCS drops them by whole files).

Rules:
- `pending` reads the minutes listed in `outbox_minutes` from the frontier's minute on, oldest
  first, skipping ids already `done`. It answers at most `limit` intents.
- `done` marks ids; the frontier moves up to just below the oldest intent handed out by
  `pending` and not yet done (or to the newest one seen when all are done), and is saved to
  `outbox_progress` every `save_every_s` so a restarted relay does not start over.
- One relay per outbox name is the intended setup; several are safe (events are re-published
  with the same id and consumers drop duplicates) but do the work several times.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import trio
from cassandra.query import PreparedStatement

from cellchat.chat.storage.trio_cql import TrioSession, map_driver_errors
from cellchat.events.outbox import Intent

MINUTE_MS = 60_000
MARGIN_MS = 30_000  # writers' rows may land this far behind the frontier
START_BACK_MS = 3_600_000  # a relay with no saved progress starts an hour back

_STATEMENTS = {
    "insert": (
        "INSERT INTO {ks}.outbox (name, minute, recorded_at_ms, event_id, intent)"
        " VALUES (?, ?, ?, ?, ?)"
    ),
    "minute_insert": "INSERT INTO {ks}.outbox_minutes (name, minute) VALUES (?, ?)",
    "minutes": "SELECT minute FROM {ks}.outbox_minutes WHERE name = ? AND minute >= ?",
    "rows": (
        "SELECT recorded_at_ms, event_id, intent FROM {ks}.outbox"
        " WHERE name = ? AND minute = ? AND recorded_at_ms >= ?"
    ),
    "progress": "SELECT frontier_ms FROM {ks}.outbox_progress WHERE name = ?",
    "progress_save": "UPDATE {ks}.outbox_progress SET frontier_ms = ? WHERE name = ?",
}

_Key = tuple[int, str]  # (recorded_at_ms, event_id)


class CqlOutbox:
    def __init__(self, db: TrioSession, statements: dict[str, PreparedStatement], name: str,
                 frontier_ms: int, *, save_every_s: float = 5.0) -> None:
        self._db = db
        self._q = statements
        self._name = name
        self._frontier_ms = frontier_ms
        self._saved_frontier_ms = frontier_ms
        self._save_every_s = save_every_s
        self._last_save = time.monotonic()
        self._minutes_known: set[int] = set()
        self._outstanding: dict[str, _Key] = {}  # handed out by pending, not yet done
        self._done: dict[str, int] = {}  # id -> recorded_at_ms, kept while inside the margin
        self._recorded: OrderedDict[str, int] = OrderedDict()  # recorded here: id -> time
        self._newest_seen_ms = frontier_ms

    @classmethod
    async def open(cls, db: TrioSession, keyspace: str, name: str, *,
                   start_ms: int | None = None) -> CqlOutbox:
        session = db.session
        with map_driver_errors():
            statements = await trio.to_thread.run_sync(
                lambda: {k: session.prepare(v.format(ks=keyspace))
                         for k, v in _STATEMENTS.items()}
            )
        row = (await db.execute(statements["progress"], (name,))).one()
        if start_ms is None:
            start_ms = (row["frontier_ms"] if row and row["frontier_ms"] is not None
                        else int(time.time() * 1000) - START_BACK_MS)
        return cls(db, statements, name, start_ms)

    @property
    def frontier_ms(self) -> int:
        return self._frontier_ms

    async def record(self, intents: Sequence[Intent]) -> None:
        async with trio.open_nursery() as nursery:
            for intent in intents:
                nursery.start_soon(self._record_one, intent)

    async def _record_one(self, intent: Intent) -> None:
        at = intent.recorded_at_ms
        self._recorded[intent.id] = at
        if len(self._recorded) > 100_000:
            self._recorded.popitem(last=False)
        minute = at // MINUTE_MS
        # The row first, then its minute in the index: a relay that sees the minute sees the row.
        await self._db.execute(self._q["insert"],
                               (self._name, minute, at, intent.id, intent.to_json()))
        if minute not in self._minutes_known:
            await self._db.execute(self._q["minute_insert"], (self._name, minute))
            self._minutes_known.add(minute)
            if len(self._minutes_known) > 10_000:
                self._minutes_known.clear()

    async def pending(self, limit: int) -> list[Intent]:
        if limit <= 0:
            return []
        low = self._frontier_ms - MARGIN_MS
        minute_rows = await self._db.execute_all(self._q["minutes"],
                                                 (self._name, low // MINUTE_MS))
        found: list[Intent] = []
        for minute in sorted(r["minute"] for r in minute_rows):
            rows = await self._db.execute_all(self._q["rows"], (self._name, minute, low))
            for row in rows:
                if row["event_id"] in self._done:
                    continue
                intent = Intent.from_json(row["intent"])
                found.append(intent)
                self._outstanding[intent.id] = (row["recorded_at_ms"], row["event_id"])
                self._newest_seen_ms = max(self._newest_seen_ms, row["recorded_at_ms"])
                if len(found) >= limit:
                    return found
        return found

    async def done(self, ids: Sequence[str]) -> None:
        for intent_id in ids:
            key = self._outstanding.pop(intent_id, None)
            if key is not None:
                self._done[intent_id] = key[0]
            elif intent_id in self._recorded:
                self._done[intent_id] = self._recorded[intent_id]
        if self._outstanding:
            frontier = min(key[0] for key in self._outstanding.values()) - 1
        else:
            frontier = self._newest_seen_ms
        self._frontier_ms = max(self._frontier_ms, frontier)
        horizon = self._frontier_ms - MARGIN_MS
        for intent_id, at in list(self._done.items()):
            if at < horizon:
                del self._done[intent_id]
        if (time.monotonic() - self._last_save >= self._save_every_s
                and self._frontier_ms != self._saved_frontier_ms):
            await self._db.execute(self._q["progress_save"], (self._frontier_ms, self._name))
            self._saved_frontier_ms = self._frontier_ms
            self._last_save = time.monotonic()

    def statistics(self) -> dict[str, Any]:
        return {"frontier_ms": self._frontier_ms, "outstanding": len(self._outstanding)}
