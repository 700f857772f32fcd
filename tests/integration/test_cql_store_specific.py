"""What only the CQL store has to get right: partitions and their edges, write-ahead records
that lost their race, a lagging head, racing replicas, and a database that goes away.

The contract suite (tests/contract) checks the port's promises on every adapter; these tests
look under the hood of cellchat.chat.storage.cql with bucket_size=3, so nearly every send
crosses or opens a partition.
"""

from __future__ import annotations

import functools
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import attrs
import pytest
import trio
from cassandra import (
    ConsistencyLevel,
    OperationTimedOut,
    ReadTimeout,
    Unavailable,
    WriteTimeout,
    WriteType,
)
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    Session,
)
from cassandra.policies import RoundRobinPolicy
from cassandra.query import dict_factory

from cellchat.chat.domain.errors import (
    Contention,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)
from cellchat.chat.domain.model import (
    Conversation,
    ConversationKind,
    Message,
    MessageKind,
    Participant,
    Role,
)
from cellchat.chat.storage.cql import INBOX_PERIOD_MS, CqlStore, open_cql_store
from cellchat.chat.storage.trio_cql import map_driver_errors

pytestmark = pytest.mark.cassandra

B = 3  # bucket size: tiny on purpose
T0 = 1_700_000_000_000

Raw = Callable[..., Awaitable[list[dict[str, Any]]]]
F = TypeVar("F", bound=Callable[..., Awaitable[None]])


def deadline(seconds: float) -> Callable[[F], F]:
    """Fail the test if its body takes longer (fixture cancel scopes do not reach it)."""

    def decorate(test: F) -> F:
        @functools.wraps(test)
        async def bounded(*args: Any, **kwargs: Any) -> None:
            with trio.fail_after(seconds):
                await test(*args, **kwargs)

        return bounded  # type: ignore[return-value]

    return decorate


@pytest.fixture
async def store(cassandra: Any, cql_keyspace: str) -> AsyncIterator[CqlStore]:
    with trio.fail_after(60):
        async with open_cql_store([cassandra.host], cassandra.port, cql_keyspace,
                                  bucket_size=B) as opened:
            yield opened


