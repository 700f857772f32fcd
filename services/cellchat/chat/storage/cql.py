"""The CQL store: `ChatStore` on ScyllaDB (Cassandra 5 in the tests), schema in cql/001_init.cql.

How each promise of the port is kept:

Dense sequences, all-or-nothing sends. Messages live in partitions `(conversation_id,
bucket)`, numbered 0, 1, 2... per conversation, newest first. The static column `last_seq` is
the highest seq of its partition. A send is ONE single-partition conditional batch: it inserts
every message of the call and sets `last_seq` if it still holds the expected value ("= null"
when the call opens the next partition). A call never spans two partitions: it lands whole in
the partition its first message belongs to, even when it runs past that partition's nominal
end (`(bucket + 1) * bucket_size - 1`). Splitting a call at the edge would need two conditional
writes on two partitions, and a failure between them would store half a call, so instead a
partition may run over its nominal end by at most one call; the next call then opens the next
partition. So partition `b` holds a contiguous run of seqs starting at or after
`b * bucket_size`, partitions never skip a number, and a seq `s` is in partition `s //
bucket_size` or, after an overrun, a few partitions below (at most `MAX_BATCH // bucket_size +
1`). Readers find it by walking down from `s // bucket_size` ("floor" reads, usually one).
A partition is full, and the next call opens the next one, once its `last_seq >= (b + 1) *
bucket_size - 1`. Opening partition `b + 1` first checks, with a serial read, that partition
`b` ends exactly at the expected seq: otherwise a caller with a wrong `expected_last_seq`
could open a partition past a gap.

Exact last seq. `conversation_heads` holds a hint (`last_seq`, `last_activity_ms`) written
after each send `USING TIMESTAMP <last seq>`, so the newest head wins whatever the write
order. It may lag (a crash after the send) but never leads. The truth is read from the hinted
partition's static `last_seq`, probing forward while the partition is full.

Idempotent sends. Before the conditional batch, each message's `(conversation, sender,
client id) -> seq` is recorded (TTL 25 h). Every attempt adds a candidate; a lost race leaves a
stale one. `find_by_client_ids` answers only with a candidate whose stored message really
carries that client id and sender.

Threads. `thread_replies` indexes replies per root, written ahead of the batch like the client
ids, removed again when the batch definitely failed, and verified against the messages on
read (a leftover whose seq holds another message is removed then). A root is marked with a
plain `has_replies = true` (never false, never the static column), and `reply_count` is the
size of its index partition, counted only for marked rows.

Horizons. `read_seq` and `delivered_seq` are written `USING TIMESTAMP <value>`, in two copies
(per conversation for `get_horizons`, per user for memberships and the inbox), so the highest
value wins without a read. Reading implies delivery: a read also writes `delivered_seq`, in the
same statement when both are the same value (one write per copy).

A lost conditional batch reports the partition's `last_seq` from its answer (see `Appended`)
when that is the conversation's last seq for sure: the partition is not full, so no later one
exists. The send sequencer retries at it without reading.

Inbox. Every send appends one `inbox_activity` row per recipient (partition: user and a
30-day period of activity time), before the head moves. A row is current only while its
`activity_ms` equals the head's `last_activity_ms`; reading newest first and skipping the others
yields each conversation once, with a stateless cursor `(period, activity_ms, conversation_id)`
and not a single tombstone. Memberships filter out conversations the user left. A page reads
the log until it has found `limit + 1` current rows (so the last page says so), which costs
the rows of the page plus the superseded rows between them (read in growing chunks: a
conversation with thousands of sends since a quieter one costs a handful of reads, not one per
send). Nothing prunes superseded rows yet; the log has no TTL, because a conversation must stay
in the inbox however long it has been quiet.

Marketplace state. A product's current data is written `USING TIMESTAMP <version>` and a
block `USING TIMESTAMP <decision ms>`, so replays and out-of-order deliveries converge on the
newest without a lightweight transaction (neither table may ever be written otherwise).
Product card locations are write-ahead records like the client ids, verified on read.

Errors leave through `trio_cql.map_driver_errors`. Work after a successful conditional batch
(inbox rows, head) is best effort: the message is stored and the call answers True even if
that work fails; the next send repairs both.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import attrs
import trio
from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import BatchStatement, BatchType, PreparedStatement, dict_factory

from cellchat.chat.app.ports import Appended
from cellchat.chat.domain.content import attachment_from_json, attachment_to_json
from cellchat.chat.domain.errors import InvalidArgument, StoreError
from cellchat.chat.domain.model import (
    Context,
    Conversation,
    ConversationKind,
    Horizons,
    InboxEntry,
    Membership,
    Message,
    MessageKind,
    Participant,
    ProductCard,
    Role,
)
from cellchat.chat.storage.trio_cql import Row, Statement, TrioSession, map_driver_errors

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The most messages one `append_messages` call may carry (a partition overruns its nominal
#: end by less than this).
MAX_BATCH = 256
#: Client ids are kept this long after the attempt that recorded them (the port promises 24 h).
CLIENT_ID_TTL_S = 25 * 3600
#: Inbox log partitions cover this much activity time each.
INBOX_PERIOD_MS = 30 * 24 * 3600 * 1000
#: Whether CQL frames are compressed (what the driver's `compression` takes). Off: the
#: statements of the chat are a few hundred bytes, and compressing them costs the Trio thread
#: more than it saves on a LAN (the lz4 call releases the GIL, and gets it back only after the
#: driver's I/O thread lets go).
COMPRESSION: bool | str = False
#: Concurrent queries one store call may have in flight.
_FAN_OUT = 64
_PERIODS_REMEMBERED = 50_000
_INBOX_MAX_CHUNK = 4096
#: Peers per `blocked_among` statement (the blockers' side reads that many partitions).
_BLOCKS_CHUNK = 100

_MESSAGE_COLUMNS = (
    "conversation_id, bucket, seq, message_id, sender_id, kind, body, attachment,"
    " client_message_id, created_at_ms, edited_at_ms, version, deleted, reply_to_seq,"
    " thread_root_seq, has_replies"
)

_STATEMENTS: dict[str, str] = {
    "conv_insert": (
        "INSERT INTO conversations (conversation_id, kind, title, created_by, created_at_ms,"
        " context_product_id, context_order_id) VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
    ),
    "conv_select": "SELECT * FROM conversations WHERE conversation_id = ?",
    "head_write": (
        "UPDATE conversation_heads USING TIMESTAMP ? SET last_seq = ?, last_activity_ms = ?"
        " WHERE conversation_id = ?"
    ),
    "head_select": (
        "SELECT last_seq, last_activity_ms FROM conversation_heads WHERE conversation_id = ?"
    ),
    "msg_top": (
        f"SELECT {_MESSAGE_COLUMNS}, last_seq FROM messages"
        " WHERE conversation_id = ? AND bucket = ? LIMIT 1"
    ),
    "msg_static_serial": (
        "SELECT conversation_id, bucket, last_seq FROM messages"
        " WHERE conversation_id = ? AND bucket = ? LIMIT 1"
    ),
    "msg_floor": (
        f"SELECT {_MESSAGE_COLUMNS} FROM messages"
        " WHERE conversation_id = ? AND bucket = ? AND seq <= ? LIMIT 1"
    ),
    "msg_before": (
        f"SELECT {_MESSAGE_COLUMNS} FROM messages"
        " WHERE conversation_id = ? AND bucket = ? AND seq < ? LIMIT ?"
    ),
    "msg_after": (
        f"SELECT {_MESSAGE_COLUMNS} FROM messages"
        " WHERE conversation_id = ? AND bucket = ? AND seq > ? ORDER BY seq ASC LIMIT ?"
    ),
    "msg_in": (
        f"SELECT {_MESSAGE_COLUMNS} FROM messages"
        " WHERE conversation_id = ? AND bucket = ? AND seq IN ?"
    ),
    "msg_insert": (
        "INSERT INTO messages (conversation_id, bucket, seq, message_id, sender_id, kind, body,"
        " attachment, client_message_id, created_at_ms, edited_at_ms, version, deleted,"
        " reply_to_seq, thread_root_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "msg_insert_root": (
        "INSERT INTO messages (conversation_id, bucket, seq, message_id, sender_id, kind, body,"
        " attachment, client_message_id, created_at_ms, edited_at_ms, version, deleted,"
        " reply_to_seq, thread_root_seq, has_replies)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, true)"
    ),
    "msg_cas_eq": (
        "UPDATE messages SET last_seq = ? WHERE conversation_id = ? AND bucket = ?"
        " IF last_seq = ?"
    ),
    "msg_cas_null": (
        "UPDATE messages SET last_seq = ? WHERE conversation_id = ? AND bucket = ?"
        " IF last_seq = null"
    ),
    "msg_update_content": (
        "UPDATE messages SET body = ?, attachment = ?, edited_at_ms = ?, version = ?, deleted = ?"
        " WHERE conversation_id = ? AND bucket = ? AND seq = ?"
    ),
    "msg_mark_root": (
        "UPDATE messages SET has_replies = true"
        " WHERE conversation_id = ? AND bucket = ? AND seq = ?"
    ),
    "cid_insert": (
        "INSERT INTO client_message_ids (conversation_id, sender_id, client_message_id, seq)"
        f" VALUES (?, ?, ?, ?) USING TTL {CLIENT_ID_TTL_S}"
    ),
    "cid_select": (
        "SELECT client_message_id, seq FROM client_message_ids"
        " WHERE conversation_id = ? AND sender_id = ? AND client_message_id IN ?"
    ),
    "thread_insert": (
        "INSERT INTO thread_replies (conversation_id, root_seq, seq, message_id)"
        " VALUES (?, ?, ?, ?)"
    ),
    "thread_delete": (
        "DELETE FROM thread_replies WHERE conversation_id = ? AND root_seq = ? AND seq = ?"
    ),
    "thread_select": (
        "SELECT seq, message_id FROM thread_replies"
        " WHERE conversation_id = ? AND root_seq = ? AND seq > ? LIMIT ?"
    ),
    "thread_count": (
        "SELECT COUNT(*) AS replies FROM thread_replies WHERE conversation_id = ? AND root_seq = ?"
    ),
    "part_upsert": (
        "INSERT INTO participants (conversation_id, user_id, role, joined_at_ms, active)"
        " VALUES (?, ?, ?, ?, true)"
    ),
    "part_select": (
        "SELECT user_id, role, joined_at_ms, active, read_seq, delivered_seq FROM participants"
        " WHERE conversation_id = ?"
    ),
    "part_leave": (
        "UPDATE participants SET active = false WHERE conversation_id = ? AND user_id = ?"
    ),
    "part_read": (
        "UPDATE participants USING TIMESTAMP ? SET read_seq = ?"
        " WHERE conversation_id = ? AND user_id = ?"
    ),
    "part_delivered": (
        "UPDATE participants USING TIMESTAMP ? SET delivered_seq = ?"
        " WHERE conversation_id = ? AND user_id = ?"
    ),
    # Reading implies delivery: one write sets both horizons when they are the same value.
    "part_horizons": (
        "UPDATE participants USING TIMESTAMP ? SET read_seq = ?, delivered_seq = ?"
        " WHERE conversation_id = ? AND user_id = ?"
    ),
    "memb_horizons": (
        "UPDATE memberships USING TIMESTAMP ? SET read_seq = ?, delivered_seq = ?"
        " WHERE user_id = ? AND conversation_id = ?"
    ),
    "memb_upsert": (
        "INSERT INTO memberships (user_id, conversation_id, active, joined_at_ms)"
        " VALUES (?, ?, true, ?)"
    ),
    "memb_leave": (
        "UPDATE memberships SET active = false WHERE user_id = ? AND conversation_id = ?"
    ),
    "memb_read": (
        "UPDATE memberships USING TIMESTAMP ? SET read_seq = ?"
        " WHERE user_id = ? AND conversation_id = ?"
    ),
    "memb_delivered": (
        "UPDATE memberships USING TIMESTAMP ? SET delivered_seq = ?"
        " WHERE user_id = ? AND conversation_id = ?"
    ),
    "memb_mute": (
        "UPDATE memberships SET muted_until_ms = ? WHERE user_id = ? AND conversation_id = ?"
    ),
    "memb_select": (
        "SELECT conversation_id, active, muted_until_ms, read_seq, delivered_seq"
        " FROM memberships WHERE user_id = ? AND conversation_id = ?"
    ),
    "memb_select_in": (
        "SELECT conversation_id, active, muted_until_ms, read_seq, delivered_seq"
        " FROM memberships WHERE user_id = ? AND conversation_id IN ?"
    ),
    "memb_all": "SELECT conversation_id, active FROM memberships WHERE user_id = ?",
    "memb_add_period": (
        "UPDATE memberships SET inbox_periods = inbox_periods + ? WHERE user_id = ?"
    ),
    "memb_periods": "SELECT DISTINCT user_id, inbox_periods FROM memberships WHERE user_id = ?",
    "inbox_insert": (
        "INSERT INTO inbox_activity (user_id, period, activity_ms, conversation_id)"
        " VALUES (?, ?, ?, ?)"
    ),
    "inbox_first": (
        "SELECT activity_ms, conversation_id FROM inbox_activity"
        " WHERE user_id = ? AND period = ? LIMIT ?"
    ),
    "inbox_after": (
        "SELECT activity_ms, conversation_id FROM inbox_activity"
        " WHERE user_id = ? AND period = ? AND (activity_ms, conversation_id) < (?, ?) LIMIT ?"
    ),
    "product_select": "SELECT card, version FROM products WHERE product_id = ?",
    "product_write": (
        "UPDATE products USING TIMESTAMP ? SET card = ?, version = ? WHERE product_id = ?"
    ),
    "card_insert": (
        "INSERT INTO product_cards (product_id, created_at_ms, conversation_id, seq)"
        " VALUES (?, ?, ?, ?)"
    ),
    "card_first": (
        "SELECT created_at_ms, conversation_id, seq FROM product_cards WHERE product_id = ?"
        " LIMIT ?"
    ),
    "card_after": (
        "SELECT created_at_ms, conversation_id, seq FROM product_cards WHERE product_id = ?"
        " AND (created_at_ms, conversation_id, seq) < (?, ?, ?) LIMIT ?"
    ),
    "card_delete": (
        "DELETE FROM product_cards WHERE product_id = ? AND created_at_ms = ?"
        " AND conversation_id = ? AND seq = ?"
    ),
    "block_write": (
        "UPDATE blocks USING TIMESTAMP ? SET blocked = ? WHERE blocker_id = ? AND blocked_id = ?"
    ),
    "block_select": "SELECT blocked FROM blocks WHERE blocker_id = ? AND blocked_id = ?",
    # Both directions between two users in one statement (two partitions, one round trip).
    "block_select_pair": (
        "SELECT blocker_id, blocked_id, blocked FROM blocks"
        " WHERE blocker_id IN ? AND blocked_id IN ?"
    ),
    # One partition, many rows: whom user_id blocked among some peers.
    "block_select_blocked_in": (
        "SELECT blocked_id, blocked FROM blocks WHERE blocker_id = ? AND blocked_id IN ?"
    ),
    # Many partitions (bounded by _BLOCKS_CHUNK): who among some peers blocked user_id.
    "block_select_blockers_in": (
        "SELECT blocker_id, blocked FROM blocks WHERE blocker_id IN ? AND blocked_id = ?"
    ),
}

#: Reads that must see the outcome of every conditional write, even one still in flight.
_SERIAL_READS = frozenset({"msg_static_serial"})


@attrs.frozen
class _Cursor:
    period: int
    activity_ms: int
    conversation_id: str

    def encode(self) -> str:
        raw = json.dumps([1, self.period, self.activity_ms, self.conversation_id])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> _Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            version, period, activity_ms, conversation_id = json.loads(raw)
        except (ValueError, TypeError, binascii.Error) as exc:
            raise InvalidArgument("cursor", "not a cursor this server issued") from exc
        if (
            version != 1
            or not all(isinstance(v, int) and not isinstance(v, bool)
                       for v in (period, activity_ms))
            or not isinstance(conversation_id, str)
        ):
            raise InvalidArgument("cursor", "not a cursor this server issued")
        return cls(period, activity_ms, conversation_id)


async def _gather(calls: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run the calls concurrently (at most _FAN_OUT at once); their results in order.

    The first error is re-raised as itself (not wrapped in an ExceptionGroup) once every call
    has finished, so callers see the same store errors as from a single query.
    """
    calls = list(calls)
    results: list[Any] = [None] * len(calls)
    errors: list[Exception] = []
    limiter = trio.CapacityLimiter(_FAN_OUT)

    async def run(index: int, call: Callable[[], Awaitable[T]]) -> None:
        async with limiter:
            try:
                results[index] = await call()
            except Exception as exc:
                errors.append(exc)

    if len(calls) <= 1:
        return [await call() for call in calls]
    async with trio.open_nursery() as nursery:
        for index, call in enumerate(calls):
            nursery.start_soon(run, index, call)
    if errors:
        raise errors[0]
    return results


