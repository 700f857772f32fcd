"""The event machinery against a real Redis: the relay through an outage, the consumer group
through a crash, duplicates, reordering, retries and dead letters.

Every test uses its own streams and groups (a fresh `uid`), since they share one server; the
outage test kills that server and brings it back before it ends.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import coredis
import pytest
import trio

from cellchat.events import catalog, published
from cellchat.events.consumer import DEAD_LETTER_FIELDS, Consumer, Handler
from cellchat.events.dedupe import InMemoryProcessedIds, ProcessedIds, RedisProcessedIds, seen_key
from cellchat.events.envelope import CloudEvent, encode
from cellchat.events.outbox import Check, InMemoryOutbox, Intent
from cellchat.events.relay import Relay
from cellchat.events.streams import RedisStreamPublisher, entry_fields

pytestmark = pytest.mark.redis

NOW_MS = 1_740_000_000_000


@pytest.fixture
async def client(redis: Any) -> AsyncIterator[coredis.Redis[str]]:
    redis_client: coredis.Redis[str] = coredis.Redis.from_url(redis.url, decode_responses=True)
    async with redis_client:
        yield redis_client


async def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    try:
        with trio.fail_after(timeout_s):
            # Polling on purpose: the predicates read statistics other tasks update.
            while not predicate():  # noqa: ASYNC110
                await trio.sleep(0.02)
    except trio.TooSlowError:
        raise AssertionError(f"timed out waiting until {what}") from None


def fast_consumer(
    client: coredis.Redis[str], *, stream: str, group: str, name: str,
    handlers: Mapping[str, Handler], processed: ProcessedIds | None = None, **options: Any,
) -> Consumer:
    settings: dict[str, Any] = {
        "start_id": "0", "block_ms": 100, "claim_idle_ms": 500, "handler_timeout_s": 0.25,
        "backoff_initial_s": 0.05, "backoff_max_s": 0.5, "max_deliveries": 3,
    }
    settings.update(options)
    return Consumer(
        client, handlers=handlers, processed=processed or InMemoryProcessedIds(), group=group,
        consumer=name, stream=stream, **settings,
    )


class Recorder:
    """A handler per type that records every call; optionally failing or blocking some."""

    def __init__(self) -> None:
        self.calls: list[CloudEvent] = []
        self.behaviour: Callable[[CloudEvent], Awaitable[None]] | None = None

    async def __call__(self, event: CloudEvent) -> None:
        if self.behaviour is not None:
            await self.behaviour(event)
        self.calls.append(event)

    def handlers(self, types: tuple[str, ...]) -> dict[str, Handler]:
        return dict.fromkeys(types, self)

    @property
    def ids(self) -> collections.Counter[str]:
        return collections.Counter(event.id for event in self.calls)


def order_created(order_id: str, **changes: Any) -> CloudEvent:
    data = {
        "order_id": order_id, "buyer_id": "b1", "seller_id": "s1", "product_ids": ["p1"],
        "status": "pending_payment", "total": {"amount_minor": 1999, "currency": "EUR"},
        "item_count": 1,
    }
    data.update(changes)
    return CloudEvent(id=f"order-created-{order_id}", source="marketplace/orders",
                      type=catalog.ORDER_CREATED, subject=f"orders/{order_id}", data=data)


def block_event(event_id: str, kind: str, blocker: str, blocked: str, at_ms: int) -> CloudEvent:
    event_type = catalog.USER_BLOCKED if kind == "block" else catalog.USER_UNBLOCKED
    return CloudEvent(id=event_id, source="marketplace/users", type=event_type,
                      data={"blocker_id": blocker, "blocked_id": blocked, "at_ms": at_ms})


async def xadd_events(client: coredis.Redis[str], stream: str, events: list[CloudEvent]) -> None:
    for event in events:
        await client.xadd(stream, entry_fields(event))


# --- relay ---------------------------------------------------------------------------------


class SetChecker:
    def __init__(self) -> None:
        self.existing: set[str] = set()

    async def exists(self, intent: Intent) -> bool | None:
        await trio.lowlevel.checkpoint()
        return intent.id in self.existing


def sent_intent(cell: str, conversation: str, seq: int, at_ms: int) -> Intent:
    event = published.message_sent(
        cell, conversation_id=conversation, seq=seq, message_id=f"m-{conversation}-{seq}",
        sender_id="u1", kind="text", recipients=["u2"], created_at_ms=at_ms,
    )
    return Intent(event, Check.of("message", conversation_id=conversation, seq=seq))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_relay_publishes_existing_changes_and_drops_never_happened_ones(
    client: coredis.Redis[str], uid: str,
) -> None:
    cell = f"t{uid}"
    stream = catalog.events_stream(cell)
    outbox, checker = InMemoryOutbox(), SetChecker()
    relay = Relay(outbox, checker, RedisStreamPublisher(client, stream), grace_ms=500,
                  poll_interval_s=0.05)
    happened = sent_intent(cell, "c1", 1, now_ms())
    never = sent_intent(cell, "c1", 2, now_ms())
    later = sent_intent(cell, "c2", 1, now_ms())
    checker.existing.add(happened.id)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(relay.run)
            await outbox.record([happened, never, later])
            await wait_until(lambda: relay.statistics().published == 1, "the first is out")
            checker.existing.add(later.id)  # its change lands after the intent, as it should
            await wait_until(lambda: relay.statistics().published == 2, "the later one is out")
            await wait_until(lambda: relay.statistics().dropped == 1, "the never-happened drop")
            assert outbox.statistics().pending == 0
            nursery.cancel_scope.cancel()
        entries = await client.xrange(stream)
    texts = [entry.field_values["event"] for entry in entries]
    assert texts == [encode(happened.event), encode(later.event)]


async def test_redis_outage_delays_events_and_loses_none(
    redis: Any, client: coredis.Redis[str], uid: str,
) -> None:
    """Relay and a consumer of the cell's own stream, with Redis killed while events are recorded
    and brought back (empty: no persistence): every event arrives, none twice after dedupe."""
    cell = f"t{uid}"
    stream = catalog.events_stream(cell)
    outbox, checker = InMemoryOutbox(), SetChecker()
    publisher = RedisStreamPublisher(client, stream)
    relay = Relay(outbox, checker, publisher, poll_interval_s=0.05, backoff_initial_s=0.05,
                  backoff_max_s=0.5)
    reader_client: coredis.Redis[str] = coredis.Redis.from_url(redis.url, decode_responses=True)
    recorder = Recorder()
    first = [
        sent_intent(cell, "c1", 1, now_ms()),
        Intent(published.message_read(cell, conversation_id="c1", user_id="u2", read_seq=1,
                                      at_ms=now_ms()), Check.UNCONDITIONAL),
        Intent(published.conversation_created(
            cell, conversation_id="c2", kind="direct", participants=[("u1", "buyer"),
                                                                     ("u2", "seller")],
            order_id="o1", created_at_ms=now_ms()), Check.UNCONDITIONAL),
        Intent(published.user_online(cell, user_id="u1", at_ms=now_ms()), Check.UNCONDITIONAL),
        Intent(published.user_offline(cell, user_id="u3", last_seen_ms=now_ms()),
               Check.UNCONDITIONAL),
    ]
    during = [sent_intent(cell, "c1", seq, now_ms()) for seq in range(2, 22)]
    checker.existing.update(intent.id for intent in first + during)
    try:
        with trio.fail_after(60):
            async with reader_client, trio.open_nursery() as nursery:
                reader = fast_consumer(reader_client, stream=stream, group="reader",
                                       name="r1", handlers=recorder.handlers(catalog.PUBLISHED))
                await nursery.start(reader.run)
                await nursery.start(relay.run)
                await outbox.record(first)
                relay.wake()
                await wait_until(lambda: len(recorder.calls) == 5, "the first events arrive")
                assert {event.type for event in recorder.calls} == set(catalog.PUBLISHED)

                redis.kill()
                for intent in during:  # sends go on while Redis is down
                    await outbox.record([intent])
                    relay.wake()
                    await trio.sleep(0.01)
                await wait_until(lambda: relay.statistics().failures >= 3, "the relay retries")
                assert outbox.statistics().pending == len(during)

                redis.restart()
                await wait_until(lambda: outbox.statistics().pending == 0, "the outbox drains",
                                 timeout_s=30)
                # A re-publish (an XADD whose answer was lost) is a duplicate, dropped by id.
                await publisher.publish([first[0].event, during[0].event])
                await wait_until(lambda: reader.statistics().duplicates == 2, "dedupe")
                await wait_until(lambda: len(recorder.calls) == len(first) + len(during),
                                 "every event arrives")
                nursery.cancel_scope.cancel()
    finally:
        if not redis.running:
            redis.restart()
    assert set(recorder.ids) == {intent.id for intent in first + during}
    assert max(recorder.ids.values()) == 1
    assert reader.statistics().dead_lettered == 0
    assert {event.source for event in recorder.calls} == {f"cellchat/{cell}"}
    seqs = [event.data["seq"] for event in recorder.calls
            if event.type == catalog.MESSAGE_SENT and event.data["conversation_id"] == "c1"]
    assert seqs == list(range(1, 22))  # one relay, one subject: stream order is seq order


# --- consumer --------------------------------------------------------------------------------


async def test_a_crashed_consumers_entries_are_claimed_and_processed_by_another(
    redis: Any, client: coredis.Redis[str], uid: str,
) -> None:
    stream, group = f"marketplace.{uid}", f"cellchat.t{uid}"
    events = [order_created(f"o{n}") for n in range(10)]
    await xadd_events(client, stream, events)
    stuck = trio.Event()

    async def hang(event: CloudEvent) -> None:
        stuck.set()
        await trio.sleep_forever()

    doomed = Recorder()
    doomed.behaviour = hang
    survivor = Recorder()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            crashing = fast_consumer(client, stream=stream, group=group, name="a", batch=10,
                                     handlers=doomed.handlers(catalog.CONSUMED),
                                     claim_idle_ms=60_000, handler_timeout_s=30)
            with trio.CancelScope() as crash:
                nursery.start_soon(crashing.run)
                await stuck.wait()
                crash.cancel()  # mid-batch: nothing acknowledged, ten entries pending on "a"
            pending = await client.xpending(stream, group)
            assert pending.pending == 10
            assert pending.consumers == {"a": 10}

            other = fast_consumer(client, stream=stream, group=group, name="b",
                                  handlers=survivor.handlers(catalog.CONSUMED),
                                  claim_idle_ms=300)
            nursery.start_soon(other.run)
            await wait_until(lambda: other.statistics().processed == 10,
                             "b processes a's entries")
            nursery.cancel_scope.cancel()
        pending = await client.xpending(stream, group)
    assert doomed.calls == []
    assert sorted(event.data["order_id"] for event in survivor.calls) == sorted(
        f"o{n}" for n in range(10))
    assert other.statistics().claimed == 10
    assert other.statistics().processed == 10
    assert pending.pending == 0


class BlockState:
    """A tiny idempotent, order-tolerant handler: per pair, the event with the highest at_ms wins
    (a block wins a tie); per product, the highest version wins."""

    def __init__(self) -> None:
        self.pairs: dict[tuple[str, str], tuple[int, bool]] = {}
        self.products: dict[str, int] = {}
        self.calls = 0

    async def on_block(self, event: CloudEvent) -> None:
        await trio.lowlevel.checkpoint()
        self.calls += 1
        key = (event.data["blocker_id"], event.data["blocked_id"])
        candidate = (event.data["at_ms"], event.type == catalog.USER_BLOCKED)
        self.pairs[key] = max(self.pairs.get(key, candidate), candidate)

    async def on_product(self, event: CloudEvent) -> None:
        await trio.lowlevel.checkpoint()
        self.calls += 1
        product = event.data["product_id"]
        self.products[product] = max(self.products.get(product, -1), event.data["version"])

    def handlers(self) -> dict[str, Handler]:
        return {catalog.USER_BLOCKED: self.on_block, catalog.USER_UNBLOCKED: self.on_block,
                catalog.PRODUCT_UPDATED: self.on_product}

    def blocked(self, blocker: str, blocked: str) -> bool:
        return self.pairs[(blocker, blocked)][1]


def product_updated(product: str, version: int) -> CloudEvent:
    return CloudEvent(
        id=f"{product}-v{version}", source="marketplace/catalog", type=catalog.PRODUCT_UPDATED,
        data={"product_id": product, "title": f"Lamp v{version}", "image_url": "",
              "price": {"amount_minor": 100 * version, "currency": "EUR"}, "available": True,
              "version": version, "updated_at_ms": NOW_MS + version},
    )


async def test_duplicate_and_out_of_order_deliveries_leave_the_right_final_state(
    client: coredis.Redis[str], uid: str,
) -> None:
    stream, cell = f"marketplace.{uid}", f"t{uid}"
    block_ab = block_event(f"{uid}-1", "block", "a", "b", NOW_MS + 1)
    unblock_ab = block_event(f"{uid}-2", "unblock", "a", "b", NOW_MS + 2)
    block_cd = block_event(f"{uid}-3", "block", "c", "d", NOW_MS + 1)
    unblock_cd = block_event(f"{uid}-4", "unblock", "c", "d", NOW_MS + 2)
    block_ef = block_event(f"{uid}-5", "block", "e", "f", NOW_MS + 5)
    unblock_ef = block_event(f"{uid}-6", "unblock", "e", "f", NOW_MS + 5)  # a tie: block wins
    await xadd_events(client, stream, [
        unblock_ab, block_ab,  # out of order: the unblock arrives first
        block_cd, unblock_cd, block_cd,  # the block delivered again, after the unblock
        unblock_ef, block_ef,
        product_updated("p1", 3), product_updated("p1", 2), product_updated("p1", 3),
    ])
    state = BlockState()
    processed = RedisProcessedIds(client, cell_id=cell, ttl_s=600)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            consumer = fast_consumer(client, stream=stream, group="g1", name="c1",
                                     handlers=state.handlers(), processed=processed)
            nursery.start_soon(consumer.run)
            await wait_until(lambda: consumer.statistics().processed
                             + consumer.statistics().duplicates == 10, "all handled")
            assert consumer.statistics().duplicates == 2
            assert state.calls == 8
            assert not state.blocked("a", "b")
            assert not state.blocked("c", "d")
            assert state.blocked("e", "f")
            assert state.products == {"p1": 3}

            # Replayed from the start by a group that remembers nothing: the same final state.
            replay = fast_consumer(client, stream=stream, group="g2", name="c1",
                                   handlers=state.handlers(), processed=InMemoryProcessedIds())
            nursery.start_soon(replay.run)
            await wait_until(lambda: replay.statistics().processed
                             + replay.statistics().duplicates == 10, "the replay")
            assert (not state.blocked("a", "b"), not state.blocked("c", "d")) == (True, True)
            assert state.blocked("e", "f")
            assert state.products == {"p1": 3}
            nursery.cancel_scope.cancel()
        ttl = await client.ttl(seen_key(cell, block_ab.id))
    assert 0 < ttl <= 600


async def test_bad_entries_are_dead_lettered_with_a_reason_and_consumption_goes_on(
    client: coredis.Redis[str], uid: str,
) -> None:
    stream = f"marketplace.{uid}"
    good = order_created("o-good")
    unknown = CloudEvent(id=f"{uid}-u", source="marketplace/x", type="com.marketplace.cart.lost.v1",
                         data={})
    invalid = order_created("o-bad", total={"amount_minor": "lots", "currency": "EUR"})
    bad_entries: list[dict[str, str]] = [
        {"payload": "no event field"},
        {"event": "{not json"},
        {"event": json.dumps({"specversion": "1.0", "source": "s", "type": "t", "data": {}})},
        entry_fields(unknown),
        entry_fields(invalid),
    ]
    for fields in bad_entries:
        await client.xadd(stream, fields)
    await client.xadd(stream, entry_fields(good))
    recorder = Recorder()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            consumer = fast_consumer(client, stream=stream, group="g", name="c1",
                                     handlers=recorder.handlers(catalog.CONSUMED))
            nursery.start_soon(consumer.run)
            await wait_until(lambda: consumer.statistics().dead_lettered == 5
                             and consumer.statistics().processed == 1, "all handled")
            nursery.cancel_scope.cancel()
        dead = await client.xrange(f"{stream}.dead")
        pending = await client.xpending(stream, "g")
    assert [event.id for event in recorder.calls] == [good.id]
    assert pending.pending == 0
    letters = [entry.field_values for entry in dead]
    assert [letter["reason"] for letter in letters] == [
        "malformed", "malformed", "malformed", "unknown_type", "invalid"]
    assert "no 'event' field" in letters[0]["detail"]
    assert "not JSON" in letters[1]["detail"]
    assert "id is required" in letters[2]["detail"]
    assert "com.marketplace.cart.lost.v1" in letters[3]["detail"]
    assert letters[4]["detail"].startswith("total/amount_minor")
    for letter, original in zip(letters, bad_entries, strict=True):
        assert {name.removeprefix("original."): value for name, value in letter.items()
                if name.startswith("original.")} == original
        assert [name for name in letter if not name.startswith("original.")] == list(
            DEAD_LETTER_FIELDS)
        assert letter["stream"] == stream
        assert letter["group"] == "g"
        assert letter["consumer"] == "c1"
        assert letter["deliveries"] == "1"
        assert int(letter["dead_at_ms"]) > 0
    assert (letters[3]["event_id"], letters[3]["event_type"]) == (unknown.id, unknown.type)
    assert (letters[0]["event_id"], letters[0]["event_type"]) == ("", "")


async def test_a_failing_handler_is_retried_then_dead_lettered_and_others_go_on(
    client: coredis.Redis[str], uid: str,
) -> None:
    stream = f"marketplace.{uid}"
    flaky, hopeless, hanging, fine = (order_created(name) for name in ("flaky", "hopeless",
                                                                      "hanging", "fine"))
    await xadd_events(client, stream, [flaky, hopeless, hanging, fine])
    attempts: collections.Counter[str] = collections.Counter()

    async def behaviour(event: CloudEvent) -> None:
        order = event.data["order_id"]
        attempts[order] += 1
        if order == "flaky" and attempts[order] <= 2:
            raise ConnectionError("downstream hiccup")
        if order == "hopeless":
            raise ValueError("cannot ever handle this")
        if order == "hanging":
            await trio.sleep_forever()  # the handler timeout ends it

    recorder = Recorder()
    recorder.behaviour = behaviour
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            consumer = fast_consumer(client, stream=stream, group="g", name="c1",
                                     handlers=recorder.handlers(catalog.CONSUMED),
                                     claim_idle_ms=300, handler_timeout_s=0.1, max_deliveries=3)
            nursery.start_soon(consumer.run)
            await wait_until(lambda: consumer.statistics().dead_lettered == 2
                             and consumer.statistics().processed == 2, "all settled")
            nursery.cancel_scope.cancel()
        dead = await client.xrange(f"{stream}.dead")
        pending = await client.xpending(stream, "g")
    assert [event.data["order_id"] for event in recorder.calls] == ["fine", "flaky"]
    assert attempts == {"flaky": 3, "hopeless": 3, "hanging": 3, "fine": 1}
    assert consumer.statistics().retries == 2 + 2 + 2
    assert pending.pending == 0
    letters = {entry.field_values["event_id"]: entry.field_values for entry in dead}
    assert letters[hopeless.id]["reason"] == "handler_failed"
    assert letters[hopeless.id]["detail"] == (
        "after 3 deliveries: ValueError: cannot ever handle this")
    assert letters[hanging.id]["detail"].startswith("after 3 deliveries: TooSlowError")
    assert letters[hanging.id]["deliveries"] == "3"


async def test_consumer_creates_its_group_and_survives_a_missing_one(
    client: coredis.Redis[str], uid: str,
) -> None:
    stream = f"marketplace.{uid}"
    recorder = Recorder()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            consumer = fast_consumer(client, stream=stream, group="g", name="c1",
                                     start_id="$", handlers=recorder.handlers(catalog.CONSUMED))
            await nursery.start(consumer.run)
            await wait_until(lambda: consumer._group_ready, "the group exists")
            groups = await client.xinfo_groups(stream)
            assert [group["name"] for group in groups] == ["g"]
            await xadd_events(client, stream, [order_created("o1")])
            await wait_until(lambda: len(recorder.calls) == 1, "the first event")

            # As after a Redis restart without persistence: stream and group gone.
            await client.delete([stream])
            await xadd_events(client, stream, [order_created("o2")])  # before the group is back
            await wait_until(lambda: len(recorder.calls) == 2, "the event after the loss")
            nursery.cancel_scope.cancel()
    assert [event.data["order_id"] for event in recorder.calls] == ["o1", "o2"]
    assert consumer.statistics().failures >= 1
