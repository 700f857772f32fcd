"""Resume without gaps: the delivery gate holds, replays, releases and drops duplicates."""

from __future__ import annotations

import pytest

from cellchat.chat.realtime.broker import Envelope
from cellchat.chat.realtime.resume import REORDER_SLACK, DeliveryGate, HoldOverflow, SeqWindow


def msg(cid: str, seq: int) -> Envelope:
    return Envelope(f"{cid}:{seq}", cid, seq)


def other(text: str) -> Envelope:
    return Envelope(text, "c")


def frames(envelopes: list[Envelope]) -> list[str]:
    return [e.frame for e in envelopes]


def test_live_is_held_until_the_first_subscribe() -> None:
    gate = DeliveryGate(hold_limit=10)
    assert gate.live(msg("c", 5)) == []
    assert gate.live(other("status")) == []
    assert frames(gate.release()) == ["c:5", "status"]
    assert frames(gate.live(msg("c", 6))) == ["c:6"]


def test_replay_then_held_live_without_duplicates_or_gaps() -> None:
    gate = DeliveryGate(hold_limit=10)
    gate.position("c", 3)
    # live events that arrived while the replay was read from storage
    gate.live(msg("c", 5))
    gate.live(msg("c", 6))
    gate.live(msg("c", 7))
    replayed = [e for e in (msg("c", 4), msg("c", 5), msg("c", 6)) if gate.admit_replayed(e)]
    assert frames(replayed) == ["c:4", "c:5", "c:6"]
    assert frames(gate.release()) == ["c:7"]
    assert gate.live(msg("c", 7)) == []  # a late duplicate
    assert frames(gate.live(msg("c", 8))) == ["c:8"]


def test_out_of_order_live_seqs_are_not_dropped() -> None:
    gate = DeliveryGate(hold_limit=10)
    gate.position("c", 6)
    gate.release()
    assert frames(gate.live(msg("c", 8))) == ["c:8"]
    assert frames(gate.live(msg("c", 7))) == ["c:7"]
    assert gate.live(msg("c", 8)) == []


def test_a_conversation_without_position_tolerates_reordering_too() -> None:
    gate = DeliveryGate(hold_limit=10)
    gate.release()
    assert frames(gate.live(msg("new", 100))) == ["new:100"]
    assert frames(gate.live(msg("new", 99))) == ["new:99"]
    assert gate.live(msg("new", 100 - REORDER_SLACK - 1)) == []


def test_positions_and_duplicates_are_per_conversation() -> None:
    gate = DeliveryGate(hold_limit=10)
    gate.position("a", 1)
    gate.position("b", 1)
    gate.release()
    assert frames(gate.live(msg("a", 2)) + gate.live(msg("b", 2))) == ["a:2", "b:2"]


def test_a_new_subscribe_replays_again_even_what_was_given() -> None:
    gate = DeliveryGate(hold_limit=10)
    gate.position("c", 0)
    gate.release()
    gate.live(msg("c", 1))
    gate.live(msg("c", 2))
    gate.hold()
    gate.position("c", 0)
    assert gate.admit_replayed(msg("c", 1))
    assert gate.admit_replayed(msg("c", 2))
    assert gate.release() == []


def test_non_message_frames_always_pass() -> None:
    gate = DeliveryGate(hold_limit=10)
    gate.release()
    assert len(gate.live(other("typing")) + gate.live(other("typing"))) == 2


def test_hold_is_bounded() -> None:
    gate = DeliveryGate(hold_limit=2)
    gate.live(msg("c", 1))
    gate.live(msg("c", 2))
    with pytest.raises(HoldOverflow):
        gate.live(msg("c", 3))


def test_window_memory_is_bounded_and_contiguous_runs_compact() -> None:
    window = SeqWindow(floor=0, limit=4)
    for seq in range(2, 8):  # seq 1 never comes
        assert window.add(seq)
    assert len(window.above) <= 4
    assert window.floor >= 2  # gave up waiting for 1 once too far behind
    fresh = SeqWindow(floor=10)
    for seq in range(11, 1000):
        assert fresh.add(seq)
    assert fresh.floor == 999
    assert not fresh.above


def test_envelope_wire_round_trip() -> None:
    envelope = Envelope('{"type":"x","text":"a\\nb c"}', "cid-1", 7, 12.5)
    assert Envelope.from_wire(envelope.to_wire()) == envelope
    plain = Envelope("{}", "", 0, 1.0)
    assert Envelope.from_wire(plain.to_wire()) == plain