def _period(activity_ms: int) -> int:
    return activity_ms // INBOX_PERIOD_MS


class CqlStore:
    """`ChatStore` on CQL; build it with `open_cql_store`."""

    def __init__(
        self, db: TrioSession, statements: dict[str, PreparedStatement], bucket_size: int
    ) -> None:
        self._db = db
        self._q = statements
        self._bucket = bucket_size
        # How far below `seq // bucket_size` a seq can be after partitions overran their ends.
        self._max_walk = MAX_BATCH // bucket_size + 2
        self._periods_written: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._closed = False

    @property
    def trio_session(self) -> TrioSession:
        """The Trio bridge to the cell's keyspace, for adapters that share the connection."""
        return self._db

    # ------------------------------------------------------------ plumbing

    async def _rows(self, name: str, *params: Any) -> list[Row]:
        return (await self._db.execute(self._q[name], params)).rows

    async def _all_rows(self, name: str, *params: Any) -> list[Row]:
        return await self._db.execute_all(self._q[name], params)

    async def _one(self, name: str, *params: Any) -> Row | None:
        return (await self._db.execute(self._q[name], params)).one()

    async def _run(self, name: str, *params: Any) -> None:
        await self._db.execute(self._q[name], params)

    async def _run_many(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Independent statements by name, concurrently (no task each)."""
        await self._execute_many([(self._q[name], params) for name, params in calls])

    async def _execute_many(self, statements: Sequence[Statement]) -> None:
        """Independent statements, at most _FAN_OUT in flight: one round trip per _FAN_OUT."""
        for start in range(0, len(statements), _FAN_OUT):
            await self._db.execute_many(statements[start:start + _FAN_OUT])

    def _message(self, row: Row, reply_count: int = 0) -> Message:
        return Message(
            conversation_id=row["conversation_id"],
            seq=row["seq"],
            message_id=row["message_id"],
            sender_id=row["sender_id"],
            kind=MessageKind(row["kind"]),
            text=row["body"] or "",
            attachment=attachment_from_json(row["attachment"]),
            client_message_id=row["client_message_id"] or "",
            created_at_ms=row["created_at_ms"] or 0,
            edited_at_ms=row["edited_at_ms"] or 0,
            version=row["version"] or 1,
            deleted=bool(row["deleted"]),
            reply_to_seq=row["reply_to_seq"] or 0,
            thread_root_seq=row["thread_root_seq"] or 0,
            reply_count=reply_count,
        )

    async def _messages(self, rows: Sequence[Row]) -> list[Message]:
        """Rows to messages, counting the replies of the rows marked as thread roots."""
        rows = [row for row in rows if row.get("message_id") is not None]
        counts = await _gather(partial(self._reply_count, row) for row in rows)
        return [self._message(row, count) for row, count in zip(rows, counts, strict=True)]

    async def _reply_count(self, row: Row) -> int:
        if not row.get("has_replies"):
            return 0
        found = await self._one("thread_count", row["conversation_id"], row["seq"])
        return int(found["replies"]) if found else 0

    # ------------------------------------------------------------ conversations

    @staticmethod
    def _conversation(row: Row) -> Conversation:
        return Conversation(
            conversation_id=row["conversation_id"],
            kind=ConversationKind(row["kind"]),
            created_by=row["created_by"] or "",
            created_at_ms=row["created_at_ms"] or 0,
            title=row["title"] or "",
            context=Context(row["context_product_id"] or "", row["context_order_id"] or ""),
        )

    async def create_conversation(
        self, conversation: Conversation, participants: Sequence[Participant]
    ) -> tuple[Conversation, bool]:
        c = conversation
        result = await self._one(
            "conv_insert", c.conversation_id, c.kind.value, c.title, c.created_by,
            c.created_at_ms, c.context.product_id, c.context.order_id,
        )
        created = bool(result and result["[applied]"])
        stored = c if created or result is None else self._conversation(result)
        cid = stored.conversation_id
        # Every creator writes the initial head: the winner may not have got to it yet. At
        # timestamp 0 it never hides a later send's head.
        await self._run("head_write", 0, 0, stored.created_at_ms, cid)
        if created:
            last_seq, activity_ms = 0, stored.created_at_ms
        else:
            last_seq = await self.get_last_seq(cid)
            head = await self._one("head_select", cid)
            activity_ms = head["last_activity_ms"] if head else stored.created_at_ms
        present = {p.user_id for p in await self.get_participants(cid)}
        missing = {p.user_id: p for p in participants if p.user_id not in present}
        await self._join(cid, list(missing.values()), last_seq, activity_ms)
        return stored, created

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        row = await self._one("conv_select", conversation_id)
        return None if row is None else self._conversation(row)

    async def _participant_rows(self, conversation_id: str) -> list[Row]:
        rows = await self._all_rows("part_select", conversation_id)
        return [r for r in rows if r["active"] and r["role"] is not None]

    async def get_participants(self, conversation_id: str) -> list[Participant]:
        return [
            Participant(r["user_id"], Role(r["role"]), r["joined_at_ms"] or 0)
            for r in await self._participant_rows(conversation_id)
        ]

    async def add_participants(
        self, conversation_id: str, participants: Sequence[Participant]
    ) -> None:
        unique = list({p.user_id: p for p in participants}.values())
        if not unique:
            return
        last_seq = await self.get_last_seq(conversation_id)
        head = await self._one("head_select", conversation_id)
        if head is not None:
            activity_ms = head["last_activity_ms"]
        else:
            conversation = await self.get_conversation(conversation_id)
            activity_ms = conversation.created_at_ms if conversation else 0
        await self._join(conversation_id, unique, last_seq, activity_ms)
        # A send that raced this join may have moved the head past the activity we filed the
        # newcomers under; file them under the new one too, or the conversation would hide
        # from their inbox until the next message.
        again = await self._one("head_select", conversation_id)
        if again is not None and again["last_activity_ms"] != activity_ms:
            await self._file_activity(
                [p.user_id for p in unique], conversation_id, again["last_activity_ms"]
            )

    async def _join(
        self, cid: str, participants: Sequence[Participant], last_seq: int, activity_ms: int
    ) -> None:
        if not participants:
            return
        calls: list[Callable[[], Awaitable[None]]] = []
        for p in participants:
            calls.append(
                partial(self._run, "part_upsert", cid, p.user_id, p.role.value, p.joined_at_ms)
            )
            calls.append(partial(self._run, "memb_upsert", p.user_id, cid, p.joined_at_ms))
            if last_seq > 0:
                calls.append(partial(self.write_horizons, cid, p.user_id, read_seq=last_seq))
        users = [p.user_id for p in participants]
        calls.append(partial(self._file_activity, users, cid, activity_ms))
        await _gather(calls)

    async def remove_participant(self, conversation_id: str, user_id: str) -> None:
        await self._run_many([
            ("part_leave", (conversation_id, user_id)),
            ("memb_leave", (user_id, conversation_id)),
        ])

    # ------------------------------------------------------------ locating messages

    async def _top(self, cid: str, bucket: int) -> Row | None:
        """The newest row of a partition, with its static last_seq; None if it has none."""
        return await self._one("msg_top", cid, bucket)

    async def _static_serial(self, cid: str, bucket: int) -> int | None:
        row = await self._one("msg_static_serial", cid, bucket)
        return None if row is None else row["last_seq"]

    def _full(self, bucket: int, last_seq: int) -> bool:
        return last_seq >= (bucket + 1) * self._bucket - 1

    async def _locate_last(self, cid: str) -> tuple[int, int, Row | None]:
        """(exact last seq, its partition, the newest row) — (0, 0, None) when empty."""
        head = await self._one("head_select", cid)
        hint = head["last_seq"] if head and head["last_seq"] else 0
        bucket = hint // self._bucket
        top = await self._top(cid, bucket)
        if top is None:
            # The hinted seq sits in an earlier partition that overran its end; that one is
            # then the newest partition.
            for lower in range(bucket - 1, max(-1, bucket - 1 - self._max_walk), -1):
                top = await self._top(cid, lower)
                if top is not None:
                    return top["last_seq"], lower, top
            return 0, 0, None
        while self._full(bucket, top["last_seq"]):
            following = await self._top(cid, bucket + 1)
            if following is None:
                break
            bucket, top = bucket + 1, following
        return top["last_seq"], bucket, top

    async def _floor(self, cid: str, seq: int) -> tuple[int, Row] | None:
        """The partition holding the highest stored seq <= `seq`, with that row."""
        if seq < 1:
            return None
        bucket = seq // self._bucket
        for candidate in range(bucket, max(-1, bucket - 1 - self._max_walk), -1):
            row = await self._one("msg_floor", cid, candidate, seq)
            if row is not None:
                return candidate, row
        return None

    async def _find_row(self, cid: str, seq: int) -> tuple[int, Row] | None:
        found = await self._floor(cid, seq)
        if found is None or found[1]["seq"] != seq:
            return None
        return found

    async def _rows_by_seq(self, cid: str, seqs: Iterable[int]) -> dict[int, Row]:
        """The stored rows among these seqs, read partition by partition."""
        wanted = sorted(set(s for s in seqs if s > 0))
        by_bucket: dict[int, list[int]] = {}
        for seq in wanted:
            by_bucket.setdefault(seq // self._bucket, []).append(seq)
        found: dict[int, Row] = {}

        async def read(bucket: int, group: list[int]) -> None:
            for row in await self._rows("msg_in", cid, bucket, group):
                if row.get("message_id") is not None:
                    found[row["seq"]] = row

        await _gather(partial(read, bucket, group) for bucket, group in by_bucket.items())
        # What was not in its nominal partition may sit in an earlier one that overran.
        rest = [seq for seq in wanted if seq not in found]
        if rest:
            located = await _gather(partial(self._find_row, cid, seq) for seq in rest)
            for hit in located:
                if hit is not None:
                    found[hit[1]["seq"]] = hit[1]
        return found

    # ------------------------------------------------------------ messages

    async def get_last_seq(self, conversation_id: str) -> int:
        last_seq, _, _ = await self._locate_last(conversation_id)
        return last_seq

    async def find_by_client_ids(
        self, conversation_id: str, sender_id: str, client_message_ids: Sequence[str]
    ) -> dict[str, Message]:
        ids = sorted(set(client_message_ids))
        if not ids:
            return {}
        candidates = await self._all_rows("cid_select", conversation_id, sender_id, ids)
        if not candidates:
            return {}
        rows = await self._rows_by_seq(conversation_id, (c["seq"] for c in candidates))
        verified: dict[str, Row] = {}
        for candidate in candidates:
            row = rows.get(candidate["seq"])
            client_id = candidate["client_message_id"]
            if (
                row is not None
                and row["client_message_id"] == client_id
                and row["sender_id"] == sender_id
            ):
                verified[client_id] = row
        messages = await self._messages(list(verified.values()))
        return {m.client_message_id: m for m in messages}

    async def append_messages(
        self,
        conversation_id: str,
        expected_last_seq: int,
        messages: Sequence[Message],
        recipients: Sequence[str],
        *,
        before: Callable[[], Awaitable[object]] | None = None,
    ) -> Appended:
        cid = conversation_id
        if not messages:
            if before is not None:
                await before()
            last_seq = await self.get_last_seq(cid)
            return Appended(last_seq == expected_last_seq, last_seq)
        if len(messages) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} messages per append")
        for offset, message in enumerate(messages, start=1):
            if message.seq != expected_last_seq + offset or message.conversation_id != cid:
                raise ValueError("messages must continue the conversation at expected_last_seq")
        first_seq = expected_last_seq + 1
        in_batch_roots = {
            m.thread_root_seq for m in messages if m.thread_root_seq >= first_seq
        }
        replies = [m for m in messages if m.thread_root_seq > 0]

        # Write-ahead records: harmless if the batch loses, found by retries if it wins.
        ahead = self._client_id_records(cid, messages) + [
            (self._q["card_insert"], (m.attachment.product_id, m.created_at_ms, cid, m.seq))
            for m in messages if isinstance(m.attachment, ProductCard)
        ] + [
            (self._q["thread_insert"], (cid, m.thread_root_seq, m.seq, m.message_id))
            for m in replies
        ]
        roots = sorted({m.thread_root_seq for m in replies if m.thread_root_seq < first_seq})
        calls: list[Callable[[], Awaitable[object]]] = [partial(self._execute_many, ahead)]
        calls += [partial(self._mark_root, cid, root) for root in roots]
        if before is not None:
            calls.append(before)
        await _gather(calls)
        try:
            outcome = await self._conditional_append(cid, expected_last_seq, messages,
                                                     in_batch_roots)
        except StoreError:
            raise  # the batch may have been applied: keep the records
        if not outcome.applied:
            await self._forget_replies(cid, replies)
            return outcome

        last = messages[-1]
        try:
            await self._file_activity(list(dict.fromkeys(recipients)), cid, last.created_at_ms)
            await self._run("head_write", last.seq, last.seq, last.created_at_ms, cid)
        except StoreError:
            log.warning(
                "message %s/%d stored, but its inbox entries or head were not written; the "
                "next send repairs them", cid, last.seq, exc_info=True,
            )
        return Appended(True)

    def _client_id_records(self, cid: str, messages: Sequence[Message]) -> list[Statement]:
        by_sender: dict[str, list[Message]] = {}
        for m in messages:
            if m.client_message_id:
                by_sender.setdefault(m.sender_id, []).append(m)
        records: list[Statement] = []
        for sender, group in by_sender.items():
            if len(group) == 1:
                m = group[0]
                records.append((self._q["cid_insert"],
                                (cid, sender, m.client_message_id, m.seq)))
                continue
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)  # one partition
            for m in group:
                batch.add(self._q["cid_insert"], (cid, sender, m.client_message_id, m.seq))
            records.append((batch, None))
        return records

    async def _mark_root(self, cid: str, root_seq: int) -> None:
        found = await self._find_row(cid, root_seq)
        if found is not None and not found[1]["has_replies"]:
            await self._run("msg_mark_root", cid, found[0], root_seq)

    async def _forget_replies(self, cid: str, replies: Sequence[Message]) -> None:
        if not replies:
            return
        try:
            await self._run_many(
                [("thread_delete", (cid, m.thread_root_seq, m.seq)) for m in replies]
            )
        except StoreError:  # left over: get_thread ignores and removes it later
            log.info("could not remove thread records of a failed send in %s", cid)

    async def _conditional_append(
        self, cid: str, expected: int, messages: Sequence[Message], roots: set[int]
    ) -> Appended:
        size = self._bucket
        if expected == 0:
            return await self._open(cid, 0, messages, roots)
        nominal = expected // size
        if not self._full(nominal, expected):
            # The usual case: the expected seq is in its nominal partition, which has room.
            applied, current = await self._cas(cid, nominal, expected, messages, roots)
            if applied or current is not None:
                return Appended(applied, None if applied else self._learned(nominal, current))
        else:
            current = await self._static_serial(cid, nominal)
            if current is not None:
                if current != expected:
                    return Appended(False, self._learned(nominal, current))
                return await self._open(cid, nominal + 1, messages, roots)
        # The nominal partition does not exist: the expected seq, if it is the last one, is in
        # an earlier partition that overran its end, and this send opens the next partition.
        for lower in range(nominal - 1, max(-1, nominal - 1 - self._max_walk), -1):
            current = await self._static_serial(cid, lower)
            if current is None:
                continue
            if current != expected:
                return Appended(False, self._learned(lower, current))
            if not self._full(lower, current):
                applied, current = await self._cas(cid, lower, expected, messages, roots)
                return Appended(applied, None if applied else self._learned(lower, current))
            return await self._open(cid, lower + 1, messages, roots)
        return Appended(False)

    async def _open(
        self, cid: str, bucket: int, messages: Sequence[Message], roots: set[int]
    ) -> Appended:
        """The conditional batch that opens partition `bucket`."""
        applied, current = await self._cas(cid, bucket, None, messages, roots)
        return Appended(applied, None if applied else self._learned(bucket, current))

    def _learned(self, bucket: int, current: int | None) -> int | None:
        """The conversation's last seq, given the last seq `current` of partition `bucket`
        as a serial read or a conditional write just saw it: exact while that partition is not
        full (the next one is only opened once it is), unknown otherwise."""
        if current is None or self._full(bucket, current):
            return None
        return current

    async def _cas(
        self,
        cid: str,
        bucket: int,
        expected: int | None,
        messages: Sequence[Message],
        roots: set[int],
    ) -> tuple[bool, int | None]:
        """One conditional batch into one partition: (applied, last_seq found if not)."""
        batch = BatchStatement(
            batch_type=BatchType.UNLOGGED, serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL
        )
        new_last = messages[-1].seq
        if expected is None:
            batch.add(self._q["msg_cas_null"], (new_last, cid, bucket))
        else:
            batch.add(self._q["msg_cas_eq"], (new_last, cid, bucket, expected))
        for m in messages:
            statement = self._q["msg_insert_root" if m.seq in roots else "msg_insert"]
            batch.add(statement, (
                cid, bucket, m.seq, m.message_id, m.sender_id, m.kind.value, m.text,
                attachment_to_json(m.attachment), m.client_message_id, m.created_at_ms,
                m.edited_at_ms, m.version, m.deleted, m.reply_to_seq, m.thread_root_seq,
            ))
        page = await self._db.execute(batch)
        row = page.one()
        if row is None:
            raise StoreError("the conditional batch returned no outcome")
        return bool(row["[applied]"]), row.get("last_seq")

    async def get_message(self, conversation_id: str, seq: int) -> Message | None:
        found = await self._find_row(conversation_id, seq)
        if found is None:
            return None
        return (await self._messages([found[1]]))[0]

    async def get_messages(
        self,
        conversation_id: str,
        *,
        before_seq: int = 0,
        after_seq: int = 0,
        limit: int,
    ) -> list[Message]:
        cid = conversation_id
        if limit <= 0:
            return []
        rows: list[Row] = []
        if after_seq > 0:
            start = await self._floor(cid, after_seq)
            if start is None:
                return []
            bucket, first = start[0], True
            while len(rows) < limit:
                page = await self._rows("msg_after", cid, bucket, after_seq, limit - len(rows))
                if not page and not first:
                    break  # partitions never skip a number: this one does not exist
                rows += page
                bucket, first = bucket + 1, False
            return await self._messages(rows)

        if before_seq > 0:
            start = await self._floor(cid, before_seq - 1)
            if start is None:
                return []
            bucket, bound = start[0], before_seq
        else:
            last_seq, bucket, _ = await self._locate_last(cid)
            if last_seq == 0:
                return []
            bound = last_seq + 1
        while bucket >= 0 and len(rows) < limit:
            rows += await self._rows("msg_before", cid, bucket, bound, limit - len(rows))
            bucket -= 1
        return await self._messages(rows)

    async def get_thread(
        self, conversation_id: str, root_seq: int, *, after_seq: int = 0, limit: int
    ) -> list[Message]:
        cid = conversation_id
        out: list[Row] = []
        position = after_seq
        while len(out) < limit:
            want = limit - len(out)
            index = await self._rows("thread_select", cid, root_seq, position, want)
            if not index:
                break
            rows = await self._rows_by_seq(cid, (entry["seq"] for entry in index))
            stale: list[int] = []
            for entry in index:
                row = rows.get(entry["seq"])
                if row is None:
                    continue  # its send is still in flight (or failed and will be replaced)
                if row["message_id"] != entry["message_id"] or row["thread_root_seq"] != root_seq:
                    stale.append(entry["seq"])  # a lost race's leftover
                    continue
                out.append(row)
            if stale:
                await _gather(
                    partial(self._run, "thread_delete", cid, root_seq, seq) for seq in stale
                )
            position = index[-1]["seq"]
            if len(index) < want:
                break
        return await self._messages(out)

    async def update_message(self, message: Message) -> None:
        found = await self._find_row(message.conversation_id, message.seq)
        if found is None:
            return  # nothing to rewrite; a plain write would create a row out of thin air
        await self._run(
            "msg_update_content", message.text, attachment_to_json(message.attachment),
            message.edited_at_ms, message.version, message.deleted,
            message.conversation_id, found[0], message.seq,
        )

    # ------------------------------------------------------------ horizons

    async def _write_horizon(self, cid: str, user: str, which: str, value: int) -> None:
        # The value is also the write timestamp: the highest value wins in both copies.
        await self._run_many([
            (f"part_{which}", (value, value, cid, user)),
            (f"memb_{which}", (value, value, user, cid)),
        ])

    async def advance_horizons(
        self,
        conversation_id: str,
        user_id: str,
        *,
        read_seq: int = 0,
        delivered_seq: int = 0,
    ) -> Membership:
        await self.write_horizons(conversation_id, user_id, read_seq=read_seq,
                                  delivered_seq=delivered_seq)
        row = await self._one("memb_select", user_id, conversation_id)
        return self._membership(conversation_id, user_id, row)

    async def write_horizons(
        self,
        conversation_id: str,
        user_id: str,
        *,
        read_seq: int = 0,
        delivered_seq: int = 0,
    ) -> None:
        cid, user = conversation_id, user_id
        delivered = max(read_seq, delivered_seq)
        if read_seq > 0 and delivered == read_seq:
            # The usual case (a read, a sender's own message): both horizons in one write per
            # copy, each cell at the timestamp of its value as the separate writes would do.
            await self._run_many([
                ("part_horizons", (read_seq, read_seq, read_seq, cid, user)),
                ("memb_horizons", (read_seq, read_seq, read_seq, user, cid)),
            ])
            return
        calls: list[Callable[[], Awaitable[None]]] = []
        if read_seq > 0:
            calls.append(partial(self._write_horizon, cid, user, "read", read_seq))
        if delivered > 0:
            calls.append(partial(self._write_horizon, cid, user, "delivered", delivered))
        if calls:
            await _gather(calls)

    @staticmethod
    def _membership(cid: str, user_id: str, row: Row | None) -> Membership:
        if row is None:
            return Membership(cid, user_id)
        return Membership(
            conversation_id=cid,
            user_id=user_id,
            read_seq=row["read_seq"] or 0,
            delivered_seq=row["delivered_seq"] or 0,
            muted_until_ms=row["muted_until_ms"] or 0,
        )

    async def get_horizons(self, conversation_id: str) -> list[Horizons]:
        return [
            Horizons(r["user_id"], r["read_seq"] or 0, r["delivered_seq"] or 0)
            for r in await self._participant_rows(conversation_id)
        ]

    async def get_membership(self, conversation_id: str, user_id: str) -> Membership | None:
        row = await self._one("memb_select", user_id, conversation_id)
        if row is None or not row["active"]:
            return None
        return self._membership(conversation_id, user_id, row)

    async def set_muted_until(
        self, conversation_id: str, user_id: str, muted_until_ms: int
    ) -> None:
        await self._run("memb_mute", muted_until_ms, user_id, conversation_id)

    # ------------------------------------------------------------ inbox

    async def _file_activity(self, users: Sequence[str], cid: str, activity_ms: int) -> None:
        """Append the conversation's activity to each user's inbox log."""
        period = _period(activity_ms)
        calls: list[tuple[str, tuple[Any, ...]]] = []
        new_periods: list[tuple[str, int]] = []
        for user in users:
            calls.append(("inbox_insert", (user, period, activity_ms, cid)))
            if (user, period) not in self._periods_written:
                calls.append(("memb_add_period", ({period}, user)))
                new_periods.append((user, period))
        await self._run_many(calls)
        for key in new_periods:
            self._periods_written[key] = None
            if len(self._periods_written) > _PERIODS_REMEMBERED:
                self._periods_written.popitem(last=False)

    async def list_inbox(
        self, user_id: str, *, limit: int, cursor: str = ""
    ) -> tuple[list[InboxEntry], str]:
        after = _Cursor.decode(cursor) if cursor else None
        if limit <= 0:
            return [], cursor
        static = await self._one("memb_periods", user_id)
        periods = sorted((static or {}).get("inbox_periods") or (), reverse=True)
        if after is not None:
            periods = [p for p in periods if p <= after.period]

        chunk = max(2 * (limit + 1), 32)
        heads: dict[str, int | None] = {}
        members: dict[str, Row | None] = {}
        found: list[tuple[_Cursor, Row]] = []  # (position, membership row)
        for period in periods:
            position = (
                (after.activity_ms, after.conversation_id)
                if after is not None and period == after.period else None
            )
            while len(found) <= limit:
                if position is None:
                    log_rows = await self._rows("inbox_first", user_id, period, chunk)
                else:
                    log_rows = await self._rows("inbox_after", user_id, period, *position, chunk)
                if not log_rows:
                    break
                await self._resolve(user_id, log_rows, heads, members)
                for entry in log_rows:
                    conv = entry["conversation_id"]
                    position = (entry["activity_ms"], conv)
                    member = members.get(conv)
                    if (
                        member is not None and member["active"]
                        and heads.get(conv) == entry["activity_ms"]
                    ):
                        found.append((_Cursor(period, *position), member))
                        if len(found) > limit:
                            break
                if len(log_rows) < chunk:
                    break
                # Superseded entries of a busy conversation can sit between current ones:
                # read further ahead each time so a long run of them costs few round trips.
                chunk = min(chunk * 2, _INBOX_MAX_CHUNK)
            if len(found) > limit:
                break

        page = found[:limit]
        next_cursor = page[-1][0].encode() if len(found) > limit else ""
        entries = await _gather(
            partial(self._inbox_entry, user_id, position, member) for position, member in page
        )
        return [e for e in entries if e is not None], next_cursor

    async def _resolve(
        self,
        user_id: str,
        log_rows: Sequence[Row],
        heads: dict[str, int | None],
        members: dict[str, Row | None],
    ) -> None:
        """Fetch the head activity and the membership of conversations not seen yet."""
        new = sorted({r["conversation_id"] for r in log_rows} - heads.keys())
        if not new:
            return

        async def head(conv: str) -> None:
            row = await self._one("head_select", conv)
            heads[conv] = None if row is None else row["last_activity_ms"]

        async def memberships() -> None:
            for conv in new:
                members[conv] = None
            for row in await self._all_rows("memb_select_in", user_id, new):
                members[row["conversation_id"]] = row

        calls: list[Callable[[], Awaitable[None]]] = [partial(head, conv) for conv in new]
        calls.append(memberships)
        await _gather(calls)

    async def _inbox_entry(
        self, user_id: str, position: _Cursor, member: Row
    ) -> InboxEntry | None:
        cid = position.conversation_id
        conversation, (last_seq, _, top) = await _gather2(
            lambda: self.get_conversation(cid), lambda: self._locate_last(cid)
        )
        if conversation is None:
            return None
        last_message = (await self._messages([top]))[0] if top is not None else None
        return InboxEntry(
            conversation=conversation,
            last_seq=last_seq,
            last_activity_ms=position.activity_ms,
            last_message=last_message,
            membership=self._membership(cid, user_id, member),
        )

    async def conversation_ids_of(self, user_id: str) -> set[str]:
        rows = await self._all_rows("memb_all", user_id)
        return {row["conversation_id"] for row in rows if row["active"]}

    # ------------------------------------------------------------ marketplace state

    async def upsert_product(self, product: ProductCard, version: int) -> bool:
        # The version is the write timestamp, so racing or replayed updates converge on the
        # newest one without a lightweight transaction. The read only spares the write and
        # answers the question; two racing deliveries of one new version may both say True.
        stored = await self._one("product_select", product.product_id)
        if stored is not None and stored["version"] is not None and stored["version"] >= version:
            return False
        await self._run("product_write", version, attachment_to_json(product), version,
                        product.product_id)
        return True

    async def get_products(self, product_ids: Sequence[str]) -> dict[str, ProductCard]:
        ids = sorted(set(product_ids))
        rows = await _gather(partial(self._one, "product_select", pid) for pid in ids)
        found: dict[str, ProductCard] = {}
        for pid, row in zip(ids, rows, strict=True):
            card = attachment_from_json(row["card"]) if row is not None else None
            if isinstance(card, ProductCard):
                found[pid] = card
        return found

    async def product_card_locations(
        self, product_id: str, *, limit: int
    ) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        position: tuple[int, str, int] | None = None
        while len(found) < limit:
            want = limit - len(found)
            if position is None:
                rows = await self._rows("card_first", product_id, want)
            else:
                rows = await self._rows("card_after", product_id, *position, want)
            if not rows:
                break
            verdicts = await _gather(partial(self._card_verdict, product_id, r) for r in rows)
            for row, verdict in zip(rows, verdicts, strict=True):
                if verdict is True:
                    found.append((row["conversation_id"], row["seq"]))
                elif verdict is False:  # the seq holds another message: a lost race's record
                    await self._run("card_delete", product_id, row["created_at_ms"],
                                    row["conversation_id"], row["seq"])
            last = rows[-1]
            position = (last["created_at_ms"], last["conversation_id"], last["seq"])
            if len(rows) < want:
                break
        return found

    async def _card_verdict(self, product_id: str, record: Row) -> bool | None:
        """True: the card is there; False: another message is; None: nothing is (yet)."""
        found = await self._find_row(record["conversation_id"], record["seq"])
        if found is None:
            return None
        card = attachment_from_json(found[1]["attachment"])
        return isinstance(card, ProductCard) and card.product_id == product_id

    async def set_block(
        self, blocker_id: str, blocked_id: str, *, blocked: bool, at_ms: int
    ) -> bool:
        # The decision time is the write timestamp: the latest decision wins in any order.
        before = await self._one("block_select", blocker_id, blocked_id)
        await self._run("block_write", at_ms, blocked, blocker_id, blocked_id)
        after = await self._one("block_select", blocker_id, blocked_id)
        was = bool(before and before["blocked"])
        return was != bool(after and after["blocked"])

    async def is_blocked(self, user_a: str, user_b: str) -> bool:
        pair = sorted({user_a, user_b})
        wanted = {(user_a, user_b), (user_b, user_a)}
        rows = await self._rows("block_select_pair", pair, pair)
        return any(row["blocked"] and (row["blocker_id"], row["blocked_id"]) in wanted
                   for row in rows)

    async def blocked_among(self, user_id: str, others: Collection[str]) -> set[str]:
        wanted = sorted(set(others) - {user_id})
        chunks = [wanted[i:i + _BLOCKS_CHUNK] for i in range(0, len(wanted), _BLOCKS_CHUNK)]
        calls: list[Callable[[], Awaitable[list[str]]]] = []
        for chunk in chunks:
            calls.append(partial(self._blocked_peers, "block_select_blocked_in", "blocked_id",
                                 user_id, chunk))
            calls.append(partial(self._blocked_peers, "block_select_blockers_in", "blocker_id",
                                 chunk, user_id))
        return {peer for peers in await _gather(calls) for peer in peers}

    async def _blocked_peers(self, name: str, column: str, *params: Any) -> list[str]:
        return [row[column] for row in await self._all_rows(name, *params) if row["blocked"]]

    # ------------------------------------------------------------ lifetime

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        cluster = self._db.session.cluster
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(cluster.shutdown)


async def _gather2(
    first: Callable[[], Awaitable[Any]], second: Callable[[], Awaitable[Any]]
) -> tuple[Any, Any]:
    a, b = await _gather([first, second])
    return a, b


_TABLE_REFERENCE = re.compile(r"\b(FROM|INTO|UPDATE)\s+(\w+)")
_KEYSPACE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def _prepare_all(session: Session, keyspace: str) -> dict[str, PreparedStatement]:
    # Statements name their keyspace: the session has none (Cassandra 5 warns about prepared
    # statements that rely on the session's keyspace, and they are ambiguous anyway).
    prepared: dict[str, PreparedStatement] = {}
    for name, cql in _STATEMENTS.items():
        statement = session.prepare(_TABLE_REFERENCE.sub(rf"\1 {keyspace}.\2", cql))
        if name in _SERIAL_READS:
            statement.consistency_level = ConsistencyLevel.LOCAL_SERIAL
        prepared[name] = statement
    return prepared


@asynccontextmanager
async def open_cql_store(
    hosts: Sequence[str],
    port: int,
    keyspace: str,
    *,
    username: str | None = None,
    password: str | None = None,
    bucket_size: int = 1000,
    request_timeout: float = 5.0,
) -> AsyncIterator[CqlStore]:
    """Connect to the cell's keyspace (migrations already applied) and prepare every query.

    The driver keeps reconnecting on its own while the database is away; the store holds no
    connection state of its own, so it works again as soon as the database is back.

    `bucket_size` is part of the data layout: every replica of a cell must use the same value
    for the life of its keyspace (the tests share one keyspace between sizes only because each
    test writes its own conversations).
    """
    if bucket_size < 2:
        raise ValueError("bucket_size must be at least 2")
    if not _KEYSPACE_NAME.match(keyspace):
        raise ValueError(f"invalid keyspace name {keyspace!r}")
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        request_timeout=request_timeout,
        row_factory=dict_factory,
    )
    auth = None
    if username is not None:
        auth = PlainTextAuthProvider(username=username, password=password or "")
    with map_driver_errors():
        cluster = Cluster(
            contact_points=list(hosts),
            port=port,
            auth_provider=auth,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=request_timeout,
            control_connection_timeout=request_timeout,
            reconnection_policy=ExponentialReconnectionPolicy(0.5, 10.0),
            compression=COMPRESSION,
        )
    store: CqlStore | None = None
    try:
        with map_driver_errors():
            session = await trio.to_thread.run_sync(cluster.connect)
            statements = await trio.to_thread.run_sync(_prepare_all, session, keyspace)
        store = CqlStore(TrioSession(session, timeout=request_timeout), statements, bucket_size)
        yield store
    finally:
        if store is not None:
            await store.aclose()
        else:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(cluster.shutdown)
