"""The outbox port's in-memory adapter, intents as JSON, and the relay against fakes in virtual
time: what gets published, what waits, what is dropped, and nothing lost while the broker fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import trio
import trio.testing

from cellchat.events import published
from cellchat.events.envelope import CloudEvent
from cellchat.events.outbox import ChangeChecker, Check, InMemoryOutbox, Intent, OutboxFull
from cellchat.events.relay import Relay
from cellchat.events.streams import PublishFailed

BASE_MS = 1_740_000_000_000
GRACE_MS = 10_000


def _sent(seq: int, conversation: str = "c1", at_ms: int = BASE_MS) -> Intent:
    event = published.message_sent(
        "eu-1", conversation_id=conversation, seq=seq, message_id=f"m{conversation}{seq}",
        sender_id="u1", kind="text", recipients=["u2"], created_at_ms=at_ms,
    )
    return Intent(event, Check.of("message", conversation_id=conversation, seq=seq))


class Checker:
    """Answers from a dict keyed by (conversation, seq); missing keys answer False."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, int], bool | None] = {}
        self.asked: list[str] = []

    async def exists(self, intent: Intent) -> bool | None:
        await trio.lowlevel.checkpoint()
        self.asked.append(intent.id)
        key = (str(intent.check["conversation_id"]), int(intent.check["seq"]))
        return self.answers.get(key, False)


class Publisher:
    def __init__(self) -> None:
        self.events: list[CloudEvent] = []
        self.failing = False
        self.attempts = 0

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        await trio.lowlevel.checkpoint()
        self.attempts += 1
        if self.failing:
            raise PublishFailed("broker down")
        self.events.extend(events)

    @property
    def seqs(self) -> list[int]:
        return [event.data["seq"] for event in self.events]


def _clock() -> Callable[[], int]:
    start = trio.current_time()
    return lambda: BASE_MS + int((trio.current_time() - start) * 1000)


def _relay(outbox: InMemoryOutbox, checker: ChangeChecker, publisher: Publisher) -> Relay:
    return Relay(outbox, checker, publisher, grace_ms=GRACE_MS, poll_interval_s=1.0,
                 backoff_initial_s=0.5, backoff_max_s=4.0, clock=_clock())


def test_intent_json_round_trip() -> None:
    intent = _sent(3)
    again = Intent.from_json(intent.to_json())
    assert again == intent
    assert again.check["seq"] == 3
    assert again.recorded_at_ms == BASE_MS
    unconditional = Intent(intent.event, Check.UNCONDITIONAL)
    assert Intent.from_json(unconditional.to_json()).check == Check.UNCONDITIONAL


def test_an_intent_needs_a_time() -> None:
    event = CloudEvent(id="i", source="s", type="t", data={})
    with pytest.raises(ValueError, match="time"):
        Intent(event, Check.UNCONDITIONAL)


async def test_in_memory_outbox_keeps_order_dedupes_and_is_bounded() -> None:
    outbox = InMemoryOutbox(capacity=3)
    await outbox.record([_sent(1), _sent(2)])
    await outbox.record([_sent(1)])  # the same event again: kept once
    assert [i.id for i in await outbox.pending(10)] == [_sent(1).id, _sent(2).id]
    assert [i.id for i in await outbox.pending(1)] == [_sent(1).id]
    with pytest.raises(OutboxFull):
        await outbox.record([_sent(3), _sent(4)])  # all or nothing
    assert outbox.statistics().pending == 2
    await outbox.done([_sent(1).id, "unknown"])
    await outbox.record([_sent(3)])
    assert [i.id for i in await outbox.pending(10)] == [_sent(2).id, _sent(3).id]
    assert outbox.statistics().capacity == 3