@pytest.fixture(scope="module")
def raw_session(cassandra: Any, cql_keyspace: str) -> Iterator[Session]:
    profile = ExecutionProfile(
        load_balancing_policy=RoundRobinPolicy(),
        consistency_level=ConsistencyLevel.QUORUM,
        row_factory=dict_factory,
    )
    cluster = Cluster([cassandra.host], port=cassandra.port,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    try:
        session = cluster.connect(cql_keyspace)
        yield session
    finally:
        cluster.shutdown()


@pytest.fixture
def raw(raw_session: Session) -> Raw:
    """Run one CQL statement outside the store (in a thread: the driver call blocks)."""

    async def run(cql: str, *params: Any) -> list[dict[str, Any]]:
        result = await trio.to_thread.run_sync(raw_session.execute, cql, params)
        return list(result.current_rows)

    return run


def message(cid: str, seq: int, sender: str = "alice", *, client_id: str | None = None,
            thread: int = 0, at: int = T0) -> Message:
    return Message(
        conversation_id=cid, seq=seq, message_id=str(uuid.uuid4()), sender_id=sender,
        kind=MessageKind.TEXT, text=f"m{seq}", attachment=None,
        client_message_id=client_id or f"c-{uuid.uuid4().hex[:8]}", created_at_ms=at + seq,
        reply_to_seq=thread, thread_root_seq=thread,
    )


async def new_conversation(store: CqlStore, *users: str, at: int = T0) -> str:
    conv = Conversation(str(uuid.uuid4()), ConversationKind.GROUP, users[0], at, "t")
    await store.create_conversation(conv, [Participant(u, Role.MEMBER, at) for u in users])
    return conv.conversation_id


async def send(store: CqlStore, cid: str, n: int, sender: str = "alice",
               recipients: tuple[str, ...] = (), at: int = T0) -> list[Message]:
    last = await store.get_last_seq(cid)
    batch = [message(cid, last + i + 1, sender, at=at) for i in range(n)]
    assert await store.append_messages(cid, last, batch, list(recipients) or [sender])
    return batch


async def partitions(raw: Raw, cid: str, upto: int = 40) -> dict[int, tuple[int, list[int]]]:
    """bucket -> (static last_seq, seqs ascending) for every partition that exists."""
    found: dict[int, tuple[int, list[int]]] = {}
    for bucket in range(upto):
        rows = await raw("SELECT seq, last_seq FROM messages WHERE conversation_id = %s"
                         " AND bucket = %s", cid, bucket)
        if rows:
            found[bucket] = (rows[0]["last_seq"], sorted(r["seq"] for r in rows))
    return found


def assert_layout(layout: dict[int, tuple[int, list[int]]], last: int) -> None:
    """Partitions 0..k, each a contiguous run starting at or after bucket*B, in order."""
    assert sorted(layout) == list(range(len(layout)))
    expected_next = 1
    for bucket in sorted(layout):
        static, seqs = layout[bucket]
        assert seqs == list(range(expected_next, expected_next + len(seqs)))
        assert seqs[0] >= bucket * B
        assert static == seqs[-1]
        expected_next = seqs[-1] + 1
        if bucket != max(layout):  # every closed partition reached its nominal end
            assert static >= (bucket + 1) * B - 1
    assert expected_next - 1 == last


async def assert_history(store: CqlStore, cid: str, last: int) -> None:
    assert await store.get_last_seq(cid) == last
    newest = await store.get_messages(cid, limit=1000)
    assert [m.seq for m in newest] == list(range(last, 0, -1))
    for seq in range(1, last + 1):
        got = await store.get_message(cid, seq)
        assert got is not None
        assert got.seq == seq
    assert await store.get_message(cid, last + 1) is None
    for start in range(1, last + 2):
        forward = await store.get_messages(cid, after_seq=start, limit=4)
        assert [m.seq for m in forward] == list(range(start + 1, min(last, start + 4) + 1))
        backward = await store.get_messages(cid, before_seq=start, limit=4)
        assert [m.seq for m in backward] == list(range(start - 1, max(0, start - 5), -1))


@deadline(60)
async def test_sends_of_every_size_land_whole_and_history_reads_across_edges(
    store: CqlStore, raw: Raw
) -> None:
    cid = await new_conversation(store, "alice", "bob")
    last = 0
    # 7 at once overruns partition 0; then single sends open partitions until aligned again
    for size in (7, 1, 1, 2, 3, 5, 1, 3, 4, 1):
        await send(store, cid, size)
        last += size
        assert_layout(await partitions(raw, cid), last)
    await assert_history(store, cid, last)


@deadline(60)
async def test_a_send_that_fills_a_partition_exactly_then_opens_the_next(
    store: CqlStore, raw: Raw
) -> None:
    cid = await new_conversation(store, "alice")
    await send(store, cid, 2)  # bucket 0 holds 1..2: full (its nominal end is 2)
    await send(store, cid, 3)  # opens bucket 1 with 3..5: full
    await send(store, cid, 1)  # opens bucket 2
    layout = await partitions(raw, cid)
    assert layout == {0: (2, [1, 2]), 1: (5, [3, 4, 5]), 2: (6, [6])}


@deadline(60)
async def test_a_wrong_expected_seq_never_opens_a_partition_past_a_gap(
    store: CqlStore, raw: Raw
) -> None:
    cid = await new_conversation(store, "alice")
    await send(store, cid, 1)
    for wrong in (2, 5, 8, 30):
        batch = [message(cid, wrong + 1)]
        assert not await store.append_messages(cid, wrong, batch, ["alice"])
    assert await partitions(raw, cid) == {0: (1, [1])}
    assert await store.get_last_seq(cid) == 1


@deadline(60)
async def test_a_stale_client_id_record_is_ignored(store: CqlStore) -> None:
    cid = await new_conversation(store, "alice", "bob")
    await send(store, cid, 2, "bob")
    # alice's send loses the race for seq 3 (expected 1 is stale): its record stays behind
    loser = message(cid, 2, "alice", client_id="same-id")
    assert not await store.append_messages(cid, 1, [loser], ["alice", "bob"])
    assert await store.find_by_client_ids(cid, "alice", ["same-id"]) == {}
    # the retry lands at seq 3; both records exist, only the true one answers
    retry = attrs.evolve(loser, seq=3)
    assert await store.append_messages(cid, 2, [retry], ["alice", "bob"])
    assert await store.find_by_client_ids(cid, "alice", ["same-id"]) == {"same-id": retry}
    # a record whose seq holds someone else's message is ignored too
    assert await store.find_by_client_ids(cid, "bob", ["same-id"]) == {}


@deadline(60)
async def test_a_planted_record_pointing_at_another_message_is_ignored(
    store: CqlStore, raw: Raw
) -> None:
    cid = await new_conversation(store, "alice", "bob")
    sent = await send(store, cid, 4, "bob")
    await raw("INSERT INTO client_message_ids (conversation_id, sender_id, client_message_id,"
              " seq) VALUES (%s, %s, %s, %s)", cid, "alice", "ghost", 3)
    await raw("INSERT INTO client_message_ids (conversation_id, sender_id, client_message_id,"
              " seq) VALUES (%s, %s, %s, %s)", cid, "bob", sent[0].client_message_id, 99)
    assert await store.find_by_client_ids(cid, "alice", ["ghost"]) == {}
    found = await store.find_by_client_ids(cid, "bob", [sent[0].client_message_id])
    assert found == {sent[0].client_message_id: sent[0]}


@deadline(60)
async def test_the_exact_last_seq_survives_a_lagging_or_missing_head(
    store: CqlStore, raw: Raw, monkeypatch: pytest.MonkeyPatch, uid: str
) -> None:
    alice, bob = f"alice-{uid}", f"bob-{uid}"
    cid = await new_conversation(store, alice, bob)
    await send(store, cid, 4, alice, recipients=(alice, bob), at=T0 + 10)

    # The head write fails after the conditional batch succeeded: the send still counts.
    real_run = store._run

    async def head_fails(name: str, *params: Any) -> None:
        if name == "head_write":
            raise StoreTimeout("simulated")
        await real_run(name, *params)

    monkeypatch.setattr(store, "_run", head_fails)
    lagging = await send(store, cid, 5, alice, recipients=(alice, bob), at=T0 + 20)
    monkeypatch.setattr(store, "_run", real_run)
    head = await raw("SELECT last_seq FROM conversation_heads WHERE conversation_id = %s", cid)
    assert head[0]["last_seq"] == 4  # the hint lags...
    assert await store.get_last_seq(cid) == 9  # ...the answer does not
    entries, _ = await store.list_inbox(bob, limit=5)
    assert [(e.conversation.conversation_id, e.last_seq) for e in entries] == [(cid, 9)]
    assert entries[0].last_message == lagging[-1]

    # The next send repairs the head.
    await send(store, cid, 1, alice, recipients=(alice, bob), at=T0 + 30)
    head = await raw("SELECT last_seq FROM conversation_heads WHERE conversation_id = %s", cid)
    assert head[0]["last_seq"] == 10

    # Without any head at all the store probes from partition 0.
    await raw("DELETE FROM conversation_heads USING TIMESTAMP 1000000 WHERE conversation_id = %s",
              cid)
    assert await store.get_last_seq(cid) == 10
    await assert_history(store, cid, 10)


@deadline(60)
async def test_replicas_racing_on_one_conversation_leave_dense_seqs(
    store: CqlStore, raw: Raw, cassandra: Any, cql_keyspace: str
) -> None:
    cid = await new_conversation(store, "alice", "bob")
    stored: list[Message] = []
    per_writer = 8

    async def writer(replica: CqlStore, name: str) -> None:
        rng = random.Random(name)
        sent = 0
        while sent < per_writer:
            size = min(rng.choice((1, 1, 2, 4)), per_writer - sent)
            try:
                last = await replica.get_last_seq(cid)
                batch = [message(cid, last + i + 1, name) for i in range(size)]
                if await replica.append_messages(cid, last, batch, ["alice", "bob"]):
                    stored.extend(batch)
                    sent += size
            except Contention:
                pass  # the sequencer would back off and retry the same way
            await trio.sleep(rng.uniform(0, 0.005))

    async with open_cql_store([cassandra.host], cassandra.port, cql_keyspace,
                              bucket_size=B) as other_replica:
        async with trio.open_nursery() as nursery:
            for index in range(6):
                replica = store if index % 2 else other_replica
                nursery.start_soon(writer, replica, f"w{index}")
    total = 6 * per_writer
    assert sorted(m.seq for m in stored) == list(range(1, total + 1))
    history = await store.get_messages(cid, limit=1000)
    assert [m.seq for m in history] == list(range(total, 0, -1))
    assert {m.message_id for m in history} == {m.message_id for m in stored}
    assert_layout(await partitions(raw, cid, upto=total // B + 3), total)


@deadline(60)
async def test_thread_records_of_lost_races_are_ignored_and_cleaned(
    store: CqlStore, raw: Raw
) -> None:
    cid = await new_conversation(store, "alice", "bob")
    await send(store, cid, 2)
    # a reply that loses its race: its thread record is withdrawn
    assert not await store.append_messages(cid, 1, [message(cid, 2, "bob", thread=1)], ["bob"])
    # a leftover from a send that timed out and lost: seq 3 will hold another message
    await raw("INSERT INTO thread_replies (conversation_id, root_seq, seq, message_id)"
              " VALUES (%s, 1, 3, 'lost')", cid)
    real = [message(cid, 3, "bob"), message(cid, 4, "bob", thread=1)]
    assert await store.append_messages(cid, 2, real, ["bob"])
    # a record whose send is still in flight (seq 9 does not exist yet) is not shown
    await raw("INSERT INTO thread_replies (conversation_id, root_seq, seq, message_id)"
              " VALUES (%s, 1, 9, 'pending')", cid)
    assert [m.seq for m in await store.get_thread(cid, 1, limit=10)] == [4]
    left = await raw("SELECT seq FROM thread_replies WHERE conversation_id = %s"
                     " AND root_seq = 1", cid)
    assert sorted(r["seq"] for r in left) == [4, 9]  # the stale one is gone, pending stays


@deadline(60)
async def test_roots_in_overrun_partitions_and_in_the_same_send(store: CqlStore) -> None:
    cid = await new_conversation(store, "alice")
    await send(store, cid, 5)  # bucket 0 holds 1..5: 3..5 sit past its nominal end
    replies = [message(cid, 6, thread=4), message(cid, 7, thread=6), message(cid, 8, thread=4)]
    assert await store.append_messages(cid, 5, replies, ["alice"])
    root = await store.get_message(cid, 4)
    assert root is not None
    assert root.reply_count == 2
    same_send_root = await store.get_message(cid, 6)
    assert same_send_root is not None
    assert same_send_root.reply_count == 1
    assert [m.seq for m in await store.get_thread(cid, 4, limit=5)] == [6, 8]


@deadline(60)
async def test_inbox_spans_periods_and_shows_each_conversation_once(store: CqlStore) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    old = T0
    cids = [await new_conversation(store, user, "x", at=old + i) for i in range(5)]
    # activity in three periods; the busy conversation leaves many superseded log entries
    for step in range(12):
        await send(store, cids[0], 1, "x", (user, "x"), at=old + 1000 + step * 10)
    await send(store, cids[3], 1, "x", (user, "x"), at=old + INBOX_PERIOD_MS)
    await send(store, cids[1], 1, "x", (user, "x"), at=old + 2 * INBOX_PERIOD_MS)
    expected = [cids[1], cids[3], cids[0], cids[4], cids[2]]
    for limit in (1, 2, 3, 5, 10):
        seen: list[str] = []
        cursor = ""
        for _ in range(10):
            entries, cursor = await store.list_inbox(user, limit=limit, cursor=cursor)
            seen += [e.conversation.conversation_id for e in entries]
            if not cursor:
                break
        assert seen == expected, limit
    await store.remove_participant(cids[3], user)
    entries, cursor = await store.list_inbox(user, limit=10)
    assert [e.conversation.conversation_id for e in entries] == [cids[1], cids[0], cids[4],
                                                                 cids[2]]
    assert cursor == ""


@deadline(60)
async def test_a_lost_race_reports_the_last_seq_only_when_it_is_sure(store: CqlStore) -> None:
    cid = await new_conversation(store, "alice", "bob")
    await send(store, cid, 1)
    # partition 0 (seqs 0..2) has room: its static last_seq is the conversation's
    lost = await store.append_messages(cid, 0, [message(cid, 1, "bob")], ["bob"])
    assert (lost.applied, lost.last_seq) == (False, 1)
    await send(store, cid, 1)
    # partition 0 is full at 2: a partition 1 may hold later seqs, so it says nothing
    lost = await store.append_messages(cid, 1, [message(cid, 2, "bob")], ["bob"])
    assert (lost.applied, lost.last_seq) == (False, None)
    await send(store, cid, 2)  # 3, 4 open partition 1, which has room
    lost = await store.append_messages(cid, 2, [message(cid, 3, "bob")], ["bob"])
    assert (lost.applied, lost.last_seq) == (False, 4)
    won = await store.append_messages(cid, 4, [message(cid, 5, "bob")], ["bob"])
    assert (won.applied, won.last_seq) == (True, None)
    await assert_history(store, cid, 5)


@deadline(60)
async def test_statements_sent_together_answer_together(store: CqlStore, raw: Raw,
                                                        cql_keyspace: str) -> None:
    db = store.trio_session
    write = store._q["block_write"]
    blocker = f"x-{uuid.uuid4().hex[:8]}"
    broken = f"SELECT * FROM {cql_keyspace}.no_such_table"
    with pytest.raises(StoreUnavailable):
        await db.execute_many([
            (write, (T0, True, blocker, "first")),
            (broken, None),
            (write, (T0, True, blocker, "last")),
        ])
    # the failure was raised only once every statement had answered: both writes are there
    rows = await raw("SELECT blocked_id FROM blocks WHERE blocker_id = %s", blocker)
    assert sorted(r["blocked_id"] for r in rows) == ["first", "last"]
    pages = await db.execute_many([
        (store._q["block_select"], (blocker, name)) for name in ("last", "none", "first")
    ])
    assert [page.rows for page in pages] == [[{"blocked": True}], [], [{"blocked": True}]]
    assert await db.execute_many([]) == []


@deadline(60)
async def test_a_burst_of_queries_each_gets_its_own_answer(store: CqlStore) -> None:
    blocker = f"y-{uuid.uuid4().hex[:8]}"
    await store.trio_session.execute_many([
        (store._q["block_write"], (T0, n % 2 == 0, blocker, f"u{n}")) for n in range(40)
    ])
    answers: dict[int, bool] = {}

    async def ask(n: int) -> None:
        row = (await store.trio_session.execute(store._q["block_select"],
                                                (blocker, f"u{n}"))).one()
        assert row is not None
        answers[n] = row["blocked"]

    async with trio.open_nursery() as nursery:
        for n in range(400):
            nursery.start_soon(ask, n % 40)
    assert answers == {n: n % 2 == 0 for n in range(40)}


@deadline(60)
async def test_cancelled_queries_leave_the_store_working(store: CqlStore) -> None:
    cid = await new_conversation(store, "alice")
    await send(store, cid, 3)
    for _ in range(30):
        with trio.move_on_after(0.0005):
            await store.get_messages(cid, limit=10)
    # the late answers of the abandoned queries arrive while we go on
    await trio.sleep(0.2)
    assert await store.get_last_seq(cid) == 3


# ------------------------------------------------------------ the database goes away


class FlakyProxy:
    """A TCP proxy in front of the node that can drop every connection and refuse new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._scope: trio.CancelScope | None = None

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started()
            await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            server = await trio.open_tcp_stream(*self.target)
        except OSError:
            await client.aclose()
            return
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._pipe, client, server, nursery.cancel_scope)
            nursery.start_soon(self._pipe, server, client, nursery.cancel_scope)

    @staticmethod
    async def _pipe(src: trio.SocketStream, dst: trio.SocketStream,
                    scope: trio.CancelScope) -> None:
        try:
            while data := await src.receive_some(65536):
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    def cut(self) -> None:
        assert self._scope is not None
        self._scope.cancel()


async def test_the_store_recovers_when_the_database_comes_back(
    cassandra: Any, cql_keyspace: str
) -> None:
    proxy = FlakyProxy((cassandra.host, cassandra.port))
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.serve)
            async with open_cql_store(["127.0.0.1"], proxy.port, cql_keyspace,
                                      bucket_size=B, request_timeout=2.0) as replica:
                cid = await new_conversation(replica, "alice")
                await send(replica, cid, 2)

                proxy.cut()
                with pytest.raises((StoreUnavailable, StoreTimeout)):
                    await replica.get_last_seq(cid)

                await nursery.start(proxy.serve)  # same port, back in business
                while True:
                    try:
                        await send(replica, cid, 1)
                        break
                    except (StoreUnavailable, StoreTimeout):
                        await trio.sleep(0.5)
                assert await replica.get_last_seq(cid) == 3
            proxy.cut()


async def test_an_unreachable_database_is_store_unavailable() -> None:
    with trio.fail_after(30), pytest.raises(StoreUnavailable):
        async with open_cql_store(["127.0.0.1"], 1, "nowhere", request_timeout=1.0):
            pass


# ------------------------------------------------------------ error mapping (no I/O)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (WriteTimeout("t", write_type=WriteType.CAS), Contention),
        (WriteTimeout("t", write_type=WriteType.SIMPLE), StoreTimeout),
        (ReadTimeout("t"), StoreTimeout),
        (OperationTimedOut("t"), StoreTimeout),
        (Unavailable("u", consistency=ConsistencyLevel.LOCAL_SERIAL), Contention),
        (Unavailable("u", consistency=ConsistencyLevel.QUORUM), StoreUnavailable),
        (NoHostAvailable("none", {}), StoreUnavailable),
        (ConnectionRefusedError(), StoreUnavailable),
    ],
)
def test_driver_errors_become_store_errors(error: Exception, expected: type[StoreError]) -> None:
    with pytest.raises(expected) as info, map_driver_errors():
        raise error
    assert type(info.value) is expected
    assert info.value.__cause__ is error
