"""The embedded store: SQLite in the service's own process, for `cellchat run` with no settings.

It exists so a newcomer has a working chat in one command; production and the integration
tests use the CQL store. It keeps the same promises as every `ChatStore` (the contract suite
checks both). Each method does all its SQLite work without yielding to Trio in between, and
the service is single-threaded, so every method is atomic without further locking. SQLite calls
are fast enough (in memory or a local file with WAL) to run on the event loop directly.

Being the database's only writer, the store keeps each conversation's roster (what
`get_participants` returns, read on every send) once it has read it, and forgets it whenever
it changes the roster: a large group's send then builds no participant objects.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from cellchat.chat.app.ports import Appended
from cellchat.chat.domain.content import attachment_from_json, attachment_to_json
from cellchat.chat.domain.errors import InvalidArgument
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
from cellchat.events.outbox import Intent

#: Rosters kept at most (all forgotten at once beyond it: a cache, not a second store).
_ROSTERS_KEPT = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
  conversation_id TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT NOT NULL,
  product_id TEXT NOT NULL, order_id TEXT NOT NULL, created_by TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0,
  last_activity_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS participants (
  conversation_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL,
  joined_at_ms INTEGER NOT NULL, PRIMARY KEY (conversation_id, user_id)
);
CREATE TABLE IF NOT EXISTS memberships (
  conversation_id TEXT NOT NULL, user_id TEXT NOT NULL, active INTEGER NOT NULL,
  read_seq INTEGER NOT NULL DEFAULT 0, delivered_seq INTEGER NOT NULL DEFAULT 0,
  muted_until_ms INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships (user_id, active);
CREATE TABLE IF NOT EXISTS messages (
  conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, message_id TEXT NOT NULL,
  sender_id TEXT NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL, attachment TEXT NOT NULL,
  client_message_id TEXT NOT NULL, created_at_ms INTEGER NOT NULL,
  edited_at_ms INTEGER NOT NULL DEFAULT 0, version INTEGER NOT NULL DEFAULT 1,
  deleted INTEGER NOT NULL DEFAULT 0, reply_to_seq INTEGER NOT NULL DEFAULT 0,
  thread_root_seq INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX IF NOT EXISTS messages_by_thread ON messages (conversation_id, thread_root_seq, seq);
CREATE TABLE IF NOT EXISTS products (
  product_id TEXT PRIMARY KEY, card TEXT NOT NULL, version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS product_cards (
  product_id TEXT NOT NULL, conversation_id TEXT NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY (product_id, conversation_id, seq)
);
CREATE TABLE IF NOT EXISTS blocks (
  blocker_id TEXT NOT NULL, blocked_id TEXT NOT NULL, blocked INTEGER NOT NULL,
  at_ms INTEGER NOT NULL, PRIMARY KEY (blocker_id, blocked_id)
);
CREATE TABLE IF NOT EXISTS outbox (
  event_id TEXT PRIMARY KEY, intent TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS client_ids (
  conversation_id TEXT NOT NULL, sender_id TEXT NOT NULL, client_message_id TEXT NOT NULL,
  seq INTEGER NOT NULL, PRIMARY KEY (conversation_id, sender_id, client_message_id)
);
"""

#: Peers per `blocked_among` query (two bound parameters each, far below SQLite's limit).
_BLOCKS_CHUNK = 400

_MESSAGE_COLUMNS = (
    "m.conversation_id, m.seq, m.message_id, m.sender_id, m.kind, m.text, m.attachment,"
    " m.client_message_id, m.created_at_ms, m.edited_at_ms, m.version, m.deleted,"
    " m.reply_to_seq, m.thread_root_seq,"
    " (SELECT COUNT(*) FROM messages r WHERE r.conversation_id = m.conversation_id"
    "  AND r.thread_root_seq = m.seq) AS reply_count"
)


def _message(row: sqlite3.Row) -> Message:
    return Message(
        conversation_id=row["conversation_id"],
        seq=row["seq"],
        message_id=row["message_id"],
        sender_id=row["sender_id"],
        kind=MessageKind(row["kind"]),
        text=row["text"],
        attachment=attachment_from_json(row["attachment"]),
        client_message_id=row["client_message_id"],
        created_at_ms=row["created_at_ms"],
        edited_at_ms=row["edited_at_ms"],
        version=row["version"],
        deleted=bool(row["deleted"]),
        reply_to_seq=row["reply_to_seq"],
        thread_root_seq=row["thread_root_seq"],
        reply_count=row["reply_count"],
    )


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        conversation_id=row["conversation_id"],
        kind=ConversationKind(row["kind"]),
        created_by=row["created_by"],
        created_at_ms=row["created_at_ms"],
        title=row["title"],
        context=Context(row["product_id"], row["order_id"]),
    )


