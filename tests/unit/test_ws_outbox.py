"""A connection's outbox (chat/realtime/hub.py): bounded, batched, never silently dropping."""

from __future__ import annotations

import trio
import trio.testing

from cellchat.chat.realtime.broker import Envelope
from cellchat.chat.realtime.frames import CloseCode
from cellchat.chat.realtime.hub import Outbox
from cellchat.chat.realtime.resume import REORDER_SLACK, SeqWindow
from cellchat.chat.realtime.wire import text_frame
from cellchat.ops import Metrics


class Closes:
    def __init__(self) -> None:
        self.requested: list[tuple[CloseCode, str]] = []

    def __call__(self, code: CloseCode, reason: str) -> None:
        self.requested.append((code, reason))


def outbox(capacity: int) -> tuple[Outbox, Closes, Metrics]:
    closes, metrics = Closes(), Metrics()
    return Outbox("conn", "bob", capacity, closes, metrics), closes, metrics


def live(seq: int) -> Envelope:
    return Envelope(f'{{"seq":{seq}}}', "c", seq)


async def test_the_writer_takes_everything_queued_as_one_batch() -> None:
    box, _, _ = outbox(8)
    box.gate.release()
    shared = live(1)
    box.deliver(shared)
    box.put("answer")
    box.deliver(live(2))
    batch = await box.take()
    assert batch == [text_frame(b'{"seq":1}'), text_frame(b"answer"), text_frame(b'{"seq":2}')]
    assert batch[0] is shared.wire  # the envelope's frame, not a copy per connection
    assert box.statistics().queued == 3  # being written: still counted


async def test_a_parked_writer_wakes_on_the_first_frame() -> None:
    box, _, _ = outbox(8)
    got: list[list[bytes]] = []

    async def writer() -> None:
        got.append(await box.take())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        box.put("hello")
    assert got == [[text_frame(b"hello")]]


async def test_the_bound_counts_the_batch_being_written_and_overflow_closes_4009() -> None:
    box, closes, metrics = outbox(3)
    box.gate.release()
    box.put("a")
    box.put("b")
    assert await box.take() == [text_frame(b"a"), text_frame(b"b")]  # in flight: 2 of 3
    box.deliver(live(1))
    assert closes.requested == []
    box.deliver(live(2))  # 4 frames not yet written > 3
    assert closes.requested == [(CloseCode.SLOW_CONSUMER, "slow consumer: outgoing queue full")]
    assert box.closed
    assert metrics.ws_slow_consumer_closes._value.get() == 1
    # nothing is queued after the overflow; the writer gets what was queued, then the end
    box.put("late")
    assert await box.take() == [live(1).wire]
    assert await box.take() == []


async def test_a_full_hold_buffer_closes_4009_too() -> None:
    box, closes, _ = outbox(2)
    box.deliver(live(1))  # held: no subscribe yet
    box.deliver(live(2))
    assert box.statistics().held == 2
    box.deliver(live(3))
    assert [code for code, _ in closes.requested] == [CloseCode.SLOW_CONSUMER]


async def test_put_wait_waits_for_room_instead_of_overflowing() -> None:
    box, closes, _ = outbox(2)
    await box.put_wait(b"1")
    await box.put_wait(b"2")
    done: list[bool] = []

    async def replay() -> None:
        done.append(await box.put_wait(b"3"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(replay)
        await trio.testing.wait_all_tasks_blocked()
        assert done == []  # full: waiting, not closing
        assert await box.take() == [b"1", b"2"]
        await trio.testing.wait_all_tasks_blocked()
        assert done == []  # the batch is still being written
        assert await box.take() == [b"3"]  # the previous batch is written now
    assert done == [True]
    assert closes.requested == []


async def test_closing_wakes_a_waiting_writer_and_a_waiting_replay() -> None:
    box, _, _ = outbox(1)
    await box.put_wait(b"1")
    results: list[object] = []

    async def replay() -> None:
        results.append(await box.put_wait(b"2"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(replay)
        await trio.testing.wait_all_tasks_blocked()
        box.close_input()
    assert results == [False]
    assert await box.take() == [b"1"]  # queued before the close: still written
    assert await box.take() == []


def test_in_order_seqs_keep_no_set_and_late_ones_below_the_first_are_admitted_once() -> None:
    window = SeqWindow(floor=99, slack=REORDER_SLACK)
    for seq in range(100, 120):
        assert window.add(seq)
    assert window.floor == 119
    assert not window.above
    assert window.add(99)  # arrived late from another replica
    assert not window.add(99)
    assert not window.add(99 - REORDER_SLACK)  # below the slack
    # far enough on, the slack is forgotten
    for seq in range(120, 120 + 300):
        assert window.add(seq)
    assert not window.add(98)


class Socket:
    """Stands in for `FrameWriter.try_write`: takes up to `room` bytes of each frame."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.written: list[bytes] = []

    def try_write(self, frame: bytes) -> int:
        taken = frame[:self.room]
        if taken:
            self.written.append(taken)
        self.room -= len(taken)
        return len(taken)


async def test_an_idle_connection_gets_frames_written_at_once_without_its_writer() -> None:
    box, _, _ = outbox(2)
    box.gate.release()
    socket = Socket(room=1 << 20)
    box.direct = socket  # type: ignore[assignment]
    assert box.deliver(live(1)) is True
    assert box.deliver(live(2)) is True
    box.put("answer")
    assert socket.written == [live(1).wire, live(2).wire, text_frame(b"answer")]
    assert box.statistics().queued == 0  # nothing for the writer: never woken, never over


async def test_what_the_socket_does_not_take_is_queued_first_and_order_holds() -> None:
    box, _, _ = outbox(8)
    box.gate.release()
    first = live(1).wire
    socket = Socket(room=5)
    box.direct = socket  # type: ignore[assignment]
    assert box.deliver(live(1)) is False
    socket.room = 1 << 20  # room again, but a frame's rest is queued: no frame may pass it
    assert box.deliver(live(2)) is False
    assert socket.written == [first[:5]]
    batch = await box.take()
    assert batch == [first[5:], live(2).wire]
    assert box.deliver(live(3)) is False  # the batch is being written: queued behind it
    assert await box.take() == [live(3).wire]
    got: list[list[bytes]] = []

    async def writer() -> None:
        got.append(await box.take())  # the previous batch is written: the queue is empty

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        assert box.deliver(live(4)) is True  # straight to the socket again
        box.put("wake")
        assert socket.written[-1] == text_frame(b"wake")
        box.close_input()
    assert got == [[]]
    assert socket.written[1:] == [live(4).wire, text_frame(b"wake")]