async def test_relay_publishes_only_changes_that_exist(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, checker, publisher = InMemoryOutbox(), Checker(), Publisher()
    relay = _relay(outbox, checker, publisher)
    checker.answers[("c1", 1)] = True
    checker.answers[("c2", 1)] = None  # the store cannot tell
    await outbox.record([_sent(1), _sent(2), _sent(1, "c2"), _sent(1, "c3")])
    assert await relay.relay_once() == 1
    assert publisher.seqs == [1]
    assert [i.id for i in await outbox.pending(10)] == [_sent(2).id, _sent(1, "c2").id,
                                                       _sent(1, "c3").id]
    assert relay.statistics().waiting == 3

    checker.answers[("c1", 2)] = True  # the change lands later: published then
    assert await relay.relay_once() == 1
    assert publisher.seqs == [1, 2]


async def test_relay_drops_never_happened_changes_after_the_grace_time_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, checker, publisher = InMemoryOutbox(), Checker(), Publisher()
    relay = _relay(outbox, checker, publisher)
    checker.answers[("c2", 1)] = None
    await outbox.record([_sent(1), _sent(1, "c2")])
    await trio.sleep(GRACE_MS / 1000 - 1)
    assert await relay.relay_once() == 0
    await trio.sleep(1)
    assert await relay.relay_once() == 1  # c1/1: False past the grace time
    assert relay.statistics().dropped == 1
    assert publisher.events == []
    await trio.sleep(3600)
    assert await relay.relay_once() == 0  # None: never dropped, however long
    assert [i.id for i in await outbox.pending(10)] == [_sent(1, "c2").id]


async def test_a_waiting_event_holds_back_later_events_of_its_subject_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, checker, publisher = InMemoryOutbox(), Checker(), Publisher()
    relay = _relay(outbox, checker, publisher)
    for key in [("c1", 2), ("c1", 3), ("c2", 1)]:
        checker.answers[key] = True
    await outbox.record([_sent(1), _sent(2), _sent(3), _sent(1, "c2")])
    await relay.relay_once()
    assert [(e.data["conversation_id"], e.data["seq"]) for e in publisher.events] == [("c2", 1)]
    assert _sent(2).id not in checker.asked  # held without asking

    checker.answers[("c1", 1)] = True
    await relay.relay_once()
    assert publisher.seqs == [1, 1, 2, 3]


async def test_unconditional_intents_are_published_without_asking(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, checker, publisher = InMemoryOutbox(), Checker(), Publisher()
    relay = _relay(outbox, checker, publisher)
    online = published.user_online("eu-1", user_id="u1", at_ms=BASE_MS)
    await outbox.record([Intent(online, Check.UNCONDITIONAL)])
    assert await relay.relay_once() == 1
    assert publisher.events == [online]
    assert checker.asked == []


async def test_a_failing_checker_means_wait(autojump_clock: trio.testing.MockClock) -> None:
    class Broken:
        async def exists(self, intent: Intent) -> bool | None:
            raise RuntimeError("store on fire")

    outbox, publisher = InMemoryOutbox(), Publisher()
    relay = _relay(outbox, Broken(), publisher)
    await outbox.record([_sent(1)])
    await trio.sleep(3600)
    assert await relay.relay_once() == 0
    assert relay.statistics().check_failures == 1
    assert relay.statistics().dropped == 0


async def test_relay_rides_out_a_broker_outage_and_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, checker, publisher = InMemoryOutbox(), Checker(), Publisher()
    relay = _relay(outbox, checker, publisher)
    for seq in range(1, 31):
        checker.answers[("c1", seq)] = True
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        await outbox.record([_sent(seq) for seq in range(1, 11)])
        relay.wake()
        await trio.sleep(0.1)
        assert publisher.seqs == list(range(1, 11))

        publisher.failing = True
        await outbox.record([_sent(seq) for seq in range(11, 31)])
        relay.wake()
        await trio.sleep(60)
        attempts = publisher.attempts
        assert 10 < attempts < 30  # backed off: 0.5, 1, 2, 4, 4, ... seconds
        assert relay.statistics().failures == attempts - 1
        assert outbox.statistics().pending == 20

        publisher.failing = False
        await trio.sleep(4.1)  # at most one maximal backoff
        assert publisher.seqs == list(range(1, 31))
        assert outbox.statistics().pending == 0
        nursery.cancel_scope.cancel()


async def test_wake_makes_the_relay_look_at_once(autojump_clock: trio.testing.MockClock) -> None:
    outbox, checker, publisher = InMemoryOutbox(), Checker(), Publisher()
    relay = Relay(outbox, checker, publisher, poll_interval_s=30, clock=_clock())
    checker.answers[("c1", 1)] = True
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        await trio.sleep(1)
        await outbox.record([_sent(1)])
        await trio.sleep(10)
        assert publisher.events == []  # the next poll is 30 s away
        relay.wake()
        await trio.sleep(0.01)
        assert publisher.seqs == [1]
        nursery.cancel_scope.cancel()