def _membership(row: sqlite3.Row) -> Membership:
    return Membership(
        conversation_id=row["conversation_id"],
        user_id=row["user_id"],
        read_seq=row["read_seq"],
        delivered_seq=row["delivered_seq"],
        muted_until_ms=row["muted_until_ms"],
    )


class EmbeddedStore:
    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._rosters: dict[str, tuple[Participant, ...]] = {}

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._db.execute(sql, params).fetchall()

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    # ------------------------------------------------------------ conversations

    async def create_conversation(
        self, conversation: Conversation, participants: Sequence[Participant]
    ) -> tuple[Conversation, bool]:
        await trio.lowlevel.checkpoint()
        c = conversation
        with self._tx():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO conversations VALUES (?,?,?,?,?,?,?,0,?)",
                (c.conversation_id, c.kind.value, c.title, c.context.product_id,
                 c.context.order_id, c.created_by, c.created_at_ms, c.created_at_ms),
            )
            created = cursor.rowcount == 1
            stored = _conversation(
                self._q("SELECT * FROM conversations WHERE conversation_id=?",
                        (c.conversation_id,))[0]
            )
            for p in participants:
                self._add_participant(stored.conversation_id, p, stored.created_at_ms)
        return stored, created

    def _add_participant(self, cid: str, p: Participant, joined_at_ms: int) -> None:
        self._rosters.pop(cid, None)
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO participants VALUES (?,?,?,?)",
            (cid, p.user_id, p.role.value, joined_at_ms),
        )
        if cursor.rowcount == 0:
            return  # already a participant: their row and horizons stay as they are
        last_seq = self._last_seq(cid)
        self._db.execute(
            "INSERT INTO memberships (conversation_id, user_id, active, read_seq, delivered_seq)"
            " VALUES (?,?,1,?,?) ON CONFLICT DO UPDATE SET active=1,"
            " read_seq=max(read_seq, excluded.read_seq),"
            " delivered_seq=max(delivered_seq, excluded.delivered_seq)",
            (cid, p.user_id, last_seq, last_seq),
        )

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        await trio.lowlevel.checkpoint()
        rows = self._q("SELECT * FROM conversations WHERE conversation_id=?", (conversation_id,))
        return _conversation(rows[0]) if rows else None

    async def get_participants(self, conversation_id: str) -> list[Participant]:
        await trio.lowlevel.checkpoint()
        roster = self._rosters.get(conversation_id)
        if roster is None:
            roster = tuple(
                Participant(r["user_id"], Role(r["role"]), r["joined_at_ms"])
                for r in self._q(
                    "SELECT * FROM participants WHERE conversation_id=? ORDER BY user_id",
                    (conversation_id,),
                )
            )
            if len(self._rosters) >= _ROSTERS_KEPT:
                self._rosters.clear()
            self._rosters[conversation_id] = roster
        return list(roster)

    async def add_participants(
        self, conversation_id: str, participants: Sequence[Participant]
    ) -> None:
        await trio.lowlevel.checkpoint()
        with self._tx():
            for p in participants:
                self._add_participant(conversation_id, p, p.joined_at_ms)

    async def remove_participant(self, conversation_id: str, user_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._rosters.pop(conversation_id, None)
        with self._tx():
            self._db.execute(
                "DELETE FROM participants WHERE conversation_id=? AND user_id=?",
                (conversation_id, user_id),
            )
            self._db.execute(
                "UPDATE memberships SET active=0 WHERE conversation_id=? AND user_id=?",
                (conversation_id, user_id),
            )

    # ------------------------------------------------------------ messages

    def _last_seq(self, conversation_id: str) -> int:
        rows = self._q(
            "SELECT last_seq FROM conversations WHERE conversation_id=?", (conversation_id,)
        )
        return int(rows[0]["last_seq"]) if rows else 0

    async def get_last_seq(self, conversation_id: str) -> int:
        await trio.lowlevel.checkpoint()
        return self._last_seq(conversation_id)

    async def find_by_client_ids(
        self, conversation_id: str, sender_id: str, client_message_ids: Sequence[str]
    ) -> dict[str, Message]:
        await trio.lowlevel.checkpoint()
        found: dict[str, Message] = {}
        for client_id in client_message_ids:
            rows = self._q(
                f"SELECT {_MESSAGE_COLUMNS} FROM client_ids c JOIN messages m"
                " ON m.conversation_id = c.conversation_id AND m.seq = c.seq"
                " WHERE c.conversation_id=? AND c.sender_id=? AND c.client_message_id=?",
                (conversation_id, sender_id, client_id),
            )
            if rows:
                found[client_id] = _message(rows[0])
        return found

    async def append_messages(
        self,
        conversation_id: str,
        expected_last_seq: int,
        messages: Sequence[Message],
        recipients: Sequence[str],
        *,
        before: Callable[[], Awaitable[object]] | None = None,
    ) -> Appended:
        await trio.lowlevel.checkpoint()
        if before is not None:
            await before()
        if not messages:
            last_seq = self._last_seq(conversation_id)
            return Appended(last_seq == expected_last_seq, last_seq)
        with self._tx():
            last_seq = self._last_seq(conversation_id)
            if last_seq != expected_last_seq:
                return Appended(False, last_seq)
            for offset, m in enumerate(messages, start=1):
                if m.seq != expected_last_seq + offset:
                    raise ValueError("messages must continue the sequence densely")
                self._db.execute(
                    "INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (conversation_id, m.seq, m.message_id, m.sender_id, m.kind.value, m.text,
                     attachment_to_json(m.attachment), m.client_message_id, m.created_at_ms,
                     m.edited_at_ms, m.version, int(m.deleted), m.reply_to_seq,
                     m.thread_root_seq),
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO client_ids VALUES (?,?,?,?)",
                    (conversation_id, m.sender_id, m.client_message_id, m.seq),
                )
                if isinstance(m.attachment, ProductCard):
                    self._db.execute(
                        "INSERT OR IGNORE INTO product_cards VALUES (?,?,?)",
                        (m.attachment.product_id, conversation_id, m.seq),
                    )
            last = messages[-1]
            self._db.execute(
                "UPDATE conversations SET last_seq=?, last_activity_ms=max(last_activity_ms, ?)"
                " WHERE conversation_id=?",
                (last.seq, last.created_at_ms, conversation_id),
            )
        return Appended(True)

    async def get_message(self, conversation_id: str, seq: int) -> Message | None:
        await trio.lowlevel.checkpoint()
        rows = self._q(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE conversation_id=? AND seq=?",
            (conversation_id, seq),
        )
        return _message(rows[0]) if rows else None

    async def get_messages(
        self, conversation_id: str, *, before_seq: int = 0, after_seq: int = 0, limit: int
    ) -> list[Message]:
        await trio.lowlevel.checkpoint()
        if after_seq > 0:
            sql = "AND seq > ? ORDER BY seq ASC"
            bound = after_seq
        else:
            sql = "AND seq < ? ORDER BY seq DESC"
            bound = before_seq if before_seq > 0 else 2**62
        rows = self._q(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE conversation_id=? {sql} LIMIT ?",
            (conversation_id, bound, limit),
        )
        return [_message(r) for r in rows]

    async def get_thread(
        self, conversation_id: str, root_seq: int, *, after_seq: int = 0, limit: int
    ) -> list[Message]:
        await trio.lowlevel.checkpoint()
        rows = self._q(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE conversation_id=?"
            " AND thread_root_seq=? AND seq > ? ORDER BY seq ASC LIMIT ?",
            (conversation_id, root_seq, after_seq, limit),
        )
        return [_message(r) for r in rows]

    async def update_message(self, message: Message) -> None:
        await trio.lowlevel.checkpoint()
        m = message
        self._db.execute(
            "UPDATE messages SET text=?, attachment=?, edited_at_ms=?, version=?, deleted=?"
            " WHERE conversation_id=? AND seq=?",
            (m.text, attachment_to_json(m.attachment), m.edited_at_ms, m.version,
             int(m.deleted), m.conversation_id, m.seq),
        )

    # ------------------------------------------------------------ horizons, inbox

    async def advance_horizons(
        self, conversation_id: str, user_id: str, *, read_seq: int = 0, delivered_seq: int = 0
    ) -> Membership:
        await trio.lowlevel.checkpoint()
        with self._tx():
            self._write_horizons(conversation_id, user_id, read_seq, delivered_seq)
            row = self._q(
                "SELECT * FROM memberships WHERE conversation_id=? AND user_id=?",
                (conversation_id, user_id),
            )[0]
        return _membership(row)

    async def write_horizons(
        self, conversation_id: str, user_id: str, *, read_seq: int = 0, delivered_seq: int = 0
    ) -> None:
        await trio.lowlevel.checkpoint()
        with self._tx():
            self._write_horizons(conversation_id, user_id, read_seq, delivered_seq)

    def _write_horizons(
        self, conversation_id: str, user_id: str, read_seq: int, delivered_seq: int
    ) -> None:
        self._db.execute(
            "INSERT INTO memberships (conversation_id, user_id, active, read_seq,"
            " delivered_seq) VALUES (?,?,1,?,?) ON CONFLICT DO UPDATE SET"
            " read_seq=max(read_seq, excluded.read_seq),"
            " delivered_seq=max(delivered_seq, excluded.delivered_seq)",
            (conversation_id, user_id, read_seq, max(read_seq, delivered_seq)),
        )

    async def get_horizons(self, conversation_id: str) -> list[Horizons]:
        await trio.lowlevel.checkpoint()
        return [
            Horizons(r["user_id"], r["read_seq"], r["delivered_seq"])
            for r in self._q(
                "SELECT * FROM memberships WHERE conversation_id=? AND active=1"
                " ORDER BY user_id",
                (conversation_id,),
            )
        ]

    async def get_membership(self, conversation_id: str, user_id: str) -> Membership | None:
        await trio.lowlevel.checkpoint()
        rows = self._q(
            "SELECT * FROM memberships WHERE conversation_id=? AND user_id=? AND active=1",
            (conversation_id, user_id),
        )
        return _membership(rows[0]) if rows else None

    async def set_muted_until(
        self, conversation_id: str, user_id: str, muted_until_ms: int
    ) -> None:
        await trio.lowlevel.checkpoint()
        self._db.execute(
            "UPDATE memberships SET muted_until_ms=? WHERE conversation_id=? AND user_id=?",
            (muted_until_ms, conversation_id, user_id),
        )

    async def list_inbox(
        self, user_id: str, *, limit: int, cursor: str = ""
    ) -> tuple[list[InboxEntry], str]:
        await trio.lowlevel.checkpoint()
        position: tuple[int, str] = (2**62, "")
        if cursor:
            try:
                activity, cid = cursor.split(":", 1)
                position = (int(activity), cid)
            except ValueError:
                raise InvalidArgument("cursor", "malformed cursor") from None
        rows = self._q(
            "SELECT c.*, m.read_seq, m.delivered_seq, m.muted_until_ms, m.user_id"
            " FROM memberships m JOIN conversations c USING (conversation_id)"
            " WHERE m.user_id=? AND m.active=1"
            " AND (c.last_activity_ms < ? OR (c.last_activity_ms = ? AND c.conversation_id < ?))"
            " ORDER BY c.last_activity_ms DESC, c.conversation_id DESC LIMIT ?",
            (user_id, position[0], position[0], position[1] or "\U0010ffff", limit + 1),
        )
        entries = []
        for row in rows[:limit]:
            last = None
            if row["last_seq"]:
                found = self._q(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages m"
                    " WHERE conversation_id=? AND seq=?",
                    (row["conversation_id"], row["last_seq"]),
                )
                last = _message(found[0]) if found else None
            entries.append(
                InboxEntry(
                    conversation=_conversation(row),
                    last_seq=row["last_seq"],
                    last_activity_ms=row["last_activity_ms"],
                    last_message=last,
                    membership=_membership(row),
                )
            )
        next_cursor = ""
        if len(rows) > limit:
            tail = entries[-1]
            next_cursor = f"{tail.last_activity_ms}:{tail.conversation.conversation_id}"
        return entries, next_cursor

    async def conversation_ids_of(self, user_id: str) -> set[str]:
        await trio.lowlevel.checkpoint()
        rows = self._q(
            "SELECT conversation_id FROM memberships WHERE user_id=? AND active=1", (user_id,)
        )
        return {r["conversation_id"] for r in rows}

    # ------------------------------------------------------------ marketplace state

    async def upsert_product(self, product: ProductCard, version: int) -> bool:
        await trio.lowlevel.checkpoint()
        cursor = self._db.execute(
            "INSERT INTO products VALUES (?,?,?) ON CONFLICT DO UPDATE SET"
            " card=excluded.card, version=excluded.version WHERE excluded.version > version",
            (product.product_id, attachment_to_json(product), version),
        )
        return cursor.rowcount == 1

    async def get_products(self, product_ids: Sequence[str]) -> dict[str, ProductCard]:
        await trio.lowlevel.checkpoint()
        found: dict[str, ProductCard] = {}
        for product_id in set(product_ids):
            rows = self._q("SELECT card FROM products WHERE product_id=?", (product_id,))
            if rows:
                card = attachment_from_json(rows[0]["card"])
                assert isinstance(card, ProductCard)
                found[product_id] = card
        return found

    async def product_card_locations(
        self, product_id: str, *, limit: int
    ) -> list[tuple[str, int]]:
        await trio.lowlevel.checkpoint()
        rows = self._q(
            "SELECT conversation_id, seq FROM product_cards WHERE product_id=?"
            " ORDER BY rowid DESC LIMIT ?",
            (product_id, limit),
        )
        return [(r["conversation_id"], r["seq"]) for r in rows]

    async def set_block(self, blocker_id: str, blocked_id: str, *, blocked: bool,
                        at_ms: int) -> bool:
        await trio.lowlevel.checkpoint()
        with self._tx():
            before = self._q(
                "SELECT blocked FROM blocks WHERE blocker_id=? AND blocked_id=?",
                (blocker_id, blocked_id),
            )
            self._db.execute(
                "INSERT INTO blocks VALUES (?,?,?,?) ON CONFLICT DO UPDATE SET"
                " blocked=excluded.blocked, at_ms=excluded.at_ms"
                " WHERE excluded.at_ms > at_ms",
                (blocker_id, blocked_id, int(blocked), at_ms),
            )
            after = self._q(
                "SELECT blocked FROM blocks WHERE blocker_id=? AND blocked_id=?",
                (blocker_id, blocked_id),
            )
        was = bool(before[0]["blocked"]) if before else False
        return was != bool(after[0]["blocked"])

    async def is_blocked(self, user_a: str, user_b: str) -> bool:
        await trio.lowlevel.checkpoint()
        rows = self._q(
            "SELECT 1 FROM blocks WHERE blocked=1 AND ((blocker_id=? AND blocked_id=?)"
            " OR (blocker_id=? AND blocked_id=?))",
            (user_a, user_b, user_b, user_a),
        )
        return bool(rows)

    async def blocked_among(self, user_id: str, others: Collection[str]) -> set[str]:
        await trio.lowlevel.checkpoint()
        wanted = sorted(set(others) - {user_id})
        found: set[str] = set()
        for start in range(0, len(wanted), _BLOCKS_CHUNK):
            chunk = wanted[start:start + _BLOCKS_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._q(
                f"SELECT blocked_id AS peer FROM blocks WHERE blocked=1 AND blocker_id=?"
                f" AND blocked_id IN ({marks}) UNION SELECT blocker_id FROM blocks"
                f" WHERE blocked=1 AND blocked_id=? AND blocker_id IN ({marks})",
                (user_id, *chunk, user_id, *chunk),
            )
            found.update(r["peer"] for r in rows)
        return found

    def outbox(self) -> EmbeddedOutbox:
        """The event outbox kept in the same database (`cellchat.events.Outbox`)."""
        return EmbeddedOutbox(self._db)

    async def aclose(self) -> None:
        self._db.close()


class EmbeddedOutbox:
    """Intents in insertion order; an id recorded again keeps its first intent."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def record(self, intents: Sequence[Intent]) -> None:
        await trio.lowlevel.checkpoint()
        with _Transaction(self._db):
            for intent in intents:
                self._db.execute("INSERT OR IGNORE INTO outbox VALUES (?, ?)",
                                 (intent.id, intent.to_json()))

    async def pending(self, limit: int) -> list[Intent]:
        await trio.lowlevel.checkpoint()
        rows = self._db.execute(
            "SELECT intent FROM outbox ORDER BY rowid LIMIT ?", (limit,)
        ).fetchall()
        return [Intent.from_json(row["intent"]) for row in rows]

    async def done(self, ids: Sequence[str]) -> None:
        await trio.lowlevel.checkpoint()
        with _Transaction(self._db):
            for intent_id in ids:
                self._db.execute("DELETE FROM outbox WHERE event_id=?", (intent_id,))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error, so a failure writes nothing."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


@asynccontextmanager
async def open_embedded_store(path: str = ":memory:") -> AsyncIterator[EmbeddedStore]:
    store = EmbeddedStore(path)
    try:
        yield store
    finally:
        await store.aclose()
